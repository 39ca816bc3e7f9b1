package jobs

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
)

// benchJobs is the number of finished jobs the benchmarks store:
// DFS_BENCH_JOBS, or 100,000.
func benchJobs(b *testing.B) int {
	if v := os.Getenv("DFS_BENCH_JOBS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			b.Fatalf("DFS_BENCH_JOBS=%q: want a count", v)
		}
		return n
	}
	return 100000
}

// A pool's resync with many finished jobs and a hundred pending: it costs
// what is pending. The first listing of the same jobs in the layout before
// job-results/ (every finished job under jobs/) moves them, once.
//
//	go test -run XXX -bench QueueList -benchtime 20x ./internal/jobs/
func BenchmarkQueueList(b *testing.B) {
	cli := startEtcd(b)
	n := benchJobs(b)
	ctx := context.Background()
	pending := someHashes(100, "pending")

	b.Run("finished-in-results", func(b *testing.B) {
		schema := meta.NewSchema("/bench-results")
		putJobs(b, cli, someHashes(n, "done"), schema.Result, func(dfs.Hash) *api.JobRecord {
			return &api.JobRecord{State: "done", Results: map[string]string{"verify.bytes": "4096"}}
		})
		putJobs(b, cli, pending, schema.Job, func(dfs.Hash) *api.JobRecord { return &api.JobRecord{State: "queued"} })
		q := newQueue(cli, schema)
		kv := &countingKV{KV: cli}
		q.kv = kv
		b.ResetTimer()
		for range b.N {
			if _, err := q.list(ctx, quietLog); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(kv.read)/float64(b.N), "keys-read/op")
		b.ReportMetric(float64(kv.counted)/float64(b.N), "keys-counted/op")
	})
	b.Run("old-layout-first-listing", func(b *testing.B) {
		b.StopTimer()
		for i := range b.N {
			schema := meta.NewSchema("/bench-old-" + strconv.Itoa(i))
			putJobs(b, cli, someHashes(n, "old"), schema.Job, func(h dfs.Hash) *api.JobRecord {
				return &api.JobRecord{ContentHash: h[:], State: "done", Results: map[string]string{"verify.bytes": "4096"}}
			})
			putJobs(b, cli, pending, schema.Job, func(dfs.Hash) *api.JobRecord { return &api.JobRecord{State: "queued"} })
			q := newQueue(cli, schema)
			b.StartTimer()
			if _, err := q.list(ctx, quietLog); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if got := len(pendingOf(q)); got != len(pending) {
				b.Fatalf("%d pending after the move, want %d", got, len(pending))
			}
		}
	})
}
