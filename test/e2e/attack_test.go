//go:build linux || darwin

package e2e

import (
	"bytes"
	"context"
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

	"google.golang.org/grpc/metadata"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/rpc"
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

// A forger against real processes: Mallory commits her own bytes under the
// hash of a report Alice will upload (through the API, as a lying client
// would); Alice's dfs put and dfs get then store and read her own bytes,
// and Mallory's path no longer reads. Claiming the hash of a stored file
// without its bytes is refused.
func TestForgedCommitCannotPoisonDedup(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoServer})
	type key struct {
		ID     string `json:"access_key_id"`
		Secret string `json:"secret_access_key"`
	}
	mallory := decodeJSON[key](t, c.mustDFS(t, "key", "create", "--json", "mallory"))
	alice := decodeJSON[key](t, c.mustDFS(t, "key", "create", "--json", "alice"))
	c.mustDFS(t, "bucket", "allow", "--read", "--write", "evil", mallory.ID)
	c.mustDFS(t, "bucket", "allow", "--read", "--write", "home", alice.ID)
	as := func(k key, args ...string) result {
		t.Helper()
		return runDFS(t, cmdTimeout, nil, []string{"DFS_ACCESS_KEY_ID=" + k.ID, "DFS_SECRET_ACCESS_KEY=" + k.Secret, "DFS_CERTS_DIR"}, c.args(args)...)
	}
	dir := t.TempDir()
	report, sum := randomFile(t, dir, "report.bin", 5<<20)
	claimed, _ := hex.DecodeString(sum)

	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(suiteCerts, "ca.crt"))
	pool.AppendCertsFromPEM(ca)
	tc := &tls.Config{RootCAs: pool}
	forge := func(path string, data []byte) error {
		ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs(access.KeyIDHeader, mallory.ID, access.SecretHeader, mallory.Secret))
		conn, err := rpc.DialTLS(c.coord, tc)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		co := api.NewCoordinatorClient(conn)
		h := sha256.Sum256(data)
		al, err := co.Allocate(ctx, &api.AllocateRequest{Chunks: []*api.ChunkSpec{{Hash: h[:], Size: int64(len(data))}}})
		if err != nil {
			t.Fatal(err)
		}
		if p := al.Placements[0]; !p.Have {
			var hops []dataplane.Hop
			for _, n := range p.Chain[1:] {
				hops = append(hops, dataplane.Hop{ID: dfs.NodeID(n.Id), Addr: n.Addr})
			}
			req, _ := http.NewRequest(http.MethodPut, "https://"+p.Chain[0].Addr+"/chunks/"+hex.EncodeToString(h[:]), bytes.NewReader(data))
			req.Header.Set(dataplane.TokenHeader, p.Token)
			if len(hops) > 0 {
				req.Header.Set(dataplane.ChainHeader, dataplane.FormatChain(hops))
			}
			resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("mallory's chunk: %s", resp.Status)
			}
		}
		_, err = co.Commit(ctx, &api.CommitRequest{Path: path, SessionId: al.SessionId, ContentHash: claimed, Size: int64(len(data)),
			Chunks: []*api.ChunkSpec{{Hash: h[:], Size: int64(len(data))}}})
		return err
	}
	if err := forge("evil/placeholder", []byte("mallory's bytes, not the report")); err != nil {
		t.Fatalf("the forgery, before anyone can tell: %v", err)
	}
	if r := as(alice, "put", report, "home/report.bin"); r.code != 0 {
		t.Fatalf("alice's put after the forgery: %s", r)
	}
	back := filepath.Join(dir, "back.bin")
	if r := as(alice, "get", "home/report.bin", back); r.code != 0 {
		t.Fatalf("alice's get: %s", r)
	}
	if got, _ := fileSHA(t, back); got != sum {
		t.Fatalf("alice reads %s, want her report %s", got, sum)
	}
	if r := as(mallory, "cat", "evil/placeholder"); r.code == 0 || r.stdout != "" || !strings.Contains(r.stderr, "forged") {
		t.Fatalf("mallory's forged path: %s; want a refusal saying it was forged", r)
	}
	if err := forge("evil/stolen", []byte("claims the report without having it")); err == nil || !strings.Contains(err.Error(), "hash mismatch") {
		t.Fatalf("a false claim of the stored report's hash: %v, want refused", err)
	}
	if r := as(mallory, "stat", "evil/stolen"); r.code != 3 {
		t.Fatalf("the refused claim left a path: %s", r)
	}
}
