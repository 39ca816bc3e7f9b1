package bench

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/dfs-store/dfs/client"
)

// MetaResult is the meta workload: namespace operations on empty files.
type MetaResult struct {
	Count       int     `json:"count"`
	Concurrency int     `json:"concurrency"`
	CreatePerS  float64 `json:"create_per_s"`
	StatPerS    float64 `json:"stat_per_s"`
	ListPerS    float64 `json:"list_per_s"` // pages of 100 entries
	DeletePerS  float64 `json:"delete_per_s"`
	CreateP99ms float64 `json:"create_p99_ms"`
	StatP99ms   float64 `json:"stat_p99_ms"`
}

func runMeta(ctx context.Context, cfg Config, t *target) (*MetaResult, error) {
	res := &MetaResult{Count: cfg.Count, Concurrency: cfg.Concurrency}
	dir := fmt.Sprintf("bench/meta-%d/", time.Now().UnixNano())
	path := func(i int) string { return fmt.Sprintf("%s%06d", dir, i) }
	var err error
	var lat latencies
	res.CreatePerS, lat, err = parallel(ctx, cfg.Count, cfg.Concurrency, cfg.Progress, "meta create", func(ctx context.Context, i int) error {
		_, err := t.client.Put(ctx, path(i), bytes.NewReader(nil), client.PutOptions{})
		return err
	})
	if err != nil {
		return res, err
	}
	res.CreateP99ms = ms(lat.percentile(0.99))
	fmt.Fprintf(cfg.Progress, "meta: %.0f creates/s\n", res.CreatePerS)
	res.StatPerS, lat, err = parallel(ctx, cfg.Count, cfg.Concurrency, cfg.Progress, "meta stat", func(ctx context.Context, i int) error {
		_, err := t.client.Stat(ctx, path(i))
		return err
	})
	if err != nil {
		return res, err
	}
	res.StatP99ms = ms(lat.percentile(0.99))
	fmt.Fprintf(cfg.Progress, "meta: %.0f stats/s\n", res.StatPerS)
	pages := max(cfg.Count/100, 1)
	res.ListPerS, _, err = parallel(ctx, pages, cfg.Concurrency, cfg.Progress, "meta list", func(ctx context.Context, i int) error {
		l, err := t.client.List(ctx, client.ListOptions{Prefix: dir, StartAfter: path(i * 100), Limit: 100})
		if err == nil && len(l.Files) == 0 && i*100+1 < cfg.Count {
			err = fmt.Errorf("empty page after %s", path(i*100))
		}
		return err
	})
	if err != nil {
		return res, err
	}
	fmt.Fprintf(cfg.Progress, "meta: %.0f list pages/s\n", res.ListPerS)
	res.DeletePerS, _, err = parallel(ctx, cfg.Count, cfg.Concurrency, cfg.Progress, "meta delete", func(ctx context.Context, i int) error {
		return t.client.Delete(ctx, path(i))
	})
	fmt.Fprintf(cfg.Progress, "meta: %.0f deletes/s\n", res.DeletePerS)
	return res, err
}
