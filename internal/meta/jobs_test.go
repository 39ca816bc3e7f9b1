package meta_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
)

// countingKV counts the Range calls made through it, and the keys etcd
// counted and returned for them.
type countingKV struct {
	clientv3.KV
	mu                   sync.Mutex
	calls, counted, read int64
	maxCounted           int64
}

func (c *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	resp, err := c.KV.Get(ctx, key, opts...)
	if err == nil {
		c.mu.Lock()
		c.calls++
		c.counted += resp.Count
		c.read += int64(len(resp.Kvs))
		c.maxCounted = max(c.maxCounted, resp.Count)
		c.mu.Unlock()
	}
	return resp, err
}

// putAll writes the keys with value v, many per transaction.
func putAll(t *testing.T, keys []string, v string) {
	t.Helper()
	for len(keys) > 0 {
		n := min(len(keys), 100)
		var ops []clientv3.Op
		for _, k := range keys[:n] {
			ops = append(ops, clientv3.OpPut(k, v))
		}
		if _, err := etcd.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
		keys = keys[n:]
	}
}

func hashes(n int, seed string) []dfs.Hash {
	out := make([]dfs.Hash, n)
	for i := range out {
		out[i] = dfs.Sum([]byte(fmt.Sprintf("%s-%d", seed, i)))
	}
	slices.SortFunc(out, func(a, b dfs.Hash) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// ScanHex returns every key once, in order, from where it is asked to
// start, and each of its reads counts about one page of keys however many
// the prefix holds: the paged read over the whole remaining range it
// replaces counted every key to the end of the prefix on each call.
func TestScanHexCountsAPage(t *testing.T) {
	ctx := context.Background()
	prefix := fmt.Sprintf("/test/%d/hex/", roots.Add(1))
	const n, page = 20000, 100
	hs := hashes(n, "scan")
	keys := make([]string, n)
	for i, h := range hs {
		keys[i] = prefix + h.String()
	}
	putAll(t, keys, "v")
	// Beside it, keys the scan must not see.
	putAll(t, []string{prefix[:len(prefix)-1], prefix[:len(prefix)-1] + "0/x", prefix[:len(prefix)-1] + "~"}, "other")

	scan := func(after string, stopAt int) ([]string, *countingKV) {
		t.Helper()
		kv := &countingKV{KV: etcd}
		var got []string
		rev, err := meta.ScanHex(ctx, kv, prefix, after, page, func(kv *mvccpb.KeyValue) (bool, error) {
			got = append(got, string(kv.Key))
			return len(got) != stopAt, nil
		})
		if err != nil || rev == 0 {
			t.Fatalf("scan after %q: rev %d, %v", after, rev, err)
		}
		return got, kv
	}
	got, kv := scan("", -1)
	if !slices.Equal(got, keys) {
		t.Fatalf("scan returned %d keys, want the %d under the prefix in order", len(got), n)
	}
	t.Logf("%d keys, page %d: %d reads, %d keys counted (at most %d in one read)", n, page, kv.calls, kv.counted, kv.maxCounted)
	if kv.maxCounted > 3*page || kv.counted > 2*n {
		t.Errorf("reads counted up to %d keys each, %d in all; want about one page (%d) each", kv.maxCounted, kv.counted, page)
	}
	if kv.calls > 2*n/page {
		t.Errorf("%d reads for %d keys in pages of %d", kv.calls, n, page)
	}

	// From the middle, and stopped early.
	got, _ = scan(strings.TrimPrefix(keys[n/2], prefix), -1)
	if !slices.Equal(got, keys[n/2+1:]) {
		t.Fatalf("scan after the middle key: %d keys, want %d", len(got), n-n/2-1)
	}
	got, kv = scan("", 5)
	if !slices.Equal(got, keys[:5]) || kv.read > page {
		t.Fatalf("scan stopped after 5: %d keys, %d read", len(got), kv.read)
	}

	// An empty prefix costs a handful of reads.
	kv = &countingKV{KV: etcd}
	if _, err := meta.ScanHex(ctx, kv, prefix+"empty/", "", page, func(*mvccpb.KeyValue) (bool, error) {
		t.Fatal("a key in an empty prefix")
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	if kv.calls > 5 {
		t.Errorf("an empty prefix took %d reads", kv.calls)
	}

	// Names that are not hex still come, in order.
	odd := fmt.Sprintf("/test/%d/odd/", roots.Add(1))
	oddKeys := []string{odd + "0", odd + "0123456789abcdef0", odd + "ABC", odd + "abc", odd + "abcdefg", odd + "zz"}
	putAll(t, oddKeys, "v")
	var oddGot []string
	if _, err := meta.ScanHex(ctx, etcd, odd, "", 2, func(kv *mvccpb.KeyValue) (bool, error) {
		oddGot = append(oddGot, string(kv.Key))
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(oddGot, oddKeys) {
		t.Fatalf("odd names: %q, want %q", oddGot, oddKeys)
	}
}

func jobVal(t *testing.T, rec proto.Message) string {
	t.Helper()
	b, err := proto.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Jobs lists pending jobs from jobs/ and finished ones from the content
// records and from job-results/ (layout 3), and any finished job still
// under jobs/ (the layout before), each once, in content-hash order, a
// page at a time, however small the pages; contents with no finished job
// and chunk pages are no jobs.
func TestJobsListing(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sc := s.Schema()
	hs := hashes(40, "jobs")
	states := map[dfs.Hash]string{}
	for i, h := range hs {
		var key string
		rec := &api.JobRecord{QueuedUnixNano: int64(i + 1)}
		switch i % 4 {
		case 0:
			rec.State, key = "queued", sc.Job(h)
		case 1:
			rec.State, key = "processing", sc.Job(h)
		case 2:
			rec.State, key = "done", sc.Result(h)
		case 3:
			rec.State, key = "error", sc.Result(h)
			if i == 3 {
				// Finished before results had a prefix of their own: in
				// jobs/, with the hash in the record.
				key, rec.ContentHash = sc.Job(h), h[:]
			}
		}
		states[h] = rec.State
		if key == sc.Result(h) && i%8 < 4 {
			// In the content's record, as FinishJob keeps it.
			putAll(t, []string{sc.Content(h)}, jobVal(t, &api.ContentRecord{Size: 1, Job: rec}))
			putAll(t, []string{sc.Content(h) + "/layout/000000"}, "a chunk page")
			continue
		}
		putAll(t, []string{key}, jobVal(t, rec))
	}
	// Contents with no finished job.
	for _, h := range hashes(10, "no-job") {
		putAll(t, []string{sc.Content(h)}, jobVal(t, &api.ContentRecord{Size: 1}))
	}
	walk := func(state string, limit int) []string {
		t.Helper()
		var out []string
		after := ""
		for range 1000 {
			page, err := s.Jobs(ctx, state, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Jobs) > limit {
				t.Fatalf("a page of %d jobs, limit %d", len(page.Jobs), limit)
			}
			for _, j := range page.Jobs {
				h, err := dfs.HashFromBytes(j.ContentHash)
				if err != nil {
					t.Fatalf("job without its hash: %v", j)
				}
				if j.State != states[h] || j.QueuedUnixNano == 0 || j.UpdatedUnixNano != j.QueuedUnixNano {
					t.Fatalf("job %s: %v, want %s", h.Short(), j, states[h])
				}
				out = append(out, h.String()+" "+j.State)
			}
			if after = page.Next; after == "" {
				return out
			}
		}
		t.Fatal("the listing never ended")
		return nil
	}
	want := func(state string) []string {
		var out []string
		for _, h := range hs {
			if state == "" || states[h] == state {
				out = append(out, h.String()+" "+states[h])
			}
		}
		return out
	}
	for _, state := range []string{"", "queued", "processing", "done", "error"} {
		for _, limit := range []int{1, 3, 1000} {
			if got := walk(state, limit); !slices.Equal(got, want(state)) {
				t.Errorf("jobs %q in pages of %d:\n%v\nwant\n%v", state, limit, got, want(state))
			}
		}
	}
}

// An answer reads a bounded number of records: a state that matches none
// of thousands of results answers at once with no job and a next page.
func TestJobsAnswerIsBounded(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	hs := hashes(2000, "bounded")
	var keys []string
	for _, h := range hs[:len(hs)-1] {
		keys = append(keys, s.Schema().Result(h))
	}
	putAll(t, keys, jobVal(t, &api.JobRecord{State: "done"}))
	last := hs[len(hs)-1]
	putAll(t, []string{s.Schema().Result(last)}, jobVal(t, &api.JobRecord{State: "error"}))

	page, err := s.Jobs(ctx, "error", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Jobs) != 0 || page.Next == "" || page.Next >= last.String() {
		t.Fatalf("first answer: %d jobs, next %q; want none and a next page", len(page.Jobs), page.Next)
	}
	var found []string
	for after := ""; ; {
		page, err := s.Jobs(ctx, "error", after, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page.Jobs {
			found = append(found, fmt.Sprintf("%x", j.ContentHash))
		}
		if after = page.Next; after == "" {
			break
		}
	}
	if !slices.Equal(found, []string{last.String()}) {
		t.Fatalf("jobs in error: %v, want only %s", found, last)
	}
}

// GetJob finds a content's job pending, then finished, then not at all;
// a slim record reads whole.
func TestGetJob(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c := content(chunks(1, 10, 70), "get-job")
	if _, err := s.GetJob(ctx, c.Hash); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("job of an unknown content: %v, want not found", err)
	}
	commit(t, s, "a", c)
	j, err := s.GetJob(ctx, c.Hash)
	if err != nil || j.State != "queued" || !slices.Equal(j.ContentHash, c.Hash[:]) || j.QueuedUnixNano == 0 || j.UpdatedUnixNano != j.QueuedUnixNano {
		t.Fatalf("queued job: %v, %v", j, err)
	}
	stored, _ := etcd.Get(ctx, s.Schema().Job(c.Hash))
	var raw api.JobRecord
	if err := proto.Unmarshal(stored.Kvs[0].Value, &raw); err != nil || raw.ContentHash != nil || raw.UpdatedUnixNano != 0 {
		t.Fatalf("the queued record repeats its key or its queue time: %v (%d bytes)", &raw, len(stored.Kvs[0].Value))
	}
	t.Logf("a queued job record is %d bytes", len(stored.Kvs[0].Value))

	// Finished as a worker does: one transaction out of jobs/, into the
	// content's record.
	finishJob(t, s, c.Hash, &api.JobRecord{State: "done", Worker: "w", Results: map[string]string{"k": "v"}})
	j, err = s.GetJob(ctx, c.Hash)
	if err != nil || j.State != "done" || j.Results["k"] != "v" || !slices.Equal(j.ContentHash, c.Hash[:]) {
		t.Fatalf("finished job: %v, %v", j, err)
	}
	if n := keyCount(t, s.Schema().Job(c.Hash)) + keyCount(t, s.Schema().ResultsPrefix()); n != 0 {
		t.Fatalf("%d job keys left after the finish", n)
	}
	cresp, _ := etcd.Get(ctx, s.Schema().Content(c.Hash))
	var rec api.ContentRecord
	if proto.Unmarshal(cresp.Kvs[0].Value, &rec) != nil || rec.Job == nil || rec.Job.ContentHash != nil || rec.Size != c.Size {
		t.Fatalf("content record after the finish: %v", &rec)
	}
	if got, err := s.GetContent(ctx, c.Hash); err != nil || got.Size != c.Size || len(got.Chunks) != len(c.Chunks) {
		t.Fatalf("content after the finish: %+v, %v", got, err)
	}

	// A finished record of layout 3 (job-results/) reads too.
	old := content(chunks(1, 10, 71), "get-job-old")
	commit(t, s, "b", old)
	if _, err := etcd.Txn(ctx).Then(clientv3.OpDelete(s.Schema().Job(old.Hash)),
		clientv3.OpPut(s.Schema().Result(old.Hash), jobVal(t, &api.JobRecord{State: "error", Error: "e"}))).Commit(); err != nil {
		t.Fatal(err)
	}
	if j, err := s.GetJob(ctx, old.Hash); err != nil || j.State != "error" || j.Error != "e" {
		t.Fatalf("finished job of layout 3: %v, %v", j, err)
	}
}

// finishJob finishes content h's pending job with rec as a worker does.
func finishJob(t *testing.T, s *meta.Store, h dfs.ContentHash, rec *api.JobRecord) {
	t.Helper()
	ctx := context.Background()
	resp, err := etcd.Get(ctx, s.Schema().Job(h))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("pending job of %s: %v", h.Short(), err)
	}
	if _, ok, err := meta.FinishJob(ctx, etcd, s.Schema(), h, rec,
		clientv3.Compare(clientv3.ModRevision(s.Schema().Job(h)), "=", resp.Kvs[0].ModRevision)); err != nil || !ok {
		t.Fatalf("finish job of %s: %v, %v", h.Short(), ok, err)
	}
}

// FinishJob writes only under its fence; a content record rewritten since
// it was read is read again, and a content gone takes only the pending
// key's deletion.
func TestFinishJobFence(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sc := s.Schema()
	c := content(chunks(1, 10, 72), "fence")
	commit(t, s, "a", c)
	resp, _ := etcd.Get(ctx, sc.Job(c.Hash))
	rev := resp.Kvs[0].ModRevision
	done := &api.JobRecord{State: "done", Worker: "w"}
	// Someone else wrote the job since: refused, nothing changed.
	putAll(t, []string{sc.Job(c.Hash)}, jobVal(t, &api.JobRecord{State: "processing", Worker: "other"}))
	if _, ok, err := meta.FinishJob(ctx, etcd, sc, c.Hash, done, clientv3.Compare(clientv3.ModRevision(sc.Job(c.Hash)), "=", rev)); err != nil || ok {
		t.Fatalf("finish under a stale fence: ok %v, %v", ok, err)
	}
	if j, _ := s.GetJob(ctx, c.Hash); j.State != "processing" {
		t.Fatalf("after a refused finish the job is %s", j.State)
	}
	// The content gone: the pending key goes, nothing else is written.
	gone := dfs.Sum([]byte("gone"))
	putAll(t, []string{sc.Job(gone)}, jobVal(t, &api.JobRecord{State: "processing"}))
	if _, ok, err := meta.FinishJob(ctx, etcd, sc, gone, done); err != nil || !ok {
		t.Fatalf("finish of a content gone: %v, %v", ok, err)
	}
	if n := keyCount(t, sc.Job(gone)) + keyCount(t, sc.Content(gone)); n != 0 {
		t.Fatalf("%d keys after finishing the job of a content gone", n)
	}
}

// Finished jobs of the old layouts (under jobs/ or job-results/) fold into
// their contents' records, each only if unchanged since it was read; the
// job of a content that is gone is only deleted; folding again folds
// nothing.
func TestMoveFinishedJobs(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sc := s.Schema()
	hs := hashes(150, "move") // more than two transactions' worth
	for i, h := range hs {
		putAll(t, []string{sc.Job(h)}, jobVal(t, &api.JobRecord{ContentHash: h[:], State: "done", Worker: "old", Results: map[string]string{"r": h.Short()}}))
		if i != 7 {
			putAll(t, []string{sc.Content(h)}, jobVal(t, &api.ContentRecord{Size: int64(i + 1)}))
		}
	}
	var found []meta.FinishedJob
	for _, h := range hs {
		resp, err := etcd.Get(ctx, sc.Job(h))
		if err != nil {
			t.Fatal(err)
		}
		found = append(found, meta.FinishedJob{Content: h, ModRev: resp.Kvs[0].ModRevision, Value: resp.Kvs[0].Value})
	}
	// One changes after it was read (deleted with its content, say).
	changed := hs[40]
	if _, err := etcd.Delete(ctx, sc.Job(changed)); err != nil {
		t.Fatal(err)
	}
	moved, err := s.MoveFinishedJobs(ctx, found)
	if err != nil || moved != len(hs)-1 {
		t.Fatalf("moved %d, %v; want %d", moved, err, len(hs)-1)
	}
	if n := keyCount(t, sc.JobsPrefix()) + keyCount(t, sc.ResultsPrefix()); n != 0 {
		t.Fatalf("%d keys left in jobs/ and job-results/", n)
	}
	if j, err := s.GetJob(ctx, changed); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("a job deleted after it was read was moved: %v", j)
	}
	if j, err := s.GetJob(ctx, hs[7]); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("the job of a content gone was kept: %v", j)
	}
	if n := keyCount(t, sc.Content(hs[7])); n != 0 {
		t.Fatal("folding the job of a content gone wrote a content record")
	}
	j, err := s.GetJob(ctx, hs[0])
	if err != nil || j.State != "done" || j.Worker != "old" || j.Results["r"] != hs[0].Short() {
		t.Fatalf("moved job: %v, %v", j, err)
	}
	raw, _ := etcd.Get(ctx, sc.Content(hs[0]))
	var rec api.ContentRecord
	if proto.Unmarshal(raw.Kvs[0].Value, &rec) != nil || rec.Job == nil || rec.Job.ContentHash != nil || rec.Size != 1 {
		t.Fatalf("a moved record keeps the hash its key names, or the content record lost its fields: %v", &rec)
	}
	if moved, err := s.MoveFinishedJobs(ctx, found); err != nil || moved != 0 {
		t.Fatalf("moving again: %d, %v; want nothing moved", moved, err)
	}
	if _, err := s.MoveFinishedJobs(ctx, []meta.FinishedJob{{Content: hs[0], Value: []byte(jobVal(t, &api.JobRecord{State: "queued"}))}}); err == nil {
		t.Fatal("a queued job was moved to the results")
	}
}

// The migration to layout 4 folds job-results/ into the content records,
// once.
func TestMigrateFoldsResults(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sc := s.Schema()
	var cs []dfs.Content
	for i := range 70 {
		c := content(chunks(1, 10, uint64(300+i)), fmt.Sprint("fold", i))
		commit(t, s, fmt.Sprint("fold/", i), c)
		if _, err := etcd.Txn(ctx).Then(clientv3.OpDelete(sc.Job(c.Hash)),
			clientv3.OpPut(sc.Result(c.Hash), jobVal(t, &api.JobRecord{State: "done", Results: map[string]string{"i": fmt.Sprint(i)}}))).Commit(); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	if _, err := etcd.Put(ctx, sc.Format(), meta.FormatSkip); err != nil {
		t.Fatal(err)
	}
	st, err := s.Migrate(ctx, meta.Fence{})
	if err != nil || st.Results != len(cs) {
		t.Fatalf("migration: %+v, %v; want %d results folded", st, err, len(cs))
	}
	if n := keyCount(t, sc.ResultsPrefix()); n != 0 {
		t.Fatalf("%d keys left in job-results/", n)
	}
	for i, c := range cs {
		if j, err := s.GetJob(ctx, c.Hash); err != nil || j.Results["i"] != fmt.Sprint(i) {
			t.Fatalf("job %d after the migration: %v, %v", i, j, err)
		}
	}
	if f, _ := s.Format(ctx); f != meta.FormatCurrent {
		t.Fatalf("layout version %q", f)
	}
}

// The watch reports a job's changes in order: queued, processing, and the
// finish that moves it out of jobs/ as one change with the finished
// record; a job deleted with its content as a change with none.
func TestWatchJobChanges(t *testing.T) {
	s := newStore(t)
	sc := s.Schema()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	changes := make(chan meta.Change, 64)
	errc := make(chan error, 1)
	go func() {
		errc <- s.WatchChanges(ctx, func(c meta.Change) error {
			if c.Kind == meta.JobChanged {
				changes <- c
			}
			return nil
		})
	}()
	// The watch starts at some point: write until a first change shows.
	probe := dfs.Sum([]byte("probe"))
	for started := false; !started; {
		putAll(t, []string{sc.Job(probe)}, jobVal(t, &api.JobRecord{State: "queued"}))
		select {
		case <-changes:
			started = true
		case err := <-errc:
			t.Fatalf("watch ended: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	h := dfs.Sum([]byte("watched"))
	putAll(t, []string{sc.Content(h)}, jobVal(t, &api.ContentRecord{Size: 1})) // no job change
	putAll(t, []string{sc.Job(h)}, jobVal(t, &api.JobRecord{State: "queued", QueuedUnixNano: 5}))
	putAll(t, []string{sc.Job(h)}, jobVal(t, &api.JobRecord{State: "processing", Worker: "w"}))
	if _, ok, err := meta.FinishJob(ctx, etcd, sc, h, &api.JobRecord{State: "done", Worker: "w"}); err != nil || !ok {
		t.Fatalf("finish: %v, %v", ok, err)
	}
	// Collected: the record goes with its finished job.
	if _, err := etcd.Delete(ctx, sc.Content(h)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 4 {
		select {
		case c := <-changes:
			if c.Content != h {
				continue // the probe's
			}
			st := "deleted"
			if c.Job != nil {
				st = c.Job.State
				if !slices.Equal(c.Job.ContentHash, h[:]) {
					t.Errorf("change %s without its content hash", st)
				}
			}
			got = append(got, st)
		case err := <-errc:
			t.Fatalf("watch ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("changes so far: %v", got)
		}
	}
	if want := []string{"queued", "processing", "done", "deleted"}; !slices.Equal(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
}

// A content deleted by garbage collection takes its finished job along.
func TestDeleteContentDeletesItsResult(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c := content(chunks(1, 10, 80), "gc-result")
	commit(t, s, "a", c)
	finishJob(t, s, c.Hash, &api.JobRecord{State: "done"})
	if err := s.DeleteFile(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if st, err := s.CollectContents(ctx, meta.Fence{}, 0); err != nil || st.Deleted != 1 {
		t.Fatalf("collect contents: %+v, %v", st, err)
	}
	if _, err := s.GetJob(ctx, c.Hash); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("job of a deleted content: %v, want not found", err)
	}
	if n := keyCount(t, s.Schema().ResultsPrefix()); n != 0 {
		t.Fatalf("%d results left after the content was deleted", n)
	}
}
