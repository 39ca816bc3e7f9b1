package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The tree the folder tests store: nested directories, an empty one,
// files of one byte to several chunks.
func sampleTree(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	files := map[string][]byte{
		"a.txt":              []byte("alpha\n"),
		"one":                []byte("1"),
		"sub/b.bin":          randomBytes(1, 100<<10),
		"sub/deeper/c.bin":   randomBytes(2, 3<<20),
		"sub/deeper/d e.txt": []byte("a name with a space\n"),
	}
	dir := filepath.Join(t.TempDir(), "tree")
	writeTree(t, dir, files)
	if err := os.MkdirAll(filepath.Join(dir, "empty", "inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, files
}

func wantTree(files map[string][]byte) map[string]string {
	out := map[string]string{}
	for rel, b := range files {
		out[rel] = string(b)
		for d := filepath.Dir(rel); d != "."; d = filepath.Dir(d) {
			out[filepath.ToSlash(d)+"/"] = ""
		}
	}
	return out
}

func lsPaths(t *testing.T, tc *testCluster, prefix string) []string {
	t.Helper()
	var entries []lsEntry
	r := tc.mustDFS(t, "ls", "-r", "--json", prefix)
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, r)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Path)
	}
	return out
}

// put -r stores a whole tree, get -r brings it back byte for byte, and
// rm -r removes it; a folder named without -r is answered as a folder.
func TestFoldersRecursivePutGetRm(t *testing.T) {
	tc := startCluster(t, 0)
	dir, files := sampleTree(t)

	// Without -r, a local directory is refused with what to type.
	r := tc.dfs(t, "put", dir, "photos")
	if r.code != exitUsage || !strings.Contains(r.stderr, "is a directory: use -r") {
		t.Fatalf("put DIR without -r: want exit 2 and 'use -r'\n%s", r)
	}

	r = tc.mustDFS(t, "put", "-r", dir, "photos/")
	got := lsPaths(t, tc, "photos/")
	want := []string{"photos/a.txt", "photos/one", "photos/sub/b.bin", "photos/sub/deeper/c.bin", "photos/sub/deeper/d e.txt"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after put -r: ls -r photos/ = %q, want %q (the empty directory stores nothing)", got, want)
	}
	if !strings.Contains(r.stdout, "photos/  5 files") {
		t.Errorf("put -r: no summary of the tree:\n%s", r)
	}
	// A second put -r of the same tree sends no byte.
	r = tc.mustDFS(t, "put", "-r", "--json", dir, "photos")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != len(files) {
		t.Fatalf("put -r --json: %d lines for %d files\n%s", len(lines), len(files), r)
	}
	for _, l := range lines {
		var p putOutput
		if err := json.Unmarshal([]byte(l), &p); err != nil || p.SentBytes != 0 || p.Status != "duplicate" || !p.Duplicate {
			t.Errorf("second put -r: %s (%v), want nothing sent and status duplicate", l, err)
		}
	}

	// A folder is a folder for stat, get and rm, with or without a slash.
	r = tc.mustDFS(t, "stat", "photos")
	if !strings.Contains(r.stdout, "path:     photos/") || !strings.Contains(r.stdout, "folder, 3 entries") || !strings.Contains(r.stdout, "dfs ls photos") {
		t.Errorf("stat photos: want a folder of 3 entries and a pointer to ls\n%s", r)
	}
	r = tc.mustDFS(t, "stat", "--json", "photos/sub/")
	var sf statFolder
	if err := json.Unmarshal([]byte(r.stdout), &sf); err != nil || !sf.Folder || sf.Path != "photos/sub/" || sf.Entries != 2 {
		t.Errorf("stat --json photos/sub/: %+v %v\n%s", sf, err, r)
	}
	for _, args := range [][]string{{"get", "photos"}, {"get", "photos/", t.TempDir()}, {"rm", "photos"}, {"rm", "photos/"}, {"cat", "photos/sub"}, {"cp", "photos", "copy"}} {
		r := tc.dfs(t, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "is a folder: use -r") {
			t.Errorf("dfs %s: want exit 2 saying it is a folder\n%s", strings.Join(args, " "), r)
		}
	}
	if got := lsPaths(t, tc, "photos/"); len(got) != len(files) {
		t.Fatalf("a refused rm removed something: %q", got)
	}
	// Not a folder either: not found, exit 3.
	if r := tc.dfs(t, "stat", "nothing/"); r.code != exitNotFound {
		t.Errorf("stat nothing/: want exit 3\n%s", r)
	}

	// get -r recreates the tree; no empty directory appears.
	out := filepath.Join(t.TempDir(), "restored")
	tc.mustDFS(t, "get", "-r", "photos", out)
	if got, want := readTree(t, out), wantTree(files); !reflect.DeepEqual(got, want) {
		t.Fatalf("get -r: tree differs\n got %d entries\nwant %d entries", len(got), len(want))
	}
	// get -r of a sub-folder with a slash, into an existing directory.
	out2 := t.TempDir()
	tc.mustDFS(t, "get", "-r", "photos/sub/deeper/", out2)
	if got := readTree(t, out2); len(got) != 2 || got["d e.txt"] != string(files["sub/deeper/d e.txt"]) || got["c.bin"] != string(files["sub/deeper/c.bin"]) {
		t.Fatalf("get -r photos/sub/deeper/: %d entries", len(got))
	}

	// put -r of a file stores it as put does.
	tc.mustDFS(t, "put", "-r", "-q", filepath.Join(dir, "one"), "single")
	if r := tc.mustDFS(t, "stat", "--json", "single"); !strings.Contains(r.stdout, `"size": 1,`) {
		t.Fatalf("put -r FILE: %s", r)
	}

	// rm -r removes every path under the folder, and only those.
	tc.mustDFS(t, "put", dir+"/a.txt", "photos-kept")
	tc.mustDFS(t, "rm", "-r", "photos/")
	if got := lsPaths(t, tc, ""); !reflect.DeepEqual(got, []string{"photos-kept", "single"}) {
		t.Fatalf("after rm -r photos/: %q, want only photos-kept and single", got)
	}
	if r := tc.dfs(t, "rm", "-r", "photos"); r.code != exitNotFound {
		t.Errorf("rm -r of a folder that is gone: want exit 3\n%s", r)
	}
}
