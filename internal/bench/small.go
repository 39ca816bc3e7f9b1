package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dfs-store/dfs/client"
)

// SmallResult is the small workload: many small files put, got and
// statted at a given concurrency.
type SmallResult struct {
	Count       int     `json:"count"`
	FileBytes   int64   `json:"file_bytes"`
	Concurrency int     `json:"concurrency"`
	PutPerSec   float64 `json:"put_per_s"`
	GetPerSec   float64 `json:"get_per_s"`
	StatPerSec  float64 `json:"stat_per_s"`
	PutP50ms    float64 `json:"put_p50_ms"`
	PutP99ms    float64 `json:"put_p99_ms"`
	GetP50ms    float64 `json:"get_p50_ms"`
	GetP99ms    float64 `json:"get_p99_ms"`
	StatP50ms   float64 `json:"stat_p50_ms"`
	StatP99ms   float64 `json:"stat_p99_ms"`
}

// parallel runs op(i) for i in [0,n) on conc goroutines and returns the
// rate and the latency of each call. The first error stops the run.
func parallel(ctx context.Context, n, conc int, progress io.Writer, label string, op func(ctx context.Context, i int) error) (float64, latencies, error) {
	var (
		next    atomic.Int64
		mu      sync.Mutex
		lat     = make(latencies, 0, n)
		wg      sync.WaitGroup
		errOnce sync.Once
		err     error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(progress, "%s: %d/%d\n", label, min(int(next.Load()), n), n)
			}
		}
	}()
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make(latencies, 0, n/conc+1)
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					break
				}
				t0 := time.Now()
				if e := op(ctx, i); e != nil {
					errOnce.Do(func() { err = fmt.Errorf("%s %d: %w", label, i, e); cancel() })
					break
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(done)
	return float64(len(lat)) / time.Since(start).Seconds(), lat, err
}

func runSmall(ctx context.Context, cfg Config, t *target) (*SmallResult, error) {
	res := &SmallResult{Count: cfg.Count, FileBytes: cfg.FileSize, Concurrency: cfg.Concurrency}
	run := time.Now().UnixNano()
	path := func(i int) string { return fmt.Sprintf("bench/small-%d/%06d", run, i) }
	var err error
	var lat latencies
	res.PutPerSec, lat, err = parallel(ctx, cfg.Count, cfg.Concurrency, cfg.Progress, "small put", func(ctx context.Context, i int) error {
		_, err := t.client.Put(ctx, path(i), randomReader(uint64(run)+uint64(i), cfg.FileSize), client.PutOptions{Size: cfg.FileSize})
		return err
	})
	if err != nil {
		return res, err
	}
	res.PutP50ms, res.PutP99ms = ms(lat.percentile(0.5)), ms(lat.percentile(0.99))
	fmt.Fprintf(cfg.Progress, "small: %.0f puts/s\n", res.PutPerSec)

	bufs := sync.Pool{New: func() any { return new(bytes.Buffer) }}
	res.GetPerSec, lat, err = parallel(ctx, cfg.Count, cfg.Concurrency, cfg.Progress, "small get", func(ctx context.Context, i int) error {
		b := bufs.Get().(*bytes.Buffer)
		defer bufs.Put(b)
		b.Reset()
		if _, err := t.client.Get(ctx, path(i), b, client.GetOptions{}); err != nil {
			return err
		}
		if int64(b.Len()) != cfg.FileSize {
			return fmt.Errorf("got %d bytes, want %d", b.Len(), cfg.FileSize)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	res.GetP50ms, res.GetP99ms = ms(lat.percentile(0.5)), ms(lat.percentile(0.99))
	fmt.Fprintf(cfg.Progress, "small: %.0f gets/s\n", res.GetPerSec)

	res.StatPerSec, lat, err = parallel(ctx, cfg.Count, cfg.Concurrency, cfg.Progress, "small stat", func(ctx context.Context, i int) error {
		_, err := t.client.Stat(ctx, path(i))
		return err
	})
	if err != nil {
		return res, err
	}
	res.StatP50ms, res.StatP99ms = ms(lat.percentile(0.5)), ms(lat.percentile(0.99))
	fmt.Fprintf(cfg.Progress, "small: %.0f stats/s; cleaning up\n", res.StatPerSec)
	_, _, err = parallel(ctx, cfg.Count, cfg.Concurrency, io.Discard, "small rm", func(ctx context.Context, i int) error {
		return t.client.Delete(ctx, path(i))
	})
	return res, err
}
