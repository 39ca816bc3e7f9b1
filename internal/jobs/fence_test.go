package jobs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/etcdserver"
	"github.com/dfs-store/dfs/internal/meta"
)

func startEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	e, err := etcdserver.Start(context.Background(), etcdserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func readJob(t *testing.T, cli *clientv3.Client, key string) (*api.JobRecord, int64) {
	t.Helper()
	resp, err := cli.Get(context.Background(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v, %d keys", key, err, len(resp.Kvs))
	}
	var rec api.JobRecord
	if err := proto.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	return &rec, resp.Kvs[0].ModRevision
}

// putContent writes a content record for h, as its commit did.
func putContent(t *testing.T, cli *clientv3.Client, schema meta.Schema, h dfs.Hash) {
	t.Helper()
	val, _ := proto.Marshal(&api.ContentRecord{Size: 1, ChunkCount: 1})
	if _, err := cli.Put(context.Background(), schema.Content(h), string(val)); err != nil {
		t.Fatal(err)
	}
}

// readFinished returns the finished job kept in content h's record, and
// the record's mod revision.
func readFinished(t *testing.T, cli *clientv3.Client, schema meta.Schema, h dfs.Hash) (*api.JobRecord, int64) {
	t.Helper()
	resp, err := cli.Get(context.Background(), schema.Content(h))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get content %s: %v", h.Short(), err)
	}
	j, err := meta.ContentJob(h, resp.Kvs[0].Value)
	if err != nil || j == nil {
		t.Fatalf("content %s holds no finished job (%v)", h.Short(), err)
	}
	return j, resp.Kvs[0].ModRevision
}

// noJob fails the test if key (a pending job) exists: a finished job
// leaves the queue.
func noJob(t *testing.T, cli *clientv3.Client, key string) {
	t.Helper()
	resp, err := cli.Get(context.Background(), key, clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("%s still exists: a finished job stays in the queue", key)
	}
}

// claimAs takes the job's lock in its own session and reads the job, as a
// worker does.
func claimAs(t *testing.T, cli *clientv3.Client, schema meta.Schema, id string, h dfs.Hash) (*claim, *concurrency.Session) {
	t.Helper()
	ctx := context.Background()
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	m := concurrency.NewMutex(sess, schema.Lock(h))
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.Lock(lctx); err != nil {
		t.Fatalf("%s: lock: %v", id, err)
	}
	w := &worker{id: id, cfg: &Config{Etcd: cli, Schema: schema}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c := &claim{w: w, h: h, m: m, key: schema.Job(h)}
	c.rec, c.rev = readJob(t, cli, c.key)
	return c, sess
}

// A worker whose lock lapsed (it paused past its session's TTL) has every
// write rejected once another worker holds the lock, and the job keeps the
// second worker's result.
func TestFenceRejectsStaleHolder(t *testing.T) {
	ctx := context.Background()
	cli := startEtcd(t)
	schema := meta.NewSchema("/fence-test")
	h := dfs.Sum([]byte("some content"))
	putContent(t, cli, schema, h)
	val, _ := proto.Marshal(&api.JobRecord{ContentHash: h[:], State: string(dfs.JobQueued)})
	if _, err := cli.Put(ctx, schema.Job(h), string(val)); err != nil {
		t.Fatal(err)
	}

	a, sessA := claimAs(t, cli, schema, "a", h)
	if err := a.start(ctx); err != nil {
		t.Fatalf("a: start: %v", err)
	}
	// a pauses; its lease runs out (revoking it is what expiry does).
	if _, err := cli.Revoke(ctx, sessA.Lease()); err != nil {
		t.Fatal(err)
	}
	b, _ := claimAs(t, cli, schema, "b", h)
	if b.rec.State != string(dfs.JobProcessing) || b.rec.Worker != "a" || b.rec.Attempts != 1 {
		t.Fatalf("b read %v, want processing by a, 1 attempt", b.rec)
	}
	if err := b.start(ctx); err != nil {
		t.Fatalf("b: start: %v", err)
	}
	if err := b.finish(ctx, map[string]string{"verify.sha256": "from-b"}); err != nil {
		t.Fatalf("b: finish: %v", err)
	}
	_, revDone := readFinished(t, cli, schema, h)
	noJob(t, cli, schema.Job(h))

	// a wakes up and writes its result: rejected.
	err := a.finish(ctx, map[string]string{"verify.sha256": "from-a"})
	if !errors.Is(err, errFenced) {
		t.Fatalf("a: finish after losing the lock: err = %v, want the fence to reject it", err)
	}
	if err := a.fail(ctx, "late failure"); !errors.Is(err, errFenced) {
		t.Fatalf("a: fail after losing the lock: err = %v, want the fence to reject it", err)
	}
	noJob(t, cli, schema.Job(h))
	rec, rev := readFinished(t, cli, schema, h)
	if rev != revDone || rec.State != string(dfs.JobDone) || rec.Worker != "b" || rec.Results["verify.sha256"] != "from-b" || rec.Attempts != 2 {
		t.Fatalf("job after the stale writes: %v at revision %d (done at %d); want b's result untouched", rec, rev, revDone)
	}
}

// Even a holder whose lock is intact cannot overwrite a job someone else
// changed since it read it (the job's mod revision is compared too).
func TestFenceRejectsChangedJob(t *testing.T) {
	ctx := context.Background()
	cli := startEtcd(t)
	schema := meta.NewSchema("/fence-test")
	h := dfs.Sum([]byte("other content"))
	val, _ := proto.Marshal(&api.JobRecord{ContentHash: h[:], State: string(dfs.JobQueued)})
	if _, err := cli.Put(ctx, schema.Job(h), string(val)); err != nil {
		t.Fatal(err)
	}
	a, _ := claimAs(t, cli, schema, "a", h)
	if _, err := cli.Put(ctx, schema.Job(h), string(val)); err != nil {
		t.Fatal(err)
	}
	if err := a.start(ctx); !errors.Is(err, errFenced) {
		t.Fatalf("start over a changed job: err = %v, want rejected", err)
	}
}

// A job whose every attempt ended with its worker gone ends in error when
// the next worker takes it, without running again.
func TestGiveUpAfterDeadWorkers(t *testing.T) {
	ctx := context.Background()
	cli := startEtcd(t)
	schema := meta.NewSchema("/fence-test")
	h := dfs.Sum([]byte("poison"))
	putContent(t, cli, schema, h)
	val, _ := proto.Marshal(&api.JobRecord{ContentHash: h[:], State: string(dfs.JobProcessing), Worker: "w9", Attempts: 3})
	if _, err := cli.Put(ctx, schema.Job(h), string(val)); err != nil {
		t.Fatal(err)
	}
	c, _ := claimAs(t, cli, schema, "a", h)
	c.w.cfg.MaxAttempts = 3
	finished, _, err := c.run(ctx) // no content client: processing would panic
	if err != nil || !finished {
		t.Fatalf("run: finished %v, err %v", finished, err)
	}
	noJob(t, cli, schema.Job(h))
	rec, _ := readFinished(t, cli, schema, h)
	if rec.State != string(dfs.JobError) || rec.Attempts != 3 || rec.Error != "gave up after 3 attempts: worker w9 stopped during the last one" {
		t.Fatalf("job %v", rec)
	}
}
