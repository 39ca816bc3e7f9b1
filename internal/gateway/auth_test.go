package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/gateway"
	"github.com/dfs-store/dfs/internal/pki"
)

// secureEnv is a cluster on TLS with a gateway in front of it whose client
// holds a gateway's certificate only, and the cluster's admin client.
func secureEnv(t *testing.T) (*env, *client.Client) {
	t.Helper()
	cl, admin, node := secureCluster(t)
	c, err := cl.Client(client.Config{TLS: node("gw", pki.RoleGateway).ClientTLS(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Client: c, Keys: true, Logger: quiet(), NodePoll: 100 * time.Millisecond, CounterPoll: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		gw.Close()
		srv.Close()
		c.Close()
	})
	return &env{cl: cl, c: c, gw: gw, srv: srv}, admin
}

// secureCluster starts a cluster on TLS and returns it, its admin client,
// and a maker of node certificates under its CA.
func secureCluster(t *testing.T) (*cluster.Cluster, *client.Client, func(name string, roles ...string) *pki.Node) {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if err := pki.CreateCA(ca); err != nil {
		t.Fatal(err)
	}
	node := func(name string, roles ...string) *pki.Node {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o700)
		for _, f := range []string{pki.CACert, pki.CAKey} {
			b, _ := os.ReadFile(filepath.Join(ca, f))
			os.WriteFile(filepath.Join(d, f), b, 0o600)
		}
		if err := pki.CreateNode(d, []string{"127.0.0.1"}, roles); err != nil {
			t.Fatal(err)
		}
		n, err := pki.LoadNode(d, "")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	cl, err := cluster.Start(context.Background(), cluster.Config{Dir: t.TempDir(), GRPC: "127.0.0.1:0", TLS: node("all"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	admin, err := cl.Client(client.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	return cl, admin, node
}

// On a cluster with access keys, every API request proves its key (basic
// authentication, or the web UI's session cookie), and the key's rights
// decide: reads of granted buckets only, no writes without write, an
// event stream that shows only readable paths. Signing out ends the
// session.
func TestGatewayAccessKeys(t *testing.T) {
	e, admin := secureEnv(t)
	ctx := context.Background()
	for _, p := range []string{"photos/a.jpg", "docs/plan.txt"} {
		if _, err := admin.Put(ctx, p, strings.NewReader("data of "+p), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	reader, err := admin.CreateKey(ctx, "reader", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetGrant(ctx, reader.ID, "photos", client.RightRead, 0); err != nil {
		t.Fatal(err)
	}

	// No credentials: 401, saying how to sign in, and no browser box.
	a := e.do(t, "GET", "/api/v1/files/photos/a.jpg", nil)
	if a.code != http.StatusUnauthorized || a.header.Get("WWW-Authenticate") != `DFS-Key realm="dfs"` || !strings.Contains(a.errMsg(t), "access key") {
		t.Fatalf("no credentials: %d %s %s", a.code, a.header.Get("WWW-Authenticate"), a.body)
	}
	info := decode[map[string]any](t, e.do(t, "GET", "/api/v1/info", nil))
	if info["auth"] != "key" {
		t.Fatalf("info: %v, want auth key", info)
	}
	if a := e.do(t, "GET", "/healthz", nil); a.code != http.StatusOK {
		t.Fatalf("healthz without credentials: %d", a.code)
	}

	basic := func(id, secret string) string {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(id, secret)
		return r.Header.Get("Authorization")
	}
	auth := basic(reader.ID, reader.Secret)
	if a := e.do(t, "GET", "/api/v1/files/photos/a.jpg", nil, "Authorization", auth); a.code != http.StatusOK || string(a.body) != "data of photos/a.jpg" {
		t.Fatalf("read a granted bucket: %d %s", a.code, a.body)
	}
	if a := e.do(t, "GET", "/api/v1/files/docs/plan.txt", nil, "Authorization", auth); a.code != http.StatusForbidden {
		t.Fatalf("read another bucket: %d %s, want 403", a.code, a.body)
	}
	if a := e.do(t, "PUT", "/api/v1/files/photos/b.jpg", strings.NewReader("b"), "Authorization", auth); a.code != http.StatusForbidden {
		t.Fatalf("write with read only: %d %s, want 403", a.code, a.body)
	}
	if a := e.do(t, "DELETE", "/api/v1/files/photos/a.jpg", nil, "Authorization", auth); a.code != http.StatusForbidden {
		t.Fatalf("delete with read only: %d %s, want 403", a.code, a.body)
	}
	l := decode[struct{ Prefixes []string }](t, e.do(t, "GET", "/api/v1/files?delimiter=/", nil, "Authorization", auth))
	if strings.Join(l.Prefixes, ",") != "photos/" {
		t.Fatalf("root listing: %v, want photos/ alone", l.Prefixes)
	}
	if a := e.do(t, "GET", "/api/v1/files/photos/a.jpg", nil, "Authorization", basic(reader.ID, strings.Repeat("x", 40))); a.code != http.StatusUnauthorized {
		t.Fatalf("a wrong secret: %d %s, want 401", a.code, a.body)
	}

	// The web UI's sign-in: a wrong secret is refused, the right one gets
	// an HttpOnly, SameSite=Strict cookie that then stands for the key.
	signIn := func(id, secret string) answer {
		b, _ := json.Marshal(map[string]string{"access_key_id": id, "secret_access_key": secret})
		return e.do(t, "POST", "/api/v1/session", strings.NewReader(string(b)), "Content-Type", "application/json")
	}
	if a := signIn(reader.ID, "wrong-secret-of-some-length"); a.code != http.StatusUnauthorized {
		t.Fatalf("sign in with a wrong secret: %d %s", a.code, a.body)
	}
	a = signIn(reader.ID, reader.Secret)
	if a.code != http.StatusOK {
		t.Fatalf("sign in: %d %s", a.code, a.body)
	}
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == "dfs_session" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict", cookie)
	}
	who := decode[client.AccessKey](t, a)
	if who.ID != reader.ID || who.Grants["photos"] != "read" {
		t.Fatalf("sign-in answer %+v", who)
	}
	ck := cookie.Name + "=" + cookie.Value
	if a := e.do(t, "GET", "/api/v1/stat/photos/a.jpg", nil, "Cookie", ck); a.code != http.StatusOK {
		t.Fatalf("stat with the session: %d %s", a.code, a.body)
	}
	if a := e.do(t, "GET", "/api/v1/stat/docs/plan.txt", nil, "Cookie", ck); a.code != http.StatusForbidden {
		t.Fatalf("stat another bucket with the session: %d %s, want 403", a.code, a.body)
	}
	// A page of another site cannot sign in with the user's browser.
	b, _ := json.Marshal(map[string]string{"access_key_id": reader.ID, "secret_access_key": reader.Secret})
	if a := e.do(t, "POST", "/api/v1/session", strings.NewReader(string(b)), "Content-Type", "application/json", "Sec-Fetch-Site", "cross-site"); a.code != http.StatusForbidden {
		t.Fatalf("a cross-site sign-in: %d %s, want 403", a.code, a.body)
	}

	// The event stream shows the paths the key may read, and no others.
	ev := e.events(t, "Cookie", ck)
	for _, p := range []string{"docs/secret.txt", "photos/new.jpg"} {
		if _, err := admin.Put(ctx, p, strings.NewReader(p), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ev.waitFor(t, "photos/new.jpg", func(kind string, data []byte) bool {
		return kind == "file" && strings.Contains(string(data), "photos/new.jpg")
	})
	for _, x := range ev.seen {
		if strings.Contains(string(x.data), "docs/") {
			t.Fatalf("the reader's event stream showed %s %s", x.kind, x.data)
		}
	}

	// Signing out ends the session.
	if a := e.do(t, "DELETE", "/api/v1/session", nil, "Cookie", ck); a.code != http.StatusNoContent {
		t.Fatalf("sign out: %d %s", a.code, a.body)
	}
	if a := e.do(t, "GET", "/api/v1/stat/photos/a.jpg", nil, "Cookie", ck); a.code != http.StatusUnauthorized {
		t.Fatalf("the session after sign-out: %d %s, want 401", a.code, a.body)
	}
}
