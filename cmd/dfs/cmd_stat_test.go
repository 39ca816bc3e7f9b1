package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
)

// put --json says what REST says (status), and keeps duplicate; stat
// --json has the worker and attempts the text shows; chunks are numbered
// from 1, and one chunk is "1 chunk".
func TestPutAndStatOutput(t *testing.T) {
	tc := startCluster(t, 1)
	local := filepath.Join(t.TempDir(), "f.bin")
	if err := os.WriteFile(local, randomBytes(7, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var first, again putOutput
	r := tc.mustDFS(t, "put", "--json", local, "f.bin")
	if err := json.Unmarshal([]byte(r.stdout), &first); err != nil {
		t.Fatal(err)
	}
	r = tc.mustDFS(t, "put", "--json", local, "g.bin")
	if err := json.Unmarshal([]byte(r.stdout), &again); err != nil {
		t.Fatal(err)
	}
	if first.Status != "queued" || first.Duplicate || again.Status != "duplicate" || !again.Duplicate {
		t.Errorf("put --json: first %+v, again %+v; want status queued then duplicate, as REST says", first, again)
	}
	if !strings.Contains(r.stdout, `"status":"duplicate"`) || !strings.Contains(r.stdout, `"duplicate":true`) {
		t.Errorf("put --json: %s", r.stdout)
	}
	small := filepath.Join(t.TempDir(), "s.txt")
	os.WriteFile(small, []byte("one chunk"), 0o644)
	if r := tc.mustDFS(t, "put", small, "s.txt"); !strings.Contains(r.stdout, "(1 chunk, 1 new,") {
		t.Errorf("put of a one-chunk file: %q, want \"1 chunk\"", r.stdout)
	}

	// Wait for the worker to process the content.
	var st statOutput
	deadline := time.Now().Add(time.Minute)
	for {
		r := tc.mustDFS(t, "stat", "--json", "f.bin")
		st = statOutput{}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatal(err)
		}
		if st.Processing != nil && st.Processing.State == dfs.JobDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("f.bin not processed in a minute: %+v", st.Processing)
		}
		time.Sleep(50 * time.Millisecond) // polling, with the deadline above
	}
	if st.Processing.Worker == "" || st.Processing.Attempts < 1 {
		t.Errorf("stat --json: processing %+v, want the worker and the attempts", st.Processing)
	}
	r = tc.mustDFS(t, "stat", "f.bin")
	if !strings.Contains(r.stdout, "processing: done by "+st.Processing.Worker) {
		t.Errorf("stat: the text and --json disagree on the worker:\n%s", r.stdout)
	}
	if len(st.Chunks) < 2 || st.Chunks[0].Index != 1 || st.Chunks[len(st.Chunks)-1].Index != len(st.Chunks) {
		t.Fatalf("stat --json chunks: %+v, want them numbered from 1", st.Chunks)
	}
	var first1 string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, st.Chunks[0].Hash.Short()) {
			first1 = l
		}
	}
	if !strings.HasPrefix(strings.TrimSpace(first1), "1  ") {
		t.Errorf("stat: first chunk line %q, want it numbered 1", first1)
	}
}
