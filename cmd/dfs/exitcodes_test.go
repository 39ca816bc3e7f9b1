package main

import (
	"reflect"
	"strings"
	"testing"
)

// Usage mistakes exit 2, as main's exit codes say, whether cobra or the
// command finds them.
func TestUsageErrorsExit2(t *testing.T) {
	tc := startCluster(t, 0)
	for _, args := range [][]string{
		{"put"},
		{"get"},
		{"stat", "a", "b"},
		{"nosuchcommand"},
		{"put", "--no-such-flag", "x"},
		{"ls", "--json=maybe"},
	} {
		r := tc.dfs(t, args...)
		if r.code != exitUsage {
			t.Errorf("dfs %s: exit %d, want %d\n%s", strings.Join(args, " "), r.code, exitUsage, r)
		}
	}
	// The message names the command and its usage.
	if r := tc.dfs(t, "put"); !strings.Contains(r.stderr, "put: accepts between 1 and 2 arg(s), received 0 (usage: dfs put LOCAL [REMOTE]") {
		t.Errorf("dfs put: %s", r)
	}
}

// rm goes on past a path it cannot remove, and exits non-zero at the end:
// 3 when every failure was a missing path.
func TestRmGoesOnPastFailures(t *testing.T) {
	tc := startCluster(t, 0)
	for _, p := range []string{"a", "b", "c", "dir/x"} {
		tc.mustDFS(t, "put", "-q", "cluster_test.go", p)
	}
	r := tc.dfs(t, "rm", "a", "nope", "b")
	if r.code != exitNotFound || !strings.Contains(r.stderr, "dfs: rm nope: file \"nope\": not found") {
		t.Fatalf("rm a nope b: want exit 3 naming nope\n%s", r)
	}
	if got := lsPaths(t, tc, ""); !reflect.DeepEqual(got, []string{"c", "dir/x"}) {
		t.Fatalf("after rm a nope b: %q, want a and b gone", got)
	}
	// -f: a missing path is no failure.
	tc.mustDFS(t, "rm", "-f", "nope", "c")
	// A folder without -r is a usage mistake, and the other paths still go.
	tc.mustDFS(t, "put", "-q", "cluster_test.go", "d")
	r = tc.dfs(t, "rm", "dir", "d")
	if r.code != exitUsage || !strings.Contains(r.stderr, "dir/ is a folder: use -r") {
		t.Fatalf("rm dir d: want exit 2 saying dir is a folder\n%s", r)
	}
	// Mixed failures: exit 1.
	if r := tc.dfs(t, "rm", "dir", "nope"); r.code != exitError {
		t.Errorf("rm FOLDER MISSING: exit %d, want 1\n%s", r.code, r)
	}
	if got := lsPaths(t, tc, ""); !reflect.DeepEqual(got, []string{"dir/x"}) {
		t.Fatalf("after rm dir d: %q", got)
	}
}

func TestPlural(t *testing.T) {
	for n, want := range map[int]string{0: "0 chunks", 1: "1 chunk", 2: "2 chunks"} {
		if got := plural(n, "chunk"); got != want {
			t.Errorf("plural(%d, chunk) = %q, want %q", n, got, want)
		}
	}
	if got := plural(3, "copy"); got != "3 copies" {
		t.Errorf("plural(3, copy) = %q", got)
	}
	if got := plural(2, "key"); got != "2 keys" {
		t.Errorf("plural(2, key) = %q", got)
	}
}
