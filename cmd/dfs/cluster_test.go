package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/jobs"
)

// testCluster is a whole cluster in the test's process, reached by the
// commands as they reach any cluster: over gRPC at its address.
type testCluster struct {
	cl  *cluster.Cluster
	dir string
}

func startCluster(t *testing.T, workers int) *testCluster {
	t.Helper()
	// No client configuration of the user's is read.
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", "")
	dir := t.TempDir()
	cl, err := cluster.Start(context.Background(), cluster.Config{Dir: dir, GRPC: "127.0.0.1:0",
		Jobs: jobs.Config{Workers: workers}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return &testCluster{cl: cl, dir: dir}
}

// result is what a dfs command did: its output and the exit code main
// would give it.
type result struct {
	stdout, stderr string
	err            error
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// dfs runs one dfs command against the cluster, in this process.
func (tc *testCluster) dfs(t *testing.T, args ...string) result {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append(args, "--insecure", "--coordinator", tc.cl.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a guard against a hang
	defer cancel()
	err := execute(ctx, root)
	r := result{stdout: out.String(), stderr: errb.String(), err: err}
	if err != nil {
		r.code = exitCode(err)
		r.stderr += "dfs: " + err.Error() + "\n"
	}
	return r
}

// mustDFS runs a command that must succeed.
func (tc *testCluster) mustDFS(t *testing.T, args ...string) result {
	t.Helper()
	r := tc.dfs(t, args...)
	if r.err != nil {
		t.Fatalf("dfs %s: %v\n%s", strings.Join(args, " "), r.err, r)
	}
	return r
}

// chunkBytes is the bytes of every chunk file on the datanodes' disks:
// every replica of every chunk.
func (tc *testCluster) chunkBytes(t *testing.T) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(filepath.Join(tc.dir, "datanodes"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || len(d.Name()) != 64 || strings.Trim(d.Name(), "0123456789abcdef") != "" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// writeTree writes files (relative path: content) under dir.
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for rel, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree is every regular file under dir by relative path, and every
// directory (with a trailing '/').
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
