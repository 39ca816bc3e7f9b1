//go:build unix

package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// get gives a new file 0666 less the umask, as cp and curl do, and an
// existing file keeps its mode when overwritten; get -r too.
func TestGetModes(t *testing.T) {
	tc := startCluster(t, 0)
	tc.mustDFS(t, "put", "-q", "cluster_test.go", "f")
	tc.mustDFS(t, "put", "-q", "tree.go", "dir/g")
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)

	mode := func(p string) fs.FileMode {
		t.Helper()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh")
	tc.mustDFS(t, "get", "f", fresh)
	if m := mode(fresh); m != 0o640 {
		t.Errorf("new file: mode %v, want 0640 (0666 less umask 027)", m)
	}
	tc.mustDFS(t, "get", "-r", "dir", filepath.Join(dir, "tree"))
	if m := mode(filepath.Join(dir, "tree", "g")); m != 0o640 {
		t.Errorf("new file from get -r: mode %v, want 0640", m)
	}

	// An existing file keeps its mode, wider or narrower than the umask's.
	for _, keep := range []fs.FileMode{0o644, 0o600, 0o755} {
		p := filepath.Join(dir, "existing-"+keep.String())
		if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, keep); err != nil {
			t.Fatal(err)
		}
		tc.mustDFS(t, "get", "f", p)
		if m := mode(p); m != keep {
			t.Errorf("overwritten file: mode %v, want its own %v", m, keep)
		}
		if b, _ := os.ReadFile(p); string(b) == "old" {
			t.Errorf("%s was not overwritten", p)
		}
	}
}

// put -r follows a symbolic link to a file, and leaves a link to a
// directory with a notice, not a failure.
func TestPutRecursiveLinks(t *testing.T) {
	tc := startCluster(t, 0)
	dir := t.TempDir()
	writeTree(t, dir, map[string][]byte{"real/f.txt": []byte("f")})
	if err := os.Symlink(filepath.Join(dir, "real", "f.txt"), filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "linkdir")); err != nil {
		t.Fatal(err)
	}
	r := tc.mustDFS(t, "put", "-r", dir, "links")
	if got := lsPaths(t, tc, "links/"); len(got) != 2 || got[0] != "links/link.txt" || got[1] != "links/real/f.txt" {
		t.Fatalf("put -r with links: %q\n%s", got, r)
	}
	if !strings.Contains(r.stderr, "linkdir: skipped: a symbolic link to a directory") {
		t.Errorf("put -r: no notice of the directory link\n%s", r)
	}
}
