package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dfs-store/dfs/internal/pki"
)

func runDFS(t *testing.T, args ...string) error {
	t.Helper()
	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs(args)
	return root.ExecuteContext(context.Background())
}

// dfs certs makes a CA, a node certificate and a client certificate, and
// never overwrites one.
func TestCertsCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	for _, args := range [][]string{
		{"certs", "create-ca", "--certs-dir", dir},
		{"certs", "create-node", "10.0.0.7", "node7.example", "--roles", "datanode", "--certs-dir", dir},
		{"certs", "create-client", "ops", "--certs-dir", dir},
	} {
		if err := runDFS(t, args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	n, err := pki.LoadNode(dir, pki.RoleDatanode)
	if err != nil || len(n.Roles) != 1 {
		t.Fatalf("node certificate: %v, %v", n, err)
	}
	if n.Cert.Leaf.VerifyHostname("node7.example") != nil || n.Cert.Leaf.VerifyHostname("10.0.0.7") != nil {
		t.Fatal("the node certificate does not name its hosts")
	}
	if err := runDFS(t, "certs", "create-ca", "--certs-dir", dir); err == nil {
		t.Fatal("create-ca replaced the CA")
	}
	if err := runDFS(t, "certs", "create-ca"); exitCode(err) != exitUsage {
		t.Fatalf("create-ca without --certs-dir: %v (exit %d), want a usage error", err, exitCode(err))
	}
}

// A role needs --certs-dir or an explicit --insecure; a client needs a
// configuration with the cluster's CA, and says how to get one (exit 5).
func TestSecureByDefault(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", "")
	err := runDFS(t, "datanode", "--data", t.TempDir())
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "--certs-dir") || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("datanode without certificates: %v (exit %d)", err, exitCode(err))
	}
	err = runDFS(t, "ls")
	if exitCode(err) != exitAuth || !strings.Contains(err.Error(), "client.conf") || !strings.Contains(err.Error(), "DFS_CONFIG") {
		t.Fatalf("ls without a client configuration: %v (exit %d)", err, exitCode(err))
	}
	bad := filepath.Join(t.TempDir(), "conf")
	os.WriteFile(bad, []byte(`{"coordinators":["127.0.0.1:1"],"ca":"not a certificate"}`), 0o600)
	err = runDFS(t, "ls", "--config", bad)
	if exitCode(err) != exitAuth || !strings.Contains(err.Error(), "does not parse") {
		t.Fatalf("ls with a broken CA: %v (exit %d)", err, exitCode(err))
	}
}

// A client command needs an access key: from the configuration, or both
// DFS_ACCESS_KEY_ID and DFS_SECRET_ACCESS_KEY, which replace it; without
// one it says how to get one (exit 5), before dialling anything.
func TestClientNeedsAKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if err := runDFS(t, "certs", "create-ca", "--certs-dir", dir); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, pki.CACert))
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "conf")
	write := func(extra string) {
		b, _ := json.Marshal(string(ca))
		os.WriteFile(conf, []byte(`{"coordinators":["127.0.0.1:1"],"ca":`+string(b)+extra+`}`), 0o600)
	}
	write("")
	t.Setenv("DFS_ACCESS_KEY_ID", "")
	os.Unsetenv("DFS_ACCESS_KEY_ID")
	err = runDFS(t, "ls", "--config", conf)
	if exitCode(err) != exitAuth || !strings.Contains(err.Error(), "DFS_ACCESS_KEY_ID") || !strings.Contains(err.Error(), "dfs key create") {
		t.Fatalf("ls without a key: %v (exit %d)", err, exitCode(err))
	}
	t.Setenv("DFS_ACCESS_KEY_ID", "DKAAAAAAAAAAAAAAAAAA")
	err = runDFS(t, "ls", "--config", conf)
	if exitCode(err) != exitAuth || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("ls with a key id and no secret: %v (exit %d)", err, exitCode(err))
	}
	g := &globals{config: conf}
	cmd := newLsCmd(g)
	t.Setenv("DFS_SECRET_ACCESS_KEY", "from-the-environment")
	write(`,"access_key_id":"DKBBBBBBBBBBBBBBBBBB","secret_access_key":"from-the-file"`)
	cfg, err := g.clientSetup(cmd)
	if err != nil || cfg.AccessKeyID != "DKAAAAAAAAAAAAAAAAAA" || cfg.SecretAccessKey != "from-the-environment" || cfg.TLS == nil {
		t.Fatalf("the environment's key over the file's: %+v, %v", cfg, err)
	}
	os.Unsetenv("DFS_ACCESS_KEY_ID")
	os.Unsetenv("DFS_SECRET_ACCESS_KEY")
	cfg, err = g.clientSetup(cmd)
	if err != nil || cfg.AccessKeyID != "DKBBBBBBBBBBBBBBBBBB" || cfg.SecretAccessKey != "from-the-file" {
		t.Fatalf("the file's key: %+v, %v", cfg, err)
	}
}

// --reserve takes bytes or a share of the disk; the default leaves 1%.
func TestParseReserve(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	if r, err := parseReserve("10GiB", dir); err != nil || r != 10<<30 {
		t.Fatalf("10GiB: %d, %v", r, err)
	}
	one, err := parseReserve(defaultReserve, dir)
	if err != nil || one <= 0 {
		t.Fatalf("the default reserve on a directory not made yet: %d, %v", one, err)
	}
	if two, err := parseReserve("2%", dir); err != nil || two < 2*one-1 || two > 2*one+1 {
		t.Fatalf("2%%: %d, %v; want twice 1%% (%d)", two, err, one)
	}
	for _, bad := range []string{"100%", "-1%", "x%", "lots"} {
		if _, err := parseReserve(bad, dir); exitCode(err) != exitUsage {
			t.Errorf("--reserve %q: %v, want a usage error", bad, err)
		}
	}
}

// A gateway token comes from the environment or a file, never from the
// command line, where every user of the host sees it in ps.
func TestAPITokenNotInFlags(t *testing.T) {
	err := runDFS(t, "gateway", "--insecure", "--api-token", "s3cret")
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "DFS_API_TOKEN") {
		t.Fatalf("gateway --api-token: %v, want a usage error pointing to DFS_API_TOKEN", err)
	}
	var g gatewayFlags
	t.Setenv("DFS_API_TOKEN", "from-env")
	if err := g.load(); err != nil || g.token != "from-env" {
		t.Fatalf("token from DFS_API_TOKEN: %q, %v", g.token, err)
	}
	f := filepath.Join(t.TempDir(), "token")
	os.WriteFile(f, []byte("from-file\n"), 0o600)
	g = gatewayFlags{tokenFile: f}
	if err := g.load(); err != nil || g.token != "from-file" {
		t.Fatalf("token from --api-token-file: %q, %v", g.token, err)
	}
}
