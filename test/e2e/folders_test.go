//go:build linux || darwin

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// syncOutput is the part of dfs sync --json this test reads.
type syncOutput struct {
	Uploaded, Downloaded, Deleted, Unchanged, Failed int
	SentBytes                                        int64 `json:"sent_bytes"`
}

// The real binary on a real cluster: a tree stored with put -r, synced
// again for nothing, copied for nothing, fetched back with get -r and
// removed with rm -r; usage mistakes exit 2 from the process itself.
func TestFoldersSyncCopy(t *testing.T) {
	skipShort(t)
	c := sharedCluster(t, topoServer)
	dir := filepath.Join(t.TempDir(), "tree")
	want := map[string]string{}
	for _, f := range []struct {
		rel  string
		size int64
	}{{"a.bin", 5 << 10}, {"sub/b.bin", 3 << 20}, {"sub/deeper/c.bin", 100}} {
		p := filepath.Join(dir, f.rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		_, sum := randomFile(t, filepath.Dir(p), filepath.Base(p), f.size)
		want[f.rel] = sum
	}
	os.MkdirAll(filepath.Join(dir, "empty"), 0o755)

	c.mustDFS(t, "put", "-r", "-q", dir, "e2e-folders")
	before := c.chunkBytes(t)
	s := decodeJSON[syncOutput](t, c.mustDFS(t, "sync", "--json", dir, "dfs:e2e-folders"))
	if s.Uploaded != 0 || s.Unchanged != 3 || s.SentBytes != 0 {
		t.Fatalf("sync after put -r: %+v, want nothing to do", s)
	}
	c.mustDFS(t, "cp", "-r", "e2e-folders", "e2e-folders-copy")
	// Garbage of other tests may be collected meanwhile: no more, never.
	if after := c.chunkBytes(t); after > before {
		t.Fatalf("sync and cp stored %d chunk bytes", after-before)
	}

	out := filepath.Join(t.TempDir(), "out")
	c.mustDFS(t, "get", "-r", "-q", "e2e-folders-copy/", out)
	for rel, sum := range want {
		if got, _ := fileSHA(t, filepath.Join(out, rel)); got != sum {
			t.Errorf("get -r: %s differs", rel)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "empty")); !os.IsNotExist(err) {
		t.Errorf("an empty directory came back from dfs: %v", err)
	}

	for _, args := range [][]string{{"put"}, {"nosuchcommand"}, {"get", "e2e-folders"}, {"rm", "e2e-folders"}, {"sync", dir, out}} {
		if r := c.dfs(t, args...); r.code != 2 {
			t.Errorf("want exit 2: %s", r)
		}
	}
	r := c.dfs(t, "rm", "e2e-folders/a.bin", "e2e-folders/nope", "e2e-folders/sub/b.bin")
	if r.code != 3 || !strings.Contains(r.stderr, "e2e-folders/nope") {
		t.Errorf("rm a nope b: want exit 3 naming nope: %s", r)
	}
	c.mustDFS(t, "rm", "-r", "e2e-folders", "e2e-folders-copy/")
	for _, e := range c.ls(t, "-r") {
		if strings.HasPrefix(e.Path, "e2e-folders") {
			t.Errorf("after rm -r: %s is still there", e.Path)
		}
	}
}
