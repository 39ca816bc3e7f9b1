package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/coordinator"
	"github.com/dfs-store/dfs/internal/rpc"
)

// Of several coordinators sharing one etcd, exactly one leads, and when it
// stops another takes over.
func TestOneLeaderAmongCoordinators(t *testing.T) {
	cl, _ := startCluster(t, func(c *cluster.Config) { c.Coordinator.ElectionTTL = 3 * time.Second })
	first := cl.Coordinator.Server
	eventually(t, 10*time.Second, func() error {
		if !first.IsLeader() {
			return fmt.Errorf("the only coordinator is not leader")
		}
		return nil
	})
	second, err := cluster.StartCoordinator(context.Background(), cluster.CoordinatorConfig{
		Listen:        "127.0.0.1:0",
		EtcdEndpoints: cl.Coordinator.Etcd.Endpoints(),
		Coordinator:   coordinator.Config{ElectionTTL: 3 * time.Second},
		Logger:        quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	// The second one stands by while the first leads.
	for range 20 {
		if second.Server.IsLeader() {
			t.Fatal("two leaders at once")
		}
		time.Sleep(10 * time.Millisecond) // sampling, not synchronisation
	}
	term := first.Term()
	// Terms are shown by number: the cluster's first leader has term 1,
	// whatever etcd's revision (the fence) has reached.
	if n := first.TermNumber(); n != 1 {
		t.Fatalf("the first leader's term number is %d (fence %d), want 1", n, term)
	}
	first.Close() // stops the first coordinator's work and resigns
	eventually(t, 15*time.Second, func() error {
		if !second.Server.IsLeader() {
			return fmt.Errorf("no new leader after the first stopped")
		}
		return nil
	})
	if second.Server.Term() <= term {
		t.Fatalf("new leader's term %d is not after the old one's %d", second.Server.Term(), term)
	}
	st, err := second.Server.Status(context.Background(), &api.StatusRequest{Local: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Term != 2 || st.Coordinators[0].Term != 2 || st.Leader != second.Addr() {
		t.Fatalf("status after one failover: leader %s term %d (own term %d), want %s term 2", st.Leader, st.Term, st.Coordinators[0].Term, second.Addr())
	}
}

// A leader whose term has ended — its election key gone, as after a pause
// past its lease — cannot act, whatever it still believes: its etcd writes
// fail the fence, datanodes refuse its commands once they know a newer
// term, and on its next round of work it finds out and steps down.
func TestDeposedLeaderIsFenced(t *testing.T) {
	slow(t, "waits for a failover")
	cl, c := startCluster(t, func(c *cluster.Config) {
		c.Coordinator.ElectionTTL = 3 * time.Second
		c.Coordinator.GCGrace = 100 * time.Millisecond
		c.Coordinator.GCInterval = time.Hour
	})
	ctx := context.Background()
	srv := cl.Coordinator.Server
	eventually(t, 10*time.Second, func() error {
		if !srv.IsLeader() {
			return fmt.Errorf("not leader yet")
		}
		return nil
	})
	standby, err := cluster.StartCoordinator(ctx, cluster.CoordinatorConfig{
		Listen:        "127.0.0.1:0",
		EtcdEndpoints: cl.Coordinator.Etcd.Endpoints(),
		Coordinator:   coordinator.Config{ElectionTTL: 3 * time.Second, GCGrace: 100 * time.Millisecond, GCInterval: time.Hour},
		Logger:        quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Close()
	kept := randomBytes(3<<20, 91)
	put(t, c, "fence/kept", kept)
	keptLoc, err := c.Locate(ctx, "fence/kept")
	if err != nil {
		t.Fatal(err)
	}

	// Depose the leader behind its back: its election key vanishes, as it
	// does when its lease expires while it is paused. The standby takes
	// over.
	old := srv.Fence()
	if old.IsZero() {
		t.Fatal("the leader has no fence")
	}
	oldNumber := srv.TermNumber()
	if _, err := cl.Coordinator.Client.Delete(ctx, old.Key); err != nil {
		t.Fatal(err)
	}
	// Its etcd writes fail the fence: it cannot even make a chunk a
	// garbage candidate.
	if err := cl.Coordinator.Meta.AddChunkCandidates(ctx, old, []dfs.Hash{keptLoc.Content}); !errors.Is(err, dfs.ErrFenced) {
		t.Fatalf("note a chunk candidate with an ended term: %v, want ErrFenced", err)
	}
	// Its next round of leader work finds the term over.
	if err := srv.CollectGarbage(ctx); !errors.Is(err, dfs.ErrFenced) && !errors.Is(err, dfs.ErrNotLeader) {
		t.Fatalf("garbage collection by a deposed leader: %v, want fenced", err)
	}
	if srv.IsLeader() && srv.Term() == old.Rev {
		t.Fatal("the deposed leader still leads under its old term")
	}
	mustRead(t, c, "fence/kept", kept)

	eventually(t, 15*time.Second, func() error {
		if !standby.Server.IsLeader() {
			return fmt.Errorf("the standby has not taken over")
		}
		return nil
	})
	newTerm := standby.Server.Term()
	if newTerm <= old.Rev {
		t.Fatalf("new term %d is not after %d", newTerm, old.Rev)
	}
	newNumber := standby.Server.TermNumber()
	if newNumber != oldNumber+1 {
		t.Fatalf("new term number %d, want the deposed one's %d plus one", newNumber, oldNumber)
	}
	// The datanodes learn the new term from heartbeats and refuse the old.
	// The node table shows the term each knows by number.
	eventually(t, 10*time.Second, func() error {
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.LeaderTerm != newNumber {
				return fmt.Errorf("datanode %s knows term %d, want %d", n.ID, n.LeaderTerm, newNumber)
			}
		}
		return nil
	})
	h := keptLoc.Chunks[0].Hash
	for _, n := range cl.Nodes {
		dn, err := rpc.Dial(n.GRPCAddr())
		if err != nil {
			t.Fatal(err)
		}
		_, err = api.NewDatanodeClient(dn).DeleteChunks(ctx, &api.DeleteChunksRequest{Hashes: [][]byte{h[:]}, Term: old.Rev})
		dn.Close()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "fenced") {
			t.Fatalf("delete on %s with the old term: %v, want refused as fenced", n.ID(), err)
		}
	}
	for _, n := range cl.Nodes {
		if err := statChunk(n, h); err != nil && keptOn(keptLoc, h, n.ID()) {
			t.Fatalf("chunk deleted on %s by a refused command: %v", n.ID(), err)
		}
	}
	mustRead(t, c, "fence/kept", kept)
	eventually(t, 10*time.Second, func() error {
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.FencedCommands == 0 {
				return fmt.Errorf("datanode %s counts no refused command", n.ID)
			}
		}
		return nil
	})
}

// keptOn reports whether loc lists node id as a holder of chunk h.
func keptOn(loc client.Location, h dfs.Hash, id dfs.NodeID) bool {
	for _, ch := range loc.Chunks {
		if ch.Hash == h && slices.ContainsFunc(ch.Replicas, func(r dfs.Replica) bool { return r.Node == id }) {
			return true
		}
	}
	return false
}

// A datanode that holds a term no leader was elected with (forged: on a
// cluster run with --insecure anyone may send one, over TLS only a holder
// of a coordinator certificate) refuses the rightful leader, but cannot
// depose it: the leader checks etcd, which says its term is current, and
// stays leader.
func TestForgedTermDoesNotDeposeTheLeader(t *testing.T) {
	cl, c := gc(t, time.Nanosecond)
	ctx := context.Background()
	eventually(t, 15*time.Second, func() error {
		if !cl.Coordinator.Server.IsLeader() {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})
	term := cl.Coordinator.Server.Term()
	put(t, c, "forged/gone", randomBytes(1<<20, 91))
	dn, err := rpc.Dial(cl.Nodes[0].GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	forged := int64(1) << 50
	if _, err := api.NewDatanodeClient(dn).DeleteChunks(ctx, &api.DeleteChunksRequest{Term: forged}); err != nil {
		t.Fatalf("forged term: %v", err)
	}
	dn.Close()
	if err := c.Delete(ctx, "forged/gone"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	// The collection sends deletes to every holder, node 0 refuses.
	cl.Coordinator.Server.CollectGarbage(ctx)
	if !cl.Coordinator.Server.IsLeader() || cl.Coordinator.Server.Term() != term {
		t.Fatalf("after a node with a forged term refused it, leader %v at term %d (was %d)",
			cl.Coordinator.Server.IsLeader(), cl.Coordinator.Server.Term(), term)
	}
}
