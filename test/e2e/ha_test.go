//go:build linux || darwin

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Coordinator high availability, with real processes: three coordinators,
// each with an etcd member of one embedded etcd cluster, and four
// datanodes heartbeating to all three.

// haFlags make a cluster that replaces a silent leader, notices a dead
// datanode and repairs within seconds.
var haFlags = []string{"--election-ttl", "2s", "--dead-after", "4s", "--repair-interval", "1s"}

// statusInfo is dfs status --json.
type statusInfo struct {
	Leader       string `json:"leader"`
	Term         int64  `json:"term"`
	Coordinators []struct {
		Addr   string `json:"addr"`
		Leader bool   `json:"leader"`
		Alive  bool   `json:"alive"`
	} `json:"coordinators"`
	Etcd struct {
		Members []struct {
			Name    string `json:"name"`
			Healthy bool   `json:"healthy"`
		} `json:"members"`
		Healthy bool `json:"healthy"`
	} `json:"etcd"`
}

func (c *cluster) status(t testing.TB) statusInfo {
	t.Helper()
	return decodeJSON[statusInfo](t, c.mustDFS(t, "status", "--json"))
}

// waitLeader waits until the cluster shows an alive leader other than not,
// and returns its index in c.coords and its term.
func (c *cluster) waitLeader(t *testing.T, not string) (int, int64) {
	t.Helper()
	var idx int
	var term int64
	eventually(t, time.Minute, "a leader coordinator", func() error {
		r := c.dfs(t, "status", "--json")
		if r.code != 0 {
			return fmt.Errorf("%s", r)
		}
		st := decodeJSON[statusInfo](t, r)
		if st.Leader == "" || st.Leader == not {
			return fmt.Errorf("leader %q", st.Leader)
		}
		for _, cs := range st.Coordinators {
			if cs.Addr == st.Leader && !cs.Alive {
				return fmt.Errorf("leader %s is not alive", st.Leader)
			}
		}
		idx = slices.Index(c.coords, st.Leader)
		if idx < 0 {
			t.Fatalf("status names leader %s, not one of %v", st.Leader, c.coords)
		}
		term = st.Term
		return nil
	})
	return idx, term
}

// waitLeaderNamed waits until a coordinator names a leader other than not.
// It asks one coordinator for its own view (dfs nodes prints it), which is
// quicker than dfs status's probing of every member, so it times a
// failover closely.
func (c *cluster) waitLeaderNamed(t *testing.T, not string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := c.dfs(t, "nodes")
		first, _, _ := strings.Cut(r.stdout, "\n")
		addr, ok := strings.CutPrefix(first, "leader coordinator: ")
		addr, _, _ = strings.Cut(addr, " ")
		if r.code == 0 && ok && addr != "none" && addr != not {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader other than %s named within a minute: %s", not, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) coordProc(t *testing.T, i int) *proc {
	t.Helper()
	prefix := fmt.Sprintf("coordinator%d.", i)
	for j := len(c.procs) - 1; j >= 0; j-- {
		if p := c.procs[j]; strings.HasPrefix(p.name, prefix) && !p.exited() {
			return p
		}
	}
	t.Fatalf("no running process of coordinator %d", i)
	return nil
}

// restartCoord starts coordinator i again on its directory and addresses.
func (c *cluster) restartCoord(t *testing.T, i int) {
	t.Helper()
	c.restarts++
	p, err := startProc(filepath.Join(c.dir, "logs"), fmt.Sprintf("coordinator%d.%d-r%d", i, c.gen, c.restarts), c.haCoordArgs(i)...)
	if err != nil {
		t.Fatal(err)
	}
	c.procs = append(c.procs, p)
	if err := p.waitReady(); err != nil {
		t.Fatal(err)
	}
}

// writer uploads small files without pause, as a client would, and
// remembers which were acknowledged and when.
type writer struct {
	c    *cluster
	dir  string
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	acked map[string]string // remote -> sha256
	times []time.Time       // when each acknowledgement came
	fails []string          // uploads refused (allowed during a failover)
	bad   []string          // uploads acknowledged wrongly
}

func (c *cluster) startWriter(t *testing.T, prefix string) *writer {
	w := &writer{c: c, dir: t.TempDir(), stop: make(chan struct{}), done: make(chan struct{}), acked: map[string]string{}}
	go func() {
		defer close(w.done)
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			data := make([]byte, 64<<10+rng.IntN(3<<20))
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			sum := sha256.Sum256(data)
			local := filepath.Join(w.dir, fmt.Sprint(i))
			if err := os.WriteFile(local, data, 0o644); err != nil {
				w.fail(err.Error())
				return
			}
			remote := fmt.Sprintf("%s/%d.bin", prefix, i)
			out, err := w.run("put", local, remote, "--json")
			os.Remove(local)
			if err != nil {
				w.fail(err.Error())
				continue
			}
			var po putOutput
			if json.Unmarshal(out, &po) != nil || po.SHA256 != hex.EncodeToString(sum[:]) || po.Duplicate {
				// New random bytes are never a duplicate, even when a commit
				// is retried across a failover.
				w.mu.Lock()
				w.bad = append(w.bad, fmt.Sprintf("put %s acknowledged with %q, want sha256 %x and not a duplicate", remote, out, sum))
				w.mu.Unlock()
				continue
			}
			w.mu.Lock()
			w.acked[remote] = po.SHA256
			w.times = append(w.times, time.Now())
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.halt)
	return w
}

func (w *writer) run(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, dfsBin, w.c.args(args)...)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dfs %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

func (w *writer) fail(msg string) {
	w.mu.Lock()
	w.fails = append(w.fails, msg)
	w.mu.Unlock()
}

func (w *writer) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// ackedAfter returns the first acknowledgement after t, waiting for one.
func (w *writer) ackedAfter(tt *testing.T, t0 time.Time) time.Time {
	tt.Helper()
	var at time.Time
	eventually(tt, time.Minute, "an upload acknowledged after the kill", func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, x := range w.times {
			if x.After(t0) {
				at = x
				return nil
			}
		}
		return fmt.Errorf("%d acknowledged, none after %v; last failures: %v", len(w.times), t0.Format(time.StampMilli), lastN(w.fails, 2))
	})
	return at
}

func (w *writer) files() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]string{}
	for k, v := range w.acked {
		out[k] = v
	}
	return out
}

func lastN(s []string, n int) []string { return s[max(0, len(s)-n):] }

// Killing the leader with SIGKILL, five times over while a client uploads:
// a new leader each time within seconds, uploads resume, every
// acknowledged file reads back intact, and re-replication still works
// afterwards under the last leader elected.
func TestHAKillLeader(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoHA, datanodes: 4, coordFlags: haFlags})
	st := c.status(t)
	if len(st.Coordinators) != 3 || !st.Etcd.Healthy || len(st.Etcd.Members) != 3 {
		t.Fatalf("status of a fresh cluster: %+v, want 3 coordinators and 3 healthy etcd members", st)
	}
	w := c.startWriter(t, "ha-kill")
	w.ackedAfter(t, time.Now())

	const rounds = 5
	var leaderTimes, commitTimes []time.Duration
	prevTerm := int64(0)
	for round := range rounds {
		leader, term := c.waitLeader(t, "")
		if term < prevTerm {
			t.Errorf("round %d: leader term %d, before the previous %d", round, term, prevTerm)
		}
		killed := time.Now()
		c.coordProc(t, leader).kill9()
		c.waitLeaderNamed(t, c.coords[leader])
		leaderTimes = append(leaderTimes, time.Since(killed))
		_, newTerm := c.waitLeader(t, c.coords[leader])
		at := w.ackedAfter(t, killed)
		commitTimes = append(commitTimes, at.Sub(killed))
		if newTerm <= term {
			t.Errorf("round %d: new leader's term %d is not after the killed one's %d", round, newTerm, term)
		}
		prevTerm = newTerm
		t.Logf("round %d: killed leader %s (term %d); new leader (term %d) after %v; first commit after %v",
			round, c.coords[leader], term, newTerm, leaderTimes[round].Round(time.Millisecond), commitTimes[round].Round(time.Millisecond))
		c.restartCoord(t, leader)
	}
	w.halt()
	t.Logf("failover over %d runs: new leader median %v max %v; first commit median %v max %v",
		rounds, median(leaderTimes), slices.Max(leaderTimes).Round(time.Millisecond), median(commitTimes), slices.Max(commitTimes).Round(time.Millisecond))

	files := w.files()
	t.Logf("%d uploads acknowledged, %d failed (during failovers)", len(files), len(w.fails))
	if len(w.bad) > 0 {
		t.Errorf("%d uploads acknowledged wrongly: %v", len(w.bad), lastN(w.bad, 3))
	}
	if len(files) < 2*rounds {
		t.Fatalf("only %d uploads acknowledged: %v", len(files), lastN(w.fails, 3))
	}
	for _, p := range sortedKeys(files) {
		c.checkGet(t, p, files[p])
	}

	// Re-replication under the newest leader: a datanode dies, every
	// acknowledged chunk is back on three live nodes.
	victimID := c.datanodeID(t, 0)
	c.datanodeProc(t, 0).kill9()
	eventually(t, healTimeout, "every acknowledged file on 3 live nodes", func() error {
		return c.replicaProblem(t, files, 3, victimID)
	})
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}

// A leader paused (SIGSTOP) past its lease is replaced; when it resumes
// (SIGCONT) it believes for a moment that it still leads, but does no
// leader-only work: garbage that became collectable while it slept is not
// touched until the new leader collects it.
func TestHAPausedLeader(t *testing.T) {
	skipShort(t)
	const (
		grace = 20 * time.Second
		ttl   = 2 * time.Second // haFlags' --election-ttl
		// Datanodes delete a garbage copy only if untouched for the grace
		// period plus a clock-skew margin of half of it.
		collectable = grace + grace/2
	)
	c := newCluster(t, clusterSpec{topo: topoHA, datanodes: 4,
		coordFlags: append(slices.Clone(haFlags), "--gc-grace", grace.String(), "--gc-interval", "1s", "--version-retention", "0")})
	old, term := c.waitLeader(t, "")

	dir := t.TempDir()
	local, _ := randomFile(t, dir, "garbage.bin", 6<<20)
	c.put(t, local, "ha-pause/garbage.bin")
	st := c.stat(t, "ha-pause/garbage.bin")
	c.mustDFS(t, "rm", "ha-pause/garbage.bin")
	c.forget("ha-pause/garbage.bin")
	stored := time.Now()
	nodeDirs := c.nodeDirs(t)
	copiesOnDisk := func() int {
		n := 0
		for _, ch := range st.Chunks {
			for _, d := range nodeDirs {
				if hasChunkFile(d, ch.Hash) {
					n++
				}
			}
		}
		return n
	}
	// An upload may leave a fourth copy that repair trims a moment later:
	// wait for exactly three of each chunk, so that any later deletion is
	// garbage collection's.
	copies := 3 * len(st.Chunks)
	eventually(t, time.Minute, "three copies of every garbage chunk", func() error {
		if n := copiesOnDisk(); n != copies {
			return fmt.Errorf("%d copies on disk, want %d", n, copies)
		}
		return nil
	})

	// Pause the leader shortly before the garbage is old enough for it to
	// collect. No successor can be elected before the paused leader's
	// lease has run out, and a successor collects only a grace period
	// after its election: nobody may delete the garbage before
	// pausedAt + ttl + grace.
	if time.Since(stored) > grace-3*time.Second {
		t.Fatalf("the garbage's copies took %v to settle: too late to pause the leader before it may collect", time.Since(stored))
	}
	time.Sleep(time.Until(stored.Add(grace - 2*time.Second)))
	p := c.coordProc(t, old)
	pausedAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			p.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	c.waitLeaderNamed(t, c.coords[old])
	t.Logf("leader %s (term %d) paused; a new leader named after %v", c.coords[old], term, time.Since(pausedAt).Round(time.Millisecond))
	_, newTerm := c.waitLeader(t, c.coords[old])
	if n := copiesOnDisk(); n != copies {
		t.Fatalf("%d garbage chunk copies deleted before they were old enough", copies-n)
	}

	// Resume the old leader once the garbage is collectable: its GC ticker
	// fires at once and, but for the fence, it would delete it.
	time.Sleep(time.Until(stored.Add(collectable + time.Second)))
	firstNewGC := pausedAt.Add(ttl + grace)
	if time.Until(firstNewGC) < 2*time.Second {
		t.Fatalf("the new leader's election was observed too late for this check (machine overloaded): %v after the pause", time.Since(pausedAt))
	}
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	resumed := time.Now()
	for time.Until(firstNewGC) > 500*time.Millisecond {
		if n := copiesOnDisk(); n != copies {
			t.Fatalf("%d of %d garbage chunk copies deleted %v after the deposed leader resumed, before the new leader may collect",
				copies-n, copies, time.Since(resumed).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("no copy deleted in the %v after the deposed leader resumed", time.Since(resumed).Round(time.Millisecond))
	// The resumed coordinator may campaign again, behind the new leader.
	if st2 := c.status(t); st2.Term < newTerm {
		t.Fatalf("after the old leader resumed: leader %s term %d, want a leader of term %d or later", st2.Leader, st2.Term, newTerm)
	}
	// Every datanode has learned the new term, so a command from the old
	// leader is refused even if it sends one.
	for _, n := range decodeJSON[[]struct {
		ID         string `json:"id"`
		LeaderTerm int64  `json:"leader_term"`
		Fenced     int64  `json:"fenced_commands"`
	}](t, c.mustDFS(t, "nodes", "--json")) {
		if n.LeaderTerm < newTerm {
			t.Errorf("datanode %s knows leader term %d, want at least %d", n.ID, n.LeaderTerm, newTerm)
		}
		if n.Fenced > 0 {
			t.Logf("datanode %s refused %d commands of a deposed leader", n.ID, n.Fenced)
		}
	}
	// It stopped leading: found its term over (its self-check, a fenced
	// write or command, or its session's end) and stepped down.
	eventually(t, 30*time.Second, "the resumed leader steps down", func() error {
		if !strings.Contains(p.logTail(400), "stepping down") {
			return fmt.Errorf("its log does not say it stepped down")
		}
		return nil
	})
	// The garbage was real: the new leader collects it.
	eventually(t, healTimeout, "the new leader collects the garbage", func() error {
		if n := copiesOnDisk(); n > 0 {
			return fmt.Errorf("%d garbage chunk copies still on disk", n)
		}
		return nil
	})
}

// With two of three coordinators (and their etcd members) killed, writes
// stop with an error that says why, committed files still read back from
// the last coordinator, and writes resume when a second one returns.
func TestHAQuorumLoss(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoHA, datanodes: 4, coordFlags: haFlags})
	dir := t.TempDir()
	files := map[string]string{}
	for i := range 3 {
		local, sum := randomFile(t, dir, fmt.Sprint(i), int64(1+i)<<20)
		c.put(t, local, fmt.Sprintf("ha-quorum/%d.bin", i))
		files[fmt.Sprintf("ha-quorum/%d.bin", i)] = sum
	}
	c.coordProc(t, 0).kill9()
	c.coordProc(t, 1).kill9()

	local, _ := randomFile(t, dir, "late", 1<<20)
	eventually(t, time.Minute, "a write refused for want of a quorum", func() error {
		r := c.dfs(t, "put", local, "ha-quorum/late.bin")
		if r.code == 0 {
			c.mustDFS(t, "rm", "ha-quorum/late.bin")
			return fmt.Errorf("put succeeded without a quorum")
		}
		if !strings.Contains(r.stderr, "quorum") {
			return fmt.Errorf("put failed, but not naming the quorum: %s", r)
		}
		return nil
	})
	for _, p := range sortedKeys(files) {
		c.checkGet(t, p, files[p])
	}
	if entries := c.ls(t, "ha-quorum/"); len(entries) != len(files) {
		t.Errorf("ls without a quorum lists %d entries, want %d: %+v", len(entries), len(files), entries)
	}
	st := c.status(t)
	if st.Etcd.Healthy {
		t.Errorf("status says etcd is healthy with two of three members down: %+v", st)
	}

	c.restartCoord(t, 1)
	eventually(t, time.Minute, "writes resume", func() error {
		if r := c.dfs(t, "put", local, "ha-quorum/late.bin"); r.code != 0 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	c.waitLeader(t, "")
	for _, p := range sortedKeys(files) {
		c.checkGet(t, p, files[p])
	}
}

// hasChunkFile reports whether a copy of a chunk is in a datanode's store.
func hasChunkFile(dir, hash string) bool {
	_, err := copyOf(dir, hash)
	return err == nil
}

// A coordinator host lost for good is replaced as docs/operations.md says:
// its etcd member is removed, a new one added, and a coordinator with an
// empty data directory joins the existing cluster on the dead host's
// addresses; datanodes and clients need no change.
func TestHAReplaceCoordinator(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoHA, datanodes: 4, coordFlags: haFlags})
	dir := t.TempDir()
	local, sum := randomFile(t, dir, "before", 5<<20)
	c.put(t, local, "ha-replace/before.bin")

	const dead = 2
	c.coordProc(t, dead).kill9()
	if err := os.RemoveAll(filepath.Join(c.dir, fmt.Sprintf("coordinator%d", dead))); err != nil {
		t.Fatal(err)
	}
	live := "--etcd-endpoints=" + c.etcdClientURLs[0]
	if r := runDFS(t, cmdTimeout, nil, nil, "etcd", "members", live); r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("c%d", dead)) {
		t.Fatalf("etcd members does not list c%d: %s", dead, r)
	}
	if r := runDFS(t, cmdTimeout, nil, nil, "etcd", "remove", fmt.Sprintf("c%d", dead), live); r.code != 0 {
		t.Fatalf("etcd remove: %s", r)
	}
	r := runDFS(t, cmdTimeout, nil, nil, "etcd", "add", "c9", c.peers[dead], live)
	if r.code != 0 {
		t.Fatalf("etcd add: %s", r)
	}
	_, initial, ok := strings.Cut(strings.TrimSpace(r.stdout), "--etcd-initial-cluster ")
	if !ok || !strings.Contains(initial, "c9="+c.peers[dead]) {
		t.Fatalf("etcd add printed %q, want the initial cluster with c9=%s", r.stdout, c.peers[dead])
	}
	args := c.haCoordArgs(dead)
	for i, a := range args {
		switch a {
		case "--etcd-name":
			args[i+1] = "c9"
		case "--etcd-initial-cluster":
			args[i+1] = initial
		}
	}
	args = append(args, "--etcd-cluster-state", "existing")
	p, err := startProc(filepath.Join(c.dir, "logs"), "coordinator-replacement", args...)
	if err != nil {
		t.Fatal(err)
	}
	c.procs = append(c.procs, p)
	if err := p.waitReady(); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "three healthy members and three live coordinators", func() error {
		st := c.status(t)
		healthy, alive := 0, 0
		for _, m := range st.Etcd.Members {
			if m.Healthy {
				healthy++
			}
		}
		for _, cs := range st.Coordinators {
			if cs.Alive {
				alive++
			}
		}
		if !st.Etcd.Healthy || healthy != 3 || alive != 3 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	// The replacement alone serves reads and writes: the datanodes found it.
	only := &cluster{coord: c.coords[dead], files: map[string]string{}}
	eventually(t, time.Minute, "the replacement serves the file stored before", func() error {
		if r := only.dfs(t, "stat", "ha-replace/before.bin", "--json"); r.code != 0 {
			return fmt.Errorf("%s", r)
		}
		if r := only.dfs(t, "get", "ha-replace/before.bin", filepath.Join(dir, "back")); r.code != 0 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	only.checkGet(t, "ha-replace/before.bin", sum)
	only.waitNodes(t, 4, nil)
	local2, sum2 := randomFile(t, dir, "after", 3<<20)
	only.put(t, local2, "ha-replace/after.bin")
	c.checkGet(t, "ha-replace/after.bin", sum2)
}
