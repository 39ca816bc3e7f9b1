//go:build linux || darwin

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// versionOutput is one version in dfs versions --json: the contract
// scripts rely on.
type versionOutput struct {
	Path         string  `json:"path"`
	VersionID    string  `json:"version_id"`
	SHA256       *string `json:"sha256"`
	Size         int64   `json:"size"`
	Time         string  `json:"time"`
	DeleteMarker bool    `json:"delete_marker"`
	Latest       bool    `json:"latest"`
}

// Versions and moves from the command line against dfs server, whose
// buckets keep earlier versions by default: an overwrite and a delete keep
// what they replaced, versions --json lists them newest first, get
// --version reads one byte-exact, restore undeletes, mv moves a file and a
// folder, purge drops the earlier versions, and put --no-clobber refuses
// to replace a file.
func TestVersionsCLI(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoServer})
	dir := t.TempDir()
	v1, sum1 := randomFile(t, dir, "v1.bin", 3<<20)
	v2, sum2 := randomFile(t, dir, "v2.bin", 1<<20)
	c.put(t, v1, "ver/doc.bin")
	c.put(t, v2, "ver/doc.bin")
	c.mustDFS(t, "rm", "ver/doc.bin")
	c.forget("ver/doc.bin")

	vs := decodeJSON[[]versionOutput](t, c.mustDFS(t, "versions", "--json", "ver/doc.bin"))
	if len(vs) != 3 || !vs[0].DeleteMarker || vs[0].SHA256 != nil || !vs[0].Latest ||
		vs[1].SHA256 == nil || *vs[1].SHA256 != sum2 || vs[2].SHA256 == nil || *vs[2].SHA256 != sum1 || vs[2].Size != 3<<20 {
		t.Fatalf("versions --json: %+v; want a delete marker, then v2, then v1", vs)
	}
	for _, v := range vs {
		if v.VersionID == "" || v.Time == "" {
			t.Fatalf("version without id or time: %+v", v)
		}
	}
	out := filepath.Join(dir, "old.bin")
	c.mustDFS(t, "get", "ver/doc.bin", out, "--version", vs[2].VersionID)
	if got, _ := fileSHA(t, out); got != sum1 {
		t.Fatalf("get --version of v1: sha256 %s, want %s", got, sum1)
	}
	if r := c.dfs(t, "get", "ver/doc.bin", "-"); r.code != 3 {
		t.Fatalf("get of a deleted path: %s; want exit 3", r)
	}
	// restore with no version: the newest earlier file, v2.
	c.mustDFS(t, "restore", "ver/doc.bin")
	c.checkGet(t, "ver/doc.bin", sum2)

	// put --no-clobber leaves the file alone.
	if r := c.dfs(t, "put", "--no-clobber", v1, "ver/doc.bin"); r.code == 0 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("put --no-clobber onto a file: %s; want a refusal that says it exists", r)
	}
	c.checkGet(t, "ver/doc.bin", sum2)
	// get --no-clobber leaves a local file alone.
	if r := c.dfs(t, "get", "--no-clobber", "ver/doc.bin", out); r.code == 0 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("get --no-clobber onto a local file: %s; want a refusal that says it exists", r)
	}
	if got, _ := fileSHA(t, out); got != sum1 {
		t.Fatalf("get --no-clobber changed the local file")
	}

	// mv of a file and of a folder.
	c.mustDFS(t, "mv", "ver/doc.bin", "ver/moved/")
	c.checkGet(t, "ver/moved/doc.bin", sum2)
	if r := c.dfs(t, "stat", "ver/doc.bin"); r.code != 3 {
		t.Fatalf("stat of a moved file's old path: %s; want exit 3", r)
	}
	c.put(t, v1, "ver/moved/other.bin")
	c.mustDFS(t, "mv", "-r", "ver/moved", "ver/there")
	c.checkGet(t, "ver/there/doc.bin", sum2)
	c.checkGet(t, "ver/there/other.bin", sum1)
	if r := c.dfs(t, "mv", "ver/there", "ver/x"); r.code != 2 || !strings.Contains(r.stderr, "folder") {
		t.Fatalf("mv of a folder without -r: %s; want exit 2 naming the folder", r)
	}

	// purge -r drops every earlier version under the folder; the files stay.
	c.mustDFS(t, "purge", "-r", "ver")
	for _, p := range []string{"ver/doc.bin", "ver/moved/doc.bin"} {
		if vs := decodeJSON[[]versionOutput](t, c.mustDFS(t, "versions", "--json", p)); len(vs) != 0 {
			t.Fatalf("versions of %s after purge: %+v", p, vs)
		}
	}
	vs = decodeJSON[[]versionOutput](t, c.mustDFS(t, "versions", "--json", "ver/there/doc.bin"))
	if len(vs) != 1 || !vs[0].Latest {
		t.Fatalf("versions of a file after purge: %+v; want only the current one", vs)
	}
	c.checkGet(t, "ver/there/doc.bin", sum2)
	os.Remove(out)
}
