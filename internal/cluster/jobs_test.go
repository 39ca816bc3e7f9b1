package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/jobs"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/rpc"
)

// waitJobs polls until no job is queued or processing and returns them all.
func waitJobs(t *testing.T, c *client.Client, want int) map[dfs.Hash]dfs.Processing {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		list, err := c.Jobs(context.Background(), client.JobsOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[dfs.Hash]dfs.Processing{}
		open := 0
		for _, j := range list {
			out[j.Content] = j
			if j.State == dfs.JobQueued || j.State == dfs.JobProcessing {
				open++
			}
		}
		if open == 0 && len(out) == want {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs not finished: %d of %d open: %+v", open, len(out), list)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every new content gets a job in its commit; a duplicate gets none. The
// workers of the cluster verify each content and read its media metadata,
// and the results show in stat, lookups and the job list.
func TestProcessing(t *testing.T) {
	ctx := context.Background()
	cl, c := startCluster(t, func(cfg *cluster.Config) {
		cfg.Jobs = jobs.Config{Workers: 3, LockTTL: 2 * time.Second, Backoff: 10 * time.Millisecond}
	})
	if got := cl.Workers.Workers(); strings.Join(got, ",") != "worker-1,worker-2,worker-3" {
		t.Fatalf("workers %v", got)
	}
	movie, err := os.ReadFile("../jobs/testdata/tiny.mp4")
	if err != nil {
		t.Fatal(err)
	}
	put := func(path string, data []byte) client.PutResult {
		t.Helper()
		res, err := c.Put(ctx, path, bytes.NewReader(data), client.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	mp4 := put("v/tiny.mp4", movie)
	cut := put("v/cut.mp4", movie[:len(movie)/2])
	text := put("a.txt", []byte("some text\n"))
	if text.Duplicate || mp4.Duplicate {
		t.Fatal("new content reported duplicate")
	}
	if dup := put("b.txt", []byte("some text\n")); !dup.Duplicate {
		t.Fatal("the same bytes again were not reported duplicate")
	}

	all := waitJobs(t, c, 3) // three contents, four files: no job for the duplicate
	// Finished jobs have left the queue's prefix; their records stay, with
	// the results, in their contents' records.
	schema, etcd := cl.Coordinator.Meta.Schema(), cl.Coordinator.Client
	for prefix, want := range map[string]int64{schema.JobsPrefix(): 0, schema.ResultsPrefix(): 0} {
		resp, err := etcd.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count != want {
			t.Errorf("%s holds %d keys (%v) once every job is finished, want %d", prefix, resp.Count, err, want)
		}
	}
	for _, h := range []dfs.ContentHash{mp4.File.Content, cut.File.Content, text.File.Content} {
		resp, err := etcd.Get(ctx, schema.Content(h))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("content %s: %v", h.Short(), err)
		}
		if j, err := meta.ContentJob(h, resp.Kvs[0].Value); err != nil || j == nil || !meta.JobFinished(j.State) {
			t.Errorf("content %s's record holds job %v (%v), want the finished one", h.Short(), j, err)
		}
	}
	m := all[mp4.File.Content]
	if m.State != dfs.JobDone || m.Attempts != 1 || !strings.HasPrefix(m.Worker, "worker-") {
		t.Fatalf("mp4 job %+v", m)
	}
	if m.Path != mp4.File.Path {
		t.Errorf("mp4 job's path %q, want %q (the path whose commit queued it)", m.Path, mp4.File.Path)
	}
	for k, v := range map[string]string{
		"verify.sha256": mp4.File.Content.String(), "verify.bytes": "19443",
		"media.format": "mp4", "media.width": "160", "media.height": "120", "media.duration_seconds": "2.000",
		"media.frame_rate": "25.000", "media.video_codec": "avc1", "media.audio_codec": "mp4a",
	} {
		if m.Results[k] != v {
			t.Errorf("mp4 %s = %q, want %q", k, m.Results[k], v)
		}
	}
	e := all[cut.File.Content]
	if e.State != dfs.JobError || e.Attempts != 1 || !strings.Contains(e.Error, "truncated") {
		t.Errorf("truncated mp4 job %+v: want error after 1 attempt saying truncated", e)
	}
	x := all[text.File.Content]
	if x.State != dfs.JobDone || x.Results["verify.sha256"] != text.File.Content.String() || x.Results["media.format"] != "none" {
		t.Errorf("text job %+v", x)
	}

	errs, err := c.Jobs(ctx, client.JobsOptions{State: dfs.JobError})
	if err != nil || len(errs) != 1 || errs[0].Content != cut.File.Content {
		t.Errorf("jobs in error: %+v, %v", errs, err)
	}
	if one, err := c.Jobs(ctx, client.JobsOptions{Limit: 1}); err != nil || len(one) != 1 {
		t.Errorf("jobs limit 1: %d, %v", len(one), err)
	}
	// The coordinator answers a page at a time: walking pages of one job
	// each finds every job once, in order.
	conn, err := rpc.Dial(cl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var walked []string
	after := ""
	for range 10 {
		resp, err := api.NewCoordinatorClient(conn).Jobs(ctx, &api.JobsRequest{Limit: 1, StartAfter: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range resp.Jobs {
			walked = append(walked, fmt.Sprintf("%x", j.ContentHash))
		}
		if after = resp.NextStartAfter; after == "" {
			break
		}
	}
	everyJob, err := c.Jobs(ctx, client.JobsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, j := range everyJob {
		want = append(want, j.Content.String())
	}
	if !slices.Equal(walked, want) || len(want) < 2 {
		t.Errorf("jobs walked a page of one at a time: %v; all at once: %v", walked, want)
	}
	if _, err := c.Jobs(ctx, client.JobsOptions{State: "finished"}); !errors.Is(err, dfs.ErrInvalid) {
		t.Errorf("jobs in state finished: err = %v, want invalid", err)
	}

	_, p, err := c.StatProcessing(ctx, "v/tiny.mp4")
	if err != nil || p == nil || p.State != dfs.JobDone || p.Results["media.width"] != "160" {
		t.Errorf("stat processing: %+v, %v", p, err)
	}
	// The duplicate path shows its content's job.
	loc, err := c.Locate(ctx, "b.txt")
	if err != nil || loc.Processing == nil || loc.Processing.State != dfs.JobDone {
		t.Errorf("locate b.txt: processing %+v, %v", loc.Processing, err)
	}
	// A location for reading the bytes leaves the state out, and has the
	// same chunks.
	rloc, err := c.LocateForRead(ctx, "b.txt", "")
	refs := func(l client.Location) (out []dfs.ChunkRef) {
		for _, ch := range l.Chunks {
			out = append(out, ch.ChunkRef)
		}
		return out
	}
	if err != nil || rloc.Processing != nil || !reflect.DeepEqual(refs(rloc), refs(loc)) {
		t.Errorf("locate b.txt for a read: processing %+v, chunks %v (want none, %v), %v", rloc.Processing, refs(rloc), refs(loc), err)
	}
	loc, err = c.LocateContent(ctx, cut.File.Content)
	if err != nil || loc.Processing == nil || loc.Processing.State != dfs.JobError {
		t.Errorf("locate content of cut.mp4: processing %+v, %v", loc.Processing, err)
	}
}

// A cluster without workers leaves jobs queued; stat still shows them.
func TestProcessingQueuedWithoutWorkers(t *testing.T) {
	ctx := context.Background()
	cl, c := startCluster(t, nil)
	if cl.Workers != nil {
		t.Fatal("workers started though none were asked for")
	}
	res, err := c.Put(ctx, "q.txt", strings.NewReader("queued"), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, p, err := c.StatProcessing(ctx, "q.txt")
	if err != nil || p == nil || p.State != dfs.JobQueued || p.Content != res.File.Content || p.Queued.IsZero() || !p.Updated.Equal(p.Queued) {
		t.Fatalf("stat processing %+v, %v; want queued", p, err)
	}
}

// Workers stop with the cluster, every goroutine of theirs with them.
func TestNoGoroutinesLeftAfterWorkersClose(t *testing.T) {
	slow(t, "a whole cluster started and stopped to count goroutines")
	base := runtime.NumGoroutine()
	func() {
		cl, c := startCluster(t, func(cfg *cluster.Config) {
			cfg.Jobs = jobs.Config{Workers: 3, LockTTL: 2 * time.Second}
		})
		if _, err := c.Put(context.Background(), "x", strings.NewReader("x"), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		waitJobs(t, c, 1)
		// And one in hand at the close: it goes back to the queue.
		cl.Workers.Close()
		c.Close()
		cl.Close()
	}()
	waitGoroutines(t, base)
}

// A worker stopped while it holds a job gives it back: queued again, the
// attempt not counted, and the lock released at once for the next worker.
func TestWorkerCloseRequeues(t *testing.T) {
	slow(t, "waits for a worker's session to expire")
	ctx := context.Background()
	cl, c := startCluster(t, func(cfg *cluster.Config) {
		cfg.Jobs = jobs.Config{Workers: 1, LockTTL: 30 * time.Second, ProcessDelay: time.Hour}
	})
	res, err := c.Put(ctx, "held.txt", strings.NewReader("held"), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, p, err := c.StatProcessing(ctx, "held.txt")
		if err != nil {
			t.Fatal(err)
		}
		if p.State == dfs.JobProcessing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never claimed: %+v", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cl.Workers.Close()
	_, p, err := c.StatProcessing(ctx, "held.txt")
	if err != nil || p.State != dfs.JobQueued || p.Attempts != 0 || p.Worker != "" {
		t.Fatalf("after close: %+v, %v; want queued, 0 attempts", p, err)
	}
	// The lock is gone with the session, not after its 30s TTL: a new pool
	// takes the job at once.
	more, err := jobs.Start(jobs.Config{Etcd: cl.Coordinator.Client, Schema: cl.Coordinator.Meta.Schema(), Client: c, Workers: 1, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer more.Close()
	if j := waitJobs(t, c, 1)[res.File.Content]; j.State != dfs.JobDone || j.Attempts != 1 {
		t.Fatalf("after a new pool: %+v", j)
	}
}

// flaky fails the first fails[h] runs on content h, then succeeds.
type flaky struct {
	mu    sync.Mutex
	fails map[dfs.Hash]int
	runs  map[dfs.Hash]int
}

func (f *flaky) Name() string { return "flaky" }

func (f *flaky) Process(ctx context.Context, c *jobs.Content) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs[c.Hash]++
	if n := f.runs[c.Hash]; n <= f.fails[c.Hash] {
		return nil, fmt.Errorf("transient failure %d", n)
	}
	return map[string]string{"runs": strconv.Itoa(f.runs[c.Hash])}, nil
}

// A failed attempt is retried after a backoff; after the last attempt the
// job ends in error with the last message and the attempts made.
func TestProcessingRetries(t *testing.T) {
	ctx := context.Background()
	twice, always := []byte("fails twice"), []byte("fails always")
	f := &flaky{fails: map[dfs.Hash]int{dfs.Sum(twice): 2, dfs.Sum(always): 1 << 30}, runs: map[dfs.Hash]int{}}
	_, c := startCluster(t, func(cfg *cluster.Config) {
		cfg.Jobs = jobs.Config{Workers: 2, MaxAttempts: 3, Backoff: 10 * time.Millisecond,
			Processors: []jobs.Processor{jobs.Verify{}, f}}
	})
	for name, data := range map[string][]byte{"twice": twice, "always": always} {
		if _, err := c.Put(ctx, name, bytes.NewReader(data), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	all := waitJobs(t, c, 2)
	if j := all[dfs.Sum(twice)]; j.State != dfs.JobDone || j.Attempts != 3 || j.Results["flaky.runs"] != "3" || j.Error != "" {
		t.Errorf("fails twice: %+v; want done on the third attempt", j)
	}
	if j := all[dfs.Sum(always)]; j.State != dfs.JobError || j.Attempts != 3 || j.Error != "flaky: transient failure 3" {
		t.Errorf("fails always: %+v; want error after 3 attempts with the last message", j)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.runs[dfs.Sum(always)] != 3 {
		t.Errorf("the failing processor ran %d times, want 3", f.runs[dfs.Sum(always)])
	}
}
