package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A copy is a metadata commit: the datanodes store no byte more, and the
// copy reads back byte for byte.
func TestCpStoresNoChunkBytes(t *testing.T) {
	tc := startCluster(t, 0)
	dir, files := sampleTree(t)
	tc.mustDFS(t, "put", "-r", "-q", dir, "src")
	before := tc.chunkBytes(t)
	if before == 0 {
		t.Fatal("no chunk bytes counted on the datanodes")
	}

	tc.mustDFS(t, "cp", "src/sub/deeper/c.bin", "one-copy.bin")
	tc.mustDFS(t, "cp", "src/a.txt", "into/")
	tc.mustDFS(t, "cp", "-r", "src/", "dst")
	if after := tc.chunkBytes(t); after != before {
		t.Fatalf("cp: datanodes hold %d chunk bytes, %d before: a copy stored bytes", after, before)
	}

	got := filepath.Join(t.TempDir(), "c")
	tc.mustDFS(t, "get", "one-copy.bin", got)
	if b, _ := os.ReadFile(got); string(b) != string(files["sub/deeper/c.bin"]) {
		t.Fatal("cp: the copy's bytes differ")
	}
	if p := lsPaths(t, tc, "into/"); !reflect.DeepEqual(p, []string{"into/a.txt"}) {
		t.Errorf("cp to a DST ending in '/': %q", p)
	}
	out := t.TempDir()
	tc.mustDFS(t, "get", "-r", "dst", out)
	if got, want := readTree(t, out), wantTree(files); !reflect.DeepEqual(got, want) {
		t.Fatal("cp -r: the copied tree differs")
	}
	// The source is untouched.
	if p := lsPaths(t, tc, "src/"); len(p) != len(files) {
		t.Errorf("cp -r changed its source: %q", p)
	}

	for _, tt := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"cp", "src", "x"}, exitUsage, "is a folder: use -r"},
		{[]string{"cp", "nope", "x"}, exitNotFound, "not found"},
		{[]string{"cp", "-r", "nope", "x"}, exitNotFound, "not found"},
		{[]string{"cp", "-r", "src", "src/inside"}, exitUsage, "into itself"},
		{[]string{"cp", "only-one"}, exitUsage, "accepts 2 arg(s)"},
	} {
		r := tc.dfs(t, tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.says) {
			t.Errorf("dfs %s: want exit %d saying %q\n%s", strings.Join(tt.args, " "), tt.code, tt.says, r)
		}
	}
}
