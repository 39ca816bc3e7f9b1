//go:build linux || darwin

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/pki"
)

// Where the pending and the finished jobs of a cluster with the default
// key root live: pending ones under jobsPrefix, finished ones in their
// contents' records under contentsPrefix. One watch over [contentsPrefix,
// end of jobsPrefix) sees both, in order.
const (
	jobsPrefix     = "/dfs/v1/jobs/"
	contentsPrefix = "/dfs/v1/contents/"
)

// jobRow is a row of dfs jobs --json.
type jobRow struct {
	SHA256   string            `json:"sha256"`
	State    string            `json:"state"`
	Worker   string            `json:"worker"`
	Attempts int               `json:"attempts"`
	Error    string            `json:"error"`
	Results  map[string]string `json:"results"`
}

// startWorker starts `dfs worker` against the cluster (separate topology),
// stopped with the cluster.
func (c *cluster) startWorker(t *testing.T, name string, flags ...string) *proc {
	t.Helper()
	args := append([]string{"worker", "--etcd-endpoints", c.etcdURLs[0], "--coordinator", c.coord,
		"--name", name, "--lock-ttl", "2s"}, flags...)
	p, err := startProc(filepath.Join(c.dir, "logs"), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	c.procs = append(c.procs, p)
	if err := p.waitReady(); err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *cluster) jobs(t *testing.T, args ...string) []jobRow {
	t.Helper()
	return decodeJSON[[]jobRow](t, c.mustDFS(t, append([]string{"jobs", "--json"}, args...)...))
}

// waitJobs polls dfs jobs --json until want jobs exist and none is queued
// or processing, and returns them by sha256.
func (c *cluster) waitJobs(t *testing.T, want int, timeout time.Duration) map[string]jobRow {
	t.Helper()
	var out map[string]jobRow
	eventually(t, timeout, "every job finished", func() error {
		out = map[string]jobRow{}
		open := 0
		for _, j := range c.jobs(t) {
			out[j.SHA256] = j
			if j.State == "queued" || j.State == "processing" {
				open++
			}
		}
		if len(out) != want || open > 0 {
			return fmt.Errorf("%d jobs, %d of them open; want %d, none open", len(out), open, want)
		}
		return nil
	})
	return out
}

// etcdClient connects the test to the cluster's etcd.
func (c *cluster) etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	node, err := pki.LoadNode(suiteCerts, "")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.etcdURLs[0]}, DialTimeout: 5 * time.Second, TLS: node.ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// jobHistory records every write to every job key, from etcd's watch: the
// committed effects of the workers, whatever their logs say.
type jobHistory struct {
	cli    *clientv3.Client
	mu     sync.Mutex
	writes map[string][]jobWrite // by sha256, in revision order
	seen   int64                 // revision the watch has reached
	err    error
}

type jobWrite struct {
	rev      int64
	rec      *api.JobRecord // nil: a delete, or a value that is no job
	finished bool           // written into the content's record, not jobs/
}

func watchJobs(t *testing.T, cli *clientv3.Client) *jobHistory {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &jobHistory{cli: cli, writes: map[string][]jobWrite{}}
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	resp, err := cli.Get(pctx, "health-probe")
	pcancel()
	if err != nil {
		t.Fatal(err)
	}
	wch := cli.Watch(ctx, contentsPrefix, clientv3.WithRange(clientv3.GetPrefixRangeEnd(jobsPrefix)), clientv3.WithRev(resp.Header.Revision+1))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range wch {
			h.mu.Lock()
			if err := r.Err(); err != nil && h.err == nil {
				h.err = err
			}
			for _, ev := range r.Events {
				key := string(ev.Kv.Key)
				if sha, ok := strings.CutPrefix(key, contentsPrefix); ok {
					// A content's record: a job write only when it
					// holds the finished job.
					var c api.ContentRecord
					if ev.Type == clientv3.EventTypePut && !strings.Contains(sha, "/") && proto.Unmarshal(ev.Kv.Value, &c) == nil && c.Job != nil {
						h.writes[sha] = append(h.writes[sha], jobWrite{ev.Kv.ModRevision, c.Job, true})
					}
					continue
				}
				sha, ok := strings.CutPrefix(key, jobsPrefix)
				if !ok {
					continue // paths, chunk references, collection marks
				}
				rec := &api.JobRecord{}
				if ev.Type != clientv3.EventTypePut || proto.Unmarshal(ev.Kv.Value, rec) != nil {
					rec = nil
				}
				h.writes[sha] = append(h.writes[sha], jobWrite{ev.Kv.ModRevision, rec, false})
			}
			h.seen = max(h.seen, r.Header.Revision)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// sync waits until the watch has delivered everything up to now.
func (h *jobHistory) sync(t *testing.T) {
	t.Helper()
	resp, err := h.cli.Get(context.Background(), "health-probe")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the job watch caught up", func() error {
		h.cli.RequestProgress(context.Background())
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.err != nil {
			t.Fatalf("job watch: %v", h.err)
		}
		if h.seen < resp.Header.Revision {
			return fmt.Errorf("at revision %d of %d", h.seen, resp.Header.Revision)
		}
		return nil
	})
}

// checkOnce fails the test unless the job of sha went queued -> processing
// ... -> done exactly once, the done record written into the content's
// record in the transaction that took the job out of jobs/, with nothing
// written after it, and returns the done record.
func (h *jobHistory) checkOnce(t *testing.T, sha string) *api.JobRecord {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var done *api.JobRecord
	var states []string
	writes := h.writes[sha]
	for i, w := range writes {
		if w.rec == nil {
			// The only delete allowed: the job leaving jobs/ as its
			// finished record is written, in one transaction.
			leaving := !w.finished && slices.ContainsFunc(writes, func(o jobWrite) bool {
				return o.finished && o.rec != nil && o.rev == w.rev
			})
			if !leaving {
				t.Errorf("job %s: deleted or undecodable at revision %d (write %d)", sha[:12], w.rev, i)
			}
			continue
		}
		where := ""
		if w.finished {
			where = "->content"
		}
		states = append(states, w.rec.State+"("+w.rec.Worker+")"+where)
		if done != nil {
			t.Errorf("job %s: written at revision %d after it was done: %s", sha[:12], w.rev, strings.Join(states, " "))
		}
		if w.rec.State == string(dfs.JobDone) {
			if !w.finished {
				t.Errorf("job %s: done but left in jobs/: %s", sha[:12], strings.Join(states, " "))
			}
			done = w.rec
		}
	}
	if done == nil {
		t.Errorf("job %s: never done: %s", sha[:12], strings.Join(states, " "))
		return nil
	}
	// The effect itself: the verify processor's result names the content.
	if done.Results["verify.sha256"] != sha {
		t.Errorf("job %s: done without the verify result: %v", sha[:12], done.Results)
	}
	return done
}

// uploadMany stores n distinct small files through the SDK, 8 at a time,
// and returns their sha256s.
func (c *cluster) uploadMany(t *testing.T, n int, tag string) []string {
	t.Helper()
	cas, err := pki.Pool(suiteCerts)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := client.New(client.Config{Coordinators: []string{c.coord}, TLS: pki.ClientTLS(cas), AccessKeyID: suiteKeyID, SecretAccessKey: suiteSecret})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	shas := make([]string, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			data := fmt.Sprintf("%s: content %d, new\n", tag, i)
			res, err := cli.Put(context.Background(), fmt.Sprintf("%s/%04d.txt", tag, i), strings.NewReader(data), client.PutOptions{})
			if err != nil {
				errs <- err
				return
			}
			if res.Duplicate {
				errs <- fmt.Errorf("%s/%04d.txt: reported duplicate", tag, i)
			}
			shas[i] = res.File.Content.String()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return shas
}

// Two worker processes with three workers each share 200 new contents:
// each is processed exactly once in effect.
func TestWorkersExactlyOnce(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoSeparate})
	hist := watchJobs(t, c.etcdClient(t))
	c.startWorker(t, "wa", "--workers", "3")
	c.startWorker(t, "wb", "--workers", "3")

	shas := c.uploadMany(t, 200, "many")
	jobs := c.waitJobs(t, 200, 3*time.Minute)
	hist.sync(t)
	byProc := map[string]int{}
	for _, sha := range shas {
		j := jobs[sha]
		if j.State != "done" || j.Attempts != 1 || j.Results["verify.sha256"] != sha || j.Results["media.format"] != "none" {
			t.Errorf("job %s: %+v", sha[:12], j)
		}
		done := hist.checkOnce(t, sha)
		if done != nil && done.Worker != j.Worker {
			t.Errorf("job %s: done by %s in etcd's history, %s in dfs jobs", sha[:12], done.Worker, j.Worker)
		}
		byProc[strings.SplitN(j.Worker, "/", 2)[0]]++
	}
	t.Logf("jobs done per worker process: %v", byProc)
	if byProc["wa"] == 0 || byProc["wb"] == 0 {
		t.Errorf("one worker process did every job: %v", byProc)
	}
}

// A worker process killed with SIGKILL while it holds jobs: once its
// sessions expire, another process takes the jobs over and each finishes
// exactly once.
func TestWorkerKill9(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoSeparate})
	hist := watchJobs(t, c.etcdClient(t))
	// The delay keeps the three jobs wa takes in its hands until the kill.
	wa := c.startWorker(t, "wa", "--workers", "3", "--process-delay", "10m")
	shas := c.uploadMany(t, 6, "kill")

	held := map[string]bool{}
	eventually(t, time.Minute, "wa holds three jobs", func() error {
		clear(held)
		for _, j := range c.jobs(t, "--state", "processing") {
			if strings.HasPrefix(j.Worker, "wa/") {
				held[j.SHA256] = true
			}
		}
		if len(held) != 3 {
			return fmt.Errorf("wa holds %d jobs", len(held))
		}
		return nil
	})
	wa.kill9()
	c.startWorker(t, "wb", "--workers", "3")
	jobs := c.waitJobs(t, 6, 2*time.Minute)
	hist.sync(t)
	for _, sha := range shas {
		j := jobs[sha]
		want := 1
		if held[sha] {
			want = 2 // wa's try counts
		}
		if j.State != "done" || !strings.HasPrefix(j.Worker, "wb/") || j.Attempts != want {
			t.Errorf("job %s (held by wa: %v): %+v; want done by wb after %d attempts", sha[:12], held[sha], j, want)
		}
		hist.checkOnce(t, sha)
	}
}

// A worker paused (SIGSTOP) while it holds a job loses its lock when its
// session expires; another worker finishes the job. Resumed (SIGCONT), the
// paused worker goes on to write its result, and the fence rejects it: the
// job keeps the second worker's result.
func TestWorkerPausedIsFenced(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoSeparate})
	etcd := c.etcdClient(t)
	hist := watchJobs(t, etcd)
	wa := c.startWorker(t, "wa", "--workers", "1", "--process-delay", "3s")
	sha := c.uploadMany(t, 1, "pause")[0]
	eventually(t, time.Minute, "wa holds the job", func() error {
		for _, j := range c.jobs(t) {
			if j.SHA256 == sha && j.State == "processing" && j.Worker == "wa/worker-1" {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	if err := wa.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			wa.cmd.Process.Signal(syscall.SIGCONT) // so the cluster can stop it
		}
	})

	c.startWorker(t, "wb", "--workers", "1")
	j := c.waitJobs(t, 1, time.Minute)[sha]
	if j.State != "done" || j.Worker != "wb/worker-1" || j.Attempts != 2 {
		t.Fatalf("job after wb: %+v; want done by wb/worker-1 on the second attempt", j)
	}
	hist.sync(t)
	before, err := etcd.Get(context.Background(), contentsPrefix+sha)
	if err != nil {
		t.Fatal(err)
	}

	if err := wa.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	// wa's processing delay ends and it writes its result; the fence says no.
	eventually(t, time.Minute, "wa's stale write rejected", func() error {
		b, _ := os.ReadFile(wa.errPath)
		if !bytes.Contains(b, []byte("stale write rejected by the fence")) {
			return fmt.Errorf("wa has not written yet")
		}
		return nil
	})
	after, err := etcd.Get(context.Background(), contentsPrefix+sha)
	if err != nil {
		t.Fatal(err)
	}
	if after.Kvs[0].ModRevision != before.Kvs[0].ModRevision {
		t.Errorf("the job was written after wb finished it (revision %d, then %d)", before.Kvs[0].ModRevision, after.Kvs[0].ModRevision)
	}
	hist.sync(t)
	if done := hist.checkOnce(t, sha); done != nil && done.Worker != "wb/worker-1" {
		t.Errorf("done by %s, want wb/worker-1", done.Worker)
	}
	j = c.jobs(t)[0]
	if j.Worker != "wb/worker-1" || j.State != "done" {
		t.Errorf("dfs jobs after wa resumed: %+v", j)
	}
	// dfs stat shows the second worker's result.
	type statProcessing struct {
		Processing struct {
			State   string            `json:"state"`
			Results map[string]string `json:"results"`
		} `json:"processing"`
	}
	st := decodeJSON[statProcessing](t, c.mustDFS(t, "stat", "--json", "pause/0000.txt"))
	if st.Processing.State != "done" || st.Processing.Results["verify.sha256"] != sha {
		t.Errorf("dfs stat processing: %+v", st.Processing)
	}
}

// dfs server runs three workers: a real MP4 stored through the CLI gets
// its duration and resolution, a truncated one ends in error with a
// message, and dfs stat and dfs jobs show both as the contract says.
func TestProcessingMediaCLI(t *testing.T) {
	skipShort(t)
	c := sharedCluster(t, topoServer)
	movie := filepath.Join("..", "..", "internal", "jobs", "testdata", "tiny.mp4")
	b, err := os.ReadFile(movie)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.mp4")
	if err := os.WriteFile(cut, b[:len(b)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	good := c.put(t, movie, "media/tiny.mp4")
	bad := c.put(t, cut, "media/cut.mp4")
	if again := c.put(t, movie, "media/again.mp4"); !again.Duplicate {
		t.Errorf("the same movie again: not reported duplicate")
	}

	type statProcessing struct {
		SHA256     string `json:"sha256"`
		Processing *struct {
			State   string            `json:"state"`
			Results map[string]string `json:"results"`
			Error   string            `json:"error"`
		} `json:"processing"`
	}
	finished := func(path string) statProcessing {
		var st statProcessing
		eventually(t, time.Minute, path+" processed", func() error {
			st = decodeJSON[statProcessing](t, c.mustDFS(t, "stat", "--json", path))
			if st.Processing == nil {
				return fmt.Errorf("no processing in dfs stat --json")
			}
			if s := st.Processing.State; s != "done" && s != "error" {
				return fmt.Errorf("state %s", s)
			}
			return nil
		})
		return st
	}
	st := finished("media/tiny.mp4")
	r := st.Processing.Results
	if st.Processing.State != "done" || r["media.duration_seconds"] != "2.000" || r["media.width"] != "160" ||
		r["media.height"] != "120" || r["media.format"] != "mp4" || r["verify.sha256"] != good.SHA256 {
		t.Errorf("tiny.mp4 processing: %+v", st.Processing)
	}
	if dup := finished("media/again.mp4"); dup.SHA256 != good.SHA256 || dup.Processing.State != "done" {
		t.Errorf("the duplicate's processing: %+v", dup.Processing)
	}
	st = finished("media/cut.mp4")
	if st.Processing.State != "error" || !strings.Contains(st.Processing.Error, "truncated") {
		t.Errorf("cut.mp4 processing: %+v", st.Processing)
	}

	// dfs jobs --json: exactly the contract's keys; --state filters.
	rows := decodeJSON[[]map[string]any](t, c.mustDFS(t, "jobs", "--json"))
	found := 0
	for _, row := range rows {
		var keys []string
		for k := range row {
			keys = append(keys, k)
		}
		if len(keys) != 6 {
			t.Errorf("dfs jobs --json row with keys %v, want sha256 state worker attempts error results", keys)
		}
		switch row["sha256"] {
		case good.SHA256, bad.SHA256:
			found++
		}
	}
	if found != 2 {
		t.Errorf("dfs jobs --json lists %d of the 2 movies' jobs (no job for the duplicate)", found)
	}
	var inError []jobRow
	for _, j := range c.jobs(t, "--state", "error") {
		if j.State != "error" {
			t.Errorf("--state error listed %+v", j)
		}
		if j.SHA256 == bad.SHA256 {
			inError = append(inError, j)
		}
	}
	if len(inError) != 1 || inError[0].Attempts != 1 || !strings.HasPrefix(inError[0].Worker, "worker-") || inError[0].Error == "" {
		t.Errorf("the truncated movie's job in dfs jobs --state error: %+v", inError)
	}
	if r := c.dfs(t, "jobs", "--state", "finished"); r.code != 2 {
		t.Errorf("dfs jobs --state finished: %s; want exit 2", r)
	}
	// The human stat shows processing too.
	if out := c.mustDFS(t, "stat", "media/tiny.mp4").stdout; !strings.Contains(out, "processing: done by worker-") ||
		!strings.Contains(out, "media.duration_seconds") {
		t.Errorf("dfs stat shows no processing:\n%s", out)
	}
}

// dfs worker refuses to start without what it needs.
func TestWorkerUsage(t *testing.T) {
	skipShort(t)
	for _, args := range [][]string{
		{"worker", "--coordinator", "127.0.0.1:1"},
		{"worker", "--etcd-endpoints", "http://127.0.0.1:1", "--workers", "0"},
		{"worker", "--etcd-endpoints", "http://127.0.0.1:1", "--lock-ttl", "100ms"},
	} {
		if r := runDFS(t, cmdTimeout, nil, nil, args...); r.code != 2 || r.stderr == "" {
			t.Errorf("%s: want exit 2 with a message", r)
		}
	}
}
