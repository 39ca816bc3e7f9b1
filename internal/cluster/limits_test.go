package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/rpc"
)

// A flood of allocations that are never committed is bounded: chunks per
// session, chunks in all open sessions, and open sessions are capped
// (ResourceExhausted past them), and an aborted session gives its room
// back.
func TestAllocationFloodIsBounded(t *testing.T) {
	cl, _ := startCluster(t, func(cfg *cluster.Config) {
		cfg.Coordinator.MaxSessionChunks = 100
		cfg.Coordinator.MaxPendingChunks = 150
		cfg.Coordinator.MaxSessions = 4
	})
	ctx := context.Background()
	conn, err := rpc.Dial(cl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	co := api.NewCoordinatorClient(conn)
	seq := 0
	alloc := func(session string, n int) (string, error) {
		req := &api.AllocateRequest{SessionId: session}
		for range n {
			h := sha256.Sum256([]byte(fmt.Sprint("flood", seq)))
			seq++
			req.Chunks = append(req.Chunks, &api.ChunkSpec{Hash: h[:], Size: 1})
		}
		resp, err := co.Allocate(ctx, req)
		if err != nil {
			return session, err
		}
		return resp.SessionId, nil
	}
	exhausted := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("%s: %v, want ResourceExhausted", what, err)
		}
	}
	a, err := alloc("", 100)
	if err != nil {
		t.Fatal(err)
	}
	_, err = alloc(a, 1)
	exhausted("chunk 101 of one session", err)
	b, err := alloc("", 40)
	if err != nil {
		t.Fatal(err)
	}
	_, err = alloc(b, 20)
	exhausted("chunks past 150 in all sessions", err)
	if _, err := co.AbortSession(ctx, &api.AbortSessionRequest{SessionId: a}); err != nil {
		t.Fatal(err)
	}
	if _, err := alloc(b, 20); err != nil {
		t.Fatalf("after an abort freed room: %v", err)
	}
	// Sessions: b, and three more make four; a fifth is refused.
	for i := range 3 {
		if _, err := alloc("", 1); err != nil {
			t.Fatalf("session %d: %v", i+2, err)
		}
	}
	_, err = alloc("", 1)
	exhausted("a fifth session", err)
}

// A datanode forwards a chunk to at most replicas-1 further nodes, the
// bound the coordinator gave it when it registered: a longer chain is
// refused (400) and stores nothing.
func TestChainLongerThanTheReplicasRefused(t *testing.T) {
	cl, _ := startCluster(t, func(cfg *cluster.Config) { cfg.Datanodes = 4 })
	data := randomBytes(4<<10, 5)
	h := dfs.Sum(data)
	var chain []string
	for _, n := range cl.Nodes[1:] {
		chain = append(chain, string(n.ID())+"@"+n.Addr())
	}
	// Until the node has registered it knows no bound and forwards no
	// chain at all (503, nothing stored); then the bound holds.
	var resp *http.Response
	var body []byte
	for range 100 {
		req, err := http.NewRequest(http.MethodPut, "http://"+cl.Nodes[0].Addr()+"/chunks/"+h.String(), bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Dfs-Chain", strings.Join(chain, ","))
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(20 * time.Millisecond) // poll until registered, not synchronisation
	}
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "3 copies") {
		t.Fatalf("a chain of 3 more nodes with 3 replicas: %s %s, want 400", resp.Status, body)
	}
	for _, n := range cl.Nodes {
		if _, _, err := n.Store().Open(h); !errors.Is(err, dfs.ErrNotFound) {
			t.Fatalf("node %s stored the chunk of a refused chain: %v", n.ID(), err)
		}
	}
}

// A file larger than the cluster's maximum is refused, whatever its
// chunks (all distinct, or one chunk repeated); a file within it is not.
func TestMaxFileSize(t *testing.T) {
	_, c := startCluster(t, func(cfg *cluster.Config) { cfg.Coordinator.MaxFileSize = 3 << 20 })
	ctx := context.Background()
	if _, err := c.Put(ctx, "max/ok", bytes.NewReader(randomBytes(2<<20, 1)), client.PutOptions{}); err != nil {
		t.Fatalf("a 2 MiB file under a 3 MiB maximum: %v", err)
	}
	for name, data := range map[string][]byte{
		"distinct chunks": randomBytes(8<<20, 2),
		"one repeated":    bytes.Repeat(randomBytes(1<<20, 3), 8),
	} {
		_, err := c.Put(ctx, "max/"+strings.ReplaceAll(name, " ", "-"), bytes.NewReader(data), client.PutOptions{})
		if err == nil || !strings.Contains(err.Error(), "largest file") {
			t.Errorf("an 8 MiB file of %s under a 3 MiB maximum: %v, want refused", name, err)
		}
	}
	if _, err := c.Stat(ctx, "max/distinct-chunks"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("the refused file exists: %v", err)
	}
}
