package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/dfs-store/dfs/internal/bench"
)

// bench --coordinator measures the cluster it names, not a server of its
// own.
func TestBenchUsesTheCoordinatorItIsGiven(t *testing.T) {
	tc := startCluster(t, 0)
	r := tc.mustDFS(t, "bench", "meta", "--count", "4", "--concurrency", "2", "--tmp", t.TempDir(), "--json")
	var rep bench.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, r)
	}
	if rep.Env == nil || rep.Env.Target != tc.cl.Addr() || rep.Meta == nil || rep.Meta.CreatePerS <= 0 {
		t.Fatalf("bench --coordinator %s: env %+v, meta %+v; want the figures of that cluster", tc.cl.Addr(), rep.Env, rep.Meta)
	}
}

// Without limits, no row has a "bound by" with no limit beside it: the
// columns are not printed at all.
func TestBenchTableWithoutLimits(t *testing.T) {
	rep := &bench.Report{
		Small: &bench.SmallResult{PutPerSec: 100, GetPerSec: 200, StatPerSec: 300},
		Meta:  &bench.MetaResult{CreatePerS: 50},
	}
	var b bytes.Buffer
	printReport(&b, rep)
	for _, bad := range []string{"bound by", "fsyncs"} {
		if strings.Contains(b.String(), bad) {
			t.Errorf("without limits the table says %q:\n%s", bad, b.String())
		}
	}
	if !strings.Contains(b.String(), "puts") || !strings.Contains(b.String(), "creates") {
		t.Errorf("figures missing:\n%s", b.String())
	}
	// With limits, a figure read against one names it.
	rep.Limits = &bench.Limits{ParallelFsyncsPerSec: 600, CPUs: 2}
	b.Reset()
	printReport(&b, rep)
	if !strings.Contains(b.String(), "bound by") || !strings.Contains(b.String(), "32-writer fsyncs / 6") {
		t.Errorf("with limits:\n%s", b.String())
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "small") && strings.Contains(l, "gets") && strings.Contains(l, "fsyncs") {
			t.Errorf("a row with no limit names a bound: %q", l)
		}
	}
}
