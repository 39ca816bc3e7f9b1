package cluster_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/datanode"
	"github.com/dfs-store/dfs/internal/pki"
	"github.com/dfs-store/dfs/internal/rpc"
)

// issueNode makes a node certificate with roles under the CA in caDir, in
// a directory of its own.
func issueNode(t *testing.T, caDir string, roles ...string) *pki.Node {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{pki.CACert, pki.CAKey} {
		b, err := os.ReadFile(filepath.Join(caDir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o600)
	}
	if err := pki.CreateNode(dir, []string{"127.0.0.1", "localhost"}, roles); err != nil {
		t.Fatal(err)
	}
	n, err := pki.LoadNode(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A cluster on TLS works end to end, and the roles in the certificates
// are enforced: a datanode needs the datanode role to register, a
// datanode's control port serves only the coordinator role, and a caller
// without a certificate gets neither.
func TestTLSRoles(t *testing.T) {
	slow(t, "a cluster over TLS, every role checked")
	caDir := filepath.Join(t.TempDir(), "ca")
	if err := pki.CreateCA(caDir); err != nil {
		t.Fatal(err)
	}
	node := issueNode(t, caDir) // every role
	cl, c := startCluster(t, func(cfg *cluster.Config) { cfg.TLS = node })
	ctx := context.Background()
	data := randomBytes(3<<20, 7)
	if _, err := c.Put(ctx, "tls/a.bin", bytes.NewReader(data), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := c.Get(ctx, "tls/a.bin", &got, client.GetOptions{}); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("get over TLS: %v, %d bytes", err, got.Len())
	}

	// A client in plain text gets nowhere.
	plain, err := client.New(client.Config{Coordinators: []string{cl.Addr()}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := plain.Stat(sctx, "tls/a.bin"); err == nil {
		t.Fatal("a plain-text client read a TLS cluster")
	}
	cancel()

	// A host with a gateway's certificate cannot register as a datanode.
	gw := issueNode(t, caDir, pki.RoleGateway)
	if err := cl.AddDatanodeWith(t.TempDir(), func(dc *datanode.Config) { dc.TLS = gw; dc.Logger = quiet() }); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if n := len(cl.Coordinator.Server.NodeTable()); n != 3 {
			t.Fatalf("%d nodes after a gateway's certificate tried to register as a datanode, want 3", n)
		}
	}
	// The Registry service directly: no certificate, and the wrong role.
	for name, tc := range map[string]*pki.Node{"no certificate": nil, "a gateway's": gw} {
		cfg := pki.ClientTLS(node.CAs)
		if tc != nil {
			cfg = tc.ClientTLS()
		}
		conn, err := rpc.DialTLS(cl.Addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = api.NewRegistryClient(conn).Heartbeat(ctx, &api.HeartbeatRequest{NodeId: string(cl.Nodes[0].ID())})
		conn.Close()
		if code := status.Code(err); code != codes.Unauthenticated && code != codes.PermissionDenied {
			t.Errorf("heartbeat with %s certificate: %v, want it refused", name, err)
		}
	}

	// A datanode id is bound to the certificate it registered with: a
	// host with another datanode certificate of the same cluster can
	// neither take the id over (at another address) nor heartbeat for it.
	dnOnly := issueNode(t, caDir, pki.RoleDatanode)
	victim := cl.Nodes[0]
	thief := t.TempDir()
	os.WriteFile(filepath.Join(thief, "node-id"), []byte(victim.ID()+"\n"), 0o600)
	if err := cl.AddDatanodeWith(thief, func(dc *datanode.Config) { dc.TLS = dnOnly; dc.Logger = quiet() }); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for _, ni := range cl.Coordinator.Server.NodeTable() {
			if ni.ID == victim.ID() && ni.Addr != victim.Addr() {
				t.Fatalf("node %s moved to %s, the address of a host with another certificate", victim.ID(), ni.Addr)
			}
		}
	}
	conn, err := rpc.DialTLS(cl.Addr(), dnOnly.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	_, err = api.NewRegistryClient(conn).Heartbeat(ctx, &api.HeartbeatRequest{NodeId: string(victim.ID())})
	conn.Close()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a heartbeat for %s with another certificate: %v, want PermissionDenied", victim.ID(), err)
	}

	// A datanode's control port: a datanode's certificate may not delete.
	conn, err = rpc.DialTLS(cl.Nodes[0].GRPCAddr(), dnOnly.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	_, err = api.NewDatanodeClient(conn).Info(ctx, &api.InfoRequest{})
	conn.Close()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a datanode's certificate on another's control port: %v, want PermissionDenied", err)
	}
	// ... and a caller without a certificate does not get through the
	// handshake.
	conn, err = rpc.DialTLS(cl.Nodes[0].GRPCAddr(), pki.ClientTLS(node.CAs))
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	_, err = api.NewDatanodeClient(conn).Info(sctx, &api.InfoRequest{})
	cancel()
	conn.Close()
	if err == nil {
		t.Fatal("a caller without a certificate reached a datanode's control port")
	}
	// A coordinator's certificate does get through.
	conn, err = rpc.DialTLS(cl.Nodes[0].GRPCAddr(), node.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := api.NewDatanodeClient(conn).Info(ctx, &api.InfoRequest{}); err != nil {
		t.Fatalf("a coordinator's certificate on a control port: %v", err)
	}
}
