package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
)

// Node lifecycle: drain and undrain, removal of a node gone for good, and
// chunks no node can take another copy of.

// nodeState returns node id's row of the node table, or an error if it is
// not listed.
func nodeState(c *client.Client, id dfs.NodeID) (dfs.NodeInfo, error) {
	nodes, err := c.Nodes(context.Background())
	if err != nil {
		return dfs.NodeInfo{}, err
	}
	for _, n := range nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return dfs.NodeInfo{}, fmt.Errorf("%s is not in the node table", id)
}

// waitState waits until node id is in one of the states sts.
func waitState(t *testing.T, c *client.Client, id dfs.NodeID, sts ...dfs.NodeState) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		n, err := nodeState(c, id)
		if err != nil {
			return err
		}
		for _, st := range sts {
			if n.State == st {
				return nil
			}
		}
		return fmt.Errorf("%s is %s (%d chunks left to move), want %v", id, n.State, n.DrainRemaining, sts)
	})
}

// fsckHealthy checks that every chunk of every file is healthy and no
// repair is pending.
func fsckHealthy(c *client.Client) error {
	f, err := c.Fsck(context.Background(), "", false)
	if err != nil {
		return err
	}
	if f.Chunks == 0 || f.Healthy != f.Chunks || f.PendingRepair != 0 || f.Unplaceable != 0 {
		return fmt.Errorf("fsck: %d chunks, %d healthy, %d under-replicated (%d unplaceable), %d missing; %d pending repair",
			f.Chunks, f.Healthy, f.UnderReplicated, f.Unplaceable, f.Missing, f.PendingRepair)
	}
	return nil
}

// With a drained node and a dead one, three of four, no chunk can have
// three good copies: they are under-replicated with no node to place a
// copy on, and not pending repair (which would wait forever). Undraining
// the node makes them healthy again.
func TestUnplaceableChunksAreNotPendingAndUndrainHeals(t *testing.T) {
	slow(t, "waits for a drain, a death and a repair")
	cl, c := healing(t, nil)
	files := map[string][]byte{}
	for i := range 4 {
		p := fmt.Sprintf("life/%d", i)
		files[p] = randomBytes(3<<20, int64(70+i))
		put(t, c, p, files[p])
	}
	drained, dead := cl.Nodes[0].ID(), cl.Nodes[1].ID()
	if _, err := c.Drain(context.Background(), drained); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, drained, dfs.NodeDrained)
	cl.Nodes[1].Close()
	waitState(t, c, dead, dfs.NodeDead)

	eventually(t, 30*time.Second, func() error {
		f, err := c.Fsck(context.Background(), "", false)
		if err != nil {
			return err
		}
		k := f.Counters
		if f.Healthy != 0 || f.UnderReplicated != f.Chunks || f.Unplaceable != f.Chunks ||
			k.PendingRepair != 0 || k.Unplaceable == 0 || k.UnderReplicated != k.Unplaceable {
			return fmt.Errorf("fsck with two nodes taking copies: %d chunks, %d healthy, %d under-replicated (%d unplaceable); counters: %d under-replicated, %d unplaceable, %d pending repair; want every chunk unplaceable and none pending",
				f.Chunks, f.Healthy, f.UnderReplicated, f.Unplaceable, k.UnderReplicated, k.Unplaceable, k.PendingRepair)
		}
		return nil
	})
	for p, want := range files {
		mustRead(t, c, p, want)
	}

	if _, err := c.Undrain(context.Background(), drained); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, drained, dfs.NodeAlive)
	eventually(t, 60*time.Second, func() error { return fsckHealthy(c) })
	// It takes new chunks again.
	put(t, c, "life/new", randomBytes(64<<10, 79))
	if err := replicaCounts(c, "life/new", 3); err != nil {
		t.Fatal(err)
	}
	loc, err := c.Locate(context.Background(), "life/new")
	if err != nil {
		t.Fatal(err)
	}
	if err := noReplicaOn(c, "life/new", drained); err == nil {
		t.Fatalf("a new chunk went to %v, not to the undrained node, with only three nodes alive", loc.Chunks[0].Replicas)
	}
	if _, err := c.Undrain(context.Background(), "no-such-node"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("undrain of an unknown node: %v, want not found", err)
	}
}

// The way out of a cluster: drain, stop, remove. Removal is refused while
// the node runs; once removed, it is out of the node table, its copies are
// forgotten, and fsck is healthy on the three nodes left.
func TestDrainedStoppedNodeIsRemoved(t *testing.T) {
	slow(t, "waits for a drain and a stopped node")
	cl, c := healing(t, nil)
	for i := range 3 {
		put(t, c, fmt.Sprintf("rm/%d", i), randomBytes(4<<20, int64(80+i)))
	}
	id := cl.Nodes[3].ID()
	_, err := c.RemoveNode(context.Background(), id, false)
	if !errors.Is(err, dfs.ErrConflict) || !strings.Contains(err.Error(), "running") {
		t.Fatalf("remove of a running node: %v, want a refusal saying it runs", err)
	}
	if _, err := c.Drain(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, id, dfs.NodeDrained)
	cl.Nodes[3].Close()
	waitState(t, c, id, dfs.NodeSuspect, dfs.NodeDead)
	r, err := c.RemoveNode(context.Background(), id, false)
	if err != nil {
		t.Fatalf("remove a drained, stopped node: %v", err)
	}
	if r.Chunks == 0 {
		t.Fatalf("removal forgot no copy; the drained node held some")
	}
	if n, err := nodeState(c, id); err == nil {
		t.Fatalf("removed node still listed: %+v", n)
	}
	eventually(t, 30*time.Second, func() error {
		if err := fsckHealthy(c); err != nil {
			return err
		}
		k, err := c.Counters(context.Background())
		if err != nil {
			return err
		}
		if k.Copies != 3*k.Chunks {
			return fmt.Errorf("%d copies of %d chunks counted, want 3 each: the removed node's are still counted", k.Copies, k.Chunks)
		}
		return nil
	})
	if _, err := c.RemoveNode(context.Background(), id, false); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("removing it again: %v, want not found", err)
	}
}

// A node holding the only copies of chunks (one replica a chunk) is not
// removed once stopped, unless forced; forced, its chunks are missing until
// it comes back, for removal touches nothing on its disk. Drained, it is
// removed without force and every byte is still there.
func TestRemovalRefusedWhileNodeHoldsLastCopies(t *testing.T) {
	slow(t, "waits for stopped nodes and a drain")
	cl, c := healing(t, func(c *cluster.Config) {
		c.Datanodes = 3
		c.Coordinator.Replicas, c.Coordinator.MinReplicas = 1, 1
	})
	data := randomBytes(12<<20, 90)
	put(t, c, "last/a", data)
	loc, err := c.Locate(context.Background(), "last/a")
	if err != nil {
		t.Fatal(err)
	}
	id := loc.Chunks[0].Replicas[0].Node
	victim := nodeByID(cl, id)
	dir := nodeDir(victim)
	victim.Close()
	waitState(t, c, id, dfs.NodeSuspect, dfs.NodeDead)

	_, err = c.RemoveNode(context.Background(), id, false)
	if !errors.Is(err, dfs.ErrConflict) || !strings.Contains(err.Error(), "on no other node") {
		t.Fatalf("remove of the node with the only copies: %v, want a refusal counting them", err)
	}
	r, err := c.RemoveNode(context.Background(), id, true)
	if err != nil {
		t.Fatalf("forced removal: %v", err)
	}
	if r.ShortChunks == 0 {
		t.Fatalf("forced removal reports no chunk short of copies: %+v", r)
	}
	f, err := c.Fsck(context.Background(), "", false)
	if err != nil {
		t.Fatal(err)
	}
	if f.Missing == 0 {
		t.Fatalf("fsck after forcing out the only copies: %+v, want chunks missing", f)
	}

	// Its disk was not touched: started again, it registers anew and its
	// chunks are back.
	if err := cl.AddDatanode(dir); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error { return fsckHealthy(c) })
	mustRead(t, c, "last/a", data)

	// Drained first, it goes without force.
	if _, err := c.Drain(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, id, dfs.NodeDrained)
	cl.Nodes[len(cl.Nodes)-1].Close()
	waitState(t, c, id, dfs.NodeSuspect, dfs.NodeDead)
	if _, err := c.RemoveNode(context.Background(), id, false); err != nil {
		t.Fatalf("remove the drained node: %v", err)
	}
	eventually(t, 30*time.Second, func() error { return fsckHealthy(c) })
	mustRead(t, c, "last/a", data)
}
