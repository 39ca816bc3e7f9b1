package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/pki"
)

// exitAuth is the exit code of a command that was not authenticated or
// not allowed.
const exitAuth = 5

// authError marks a failure to prove who the caller is, or to trust the
// cluster: exit code 5.
type authError struct{ error }

func authErrorf(format string, args ...any) error { return authError{fmt.Errorf(format, args...)} }

// insecureWarning is what a role started with --insecure says, loudly.
const insecureWarning = "INSECURE: --insecure serves every port in plain text with no authentication: " +
	"anyone who can reach this host's ports can read, change and delete all data. Use it only on a private test network."

// warnInsecure says, in the log and on stderr, what --insecure means.
func warnInsecure() {
	slog.Warn(insecureWarning)
	fmt.Fprintln(os.Stderr, "dfs: "+insecureWarning)
}

// nodeTLS loads the node certificate a role serves and dials with, from
// --certs-dir; nil with --insecure.
func (g *globals) nodeTLS(role string) (*pki.Node, error) {
	if g.insecure {
		if g.certsDir != "" {
			return nil, usagef("give one of --certs-dir and --insecure")
		}
		warnInsecure()
		return nil, nil
	}
	if g.certsDir == "" {
		return nil, usagef("--certs-dir is required: the directory with the cluster's CA certificate (ca.crt) and this host's node certificate " +
			"(node.crt, node.key), made with 'dfs certs create-ca' and 'dfs certs create-node'; or --insecure to run in plain text with no authentication")
	}
	n, err := pki.LoadNode(g.certsDir, role)
	if err != nil {
		return nil, usagef("--certs-dir %s: %v", g.certsDir, err)
	}
	return n, nil
}

// registerCertsDir adds --certs-dir to a role's command.
func (g *globals) registerCertsDir(cmd *cobra.Command) {
	cmd.Flags().StringVar(&g.certsDir, "certs-dir", "", "the cluster's certificates for this host: ca.crt, node.crt and node.key ('dfs certs' makes them)")
}

// clientConfig is the file a client command reads (--config, DFS_CONFIG,
// or ~/.config/dfs/config): where the cluster is and how to trust it.
type clientConfig struct {
	// Coordinators are the coordinators' gRPC addresses.
	Coordinators []string `json:"coordinators"`
	// CA is the cluster CA's certificate, PEM: servers are verified
	// against it.
	CA string `json:"ca,omitempty"`
	// Insecure says the cluster runs in plain text (--insecure).
	Insecure bool `json:"insecure,omitempty"`
}

// defaultConfigPath is ~/.config/dfs/config (under $XDG_CONFIG_HOME if
// set), or "" if there is no home.
func defaultConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "dfs", "config")
}

// loadClientConfig reads the client configuration: the file named by
// --config (or DFS_CONFIG), else the default one if it exists. It returns
// nil and the path looked at if there is none.
func (g *globals) loadClientConfig() (*clientConfig, string, error) {
	path, named := g.config, g.config != ""
	if !named {
		path = defaultConfigPath()
	}
	if path == "" {
		return nil, "", nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !named {
		return nil, path, nil
	}
	if err != nil {
		return nil, path, authErrorf("client configuration: %v", err)
	}
	var c clientConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, path, authErrorf("client configuration %s: %v", path, err)
	}
	return &c, path, nil
}

// writeClientConfig writes c to path, 0600, replacing what is there.
func writeClientConfig(path string, c clientConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// clientSetup is how a client command reaches the cluster: the
// coordinators (--coordinator when given, else the configuration's) and
// the TLS to trust them with (nil: plain text).
func (g *globals) clientSetup(cmd *cobra.Command) ([]string, *tls.Config, error) {
	cfg, path, err := g.loadClientConfig()
	if err != nil {
		return nil, nil, err
	}
	addrs := splitList(g.coordinators)
	if cfg != nil && len(cfg.Coordinators) > 0 && !g.coordinatorSet(cmd) {
		addrs = cfg.Coordinators
	}
	if len(addrs) == 0 {
		return nil, nil, usagef("--coordinator: no address")
	}
	switch {
	case g.insecure || (cfg != nil && cfg.Insecure):
		return addrs, nil, nil
	case cfg == nil:
		where := "~/.config/dfs/config"
		if path != "" {
			where = path
		}
		return nil, nil, authErrorf("no client configuration (looked for %s): it holds the cluster's CA certificate that a client needs to trust the cluster. "+
			"'dfs server --data DIR' writes one to DIR/client.conf and, if you have none, to ~/.config/dfs/config; "+
			"name one with DFS_CONFIG or --config. For a cluster run with --insecure, use --insecure", where)
	case cfg.CA == "":
		return nil, nil, authErrorf("client configuration %s: no CA certificate (\"ca\")", path)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cfg.CA)) {
		return nil, nil, authErrorf("client configuration %s: the CA certificate (\"ca\") does not parse", path)
	}
	return addrs, pki.ClientTLS(pool), nil
}

// coordinatorSet reports whether --coordinator was given, on the command
// line or as DFS_COORDINATOR.
func (g *globals) coordinatorSet(cmd *cobra.Command) bool {
	if f := cmd.Flags().Lookup("coordinator"); f != nil && f.Changed {
		return true
	}
	_, ok := os.LookupEnv("DFS_COORDINATOR")
	return ok
}

func (g *globals) clientFor(cmd *cobra.Command) (*client.Client, error) {
	addrs, tc, err := g.clientSetup(cmd)
	if err != nil {
		return nil, err
	}
	return client.New(client.Config{Coordinators: addrs, TLS: tc, Logger: slog.Default()})
}

// explainTrust turns a failure to trust the cluster's certificate (the
// client configuration names another cluster's CA) into an
// authentication error that says so.
func explainTrust(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if strings.Contains(msg, "x509: certificate signed by unknown authority") || strings.Contains(msg, "certificate is not valid for") ||
		strings.Contains(msg, "x509: certificate is valid for") {
		return authErrorf("%v\nthe cluster's certificate is not one the client configuration trusts: its \"ca\" is another cluster's, "+
			"or the address is not one the certificate names. Use the configuration the cluster's server wrote (dfs server: DATA/client.conf; "+
			"name it with DFS_CONFIG or --config)", err)
	}
	return err
}
