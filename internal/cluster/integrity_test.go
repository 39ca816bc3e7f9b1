package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/rpc"
)

// forge commits path as key k with the bytes data, claiming the content
// hash claimed: what a client that lies about its file's hash sends.
func forge(t *testing.T, cl *cluster.Cluster, caDir string, k client.AccessKey, path string, claimed dfs.ContentHash, data []byte) error {
	t.Helper()
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs(access.KeyIDHeader, k.ID, access.SecretHeader, k.Secret))
	conn, err := rpc.DialTLS(cl.Addr(), caOnly(t, caDir))
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
		req, _ := http.NewRequest(http.MethodPut, "https://"+p.Chain[0].Addr+"/chunks/"+dfs.Hash(h).String(), bytes.NewReader(data))
		req.Header.Set(dataplane.TokenHeader, p.Token)
		if len(hops) > 0 {
			req.Header.Set(dataplane.ChainHeader, dataplane.FormatChain(hops))
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: caOnly(t, caDir)}, Timeout: 10 * time.Second}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("forger's chunk PUT: %s", resp.Status)
		}
	}
	_, err = co.Commit(ctx, &api.CommitRequest{Path: path, SessionId: al.SessionId, ContentHash: claimed[:], Size: int64(len(data)),
		Chunks: []*api.ChunkSpec{{Hash: h[:], Size: int64(len(data))}}})
	return rpc.FromStatus(err)
}

// No hash a client claims is trusted for dedup: a forger who commits its
// own bytes under the hash of a file it expects another user to upload
// does not get that user's upload to return its bytes (the forged content
// is found out and replaced, and the forger's path no longer reads), and a
// client that claims the hash of a stored file without its bytes is
// refused and gets nothing.
func TestDedupCannotBePoisoned(t *testing.T) {
	slow(t, "several uploads of forged chunks")
	cl, admin, caDir := secureCluster(t, nil)
	ctx := context.Background()
	mallory, _ := admin.CreateKey(ctx, "mallory", false)
	alice, _ := admin.CreateKey(ctx, "alice", false)
	admin.SetGrant(ctx, mallory.ID, "evil", client.RightRead|client.RightWrite, 0)
	admin.SetGrant(ctx, alice.ID, "home", client.RightRead|client.RightWrite, 0)
	ac := keyClient(t, cl, alice)

	real := randomBytes(5<<20, 11) // several chunks
	claimed := dfs.ContentHash(sha256.Sum256(real))
	if err := forge(t, cl, caDir, mallory, "evil/placeholder", claimed, []byte("mallory's bytes")); err != nil {
		t.Fatalf("the forged commit (not yet found out): %v", err)
	}

	// Alice uploads the real file: her path reads her bytes.
	if _, err := ac.Put(ctx, "home/report.bin", bytes.NewReader(real), client.PutOptions{}); err != nil {
		t.Fatalf("alice's upload after the forgery: %v", err)
	}
	var got bytes.Buffer
	if _, err := ac.Get(ctx, "home/report.bin", &got, client.GetOptions{}); err != nil || !bytes.Equal(got.Bytes(), real) {
		t.Fatalf("alice reads %d bytes (%v); want her %d", got.Len(), err, len(real))
	}
	// Mallory's path no longer reads, neither her bytes nor Alice's.
	mc := keyClient(t, cl, mallory)
	got.Reset()
	if _, err := mc.Get(ctx, "evil/placeholder", &got, client.GetOptions{}); err == nil || !strings.Contains(err.Error(), "forged") || got.Len() != 0 {
		t.Fatalf("mallory's forged path: %d bytes, %v; want a refusal", got.Len(), err)
	}

	// A claim of the stored file's hash with other bytes (to read Alice's
	// file without having it) is refused, and commits nothing.
	err := forge(t, cl, caDir, mallory, "evil/stolen", claimed, []byte("I do not have it"))
	if err == nil || !strings.Contains(err.Error(), "hash mismatch") {
		t.Fatalf("a false claim of a stored hash: %v, want refused", err)
	}
	if _, err := mc.Stat(ctx, "evil/stolen"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("the refused commit left a path: %v", err)
	}

	// The same bytes cut another way are honest: they share the content.
	other, err := cl.Client(client.Config{AccessKeyID: alice.ID, SecretAccessKey: alice.Secret, Logger: quiet(),
		MinChunk: 64 << 10, AvgChunk: 128 << 10, MaxChunk: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	res, err := other.Put(ctx, "home/copy.bin", bytes.NewReader(real), client.PutOptions{})
	if err != nil || !res.Duplicate {
		t.Fatalf("the same bytes in smaller chunks: %+v, %v; want a duplicate", res, err)
	}
	got.Reset()
	if _, err := ac.Get(ctx, "home/copy.bin", &got, client.GetOptions{}); err != nil || !bytes.Equal(got.Bytes(), real) {
		t.Fatalf("the copy reads %d bytes (%v)", got.Len(), err)
	}
}
