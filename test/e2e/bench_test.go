//go:build linux || darwin

package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchReport is the part of dfs bench --json this test reads.
type benchReport struct {
	Limits map[string]float64 `json:"limits"`
	Large  *struct {
		UploadMiBps   float64 `json:"upload_mib_s"`
		DownloadMiBps float64 `json:"download_mib_s"`
		PeakRSS       int64   `json:"server_peak_rss_bytes"`
	} `json:"large"`
	Small *struct {
		Put  float64 `json:"put_per_s"`
		Get  float64 `json:"get_per_s"`
		Stat float64 `json:"stat_per_s"`
	} `json:"small"`
	Meta *struct {
		Create float64 `json:"create_per_s"`
		Stat   float64 `json:"stat_per_s"`
	} `json:"meta"`
	Dedup *struct {
		Logical   int64   `json:"logical_bytes"`
		Physical  int64   `json:"physical_bytes"`
		Ratio     float64 `json:"ratio"`
		FixedRate float64 `json:"fixed_ratio"`
	} `json:"dedup"`
}

// dfs bench runs every workload at a small scale, starting its own dfs
// server, and reports each in the documented JSON shape. It checks the
// instrument works and its accounting is right, not how fast anything is.
func TestBench(t *testing.T) {
	skipShort(t)
	// A data set whose second file repeats the first: half of it is new.
	ds := t.TempDir()
	a := make([]byte, 3<<20)
	if _, err := io.ReadFull(randomData(t, "bench-a"), a); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ds, "1.bin"), a, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ds, "2.bin"), a, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runDFS(t, 5*time.Minute, nil, nil, "bench", "limits", "large", "small", "meta", "dedup",
		"--size", "16MiB", "--count", "40", "--file-size", "8KiB", "--concurrency", "4",
		"--dataset", ds, "--tmp", t.TempDir(), "--json")
	if r.code != 0 {
		t.Fatalf("bench failed: %s", r)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("bench --json is not one JSON object: %v\n%s", err, r)
	}
	for _, k := range []string{"sha256_mb_s_per_core", "seq_write_fsync_mib_s", "fsyncs_per_s", "loopback_tcp_mib_s"} {
		if rep.Limits[k] <= 0 {
			t.Errorf("limits.%s = %v, want a positive figure", k, rep.Limits[k])
		}
	}
	if rep.Large == nil || rep.Large.UploadMiBps <= 0 || rep.Large.DownloadMiBps <= 0 || rep.Large.PeakRSS <= 0 {
		t.Errorf("large: %+v, want upload, download and the server's peak memory", rep.Large)
	}
	if rep.Small == nil || rep.Small.Put <= 0 || rep.Small.Get <= 0 || rep.Small.Stat <= 0 {
		t.Errorf("small: %+v", rep.Small)
	}
	if rep.Meta == nil || rep.Meta.Create <= 0 || rep.Meta.Stat <= 0 {
		t.Errorf("meta: %+v", rep.Meta)
	}
	if d := rep.Dedup; d == nil || d.Logical != 2*int64(len(a)) || d.Physical != int64(len(a)) || d.Ratio != 2 || d.FixedRate != 2 {
		t.Errorf("dedup: %+v, want %d logical bytes, %d physical, ratio 2 both ways", rep.Dedup, 2*len(a), len(a))
	}
	if !strings.Contains(r.stderr, "large") {
		t.Errorf("no progress on stderr: %s", r)
	}

	// Only the workloads asked for appear.
	r = runDFS(t, 2*time.Minute, nil, nil, "bench", "meta", "--count", "10", "--tmp", t.TempDir(), "--json")
	if r.code != 0 {
		t.Fatalf("bench meta failed: %s", r)
	}
	var only map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &only); err != nil {
		t.Fatal(err)
	}
	for k := range only {
		if k != "meta" && k != "env" {
			t.Errorf("bench meta --json has %q", k)
		}
	}
	if bytes.Contains([]byte(r.stdout), []byte(`"large"`)) {
		t.Errorf("bench meta printed large figures")
	}
}
