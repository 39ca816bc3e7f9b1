//go:build linux || darwin

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// dfs runs a client command against the cluster's coordinator.
func (c *cluster) dfs(t testing.TB, args ...string) result {
	t.Helper()
	return runDFS(t, cmdTimeout, nil, nil, c.args(args)...)
}

// mustDFS runs a client command and fails the test unless it exits 0.
func (c *cluster) mustDFS(t testing.TB, args ...string) result {
	t.Helper()
	r := c.dfs(t, args...)
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	return r
}

// args puts --coordinator after the subcommand.
func (c *cluster) args(args []string) []string {
	return append([]string{args[0], "--coordinator", c.coord}, args[1:]...)
}

func decodeJSON[T any](t testing.TB, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("decode the JSON of %s: %v", r, err)
	}
	return v
}

// putOutput is dfs put --json.
type putOutput struct {
	Path      string `json:"path"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	Status    string `json:"status"` // queued or duplicate, as REST says
	Duplicate bool   `json:"duplicate"`
	Chunks    int    `json:"chunks"`
	NewChunks int    `json:"new_chunks"`
	SentBytes int64  `json:"sent_bytes"`
}

// put stores local at remote with dfs put --json, checks what it printed
// against the local file, and remembers the file for later reads.
func (c *cluster) put(t testing.TB, local, remote string) putOutput {
	t.Helper()
	sum, size := fileSHA(t, local)
	out := decodeJSON[putOutput](t, c.mustDFS(t, "put", "--json", local, remote))
	if out.Path != remote || out.Size != size || out.SHA256 != sum || out.Status != map[bool]string{true: "duplicate", false: "queued"}[out.Duplicate] {
		t.Fatalf("put %s %s printed path %q size %d sha256 %s status %q duplicate %v; want %q, %d, %s and a status saying the same as duplicate",
			local, remote, out.Path, out.Size, out.SHA256, out.Status, out.Duplicate, remote, size, sum)
	}
	c.mu.Lock()
	c.files[remote] = sum
	c.mu.Unlock()
	return out
}

// forget drops a removed file from the files the cluster must hold.
func (c *cluster) forget(remote string) {
	c.mu.Lock()
	delete(c.files, remote)
	c.mu.Unlock()
}

// storedFiles returns every file put and not removed: path -> sha256.
func (c *cluster) storedFiles() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.files))
	for p, s := range c.files {
		out[p] = s
	}
	return out
}

// getSHA streams dfs get REMOTE - through SHA-256 and returns the digest
// and size of what came out, and the command's result (stdout left empty).
func (c *cluster) getSHA(t testing.TB, remote string) (string, int64, result) {
	t.Helper()
	h := sha256.New()
	cw := &countWriter{w: h}
	r := runDFS(t, cmdTimeout, cw, nil, c.args([]string{"get", remote, "-"})...)
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	return hex.EncodeToString(h.Sum(nil)), cw.n, r
}

// checkGet fails the test unless dfs get REMOTE - writes bytes with the
// given SHA-256, and returns the command's result.
func (c *cluster) checkGet(t testing.TB, remote, wantSHA string) result {
	t.Helper()
	got, n, r := c.getSHA(t, remote)
	if got != wantSHA {
		t.Fatalf("get %s -: %d bytes with sha256 %s, want %s", remote, n, got, wantSHA)
	}
	return r
}

// checkGetFile fails the test unless dfs get REMOTE LOCAL writes a file
// with the given SHA-256. The file is removed afterwards.
func (c *cluster) checkGetFile(t testing.TB, remote, local, wantSHA string) {
	t.Helper()
	c.mustDFS(t, "get", remote, local)
	defer os.Remove(local)
	if got, n := fileSHA(t, local); got != wantSHA {
		t.Fatalf("get %s %s: wrote %d bytes with sha256 %s, want %s", remote, local, n, got, wantSHA)
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// statOutput is dfs stat --json.
type statOutput struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Chunks []struct {
		Hash     string   `json:"hash"`
		Size     int64    `json:"size"`
		Replicas []string `json:"replicas"`
	} `json:"chunks"`
}

func (c *cluster) stat(t testing.TB, remote string) statOutput {
	t.Helper()
	return decodeJSON[statOutput](t, c.mustDFS(t, "stat", "--json", remote))
}

// checkReplicated fails the test unless every chunk of remote has want
// distinct replicas on nodes the cluster knows, the chunk sizes add up to
// the file's size, and the record names the file and its sha256.
func (c *cluster) checkReplicated(t testing.TB, remote, sha string, want int) statOutput {
	t.Helper()
	st := c.stat(t, remote)
	if st.Path != remote || st.SHA256 != sha {
		t.Errorf("stat %s: path %q sha256 %s, want %q %s", remote, st.Path, st.SHA256, remote, sha)
	}
	known := map[string]bool{}
	for _, n := range decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json")) {
		known[n.ID] = true
	}
	var sum int64
	for i, ch := range st.Chunks {
		sum += ch.Size
		distinct := map[string]bool{}
		for _, r := range ch.Replicas {
			if !known[r] {
				t.Errorf("stat %s: chunk %d (%s) has a replica on unknown node %q", remote, i, ch.Hash, r)
			}
			distinct[r] = true
		}
		if len(ch.Replicas) != want || len(distinct) != want {
			t.Errorf("stat %s: chunk %d (%s) has replicas %v, want %d distinct nodes", remote, i, ch.Hash, ch.Replicas, want)
		}
	}
	if sum != st.Size {
		t.Errorf("stat %s: chunks add up to %d bytes, file is %d", remote, sum, st.Size)
	}
	return st
}

// lsEntry is an entry of dfs ls --json.
type lsEntry struct {
	Path   string `json:"path"`
	Dir    bool   `json:"dir"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func (c *cluster) ls(t testing.TB, args ...string) []lsEntry {
	t.Helper()
	return decodeJSON[[]lsEntry](t, c.mustDFS(t, append([]string{"ls", "--json"}, args...)...))
}

// listed returns the entry of path in entries, if there is one.
func listed(entries []lsEntry, path string) (lsEntry, bool) {
	for _, e := range entries {
		if e.Path == path {
			return e, true
		}
	}
	return lsEntry{}, false
}

// randomData returns an endless stream of pseudo-random bytes determined by
// the test and name: the same test and name give the same bytes, so a
// failure can be reproduced, and different names different bytes. Under
// -count=N each run of a test gets bytes of its own, as the shared clusters
// outlive a run.
func randomData(t testing.TB, name string) io.Reader {
	key := fmt.Sprintf("%s#%d/%s", t.Name(), runIndex(t), name)
	return rand.NewChaCha8(sha256.Sum256([]byte(key)))
}

var runs = struct {
	sync.Mutex
	of   map[testing.TB]int
	seen map[string]int
}{of: map[testing.TB]int{}, seen: map[string]int{}}

// runIndex numbers the runs of a test in this process: 1 for the first.
func runIndex(t testing.TB) int {
	runs.Lock()
	defer runs.Unlock()
	if i, ok := runs.of[t]; ok {
		return i
	}
	runs.seen[t.Name()]++
	runs.of[t] = runs.seen[t.Name()]
	return runs.of[t]
}

// writeFile writes r to path and returns the SHA-256 and size of what it
// wrote.
func writeFile(t testing.TB, path string, r io.Reader) (string, int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// randomFile writes size pseudo-random bytes (determined by the test's
// name and name) to a file in dir and returns its path and SHA-256.
func randomFile(t testing.TB, dir, name string, size int64) (string, string) {
	t.Helper()
	p := filepath.Join(dir, name)
	sum, _ := writeFile(t, p, io.LimitReader(randomData(t, name), size))
	return p, sum
}

// fileSHA returns the SHA-256 and size of a local file, read as a stream.
func fileSHA(t testing.TB, path string) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// freeBytes returns the space available to unprivileged users on the file
// system holding dir.
func freeBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// forEachTopology runs scenario as the subtests "server" and "separate",
// each on the suite's shared cluster of that topology.
func forEachTopology(t *testing.T, scenario func(t *testing.T, c *cluster)) {
	skipShort(t)
	for _, topo := range topologies {
		t.Run(topo, func(t *testing.T) {
			scenario(t, sharedCluster(t, topo))
		})
	}
}

// fsckOutput is dfs fsck --json.
type fsckOutput struct {
	Files           int64 `json:"files"`
	Chunks          int64 `json:"chunks"`
	Healthy         int64 `json:"healthy"`
	UnderReplicated int64 `json:"under_replicated"`
	Missing         int64 `json:"missing"`
	Corrupt         int64 `json:"corrupt"`
	PendingRepair   int64 `json:"pending_repair"`
	PendingGC       int64 `json:"pending_gc"`
	Repaired        int64 `json:"repaired"`
	Collected       int64 `json:"garbage_collected"`
}

// fsck runs dfs fsck --json over prefix. It exits 1 when a chunk is
// missing or corrupt, which the caller reads from the counts.
func (c *cluster) fsck(t testing.TB, prefix string) fsckOutput {
	t.Helper()
	r := c.dfs(t, "fsck", prefix, "--json")
	if r.code != 0 && r.code != 1 {
		t.Fatalf("fsck: %s", r)
	}
	return decodeJSON[fsckOutput](t, r)
}
