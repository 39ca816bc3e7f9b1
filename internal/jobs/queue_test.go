package jobs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
)

func TestQueueHeldUntilFreed(t *testing.T) {
	q := newQueue(nil, meta.NewSchema(""))
	h := dfs.Sum([]byte("a"))
	q.pending[h] = &entry{}
	ctx := context.Background()
	got, ok := q.next(ctx)
	if !ok || got != h {
		t.Fatal("the only job was not handed out")
	}
	if q.pending[h].available() {
		t.Fatal("a job in a worker's hands is available to another")
	}
	// Another worker holds its lock, seen at revision 10.
	q.release(h, false, 10)
	if q.pending[h].available() {
		t.Fatal("a job held elsewhere is available")
	}
	q.pending[h].freedRev = 9 // a lock key deleted before the look: no news
	if q.pending[h].available() {
		t.Fatal("a lock key deleted before the holder was seen frees the job")
	}
	q.pending[h].freedRev = 11
	if !q.pending[h].available() {
		t.Fatal("a lock key deleted after the holder was seen does not free the job")
	}
	q.release(h, true, 0)
	if _, ok := q.pending[h]; ok {
		t.Fatal("a finished job stays in the queue")
	}
}

func TestQueueStoppedHandsOutNothing(t *testing.T) {
	q := newQueue(nil, meta.NewSchema(""))
	q.pending[dfs.Sum([]byte("a"))] = &entry{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := q.next(ctx); ok {
		t.Fatal("a stopped pool handed out a job")
	}
}

// countingKV counts the keys the queue's reads return and the keys etcd
// counted for them.
type countingKV struct {
	clientv3.KV
	mu            sync.Mutex
	read, counted int64
}

func (c *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	resp, err := c.KV.Get(ctx, key, opts...)
	if err == nil {
		c.mu.Lock()
		c.read += int64(len(resp.Kvs))
		c.counted += resp.Count
		c.mu.Unlock()
	}
	return resp, err
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// putJobs writes one record per hash under the key key(h), many per
// transaction.
func putJobs(t testing.TB, cli *clientv3.Client, hs []dfs.Hash, key func(dfs.Hash) string, rec func(dfs.Hash) *api.JobRecord) {
	t.Helper()
	for len(hs) > 0 {
		n := min(len(hs), 100)
		var ops []clientv3.Op
		for _, h := range hs[:n] {
			val, err := proto.Marshal(rec(h))
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, clientv3.OpPut(key(h), string(val)))
		}
		if _, err := cli.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
		hs = hs[n:]
	}
}

func someHashes(n int, seed string) []dfs.Hash {
	out := make([]dfs.Hash, n)
	for i := range out {
		out[i] = dfs.Sum([]byte(fmt.Sprintf("%s-%d", seed, i)))
	}
	return out
}

func count(t *testing.T, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

func pendingOf(q *queue) []dfs.Hash {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []dfs.Hash
	for h := range q.pending {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b dfs.Hash) int { return strings.Compare(a.String(), b.String()) })
	return out
}

func sorted(hs []dfs.Hash) []dfs.Hash {
	out := slices.Clone(hs)
	slices.SortFunc(out, func(a, b dfs.Hash) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// A pool's listing reads the pending jobs and nothing else: ten thousand
// finished ones beside them cost it nothing.
func TestQueueListsOnlyPending(t *testing.T) {
	ctx := context.Background()
	cli := startEtcd(t)
	schema := meta.NewSchema("/queue-test")
	finished := someHashes(10000, "finished")
	putJobs(t, cli, finished, schema.Result, func(dfs.Hash) *api.JobRecord {
		return &api.JobRecord{State: "done", Results: map[string]string{"verify.sha256": "x"}}
	})
	pending := someHashes(5, "pending")
	putJobs(t, cli, pending, schema.Job, func(h dfs.Hash) *api.JobRecord {
		if h == pending[0] {
			return &api.JobRecord{State: "processing", Worker: "w", Attempts: 1}
		}
		return &api.JobRecord{State: "queued"}
	})
	q := newQueue(cli, schema)
	kv := &countingKV{KV: cli}
	q.kv = kv
	if _, err := q.list(ctx, quietLog); err != nil {
		t.Fatal(err)
	}
	if got := pendingOf(q); !slices.Equal(got, sorted(pending)) {
		t.Fatalf("queue holds %d jobs, want the %d pending", len(got), len(pending))
	}
	if kv.read != int64(len(pending)) || kv.counted != int64(len(pending)) {
		t.Fatalf("the listing read %d keys and etcd counted %d, with %d pending and %d finished", kv.read, kv.counted, len(pending), len(finished))
	}
}

// A cluster upgraded from the layout that kept finished jobs in jobs/: the
// first listing moves them into their contents' records, the next reads
// only what is pending, and a job an older worker finishes in place later
// is moved when the watch sees it.
func TestQueueMovesFinishedJobsOfTheOldLayout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cli := startEtcd(t)
	schema := meta.NewSchema("/queue-test")
	old := someHashes(2500, "old")
	putJobs(t, cli, old, schema.Job, func(h dfs.Hash) *api.JobRecord {
		st := "done"
		if h[0]%4 == 0 {
			st = "error"
		}
		return &api.JobRecord{ContentHash: h[:], State: st, Worker: "old-worker", Attempts: 1, Results: map[string]string{"verify.sha256": h.String()}}
	})
	pending := someHashes(3, "pending")
	putJobs(t, cli, pending, schema.Job, func(h dfs.Hash) *api.JobRecord { return &api.JobRecord{State: "queued"} })
	contents := append(append([]dfs.Hash{}, old...), pending...)
	for len(contents) > 0 {
		var ops []clientv3.Op
		for _, h := range contents[:min(100, len(contents))] {
			val, _ := proto.Marshal(&api.ContentRecord{Size: 1, ChunkCount: 1})
			ops = append(ops, clientv3.OpPut(schema.Content(h), string(val)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
		contents = contents[len(ops):]
	}

	q := newQueue(cli, schema)
	if _, err := q.list(ctx, quietLog); err != nil {
		t.Fatal(err)
	}
	if got := pendingOf(q); !slices.Equal(got, sorted(pending)) {
		t.Fatalf("queue holds %d jobs, want the %d pending", len(got), len(pending))
	}
	if n, m := count(t, cli, schema.JobsPrefix()), count(t, cli, schema.ResultsPrefix()); n != 3 || m != 0 {
		t.Fatalf("after the first listing: %d keys in jobs/, %d in job-results/; want 3 and none", n, m)
	}
	st := meta.New(cli, schema)
	for _, h := range old[:10] {
		j, err := st.GetJob(ctx, h)
		if err != nil || !meta.JobFinished(j.State) || j.Worker != "old-worker" || j.Results["verify.sha256"] != h.String() {
			t.Fatalf("moved job %s: %v, %v", h.Short(), j, err)
		}
	}
	kv := &countingKV{KV: cli}
	q.kv = kv
	if _, err := q.list(ctx, quietLog); err != nil {
		t.Fatal(err)
	}
	if kv.read != 3 {
		t.Fatalf("the second listing read %d keys, want the 3 pending", kv.read)
	}

	listed := make(chan struct{}, 100)
	q.afterList = func(int64) { listed <- struct{}{} }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		q.run(ctx, time.Hour, quietLog)
	}()
	defer wg.Wait()
	defer cancel()
	select {
	case <-listed: // the watch starts from the listing's revision, before the write below
	case <-time.After(30 * time.Second):
		t.Fatal("the queue did not list within 30s")
	}
	late := pending[0]
	putJobs(t, cli, []dfs.Hash{late}, schema.Job, func(h dfs.Hash) *api.JobRecord {
		return &api.JobRecord{ContentHash: h[:], State: "done", Worker: "old-worker"}
	})
	deadline := time.Now().Add(30 * time.Second)
	for count(t, cli, schema.Job(late)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a job finished in place under jobs/ was not moved into its content's record")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if j, err := st.GetJob(ctx, late); err != nil || j.State != "done" || j.Worker != "old-worker" {
		t.Fatalf("the late job after its move: %v, %v", j, err)
	}
}

// The queue watches from the revision its listing started at; when etcd
// has compacted that revision away, it lists again and watches again, and
// jobs queued later still reach the workers.
func TestQueueWatchResumesAfterCompaction(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cli := startEtcd(t)
	schema := meta.NewSchema("/queue-test")
	queueJob := func(h dfs.Hash) {
		putJobs(t, cli, []dfs.Hash{h}, schema.Job, func(dfs.Hash) *api.JobRecord { return &api.JobRecord{State: "queued"} })
	}
	a, b := dfs.Sum([]byte("a")), dfs.Sum([]byte("b"))
	q := newQueue(cli, schema)
	lists := make(chan int64, 100)
	listed := 0 // only the queue's goroutine touches it
	q.afterList = func(rev int64) {
		listed++
		if listed == 1 {
			// Between the first listing and its watch: a job is queued,
			// and etcd compacts past the revision the watch starts at.
			queueJob(a)
			resp, err := cli.Put(ctx, "/queue-test/unrelated", "x")
			if err != nil {
				t.Error(err)
			} else if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
				t.Error(err)
			}
		}
		lists <- rev
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		q.run(ctx, time.Hour, quietLog) // no periodic listing: only the watch, or a broken one, brings jobs
	}()
	defer wg.Wait()
	defer cancel()

	next := func() dfs.Hash {
		t.Helper()
		nctx, ncancel := context.WithTimeout(ctx, 30*time.Second)
		defer ncancel()
		h, ok := q.next(nctx)
		if !ok {
			t.Fatal("no job handed out within 30s")
		}
		q.release(h, true, 0)
		return h
	}
	if got := next(); got != a {
		t.Fatalf("first job %s, want %s", got.Short(), a.Short())
	}
	for i := range 2 {
		select {
		case <-lists:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d listings: the queue did not list again after the compaction", i)
		}
	}
	queueJob(b)
	if got := next(); got != b {
		t.Fatalf("job queued after the new watch: %s, want %s", got.Short(), b.Short())
	}
}
