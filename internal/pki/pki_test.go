package pki_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dfs-store/dfs/internal/pki"
)

// newCA makes a CA and a node certificate for 127.0.0.1 with roles in a
// fresh directory.
func newCA(t *testing.T, roles ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := pki.CreateNode(dir, []string{"127.0.0.1", "localhost"}, roles); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Keys are private to their owner, and nothing is ever overwritten.
func TestCreateModesAndNoOverwrite(t *testing.T) {
	dir := newCA(t)
	if err := pki.CreateClient(dir, "alice"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("certs directory mode %v, %v; want 0700", st.Mode().Perm(), err)
	}
	for _, f := range []string{pki.CAKey, pki.NodeKey, pki.ClientKey("alice")} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v; want 0600", f, st.Mode().Perm(), err)
		}
	}
	caBefore, _ := os.ReadFile(filepath.Join(dir, pki.CACert))
	if err := pki.CreateCA(dir); !errors.Is(err, pki.ErrExists) {
		t.Fatalf("a second CA over the first: %v, want ErrExists", err)
	}
	if err := pki.CreateNode(dir, []string{"h"}, nil); !errors.Is(err, pki.ErrExists) {
		t.Fatalf("a second node certificate over the first: %v, want ErrExists", err)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(dir, pki.CACert)); string(caAfter) != string(caBefore) {
		t.Fatal("the CA changed")
	}
	if err := pki.CreateNode(t.TempDir(), []string{"h"}, nil); err == nil || !strings.Contains(err.Error(), "create-ca") {
		t.Fatalf("a node certificate without a CA: %v, want an error naming create-ca", err)
	}
	if err := pki.CreateNode(filepath.Join(t.TempDir(), "x"), []string{"h"}, []string{"admin"}); err == nil || !strings.Contains(err.Error(), "role") {
		t.Fatalf("an unknown role: %v", err)
	}
	if err := pki.CreateClient(dir, "a b"); err == nil {
		t.Fatal("a client name with a space was accepted")
	}
}

// LoadNode checks the role a process is started for.
func TestLoadNodeRole(t *testing.T) {
	dir := newCA(t, pki.RoleDatanode)
	n, err := pki.LoadNode(dir, pki.RoleDatanode)
	if err != nil || !slices.Equal(n.Roles, []string{pki.RoleDatanode}) {
		t.Fatalf("load as datanode: %v, %v", n, err)
	}
	if _, err := pki.LoadNode(dir, pki.RoleCoordinator); err == nil || !strings.Contains(err.Error(), "coordinator role") {
		t.Fatalf("a datanode certificate loaded as a coordinator: %v", err)
	}
}

// handshake serves one TLS connection with server and dials it with client;
// it returns the peer the server saw, or the handshake's error.
func handshake(t *testing.T, server, client *tls.Config) (pki.Peer, bool, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		p   pki.Peer
		ok  bool
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			got <- result{err: err}
			return
		}
		st := tc.ConnectionState()
		p, ok := pki.PeerOf(&st)
		got <- result{p: p, ok: ok}
		io.WriteString(c, "x")
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		// TLS 1.3 reports a refused client certificate on the first read.
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	r := <-got
	if r.err != nil {
		return pki.Peer{}, false, r.err
	}
	return r.p, r.ok, err
}

// Peers are verified against the cluster's CA, and a node's roles reach
// the server; a certificate of another CA is refused both ways, a client
// without a certificate is no node.
func TestPeers(t *testing.T) {
	dir := newCA(t, pki.RoleCoordinator, pki.RoleWorker)
	node, err := pki.LoadNode(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := handshake(t, node.ServerTLS(false), node.ClientTLS())
	if err != nil || !ok || !p.Holds(pki.RoleCoordinator) || !p.Holds(pki.RoleWorker) || p.Holds(pki.RoleDatanode) || len(p.Key) != 64 {
		t.Fatalf("node peer: %+v, %v, %v", p, ok, err)
	}
	// A client with the CA but no certificate: served, but no peer.
	_, ok, err = handshake(t, node.ServerTLS(false), pki.ClientTLS(node.CAs))
	if err != nil || ok {
		t.Fatalf("a client without a certificate: peer %v, %v", ok, err)
	}
	// ... and refused where a certificate is required.
	if _, _, err := handshake(t, node.ServerTLS(true), pki.ClientTLS(node.CAs)); err == nil {
		t.Fatal("a client without a certificate passed a server that requires one")
	}
	// A client certificate: a peer with no roles.
	if err := pki.CreateClient(dir, "ops"); err != nil {
		t.Fatal(err)
	}
	cc, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.ClientCert("ops")), filepath.Join(dir, pki.ClientKey("ops")))
	if err != nil {
		t.Fatal(err)
	}
	ccfg := pki.ClientTLS(node.CAs)
	ccfg.Certificates = []tls.Certificate{cc}
	p, ok, err = handshake(t, node.ServerTLS(true), ccfg)
	if err != nil || !ok || p.Name != "ops" || len(p.Roles) != 0 {
		t.Fatalf("client peer: %+v, %v, %v", p, ok, err)
	}

	// Another cluster's node: refused by the server, and its server
	// refused by the client.
	other, err := pki.LoadNode(newCA(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := handshake(t, node.ServerTLS(false), other.ClientTLS()); err == nil {
		t.Fatal("a certificate of another CA was accepted by the server")
	}
	if _, _, err := handshake(t, other.ServerTLS(false), node.ClientTLS()); err == nil {
		t.Fatal("a server with a certificate of another CA was accepted by the client")
	}
	// Plain text to a TLS port: no handshake.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", node.ServerTLS(false))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(c)
	c.Close()
	if strings.Contains(string(b), "HTTP/1.1 200") {
		t.Fatal("plain HTTP was answered on a TLS port")
	}
}
