//go:build linux || darwin

package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An attacker on the network with a key of the cluster but no rights, or
// with no key at all, against real processes: every command that would
// read, write, delete or administer is refused with exit 5 and loses
// nothing; the REST API answers 401/403; the datanodes' data port refuses
// chunk reads and writes without a capability token, and a chain that
// sends data to a foreign host.
func TestAttackerWithoutRights(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoServer})
	dir := t.TempDir()
	local, sum := randomFile(t, dir, "secret.bin", 300<<10)
	c.put(t, local, "vault/secret.bin")

	// Mallory's key holds nothing; Eve's reads another bucket.
	type key struct {
		ID     string `json:"access_key_id"`
		Secret string `json:"secret_access_key"`
	}
	mallory := decodeJSON[key](t, c.mustDFS(t, "key", "create", "--json", "mallory"))
	eve := decodeJSON[key](t, c.mustDFS(t, "key", "create", "--json", "eve"))
	c.mustDFS(t, "bucket", "allow", "--read", "--write", "public", eve.ID)
	as := func(k key, args ...string) result {
		t.Helper()
		return runDFS(t, cmdTimeout, nil, []string{"DFS_ACCESS_KEY_ID=" + k.ID, "DFS_SECRET_ACCESS_KEY=" + k.Secret, "DFS_CERTS_DIR"}, c.args(args)...)
	}
	other := filepath.Join(dir, "other.bin")
	os.WriteFile(other, []byte("mallory's bytes"), 0o600)
	for _, k := range []key{mallory, eve, {ID: mallory.ID, Secret: strings.Repeat("z", 40)}} {
		for _, args := range [][]string{
			{"ls", "vault/"},
			{"stat", "vault/secret.bin"},
			{"get", "vault/secret.bin", filepath.Join(dir, "stolen.bin")},
			{"put", other, "vault/secret.bin"},
			{"rm", "vault/secret.bin"},
			{"key", "create", "mallory2", "--admin"},
			{"key", "list"},
			{"bucket", "allow", "--read", "vault", k.ID},
			{"fsck"},
			{"gc"},
			{"jobs"},
		} {
			if r := as(k, args...); r.code != exitAuthCode {
				t.Errorf("%s as %s: %s; want exit %d", strings.Join(args, " "), k.ID, r, exitAuthCode)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "stolen.bin")); err == nil {
		b, _ := os.ReadFile(filepath.Join(dir, "stolen.bin"))
		if len(b) > 0 {
			t.Fatalf("a refused get wrote %d bytes", len(b))
		}
	}
	// Eve does what she was granted.
	if r := as(eve, "put", other, "public/x.bin"); r.code != 0 {
		t.Fatalf("eve's put in her bucket: %s", r)
	}
	if r := as(eve, "ls"); r.code != 0 || strings.Contains(r.stdout, "vault") || !strings.Contains(r.stdout, "public/") {
		t.Fatalf("eve's root listing: %s; want public/ and no vault", r)
	}
	// Nothing was lost or changed.
	st := c.stat(t, "vault/secret.bin")
	if st.SHA256 != sum {
		t.Fatalf("vault/secret.bin is now %s, want %s", st.SHA256, sum)
	}

	// The REST API: no key 401, a key without the right 403.
	get := func(id, secret, path string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+c.http+path, nil)
		if id != "" {
			req.SetBasicAuth(id, secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, x := range []struct {
		id, secret, path string
		want             int
	}{
		{"", "", "/api/v1/files/vault/secret.bin", http.StatusUnauthorized},
		{mallory.ID, mallory.Secret, "/api/v1/files/vault/secret.bin", http.StatusForbidden},
		{mallory.ID, "wrong-secret-wrong-secret", "/api/v1/files/vault/secret.bin", http.StatusUnauthorized},
		{suiteKeyID, suiteSecret, "/api/v1/files/vault/secret.bin", http.StatusOK},
	} {
		if got := get(x.id, x.secret, x.path); got != x.want {
			t.Errorf("GET %s as %q: %d, want %d", x.path, x.id, got, x.want)
		}
	}

	// The datanodes' data port, from outside with the cluster's CA but no
	// certificate and no token.
	ca, err := os.ReadFile(filepath.Join(suiteCerts, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	nodes := decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json"))
	chunk := st.Chunks[0].Hash
	resp, err := hc.Get("https://" + nodes[0].Addr + "/chunks/" + chunk)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || bytes.Contains(body, []byte("mallory")) {
		t.Errorf("GET a chunk with no token: %d %.200s, want 403", resp.StatusCode, body)
	}
	blob := []byte("an orphan chunk nobody allocated")
	h := sha256Hex(blob)
	req, _ := http.NewRequest(http.MethodPut, "https://"+nodes[0].Addr+"/chunks/"+h, bytes.NewReader(blob))
	req.Header.Set("X-Dfs-Chain", nodes[1].ID+"@127.0.0.1:1")
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("PUT a chunk with no token and a chain to a foreign host: %d %.200s, want 403", resp.StatusCode, body)
	}
	for _, n := range decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json")) {
		if n.Chunks != nodes[0].Chunks && n.ID == nodes[0].ID {
			t.Errorf("node %s holds %d chunks after the refused PUT, %d before", n.ID, n.Chunks, nodes[0].Chunks)
		}
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
