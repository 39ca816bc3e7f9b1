package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/pki"
	"github.com/dfs-store/dfs/internal/rpc"
	"github.com/dfs-store/dfs/internal/s3"
)

// secureCluster starts a cluster on TLS under a CA of its own, and returns
// it with an admin client (the node certificate) and the CA's directory.
func secureCluster(t *testing.T, mod func(*cluster.Config)) (*cluster.Cluster, *client.Client, string) {
	t.Helper()
	caDir := filepath.Join(t.TempDir(), "ca")
	if err := pki.CreateCA(caDir); err != nil {
		t.Fatal(err)
	}
	node := issueNode(t, caDir)
	cl, admin := startCluster(t, func(cfg *cluster.Config) {
		cfg.TLS = node
		if mod != nil {
			mod(cfg)
		}
	})
	return cl, admin, caDir
}

// keyClient is a client of cl that calls with access key k.
func keyClient(t *testing.T, cl *cluster.Cluster, k client.AccessKey) *client.Client {
	t.Helper()
	c, err := cl.Client(client.Config{AccessKeyID: k.ID, SecretAccessKey: k.Secret, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, dfs.ErrDenied) {
		t.Fatalf("%s: %v, want access denied", what, err)
	}
}

// Access keys and grants, on the cluster's gRPC API: a key does what it
// was granted on a bucket and nothing else, an owner grants on its bucket
// only, admin calls need an admin, and a deleted key or a wrong secret is
// refused.
func TestAccessKeysAndGrants(t *testing.T) {
	cl, admin, _ := secureCluster(t, nil)
	ctx := context.Background()
	put := func(c *client.Client, path string, data []byte) error {
		_, err := c.Put(ctx, path, bytes.NewReader(data), client.PutOptions{})
		return err
	}
	for _, p := range []string{"photos/a.jpg", "docs/plan.txt", "top.txt"} {
		if err := put(admin, p, []byte("data of "+p)); err != nil {
			t.Fatal(err)
		}
	}
	who, err := admin.WhoAmI(ctx)
	if err != nil || !who.Admin || !who.Certificate {
		t.Fatalf("WhoAmI with the node certificate: %+v, %v; want an admin certificate", who, err)
	}

	alice, err := admin.CreateKey(ctx, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := admin.CreateKey(ctx, "bob", false)
	if err != nil {
		t.Fatal(err)
	}
	if !access.ValidID(alice.ID) || len(alice.Secret) != access.SecretLength || alice.ID == bob.ID || alice.Secret == bob.Secret {
		t.Fatalf("keys %+v and %+v: want distinct valid ids and secrets", alice, bob)
	}
	ac, bc := keyClient(t, cl, alice), keyClient(t, cl, bob)

	// No grant: nothing.
	_, err = ac.Stat(ctx, "photos/a.jpg")
	wantDenied(t, "stat without a grant", err)
	wantDenied(t, "put without a grant", put(ac, "photos/b.jpg", []byte("x")))
	_, err = ac.List(ctx, client.ListOptions{Delimiter: "/"})
	wantDenied(t, "list the root without a grant", err)

	// Read on photos.
	if _, err := admin.SetGrant(ctx, alice.ID, "photos", client.RightRead, 0); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := ac.Get(ctx, "photos/a.jpg", &got, client.GetOptions{}); err != nil || got.String() != "data of photos/a.jpg" {
		t.Fatalf("get with read on photos: %v %q", err, got.String())
	}
	_, err = ac.Stat(ctx, "docs/plan.txt")
	wantDenied(t, "stat in another bucket", err)
	_, err = ac.Stat(ctx, "top.txt")
	wantDenied(t, "stat a file at the root (its own bucket)", err)
	wantDenied(t, "put with read only", put(ac, "photos/b.jpg", []byte("x")))
	wantDenied(t, "delete with read only", ac.Delete(ctx, "photos/a.jpg"))
	l, err := ac.List(ctx, client.ListOptions{Delimiter: "/"})
	if err != nil || len(l.Files) != 0 || strings.Join(l.Prefixes, ",") != "photos/" {
		t.Fatalf("root listing with read on photos: %+v, %v; want photos/ alone", l, err)
	}
	l, err = ac.List(ctx, client.ListOptions{})
	if err != nil || len(l.Files) != 1 || l.Files[0].Path != "photos/a.jpg" {
		t.Fatalf("flat listing with read on photos: %+v, %v; want photos/a.jpg alone", l, err)
	}
	_, err = ac.List(ctx, client.ListOptions{Prefix: "docs/"})
	wantDenied(t, "list another bucket", err)

	// Admin calls.
	_, err = ac.ListKeys(ctx)
	wantDenied(t, "list keys", err)
	_, err = ac.CreateKey(ctx, "mallory", true)
	wantDenied(t, "create an admin key", err)
	_, err = ac.SetGrant(ctx, alice.ID, "docs", client.RightRead, 0)
	wantDenied(t, "grant itself another bucket", err)
	_, err = ac.Fsck(ctx, "", false)
	wantDenied(t, "fsck", err)
	if _, err := ac.Nodes(ctx); err != nil {
		t.Fatalf("nodes, the cluster's state, for any key: %v", err)
	}

	// An owner of photos grants on photos, and only there.
	if _, err := admin.SetGrant(ctx, bob.ID, "photos", client.RightOwner, 0); err != nil {
		t.Fatal(err)
	}
	k, err := bc.SetGrant(ctx, alice.ID, "photos", client.RightWrite, 0)
	if err != nil || k.Rights("photos") != client.RightRead|client.RightWrite {
		t.Fatalf("an owner grants write: %+v, %v; want read,write", k, err)
	}
	_, err = bc.SetGrant(ctx, alice.ID, "docs", client.RightRead, 0)
	wantDenied(t, "an owner of photos grants on docs", err)
	if err := put(ac, "photos/b.jpg", []byte("alice's")); err != nil {
		t.Fatalf("put after the owner's grant: %v", err)
	}
	if err := bc.Delete(ctx, "photos/b.jpg"); err != nil {
		t.Fatalf("the owner deletes in its bucket: %v", err)
	}
	// Revoking write leaves read.
	if k, err := bc.SetGrant(ctx, alice.ID, "photos", 0, client.RightWrite); err != nil || k.Rights("photos") != client.RightRead {
		t.Fatalf("revoke write: %+v, %v; want read", k, err)
	}

	// A wrong secret, a made-up key, and a deleted key are refused.
	wrong := alice
	wrong.Secret = strings.Repeat("x", access.SecretLength)
	_, err = keyClient(t, cl, wrong).Stat(ctx, "photos/a.jpg")
	wantDenied(t, "a wrong secret", err)
	ghost, _ := access.NewKey()
	_, err = keyClient(t, cl, client.AccessKey{ID: ghost, Secret: alice.Secret}).Stat(ctx, "photos/a.jpg")
	wantDenied(t, "an unknown key", err)
	if err := admin.DeleteKey(ctx, alice.ID); err != nil {
		t.Fatal(err)
	}
	_, err = ac.Stat(ctx, "photos/a.jpg")
	wantDenied(t, "a deleted key", err)
	keys, err := admin.ListKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != bob.ID || keys[0].Secret != "" {
		t.Fatalf("keys after the delete: %+v, %v; want bob alone, without a secret", keys, err)
	}
}

// Who may act for a key: only a gateway's certificate; a datanode's or a
// client without a certificate may not. A gateway acting for no one reads
// the cluster's state and nothing else.
func TestActAsNeedsAGatewayCertificate(t *testing.T) {
	cl, admin, caDir := secureCluster(t, nil)
	ctx := context.Background()
	if _, err := admin.Put(ctx, "photos/a.jpg", strings.NewReader("a"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	reader, err := admin.CreateKey(ctx, "reader", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetGrant(ctx, reader.ID, "photos", client.RightRead, 0); err != nil {
		t.Fatal(err)
	}
	as := func(n *pki.Node) *client.Client {
		c, err := cl.Client(client.Config{TLS: n.ClientTLS(), Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	gw := as(issueNode(t, caDir, pki.RoleGateway))
	dn := as(issueNode(t, caDir, pki.RoleDatanode))

	if _, err := gw.Stat(client.ActAs(ctx, reader.ID), "photos/a.jpg"); err != nil {
		t.Fatalf("a gateway acting for a reader of photos: %v", err)
	}
	wantDenied(t, "a gateway acting for a reader deletes", gw.Delete(client.ActAs(ctx, reader.ID), "photos/a.jpg"))
	_, err = gw.Stat(ctx, "photos/a.jpg")
	wantDenied(t, "a gateway acting for no one reads a file", err)
	if _, err := gw.Nodes(ctx); err != nil {
		t.Fatalf("a gateway acting for no one reads the node table: %v", err)
	}
	_, err = dn.Stat(client.ActAs(ctx, reader.ID), "photos/a.jpg")
	wantDenied(t, "a datanode's certificate acting for a key", err)
	_, err = dn.Stat(ctx, "photos/a.jpg")
	wantDenied(t, "a datanode's certificate", err)

	// Signing keys for S3: a gateway's certificate gets the key's, and no
	// one else does.
	sk, err := gw.SigningKey(ctx, reader.ID, "20261203", "us-east-1", "s3")
	if err != nil || !bytes.Equal(sk, s3.SigningKey(reader.Secret, "20261203", "us-east-1", "s3")) {
		t.Fatalf("a gateway's signing key for the reader: %x, %v", sk, err)
	}
	if _, err := gw.SigningKey(ctx, "DKNOBODYNOBODYNOBODY", "20261203", "us-east-1", "s3"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("a signing key for an unknown key: %v, want not found", err)
	}
	_, err = dn.SigningKey(ctx, reader.ID, "20261203", "us-east-1", "s3")
	wantDenied(t, "a datanode's certificate asks for a signing key", err)
	_, err = keyClient(t, cl, reader).SigningKey(ctx, reader.ID, "20261203", "us-east-1", "s3")
	wantDenied(t, "a key asks for its own signing key", err)
	_, err = gw.SigningKey(client.ActAs(ctx, reader.ID), reader.ID, "20261203", "us-east-1", "s3")
	wantDenied(t, "a gateway acting for a key asks for a signing key", err)

	// No certificate and no key: nothing.
	conn, err := rpc.DialTLS(cl.Addr(), caOnly(t, caDir))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = api.NewCoordinatorClient(conn).Stat(ctx, &api.StatRequest{Path: "photos/a.jpg"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a call with no credentials: %v, want Unauthenticated", err)
	}
	_, err = api.NewCoordinatorClient(conn).Stat(client.ActAs(ctx, reader.ID), &api.StatRequest{Path: "photos/a.jpg"})
	if code := status.Code(err); code != codes.PermissionDenied {
		t.Fatalf("acting for a key with no certificate: %v, want PermissionDenied", err)
	}
	// Two ids in one call are not an id.
	md := metadata.Pairs(access.KeyIDHeader, reader.ID, access.KeyIDHeader, reader.ID, access.SecretHeader, reader.Secret)
	_, err = api.NewCoordinatorClient(conn).Stat(metadata.NewOutgoingContext(ctx, md), &api.StatRequest{Path: "photos/a.jpg"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a call with two key ids: %v, want Unauthenticated", err)
	}
}

// Upload sessions are their key's: another key can neither allocate in
// one nor commit it; and one key's open sessions and chunks are bounded.
func TestUploadSessionsPerKey(t *testing.T) {
	cl, admin, caDir := secureCluster(t, func(cfg *cluster.Config) {
		cfg.Coordinator.MaxKeySessions = 3
		cfg.Coordinator.MaxKeyChunks = 50
	})
	ctx := context.Background()
	conns := map[string]api.CoordinatorClient{}
	keyMD := map[string]metadata.MD{}
	for _, name := range []string{"alice", "bob"} {
		k, err := admin.CreateKey(ctx, name, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.SetGrant(ctx, k.ID, name, client.RightWrite|client.RightRead, 0); err != nil {
			t.Fatal(err)
		}
		conn, err := rpc.DialTLS(cl.Addr(), caOnly(t, caDir))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conns[name] = api.NewCoordinatorClient(conn)
		keyMD[name] = metadata.Pairs(access.KeyIDHeader, k.ID, access.SecretHeader, k.Secret)
	}
	seq := 0
	alloc := func(who, session string, n int) (string, error) {
		req := &api.AllocateRequest{SessionId: session}
		for range n {
			h := sha256.Sum256([]byte(fmt.Sprint("per-key", seq)))
			seq++
			req.Chunks = append(req.Chunks, &api.ChunkSpec{Hash: h[:], Size: 1})
		}
		resp, err := conns[who].Allocate(metadata.NewOutgoingContext(ctx, keyMD[who]), req)
		if err != nil {
			return "", err
		}
		return resp.SessionId, nil
	}
	a, err := alloc("alice", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alloc("bob", a, 1); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("bob allocates in alice's session: %v, want PermissionDenied", err)
	}
	h := sha256.Sum256([]byte("bob's"))
	_, err = conns["bob"].Commit(metadata.NewOutgoingContext(ctx, keyMD["bob"]), &api.CommitRequest{Path: "bob/x", SessionId: a, ContentHash: h[:], Size: 0})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("bob commits alice's session: %v, want PermissionDenied", err)
	}
	if _, err := alloc("alice", a, 41); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("alice past 50 chunks: %v, want ResourceExhausted", err)
	}
	for i := range 2 {
		if _, err := alloc("alice", "", 1); err != nil {
			t.Fatalf("alice's session %d: %v", i+2, err)
		}
	}
	if _, err := alloc("alice", "", 1); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("alice's fourth session: %v, want ResourceExhausted", err)
	}
	// Bob's room is his own.
	if _, err := alloc("bob", "", 40); err != nil {
		t.Fatalf("bob, while alice is at her limits: %v", err)
	}
}

// caOnly is a TLS configuration that trusts the CA in caDir and presents
// no certificate.
func caOnly(t *testing.T, caDir string) *tls.Config {
	t.Helper()
	pool, err := pki.Pool(caDir)
	if err != nil {
		t.Fatal(err)
	}
	return pki.ClientTLS(pool)
}
