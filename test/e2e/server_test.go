//go:build linux || darwin

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dfs server on its own: its data directory, its ports, how many datanodes
// it runs, and that it scrubs with no flag asking it to.

// A second dfs server on the same data directory is told the directory is
// in use, by which process; one in another directory on the same ports is
// told which flag to change, and leaves no directory behind. Neither
// prints a line in another format than dfs's (etcd's own logger).
func TestServerDataDirectoryIsLocked(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoServer})
	data := filepath.Join(c.dir, "data")
	pid := c.procs[0].cmd.Process.Pid

	r := runDFS(t, cmdTimeout, nil, nil, "server", "--data", data, "--grpc", c.pickAddr(t), "--http", c.pickAddr(t), "--s3", c.pickAddr(t))
	want := fmt.Sprintf("data directory %s is in use by another dfs server (pid %d)", data, pid)
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("second server on the same directory: %s\nwant a non-zero exit saying %q", r, want)
	}
	checkOneFormat(t, r)

	other := filepath.Join(t.TempDir(), "dfs-data")
	r = runDFS(t, cmdTimeout, nil, nil, "server", "--data", other, "--grpc", c.coord, "--http", c.pickAddr(t), "--s3", c.pickAddr(t))
	if r.code == 0 || !strings.Contains(r.stderr, "pass --grpc") {
		t.Fatalf("second server on the first one's --grpc port: %s\nwant a non-zero exit naming --grpc", r)
	}
	checkOneFormat(t, r)
	if _, err := os.Stat(other); err == nil {
		t.Fatalf("the refused server left %s behind", other)
	}
	r = runDFS(t, cmdTimeout, nil, nil, "server", "--data", other, "--grpc", c.pickAddr(t), "--http", c.http, "--s3", c.pickAddr(t))
	if r.code == 0 || !strings.Contains(r.stderr, "pass --http") {
		t.Fatalf("second server on the first one's --http port: %s\nwant a non-zero exit naming --http", r)
	}
	if _, err := os.Stat(other); err == nil {
		t.Fatalf("the refused server left %s behind", other)
	}

	// The first server is untouched.
	c.waitNodes(t, 3, nil)
}

// checkOneFormat fails unless every line r wrote to stderr is dfs's: its
// error line, or a slog line.
func checkOneFormat(t *testing.T, r result) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if !strings.HasPrefix(line, "dfs: ") && !strings.HasPrefix(line, "time=") {
			t.Errorf("stderr line in another format: %q\n%s", line, r)
		}
	}
}

// dfs server --datanodes N runs N datanodes, each with its own directory.
func TestServerRunsTheDatanodesAskedFor(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoServer, datanodes: 4})
	nodes := c.waitNodes(t, 4, nil)
	if len(nodes) != 4 {
		t.Fatalf("dfs nodes lists %d nodes, want 4: %+v", len(nodes), nodes)
	}
	if dirs := c.nodeDirs(t); len(dirs) != 4 {
		t.Fatalf("%d datanode directories, want 4: %v", len(dirs), dirs)
	}
}

// Plain dfs server, no scrub flag: a byte flipped in a chunk file on disk
// is found by the scrubber (the node's corrupt_chunks in dfs nodes --json
// rises) and repair puts a good copy back.
func TestServerScrubsByDefault(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoServer})
	dir := t.TempDir()
	local, sum := randomFile(t, dir, "small.bin", 200<<10) // one chunk: scrubbed within about a minute
	remote := "scrub-default/small.bin"
	c.put(t, local, remote)
	c.waitReplicated(t, c.storedFiles())
	st := c.stat(t, remote)
	ch := st.Chunks[0]
	node := ch.Replicas[0]
	nodeDir, ok := c.nodeDirs(t)[node]
	if !ok {
		t.Fatalf("no data directory for node %s", node)
	}
	flipChunkByte(t, nodeDir, ch.Hash, ch.Size/2)

	eventually(t, healTimeout, "the scrubber finds the flipped byte", func() error {
		for _, n := range decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json")) {
			if n.ID == node {
				if n.CorruptChunks < 1 {
					return fmt.Errorf("%s: corrupt_chunks %d, scrubbed_chunks %d", node, n.CorruptChunks, n.ScrubbedChunks)
				}
				return nil
			}
		}
		return fmt.Errorf("%s not listed", node)
	})
	eventually(t, healTimeout, "repair puts a good copy back", func() error {
		f := c.fsck(t, "scrub-default/")
		if f.Corrupt != 0 || f.Healthy != f.Chunks {
			return fmt.Errorf("fsck: %+v", f)
		}
		return c.goodCopies(t, remote, 3)
	})
	c.checkGet(t, remote, sum)
}
