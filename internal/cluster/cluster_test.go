package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"testing"

	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
)

func quiet() *slog.Logger {
	if os.Getenv("DFS_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCluster starts an in-process cluster with an embedded etcd and three
// datanodes, stopped when the test ends.
func startCluster(t *testing.T, mod func(*cluster.Config)) (*cluster.Cluster, *client.Client) {
	t.Helper()
	cfg := cluster.Config{Dir: t.TempDir(), GRPC: "127.0.0.1:0", Logger: quiet()}
	if mod != nil {
		mod(&cfg)
	}
	cl, err := cluster.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c, err := cl.Client(client.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return cl, c
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// diskBytes is the total size of chunk files under the cluster's datanodes.
func diskBytes(t *testing.T, cl *cluster.Cluster) int64 {
	t.Helper()
	var total int64
	for _, n := range cl.Nodes {
		_, b := n.Store().Usage()
		total += b
	}
	return total
}

func TestPutGetRoundTrip(t *testing.T) {
	cl, c := startCluster(t, nil)
	ctx := context.Background()
	data := randomBytes(20<<20+12345, 1)
	res, err := c.Put(ctx, "dir/a.bin", bytes.NewReader(data), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.File.Content != sha256.Sum256(data) || res.File.Size != int64(len(data)) || res.Duplicate {
		t.Fatalf("put result %+v", res)
	}
	var out bytes.Buffer
	if _, err := c.Get(ctx, "dir/a.bin", &out, client.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("bytes read back differ")
	}
	// Every chunk is on three distinct nodes.
	loc, err := c.Locate(ctx, "dir/a.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range loc.Chunks {
		if len(ch.Replicas) != 3 {
			t.Fatalf("chunk %s has %d replicas, want 3", ch.Hash.Short(), len(ch.Replicas))
		}
	}
	if got, want := diskBytes(t, cl), 3*int64(len(data)); got != want {
		t.Fatalf("%d chunk bytes on disk, want %d (3 copies)", got, want)
	}
}
