//go:build linux || darwin

package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// These scenarios break a cluster, so each starts its own.

// With a datanode killed by SIGKILL, reads go on at once from the other
// replicas.
func TestKillDatanode(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoSeparate})
	dir := t.TempDir()
	local, sum := randomFile(t, dir, "file.bin", 48<<20)
	remote := "kill/file.bin"
	c.put(t, local, remote)
	c.checkReplicated(t, remote, sum, 3)

	victimID := c.datanodeID(t, 0)
	c.datanodeProc(t, 0).kill9()

	c.checkGet(t, remote, sum)
	c.checkGetFile(t, remote, filepath.Join(dir, "got.bin"), sum)

	// Before the coordinator notices, an upload may be placed on the dead
	// node; it must still succeed on the two others.
	t.Run("put with a node down", func(t *testing.T) {
		local, sum := randomFile(t, dir, "after.bin", 24<<20)
		c.put(t, local, "kill/after.bin")
		c.checkGet(t, "kill/after.bin", sum)
		for i, ch := range c.stat(t, "kill/after.bin").Chunks {
			if len(ch.Replicas) < 2 || slices.Contains(ch.Replicas, victimID) {
				t.Errorf("chunk %d (%s) has replicas %v; want at least 2, none on the dead %s", i, ch.Hash, ch.Replicas, victimID)
			}
		}
	})
}

// A chunk file damaged on one datanode's disk is caught by its hash: reads
// return the right bytes from another replica.
func TestCorruptChunk(t *testing.T) {
	skipShort(t)
	for _, topo := range topologies {
		t.Run(topo, func(t *testing.T) {
			c := newCluster(t, clusterSpec{topo: topo})
			dir := t.TempDir()
			local, sum := randomFile(t, dir, "file.bin", 6<<20)
			remote := "corrupt/file.bin"
			c.put(t, local, remote)
			st := c.checkReplicated(t, remote, sum, 3)

			ch := st.Chunks[0]
			node := ch.Replicas[0]
			nodeDir, ok := c.nodeDirs(t)[node]
			if !ok {
				t.Fatalf("no data directory for node %s", node)
			}
			flipChunkByte(t, nodeDir, ch.Hash, ch.Size/2)

			// A read starts at a random replica of each chunk: read until
			// one has come upon the bad copy (and said so on stderr). Told
			// of it, the coordinator has the node check its copy, which
			// quarantines it, and repair copies a good one back.
			const reads = 40
			hit := false
			for i := 0; i < reads && !hit; i++ {
				r := c.checkGet(t, remote, sum)
				hit = strings.Contains(r.stderr, "corrupt") && strings.Contains(r.stderr, node)
			}
			if !hit {
				t.Fatalf("in %d reads, none reported the corrupt copy of chunk %s on %s", reads, ch.Hash, node)
			}
			deadline := time.Now().Add(60 * time.Second)
			for {
				err := healedCopy(nodeDir, ch.Hash)
				if err == nil {
					f := c.fsck(t, remote)
					if f.Corrupt != 0 || f.Healthy != f.Chunks {
						err = fmt.Errorf("fsck: %+v", f)
					}
				}
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the corrupt copy on %s was not repaired: %v", node, err)
				}
				time.Sleep(100 * time.Millisecond) // poll interval
			}
			c.checkReplicated(t, remote, sum, 3)
			c.checkGetFile(t, remote, filepath.Join(dir, "got.bin"), sum)
		})
	}
}

// flipChunkByte inverts byte at of chunk hash's copy under dir, a
// datanode's directory.
func flipChunkByte(t *testing.T, dir, hash string, at int64) {
	t.Helper()
	p, off := findChunk(t, dir, hash)
	flipByte(t, p, off+at)
}

// flipByte inverts the byte at off in the file at path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrPermission) {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// A datanode whose disk is full (its --reserve is more than the free
// space) gets no chunks; uploads go to the other three.
func TestFullDisk(t *testing.T) {
	skipShort(t)
	const full = 3 // of datanodes 0..3
	dir := t.TempDir()
	reserve := reserveBeyondFree(t, dir)
	c := newCluster(t, clusterSpec{topo: topoSeparate, datanodes: 4, reserve: map[int]string{full: reserve}})

	fullID := c.datanodeID(t, full)
	c.waitNodes(t, 4, func(nodes []nodeInfo) error {
		for _, n := range nodes {
			if n.ID == fullID && n.FreeBytes != 0 {
				return errors.New("the full node does not report 0 free bytes yet")
			}
		}
		return nil
	})

	for i, size := range []int64{1 << 20, 9 << 20, 20 << 20} {
		name := fmt.Sprintf("f%d.bin", i)
		local, sum := randomFile(t, dir, name, size)
		remote := "full/" + name
		c.put(t, local, remote)
		st := c.checkReplicated(t, remote, sum, 3)
		for j, ch := range st.Chunks {
			if slices.Contains(ch.Replicas, fullID) {
				t.Errorf("%s: chunk %d (%s) has a replica on the full node %s: %v", remote, j, ch.Hash, fullID, ch.Replicas)
			}
		}
		c.checkGet(t, remote, sum)
	}
	if n := chunkBytesUnder(t, c.datanodeDir(full)); n != 0 {
		t.Errorf("the full node %s holds %d bytes of chunks, want 0", fullID, n)
	}
}

// healedCopy checks that the node in nodeDir quarantined a bad copy of
// hash and holds a good one again.
func healedCopy(nodeDir, hash string) error {
	q, _ := filepath.Glob(filepath.Join(nodeDir, "quarantine", hash+".*"))
	if len(q) == 0 {
		return fmt.Errorf("no quarantined copy of %s under %s", hash, nodeDir)
	}
	if err := goodCopy(nodeDir, hash); err != nil {
		return fmt.Errorf("no good copy of %s under %s yet: %w", hash, nodeDir, err)
	}
	return nil
}
