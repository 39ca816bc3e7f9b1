//go:build linux || darwin

package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dfsBin is the dfs binary every test runs, built once by TestMain.
var dfsBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test skips itself; no need to build.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "dfs-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		os.Exit(1)
	}
	suiteDir = dir
	if err := build(filepath.Join(dir, "dfs")); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot build the dfs binary, so no e2e test can run:\n%v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	dfsBin = filepath.Join(dir, "dfs")
	code := m.Run()
	if !stopSharedClusters() && code == 0 {
		fmt.Fprintln(os.Stderr, "FAIL: a process of a shared cluster crashed or did not stop on SIGTERM")
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles ./cmd/dfs of this module to out.
func build(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, "./cmd/dfs")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -o %s ./cmd/dfs (in %s): %v\n%s", out, root, err, b)
	}
	return nil
}

// moduleRoot finds the directory of the module's go.mod: from `go env
// GOMOD`, or else by walking up from the working directory.
func moduleRoot() (string, error) {
	if b, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if gomod := strings.TrimSpace(string(b)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// skipShort skips the calling test under -short: e2e tests take minutes.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode; run go test -count=1 ./test/e2e")
	}
}
