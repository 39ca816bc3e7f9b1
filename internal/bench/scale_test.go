package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and a parenthesis, as a process may
	// choose; utime 250 and stime 150 ticks.
	line := "4242 (dfs (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 150 0 0 20 0 12 0 100 1000000 500 18446744073709551615\n"
	d, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if d != 4*time.Second {
		t.Errorf("cpu time %v, want 4s (400 ticks)", d)
	}
	for _, bad := range []string{"", "4242 dfs S 1", "4242 (dfs) S 1 2 3", "4242 (dfs) S 1 4242 4242 0 -1 4194560 1234 0 0 0 x 150 0"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q): no error", bad)
		}
	}
	// This process's own line parses.
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Errorf("own /proc stat: %v", err)
	}
}

func TestParseHeapAlloc(t *testing.T) {
	prof := "heap profile: 1: 2 [3: 4] @ heap/1048576\n\n# runtime.MemStats\n# Alloc = 123\n# TotalAlloc = 999\n# HeapAlloc = 123456\n# HeapSys = 7\n"
	n, err := parseHeapAlloc(strings.NewReader(prof))
	if err != nil || n != 123456 {
		t.Fatalf("HeapAlloc %d, %v; want 123456", n, err)
	}
	for _, bad := range []string{"", "# Alloc = 1\n", "# HeapAlloc = lots\n"} {
		if _, err := parseHeapAlloc(strings.NewReader(bad)); err == nil {
			t.Errorf("parseHeapAlloc(%q): no error", bad)
		}
	}
}

func TestHasLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	text := "level=INFO msg=\"datanode reported\" node=dn-1 chunks=3\nlevel=INFO msg=\"datanode registered\" node=dn-2\n"
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if !hasLine(p, 0, []string{"datanode reported", "node=dn-1"}) {
		t.Error("the report of dn-1 is not found")
	}
	if hasLine(p, 0, []string{"datanode reported", "node=dn-2"}) {
		t.Error("a report of dn-2 is found in lines that do not hold both words")
	}
	if hasLine(p, int64(strings.Index(text, "\n")+1), []string{"datanode reported"}) {
		t.Error("a line before the offset is found")
	}
	if hasLine(filepath.Join(t.TempDir(), "missing"), 0, []string{"x"}) {
		t.Error("a missing file holds a line")
	}
}

func TestScaleContentIsDistinct(t *testing.T) {
	block := make([]byte, 4096)
	seen := map[string]int{}
	for i := range 1000 {
		b := scaleContent(block, i)
		if len(b) != 4096 {
			t.Fatalf("file %d: %d bytes", i, len(b))
		}
		if j, ok := seen[string(b)]; ok {
			t.Fatalf("files %d and %d have the same bytes", j, i)
		}
		seen[string(b)] = i
	}
	if block[0] != 0 || block[7] != 0 {
		t.Error("scaleContent wrote into the shared block")
	}
}

// A small run of the whole benchmark against real processes: every figure
// is measured, and a second run on the kept directory tops it up.
func TestScaleSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dfs and runs a cluster of 7 processes")
	}
	bin := filepath.Join(t.TempDir(), "dfs")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/dfs-store/dfs/cmd/dfs").CombinedOutput(); err != nil {
		t.Fatalf("build dfs: %v\n%s", err, out)
	}
	dir := t.TempDir()
	cfg := ScaleConfig{Files: 150, Binary: bin, Dir: dir, Idle: time.Second, Concurrency: 16}
	res, err := RunScale(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("not measured: %v", res.Errors)
	}
	if res.Added != 150 || res.Chunks != 150 || len(res.IdleCPU) != 7 {
		t.Fatalf("first run: added %d, chunks %d, %d processes measured", res.Added, res.Chunks, len(res.IdleCPU))
	}
	for name, v := range map[string]float64{"list first": res.ListFirstMs, "list last": res.ListLastMs, "ls": res.LsFirstLineMs,
		"counters": res.CountersMs, "datanode": res.DatanodeRegisteredS, "coordinator": res.CoordinatorRestartS} {
		if v <= 0 {
			t.Errorf("%s: %v, want a measured time", name, v)
		}
	}
	if res.EtcdDBInUseBytes <= 0 || res.StandbyHeapBytes <= 0 {
		t.Errorf("etcd in use %d, standby heap %d: want both measured", res.EtcdDBInUseBytes, res.StandbyHeapBytes)
	}
	cfg.Files = 200
	res, err = RunScale(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 50 || res.Chunks != 200 {
		t.Fatalf("second run on the kept directory: added %d, holds %d, want 50 and 200", res.Added, res.Chunks)
	}
}
