package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func syncJSON(t *testing.T, tc *testCluster, args ...string) syncReport {
	t.Helper()
	r := tc.mustDFS(t, append([]string{"sync", "--json"}, args...)...)
	var rep syncReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("sync --json: %v\n%s", err, r)
	}
	return rep
}

func actions(rep syncReport) []string {
	var out []string
	for _, a := range rep.Actions {
		out = append(out, a.Action+" "+a.Path)
	}
	return out
}

// sync from a local tree to dfs copies what differs (a same-size change
// found by its hash), nothing the second time, deletes only with
// --delete, and changes nothing with --dry-run.
func TestSyncLocalToDFS(t *testing.T) {
	tc := startCluster(t, 0)
	dir, files := sampleTree(t)

	rep := syncJSON(t, tc, dir, "dfs:backup")
	if rep.Uploaded != len(files) || rep.Failed != 0 || rep.Unchanged != 0 {
		t.Fatalf("first sync: %+v, want %d uploads", rep, len(files))
	}
	if got := lsPaths(t, tc, "backup/"); len(got) != len(files) {
		t.Fatalf("after the first sync: %q", got)
	}

	// Nothing changed: nothing is sent, no datanode stores a byte more.
	before := tc.chunkBytes(t)
	rep = syncJSON(t, tc, dir, "dfs:backup/")
	if rep.Uploaded != 0 || rep.Unchanged != len(files) || len(rep.Actions) != 0 || rep.SentBytes != 0 {
		t.Fatalf("second sync: %+v, want nothing to do", rep)
	}
	if after := tc.chunkBytes(t); after != before {
		t.Fatalf("second sync: datanodes hold %d chunk bytes, %d before", after, before)
	}

	// A byte changed in the middle of the 3 MiB file, size the same: only
	// its hash tells, and only that file is sent, and only its new chunk.
	c := append([]byte(nil), files["sub/deeper/c.bin"]...)
	c[len(c)/2] ^= 0xff
	writeTree(t, dir, map[string][]byte{"sub/deeper/c.bin": c})
	rep = syncJSON(t, tc, dir, "dfs:backup")
	if !reflect.DeepEqual(actions(rep), []string{"upload backup/sub/deeper/c.bin"}) || rep.Unchanged != len(files)-1 {
		t.Fatalf("sync after a same-size change: %+v", rep)
	}
	if rep.SentBytes <= 0 || rep.SentBytes >= int64(len(c)) {
		t.Errorf("sync of a one-byte change sent %d bytes of %d: want the changed chunk only", rep.SentBytes, len(c))
	}
	got := filepath.Join(t.TempDir(), "c")
	tc.mustDFS(t, "get", "backup/sub/deeper/c.bin", got)
	if b, _ := os.ReadFile(got); string(b) != string(c) {
		t.Fatalf("the synced file's bytes differ from the local file's")
	}

	// A local deletion: kept in dfs without --delete.
	if err := os.Remove(filepath.Join(dir, "sub", "b.bin")); err != nil {
		t.Fatal(err)
	}
	rep = syncJSON(t, tc, dir, "dfs:backup")
	if rep.Deleted != 0 || len(rep.Actions) != 0 {
		t.Fatalf("sync without --delete: %+v, want nothing done", rep)
	}
	// --dry-run --delete says what it would delete, and deletes nothing.
	r := tc.mustDFS(t, "sync", "--dry-run", "--delete", dir, "dfs:backup")
	if !strings.Contains(r.stdout, "(dry run) delete   backup/sub/b.bin") || !strings.Contains(r.stdout, "1 deleted") || !strings.Contains(r.stdout, "dry run: nothing changed") {
		t.Errorf("sync --dry-run --delete:\n%s", r)
	}
	if got := lsPaths(t, tc, "backup/sub/"); !reflect.DeepEqual(got, []string{"backup/sub/b.bin", "backup/sub/deeper/c.bin", "backup/sub/deeper/d e.txt"}) {
		t.Fatalf("--dry-run changed dfs: %q", got)
	}
	// A dry run of an upload stores nothing either.
	writeTree(t, dir, map[string][]byte{"new.txt": []byte("new")})
	rep = syncJSON(t, tc, "--dry-run", dir, "dfs:backup")
	if !reflect.DeepEqual(actions(rep), []string{"upload backup/new.txt"}) || !rep.DryRun {
		t.Fatalf("sync --dry-run: %+v", rep)
	}
	if r := tc.dfs(t, "stat", "backup/new.txt"); r.code != exitNotFound {
		t.Fatalf("sync --dry-run uploaded new.txt:\n%s", r)
	}
	// --delete deletes.
	rep = syncJSON(t, tc, "--delete", dir, "dfs:backup")
	if got := actions(rep); !reflect.DeepEqual(got, []string{"upload backup/new.txt", "delete backup/sub/b.bin"}) {
		t.Fatalf("sync --delete: %q", got)
	}
	if got := lsPaths(t, tc, "backup/sub/"); !reflect.DeepEqual(got, []string{"backup/sub/deeper/c.bin", "backup/sub/deeper/d e.txt"}) {
		t.Fatalf("after sync --delete: %q", got)
	}
	// The empty directories stored nothing, and a synced tree is in sync.
	if got := lsPaths(t, tc, "backup/empty"); len(got) != 0 {
		t.Errorf("an empty directory became %q", got)
	}
	rep = syncJSON(t, tc, "--delete", dir, "dfs:backup")
	if len(rep.Actions) != 0 {
		t.Errorf("sync after sync: %+v", rep)
	}
}

// sync from dfs to a local directory: the same rules the other way, with
// files written whole.
func TestSyncDFSToLocal(t *testing.T) {
	tc := startCluster(t, 0)
	src, files := sampleTree(t)
	tc.mustDFS(t, "put", "-r", "-q", src, "data")

	dst := filepath.Join(t.TempDir(), "copy")
	rep := syncJSON(t, tc, "dfs:data", dst)
	if rep.Downloaded != len(files) || rep.Failed != 0 {
		t.Fatalf("first sync: %+v", rep)
	}
	if got, want := readTree(t, dst), wantTree(files); !reflect.DeepEqual(got, want) {
		t.Fatalf("first sync: the local tree differs")
	}
	rep = syncJSON(t, tc, "dfs:data", dst)
	if rep.Downloaded != 0 || rep.Unchanged != len(files) || len(rep.Actions) != 0 {
		t.Fatalf("second sync: %+v, want nothing", rep)
	}

	// A same-size change in dfs is found by the hash.
	c := append([]byte(nil), files["sub/deeper/c.bin"]...)
	c[len(c)/2] ^= 0xff
	changed := filepath.Join(t.TempDir(), "c.bin")
	if err := os.WriteFile(changed, c, 0o644); err != nil {
		t.Fatal(err)
	}
	tc.mustDFS(t, "put", "-q", changed, "data/sub/deeper/c.bin")
	// A local file dfs does not have, and a local empty directory.
	writeTree(t, dst, map[string][]byte{"extra.txt": []byte("local only")})
	if err := os.Mkdir(filepath.Join(dst, "localempty"), 0o755); err != nil {
		t.Fatal(err)
	}
	snapshot := readTree(t, dst)
	rep = syncJSON(t, tc, "--dry-run", "--delete", "dfs:data", dst)
	if got := actions(rep); !reflect.DeepEqual(got, []string{"download " + filepath.Join(dst, "sub", "deeper", "c.bin"), "delete " + filepath.Join(dst, "extra.txt")}) {
		t.Fatalf("sync --dry-run --delete: %q", got)
	}
	if got := readTree(t, dst); !reflect.DeepEqual(got, snapshot) {
		t.Fatalf("sync --dry-run changed the local tree")
	}
	rep = syncJSON(t, tc, "dfs:data", dst)
	if got := actions(rep); !reflect.DeepEqual(got, []string{"download " + filepath.Join(dst, "sub", "deeper", "c.bin")}) {
		t.Fatalf("sync: %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "sub", "deeper", "c.bin")); string(b) != string(c) {
		t.Fatal("the changed file was not downloaded")
	}
	if _, err := os.Stat(filepath.Join(dst, "extra.txt")); err != nil {
		t.Fatalf("sync without --delete removed a local file: %v", err)
	}
	tc.mustDFS(t, "sync", "--delete", "dfs:data", dst)
	if _, err := os.Stat(filepath.Join(dst, "extra.txt")); !os.IsNotExist(err) {
		t.Fatalf("sync --delete kept extra.txt: %v", err)
	}
	// Directories are left: the empty one is the user's.
	if st, err := os.Stat(filepath.Join(dst, "localempty")); err != nil || !st.IsDir() {
		t.Errorf("sync --delete removed a local directory: %v", err)
	}
	// No temporary file is left beside the files written.
	for rel := range readTree(t, dst) {
		if strings.Contains(rel, ".dfs-") {
			t.Errorf("temporary file left: %s", rel)
		}
	}

	// A folder with nothing under it is not an empty source: refusing
	// keeps a typo with --delete from emptying the directory.
	if r := tc.dfs(t, "sync", "--delete", "dfs:dta", dst); r.code != exitNotFound {
		t.Errorf("sync from a folder that does not exist: want exit 3\n%s", r)
	}
	if len(readTree(t, dst)) == 0 {
		t.Fatal("the local directory was emptied")
	}
	// Two local sides, or two dfs sides: a usage error.
	for _, args := range [][]string{{"sync", src, dst}, {"sync", "dfs:a", "dfs:b"}, {"sync", src}} {
		if r := tc.dfs(t, args...); r.code != exitUsage {
			t.Errorf("dfs %s: want exit 2\n%s", strings.Join(args, " "), r)
		}
	}
}
