//go:build linux || darwin

package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/pki"
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
	if err := makeSuiteCerts(dir); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot make the suite's certificates: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
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

// The suite's security: one CA, a node certificate for loopback that every
// role of every cluster uses, a client configuration trusting the CA, and
// a home directory for the processes.
var suiteCerts, suiteConfig, suiteHome string

// The suite's admin access key, which every cluster is given at start
// (importSuiteKey) and the suite's client configuration names.
var suiteKeyID, suiteSecret, suiteSecretFile string

func makeSuiteCerts(dir string) error {
	suiteCerts = filepath.Join(dir, "certs")
	suiteConfig = filepath.Join(dir, "client.conf")
	suiteHome = filepath.Join(dir, "home")
	if err := os.MkdirAll(suiteHome, 0o700); err != nil {
		return err
	}
	if err := pki.CreateCA(suiteCerts); err != nil {
		return err
	}
	if err := pki.CreateNode(suiteCerts, []string{"127.0.0.1", "localhost", "::1"}, nil); err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(suiteCerts, pki.CACert))
	if err != nil {
		return err
	}
	suiteKeyID, suiteSecret = access.NewKey()
	suiteSecretFile = filepath.Join(dir, "suite.secret")
	if err := os.WriteFile(suiteSecretFile, []byte(suiteSecret+"\n"), 0o600); err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]any{"coordinators": []string{"127.0.0.1:9400"}, "ca": string(ca),
		"access_key_id": suiteKeyID, "secret_access_key": suiteSecret})
	return os.WriteFile(suiteConfig, b, 0o600)
}

// copyCerts puts the suite's CA certificate and node certificate in dir,
// as a dfs server data directory keeps its own.
func copyCerts(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{pki.CACert, pki.NodeCert, pki.NodeKey} {
		b, err := os.ReadFile(filepath.Join(suiteCerts, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
