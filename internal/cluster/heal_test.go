package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/datanode"
)

// healing starts a cluster of four datanodes whose coordinator declares a
// node dead after two seconds and scans for repairs every half second.
func healing(t *testing.T, mod func(*cluster.Config)) (*cluster.Cluster, *client.Client) {
	return startCluster(t, func(c *cluster.Config) {
		c.Datanodes = 4
		// Short, but with room for a heartbeat or two coming late on a
		// loaded machine (the race detector, two cores).
		c.Coordinator.DeadAfter = 3 * time.Second
		c.Coordinator.SuspectAfter = 2 * time.Second
		c.Coordinator.RepairInterval = 500 * time.Millisecond
		c.Coordinator.GCInterval = time.Hour
		c.Coordinator.GCGrace = time.Hour
		if mod != nil {
			mod(c)
		}
	})
}

func nodeIndex(cl *cluster.Cluster, id dfs.NodeID) int {
	for i, n := range cl.Nodes {
		if n.ID() == id {
			return i
		}
	}
	return -1
}

// noReplicaOn checks that no chunk of path lists node id.
func noReplicaOn(c *client.Client, path string, id dfs.NodeID) error {
	loc, err := c.Locate(context.Background(), path)
	if err != nil {
		return err
	}
	for _, ch := range loc.Chunks {
		for _, r := range ch.Replicas {
			if r.Node == id {
				return fmt.Errorf("chunk %s still listed on %s", ch.Hash.Short(), id)
			}
		}
	}
	return nil
}

func TestDeadNodeChunksAreReplicatedAgain(t *testing.T) {
	slow(t, "waits for a node's death and its repair")
	cl, c := healing(t, nil)
	data := randomBytes(12<<20, 40)
	put(t, c, "heal/a", data)
	loc, err := c.Locate(context.Background(), "heal/a")
	if err != nil {
		t.Fatal(err)
	}
	victim := loc.Chunks[0].Replicas[0].Node
	cl.Nodes[nodeIndex(cl, victim)].Close()

	// Reads go on at once from the other copies.
	mustRead(t, c, "heal/a", data)
	// Once the node is dead, every chunk is back to three live copies,
	// none on the dead node.
	eventually(t, 60*time.Second, func() error {
		if err := noReplicaOn(c, "heal/a", victim); err != nil {
			return err
		}
		return replicaCounts(c, "heal/a", 3)
	})
	mustRead(t, c, "heal/a", data)
	f, err := c.Fsck(context.Background(), "", false)
	if err != nil {
		t.Fatal(err)
	}
	if f.Healthy != f.Chunks || f.Repaired == 0 {
		t.Fatalf("fsck after repair: %+v, want every chunk healthy and some copies repaired", f)
	}
}

func TestComingBackMakesExtraCopiesThatAreTrimmed(t *testing.T) {
	slow(t, "waits for a death, a repair and a trim")
	cl, c := healing(t, nil)
	data := randomBytes(6<<20, 41)
	put(t, c, "trim/a", data)
	loc, _ := c.Locate(context.Background(), "trim/a")
	victim := loc.Chunks[0].Replicas[0].Node
	i := nodeIndex(cl, victim)
	dir := nodeDir(cl.Nodes[i])
	cl.Nodes[i].Close()
	eventually(t, 60*time.Second, func() error {
		if err := noReplicaOn(c, "trim/a", victim); err != nil {
			return err
		}
		return replicaCounts(c, "trim/a", 3)
	})
	// The node comes back with its old copies: four of some chunks, until
	// the extra ones are trimmed back to three.
	if err := cl.AddDatanode(dir); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		if err := replicaCounts(c, "trim/a", 3); err != nil {
			return err
		}
		var total int64
		for _, n := range cl.Nodes {
			if n == cl.Nodes[i] {
				continue // the closed instance; its directory now serves the new one
			}
			ch, _ := n.Store().Usage()
			total += ch
		}
		// 3 copies of each chunk on disk across the live nodes.
		var chunks int64
		seen := map[dfs.Hash]bool{}
		for _, ch := range loc.Chunks {
			if !seen[ch.Hash] {
				seen[ch.Hash] = true
				chunks++
			}
		}
		if total != 3*chunks {
			return fmt.Errorf("%d chunk copies on the live nodes, want %d", total, 3*chunks)
		}
		return nil
	})
	mustRead(t, c, "trim/a", data)
}

func TestDrainMovesEveryChunkAway(t *testing.T) {
	slow(t, "waits for a drain")
	cl, c := healing(t, nil)
	data := randomBytes(10<<20, 42)
	put(t, c, "drain/a", data)
	loc, _ := c.Locate(context.Background(), "drain/a")
	id := loc.Chunks[0].Replicas[0].Node
	if _, err := c.Drain(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		nodes, err := c.Nodes(context.Background())
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.ID == id && n.State != dfs.NodeDrained {
				return fmt.Errorf("%s is %s (%d chunks left)", id, n.State, n.DrainRemaining)
			}
		}
		return nil
	})
	// Every chunk now has three copies on the other nodes.
	for _, ch := range loc.Chunks {
		good := 0
		for _, n := range cl.Nodes {
			if n.ID() == id {
				continue
			}
			if _, err := n.Store().Stat(ch.Hash); err == nil {
				good++
			}
		}
		if good < 3 {
			t.Fatalf("chunk %s has %d copies off the drained node, want 3", ch.Hash.Short(), good)
		}
	}
	// A drained node gets no new chunks.
	put(t, c, "drain/b", randomBytes(4<<20, 43))
	if err := noReplicaOn(c, "drain/b", id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Drain(context.Background(), "no-such-node"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("drain of an unknown node: %v, want not found", err)
	}
}

// gc starts a cluster whose coordinator collects garbage only when the test
// asks, with the given grace period.
func gc(t *testing.T, grace time.Duration) (*cluster.Cluster, *client.Client) {
	return startCluster(t, func(c *cluster.Config) {
		c.Coordinator.GCGrace = grace
		c.Coordinator.GCInterval = time.Hour
	})
}

func TestGCRemovesOnlyUnreferencedChunks(t *testing.T) {
	slow(t, "waits out a garbage-collection grace period")
	cl, c := gc(t, 200*time.Millisecond)
	shared := randomBytes(6<<20, 44)
	unique := randomBytes(6<<20, 45)
	// gone = unique + shared; kept = shared alone.
	gone := append(append([]byte(nil), unique...), shared...)
	put(t, c, "gc/gone", gone)
	put(t, c, "gc/kept", shared)
	goneLoc, _ := c.Locate(context.Background(), "gc/gone")
	keptLoc, _ := c.Locate(context.Background(), "gc/kept")
	keptChunks := map[dfs.Hash]bool{}
	for _, ch := range keptLoc.Chunks {
		keptChunks[ch.Hash] = true
	}
	if err := c.Delete(context.Background(), "gc/gone"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // let the grace period (and the clock-skew margin) pass: the condition under test
	if err := cl.Coordinator.Server.CollectGarbage(context.Background()); err != nil {
		t.Fatal(err)
	}
	var uniqueLeft, sharedLeft int
	for _, ch := range goneLoc.Chunks {
		for _, n := range cl.Nodes {
			err := statChunk(n, ch.Hash)
			switch {
			case err == nil && keptChunks[ch.Hash]:
				sharedLeft++
			case err == nil:
				uniqueLeft++
			}
		}
	}
	if uniqueLeft != 0 {
		t.Fatalf("%d copies of chunks only the deleted file used are still on disk", uniqueLeft)
	}
	if sharedLeft == 0 {
		t.Fatalf("the chunks shared with the kept file are gone")
	}
	mustRead(t, c, "gc/kept", shared)
	// The deleted file's content record is gone too: nothing refers to it.
	if _, err := c.LocateContent(context.Background(), goneLoc.Content); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("content of the deleted file: %v, want not found", err)
	}
	f, err := c.Fsck(context.Background(), "", false)
	if err != nil {
		t.Fatal(err)
	}
	if f.Files != 1 || f.Healthy != f.Chunks || f.GarbageCollected == 0 {
		t.Fatalf("fsck after gc: %+v", f)
	}
}

func TestGCKeepsYoungGarbage(t *testing.T) {
	cl, c := gc(t, time.Hour)
	data := randomBytes(3<<20, 46)
	put(t, c, "young/a", data)
	if err := c.Delete(context.Background(), "young/a"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Coordinator.Server.CollectGarbage(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Within the grace period nothing goes: the same bytes put again are
	// a duplicate.
	if res := put(t, c, "young/b", data); !res.Duplicate || res.NewChunks != 0 {
		t.Fatalf("put after gc within the grace period: %+v, want a duplicate with nothing sent", res)
	}
}

// Commits that dedup onto chunks at the moment they become garbage race
// against sweeps with no grace period at all: every file whose commit
// succeeded must read back intact, always.
func TestGCRacingCommitsNeverLosesCommittedData(t *testing.T) {
	slow(t, "races commits against collections for seconds")
	cl, c := gc(t, time.Nanosecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	blocks := make([][]byte, 8)
	for i := range blocks {
		blocks[i] = randomBytes(1<<20, int64(50+i))
	}
	var (
		mu        sync.Mutex
		committed = map[string][]byte{}
		failed    atomic.Int64
		wg        sync.WaitGroup
	)
	// Writers: put a block under a fresh path, read it back while it is
	// committed, delete it: blocks keep becoming garbage and coming back.
	// The last file of each writer stays.
	var readErrs []string
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev, prevData := "", []byte(nil)
			for i := 0; ctx.Err() == nil; i++ {
				data := blocks[(w+i)%len(blocks)]
				path := fmt.Sprintf("race/%d/%d", w, i)
				_, err := c.Put(ctx, path, bytes.NewReader(data), client.PutOptions{})
				if err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				var out bytes.Buffer
				if _, err := c.Get(context.Background(), path, &out, client.GetOptions{}); err != nil || !bytes.Equal(out.Bytes(), data) {
					mu.Lock()
					readErrs = append(readErrs, fmt.Sprintf("%s read back wrong while committed: %v", path, err))
					mu.Unlock()
				}
				if prev != "" {
					c.Delete(ctx, prev)
				}
				prev, prevData = path, data
			}
			if prev != "" {
				mu.Lock()
				committed[prev] = prevData
				mu.Unlock()
			}
		}()
	}
	// The collector sweeps as fast as it can.
	sweeps := 0
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if err := cl.Coordinator.Server.CollectGarbage(ctx); err != nil {
			t.Fatal(err)
		}
		sweeps++
	}
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, e := range readErrs {
		t.Error(e)
	}
	if len(committed) == 0 {
		t.Fatal("no commit succeeded")
	}
	f, err := c.Fsck(context.Background(), "", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d sweeps deleted %d chunk copies; %d files kept, %d puts failed (a doomed chunk, nothing committed)",
		sweeps, f.GarbageCollected, len(committed), failed.Load())
	if f.GarbageCollected == 0 {
		t.Fatal("no sweep deleted anything: the race was not exercised")
	}
	for path, want := range committed {
		mustRead(t, c, path, want)
	}
	// And a last sweep after the writers stopped still takes nothing live.
	if err := cl.Coordinator.Server.CollectGarbage(context.Background()); err != nil {
		t.Fatal(err)
	}
	for path, want := range committed {
		mustRead(t, c, path, want)
	}
}

func TestDrainNeedsEnoughOtherNodes(t *testing.T) {
	_, c := startCluster(t, nil) // three datanodes: none can leave
	nodes, err := c.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Drain(context.Background(), nodes[0].ID)
	if err == nil || !errors.Is(err, dfs.ErrConflict) {
		t.Fatalf("drain with 2 other nodes: %v, want a refusal", err)
	}
	nodes, _ = c.Nodes(context.Background())
	if nodes[0].State != dfs.NodeAlive {
		t.Fatalf("refused drain left %s %s", nodes[0].ID, nodes[0].State)
	}
}

// Trim gives up a copy only for copies known good: a node coming back with
// the one good copy of a chunk whose three other copies rotted meanwhile,
// and reporting itself the fullest (so the first whose copy trim would
// delete), keeps it; the rotten copies are found instead and the chunk is
// copied again from the good one.
func TestTrimKeepsAGoodCopyOverRottenOnes(t *testing.T) {
	slow(t, "waits for deaths, repairs and trims")
	cl, c := healing(t, nil)
	data := randomBytes(1<<20, 43)
	put(t, c, "trim/rot", data)
	loc, _ := c.Locate(context.Background(), "trim/rot")
	h := loc.Chunks[0].Hash
	victim := loc.Chunks[0].Replicas[0].Node
	i := nodeIndex(cl, victim)
	dir := nodeDir(cl.Nodes[i])
	cl.Nodes[i].Close()
	eventually(t, 60*time.Second, func() error {
		if err := noReplicaOn(c, "trim/rot", victim); err != nil {
			return err
		}
		return replicaCounts(c, "trim/rot", 3)
	})
	// Every copy but the absent node's rots, in place.
	loc, _ = c.Locate(context.Background(), "trim/rot")
	for _, r := range loc.Chunks[0].Replicas {
		n := cl.Nodes[nodeIndex(cl, r.Node)]
		damageChunk(t, n, h, 100, []byte("rot"))
	}
	// The node comes back, reporting no free space at all.
	if err := cl.AddDatanodeWith(dir, func(dc *datanode.Config) { dc.Reserve = 1 << 60 }); err != nil {
		t.Fatal(err)
	}
	// Let trim see four copies before any read reports the rotten ones.
	eventually(t, 30*time.Second, func() error {
		for _, ni := range cl.Coordinator.Server.NodeTable() {
			if ni.ID == victim && ni.Alive && ni.Chunks > 0 {
				return nil
			}
		}
		return fmt.Errorf("%s has not reported its chunks", victim)
	})
	time.Sleep(3 * time.Second) // six repair scans
	// The good copy serves, and repair has made three good copies from
	// it.
	eventually(t, 60*time.Second, func() error {
		var out bytes.Buffer
		if _, err := c.Get(context.Background(), "trim/rot", &out, client.GetOptions{}); err != nil {
			return err
		}
		if !bytes.Equal(out.Bytes(), data) {
			return fmt.Errorf("read back wrong bytes")
		}
		return replicaCounts(c, "trim/rot", 3)
	})
	mustRead(t, c, "trim/rot", data)
}
