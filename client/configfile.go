package client

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dfs-store/dfs/internal/pki"
)

// ConfigFile is a client configuration file: where a cluster is, how to
// trust it, and the access key to call it with. 'dfs server --data DIR'
// writes one to DIR/client.conf; the dfs command reads the one named by
// DFS_CONFIG (or --config), else ~/.config/dfs/config.
type ConfigFile struct {
	// Coordinators are the coordinators' gRPC addresses.
	Coordinators []string `json:"coordinators"`
	// CA is the cluster CA's certificate, PEM: servers are verified
	// against it.
	CA string `json:"ca,omitempty"`
	// Insecure says the cluster runs in plain text (--insecure).
	Insecure bool `json:"insecure,omitempty"`
	// AccessKeyID and SecretAccessKey are the access key to call with.
	AccessKeyID     string `json:"access_key_id,omitempty"`
	SecretAccessKey string `json:"secret_access_key,omitempty"`
	// ServerData is the data directory of the dfs server that wrote the
	// file, if one did: it rewrites its own files, never a user's.
	ServerData string `json:"server_data,omitempty"`
}

// ReadConfigFile reads a client configuration file.
func ReadConfigFile(path string) (*ConfigFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c ConfigFile
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("client configuration %s: %v", path, err)
	}
	return &c, nil
}

// WriteConfigFile writes c to path, 0600 (it holds a secret), replacing
// what is there.
func WriteConfigFile(path string, c *ConfigFile) error {
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

// Config returns the client configuration the file describes.
func (c *ConfigFile) Config() (Config, error) {
	cfg := Config{Coordinators: c.Coordinators, AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey}
	if c.Insecure {
		return cfg, nil
	}
	if c.CA == "" {
		return Config{}, fmt.Errorf("client configuration: no CA certificate (\"ca\")")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.CA)) {
		return Config{}, fmt.Errorf("client configuration: the CA certificate (\"ca\") does not parse")
	}
	cfg.TLS = pki.ClientTLS(pool)
	return cfg, nil
}
