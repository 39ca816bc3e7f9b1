package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Limits are the machine's own ceilings, measured in the same run as the
// workloads.
type Limits struct {
	// SHA256MBps is SHA-256 throughput of one core, in MB/s (10^6).
	SHA256MBps float64 `json:"sha256_mb_s_per_core"`
	CPUs       int     `json:"cpus"`
	// SeqWriteMiBps writes one file sequentially and fsyncs it.
	SeqWriteMiBps float64 `json:"seq_write_fsync_mib_s"`
	// ChunkWriteMiBps writes 2 MiB files from three writers at once, each
	// file fsynced, renamed and its directory fsynced: a datanode's pattern
	// times three replicas.
	ChunkWriteMiBps float64 `json:"chunk_write_fsync_mib_s"`
	// FsyncsPerSec is one writer's rate of 4 KiB write + fsync.
	FsyncsPerSec float64 `json:"fsyncs_per_s"`
	// ParallelFsyncsPerSec is the same from 32 writers at once.
	ParallelFsyncsPerSec float64 `json:"parallel_fsyncs_per_s"`
	// LoopbackMiBps is one TCP stream over loopback.
	LoopbackMiBps float64 `json:"loopback_tcp_mib_s"`
}

func measureLimits(ctx context.Context, cfg Config) (*Limits, error) {
	l := &Limits{CPUs: cpus()}
	fmt.Fprintf(cfg.Progress, "limits: sha256\n")
	l.SHA256MBps = measureSHA()
	dir, err := os.MkdirTemp(cfg.Dir, "dfs-bench-limits-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(cfg.Progress, "limits: sequential write with fsync\n")
	if l.SeqWriteMiBps, err = measureSeqWrite(dir, min(cfg.Size, 1<<30)); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "limits: chunk-pattern writes\n")
	if l.ChunkWriteMiBps, err = measureChunkWrites(dir, min(cfg.Size, 1<<30)); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "limits: fsyncs\n")
	if l.FsyncsPerSec, err = measureFsyncs(dir, 1, time.Second); err != nil {
		return nil, err
	}
	if l.ParallelFsyncsPerSec, err = measureFsyncs(dir, 32, time.Second); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "limits: loopback tcp\n")
	if l.LoopbackMiBps, err = measureLoopback(1 << 30); err != nil {
		return nil, err
	}
	return l, nil
}

func cpus() int { return runtime.NumCPU() }

func measureSHA() float64 {
	buf := make([]byte, 8<<20)
	fill(buf, 1)
	start := time.Now()
	var n int64
	for time.Since(start) < time.Second {
		sha256.Sum256(buf)
		n += int64(len(buf))
	}
	return float64(n) / 1e6 / time.Since(start).Seconds()
}

func measureSeqWrite(dir string, size int64) (float64, error) {
	f, err := os.Create(filepath.Join(dir, "seq"))
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 1<<20)
	fill(buf, 2)
	start := time.Now()
	for written := int64(0); written < size; written += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return mibPerSec(size, time.Since(start)), nil
}

func measureChunkWrites(dir string, size int64) (float64, error) {
	const chunk = 2 << 20
	buf := make([]byte, chunk)
	fill(buf, 3)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wd := filepath.Join(dir, fmt.Sprintf("w%d", w))
			if err := os.MkdirAll(wd, 0o755); err != nil {
				once.Do(func() { firstErr = err })
				return
			}
			d, err := os.Open(wd)
			if err != nil {
				once.Do(func() { firstErr = err })
				return
			}
			defer d.Close()
			for {
				i := next.Add(1)
				if i*chunk > size {
					return
				}
				tmp := filepath.Join(wd, fmt.Sprintf("t%d", i))
				f, err := os.Create(tmp)
				if err == nil {
					_, err = f.Write(buf)
				}
				if err == nil {
					err = f.Sync()
				}
				if f != nil {
					f.Close()
				}
				if err == nil {
					err = os.Rename(tmp, filepath.Join(wd, fmt.Sprintf("c%d", i)))
				}
				if err == nil {
					err = d.Sync()
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return mibPerSec(size, time.Since(start)), nil
}

func measureFsyncs(dir string, writers int, d time.Duration) (float64, error) {
	var count atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("fsync%d", w)))
			if err != nil {
				once.Do(func() { firstErr = err })
				return
			}
			defer f.Close()
			buf := make([]byte, 4096)
			for time.Now().Before(deadline) {
				if _, err := f.Write(buf); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				if err := f.Sync(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(count.Load()) / time.Since(start).Seconds(), nil
}

func measureLoopback(size int64) (float64, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 256<<10)
	start := time.Now()
	for sent := int64(0); sent < size; sent += int64(len(buf)) {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, err
		}
	}
	c.Close()
	n := <-got
	return mibPerSec(n, time.Since(start)), nil
}

// fill puts pseudo-random bytes in b, so nothing compresses or dedups.
func fill(b []byte, seed uint64) {
	r := newRand(seed)
	r.Read(b)
}
