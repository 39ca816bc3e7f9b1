package cluster_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/pki"
)

// A datanode serves a client's chunk GET or PUT only with a capability
// token the coordinator made for that chunk (and, for a PUT, for that node
// and chain): none, a forged one, one for another chunk, chain or node, or
// an expired one is refused and stores nothing. Peers with a datanode's
// certificate need none; a gateway's certificate does.
func TestCapabilityTokens(t *testing.T) {
	cl, admin, caDir := secureCluster(t, nil)
	ctx := context.Background()
	data := randomBytes(64<<10, 3)
	if _, err := admin.Put(ctx, "b/one.bin", bytes.NewReader(data), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	reader, err := admin.CreateKey(ctx, "reader", false)
	if err != nil {
		t.Fatal(err)
	}
	admin.SetGrant(ctx, reader.ID, "b", client.RightRead|client.RightWrite, 0)
	kc := keyClient(t, cl, reader)
	// The key's client reads and writes through tokens.
	var got bytes.Buffer
	if _, err := kc.Get(ctx, "b/one.bin", &got, client.GetOptions{}); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("get with tokens: %v", err)
	}
	if _, err := kc.Put(ctx, "b/two.bin", bytes.NewReader(randomBytes(64<<10, 4)), client.PutOptions{}); err != nil {
		t.Fatalf("put with tokens: %v", err)
	}
	loc, err := kc.Locate(ctx, "b/one.bin")
	if err != nil || len(loc.Chunks) != 1 || loc.Chunks[0].Token == "" {
		t.Fatalf("locate: %+v, %v; want one chunk with a token", loc, err)
	}
	ch := loc.Chunks[0]
	node := cl.Nodes[0]

	do := func(tc *tls.Config, method, url, token, chain string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		if body == nil {
			req.Body = nil
		}
		if token != "" {
			req.Header.Set(dataplane.TokenHeader, token)
		}
		if chain != "" {
			req.Header.Set(dataplane.ChainHeader, chain)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	anon := caOnly(t, caDir)
	getURL := "https://" + node.Addr() + "/chunks/" + ch.Hash.String()
	if code, _ := do(anon, "GET", getURL, ch.Token, "", nil); code != http.StatusOK {
		t.Fatalf("GET with the lookup's token: %d", code)
	}
	id, secret, err := cl.Coordinator.Meta.TokenKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := dataplane.TokenKey{ID: id, Secret: secret}
	forged := dataplane.TokenKey{ID: id, Secret: bytes.Repeat([]byte{7}, 32)}
	other := dfs.Sum([]byte("another chunk"))
	for name, tok := range map[string]string{
		"no token":              "",
		"a forged token":        forged.GetToken(ch.Hash, time.Now().Add(time.Hour)),
		"another chunk's token": key.GetToken(other, time.Now().Add(time.Hour)),
		"an expired token":      key.GetToken(ch.Hash, time.Now().Add(-time.Second)),
	} {
		if code, body := do(anon, "GET", getURL, tok, "", nil); code != http.StatusForbidden {
			t.Errorf("GET with %s: %d %s, want 403", name, code, body)
		}
	}
	gw := issueNode(t, caDir, pki.RoleGateway)
	if code, _ := do(gw.ClientTLS(), "GET", getURL, "", "", nil); code != http.StatusForbidden {
		t.Errorf("GET with a gateway's certificate and no token: %d, want 403", code)
	}
	dn := issueNode(t, caDir, pki.RoleDatanode)
	if code, _ := do(dn.ClientTLS(), "GET", getURL, "", "", nil); code != http.StatusOK {
		t.Errorf("GET with a datanode's certificate: %d, want 200", code)
	}

	// PUTs: the token pins the chunk, the node and the chain.
	blob := randomBytes(4<<10, 9)
	h := dfs.Sum(blob)
	chain := dataplane.FormatChain([]dataplane.Hop{{ID: cl.Nodes[1].ID(), Addr: cl.Nodes[1].Addr()}})
	putURL := "https://" + node.Addr() + "/chunks/" + h.String()
	good := key.PutToken(h, node.ID(), chain, time.Now().Add(time.Hour))
	foreign := dataplane.FormatChain([]dataplane.Hop{{ID: cl.Nodes[1].ID(), Addr: "127.0.0.1:1"}})
	for name, c := range map[string]struct{ tok, chain string }{
		"no token":                {"", chain},
		"a chain to another host": {good, foreign},
		"the chain cut":           {good, ""},
		"another node's token":    {key.PutToken(h, cl.Nodes[1].ID(), chain, time.Now().Add(time.Hour)), chain},
		"a GET token":             {key.GetToken(h, time.Now().Add(time.Hour)), chain},
		"an expired token":        {key.PutToken(h, node.ID(), chain, time.Now().Add(-time.Second)), chain},
	} {
		if code, body := do(anon, "PUT", putURL, c.tok, c.chain, blob); code != http.StatusForbidden || !strings.Contains(body, "token") {
			t.Errorf("PUT with %s: %d %s, want 403", name, code, body)
		}
	}
	for _, n := range cl.Nodes {
		if _, _, err := n.Store().Open(h); err == nil {
			t.Fatalf("node %s stored a chunk of a refused PUT", n.ID())
		}
	}
	if code, body := do(anon, "PUT", putURL, good, chain, blob); code != http.StatusOK {
		t.Fatalf("PUT with its token: %d %s", code, body)
	}
	for _, n := range cl.Nodes[:2] {
		f, _, err := n.Store().Open(h)
		if err != nil {
			t.Errorf("node %s after the PUT along its chain: %v", n.ID(), err)
			continue
		}
		f.Close()
	}
}
