package main

import (
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
// or ~/.config/dfs/config): where the cluster is, how to trust it, and
// the access key to call it with.
type clientConfig = client.ConfigFile

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
	c, err := client.ReadConfigFile(path)
	if errors.Is(err, fs.ErrNotExist) && !named {
		return nil, path, nil
	}
	if err != nil {
		return nil, path, authErrorf("client configuration: %v", err)
	}
	return c, path, nil
}

// clientSetup is how a client command reaches the cluster: the
// coordinators (--coordinator when given, else the configuration's), the
// TLS to trust them with (nil: plain text), and the access key to call
// with (DFS_ACCESS_KEY_ID and DFS_SECRET_ACCESS_KEY, else the
// configuration's). With --certs-dir, the command proves who it is with
// that directory's node certificate instead of a key.
func (g *globals) clientSetup(cmd *cobra.Command) (client.Config, error) {
	cfg, path, err := g.loadClientConfig()
	if err != nil {
		return client.Config{}, err
	}
	addrs := splitList(g.coordinators)
	if cfg != nil && len(cfg.Coordinators) > 0 && !g.coordinatorSet(cmd) {
		addrs = cfg.Coordinators
	}
	if len(addrs) == 0 {
		return client.Config{}, usagef("--coordinator: no address")
	}
	out := client.Config{Coordinators: addrs, Logger: slog.Default()}
	switch {
	case g.insecure || (cfg != nil && cfg.Insecure):
		return out, nil
	case g.certsDir != "":
		n, err := pki.LoadNode(g.certsDir, "")
		if err != nil {
			return client.Config{}, authErrorf("--certs-dir %s: %v", g.certsDir, err)
		}
		out.TLS = n.ClientTLS()
		return out, nil
	case cfg == nil:
		where := "~/.config/dfs/config"
		if path != "" {
			where = path
		}
		return client.Config{}, authErrorf("no client configuration (looked for %s): it holds the cluster's CA certificate that a client needs to trust the cluster, "+
			"and an access key. 'dfs server --data DIR' writes one to DIR/client.conf and, if you have none, to ~/.config/dfs/config; "+
			"name one with DFS_CONFIG or --config. For a cluster run with --insecure, use --insecure", where)
	}
	fc, err := cfg.Config()
	if err != nil {
		return client.Config{}, authErrorf("%s: %v", path, err)
	}
	out.TLS, out.AccessKeyID, out.SecretAccessKey = fc.TLS, fc.AccessKeyID, fc.SecretAccessKey
	id, idSet := os.LookupEnv("DFS_ACCESS_KEY_ID")
	secret, secretSet := os.LookupEnv("DFS_SECRET_ACCESS_KEY")
	if idSet || secretSet {
		if id == "" || secret == "" {
			return client.Config{}, authErrorf("DFS_ACCESS_KEY_ID and DFS_SECRET_ACCESS_KEY go together: set both, or neither to use the client configuration's key")
		}
		out.AccessKeyID, out.SecretAccessKey = id, secret
	}
	if out.AccessKeyID == "" {
		return client.Config{}, authErrorf("no access key: set DFS_ACCESS_KEY_ID and DFS_SECRET_ACCESS_KEY, or put access_key_id and secret_access_key "+
			"in the client configuration (%s). An admin makes keys with 'dfs key create NAME'; 'dfs server' writes its admin key to DATA/client.conf", path)
	}
	return out, nil
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
	cfg, err := g.clientSetup(cmd)
	if err != nil {
		return nil, err
	}
	return client.New(cfg)
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
