//go:build linux || darwin

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
)

// Self-healing, with real processes: a coordinator and four datanodes
// apart, each test on a cluster of its own with the background loops
// (liveness, repair, scrub, GC) tuned short by flags.

const healTimeout = 2 * time.Minute // a bound on any healing step, not a target

// The coordinator flags of a cluster that notices a dead node and repairs
// within seconds.
var fastRepair = []string{"--dead-after", "3s", "--repair-interval", "1s"}

// After uploads, a datanode killed with SIGKILL costs no read, and once it is
// dead every chunk is copied back to three live nodes.
func TestHealKillDatanode(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoSeparate, datanodes: 4, coordFlags: fastRepair})
	dir := t.TempDir()
	var size int64
	for i, n := range []int64{1 << 20, 7 << 20, 24 << 20, 40 << 20} {
		local, _ := randomFile(t, dir, fmt.Sprintf("%d.bin", i), n)
		remote := fmt.Sprintf("heal-kill/%d.bin", i)
		c.put(t, local, remote)
		size += n
	}
	files := c.storedFiles()
	c.waitReplicated(t, files)

	const victim = 0
	victimID := c.datanodeID(t, victim)
	lost := chunkBytesUnder(t, c.datanodeDir(victim))
	killed := time.Now()
	c.datanodeProc(t, victim).kill9()

	for _, p := range sortedKeys(files) {
		c.checkGet(t, p, files[p])
	}
	readsDone := time.Since(killed)

	var deadAfter time.Duration
	eventually(t, healTimeout, "every chunk back to 3 live copies", func() error {
		if deadAfter == 0 && c.nodeState(t, victimID) == "dead" {
			deadAfter = time.Since(killed)
		}
		return c.replicaProblem(t, files, 3, victimID)
	})
	healed := time.Since(killed)
	if deadAfter == 0 {
		deadAfter = healed // dead by the time the last poll of the table ran
	}
	t.Logf("files: %d MiB in %d files; the killed node held %.1f MiB of chunks", size>>20, len(files), float64(lost)/(1<<20))
	t.Logf("kill -9 to every file read back: %v; to node seen dead: %v; to full replication: %v (--dead-after 3s --repair-interval 1s)",
		readsDone.Round(time.Millisecond), deadAfter.Round(time.Millisecond), healed.Round(time.Millisecond))

	for _, p := range sortedKeys(files) {
		c.checkGet(t, p, files[p])
	}
	if f := c.fsck(t, "heal-kill/"); f.Healthy != f.Chunks || f.Missing != 0 || f.Corrupt != 0 || f.UnderReplicated != 0 || f.Repaired == 0 {
		t.Errorf("fsck after the repair: %+v, want every chunk healthy and repairs counted", f)
	}
}

// Uploads running while a datanode is killed with SIGKILL: every one that
// is acknowledged reads back intact, and is then copied to 3 live nodes.
func TestHealKillDuringUploads(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoSeparate, datanodes: 4, coordFlags: fastRepair})
	const (
		uploads = 4
		size    = 24 << 20
	)
	var puts []*stdinPut
	for i := range uploads {
		puts = append(puts, c.startStdinPut(t, fmt.Sprintf("heal-upkill/%d.bin", i)))
	}
	// Each upload gets half its bytes, then the rest while the node dies.
	var half sync.WaitGroup
	half.Add(uploads)
	for i, p := range puts {
		go p.feed(randomData(t, fmt.Sprint(i)), size, size/2, half.Done)
	}
	halfFed := make(chan struct{})
	go func() { half.Wait(); close(halfFed) }()
	select {
	case <-halfFed:
	case <-time.After(cmdTimeout):
		t.Fatalf("the uploads did not take %d bytes each within %v", size/2, cmdTimeout)
	}
	const victim = 1
	victimID := c.datanodeID(t, victim)
	c.datanodeProc(t, victim).kill9()
	t.Logf("killed %s holding %.1f MiB of chunks, with every upload half sent", victimID, float64(chunkBytesUnder(t, c.datanodeDir(victim)))/(1<<20))

	acked := map[string]string{}
	for _, p := range puts {
		r, sum := p.wait(t)
		if r.code != 0 {
			t.Logf("upload %s not acknowledged: %s", p.remote, r)
			continue
		}
		var out putOutput
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("decode the JSON of %s: %v", r, err)
		}
		if out.SHA256 != sum || out.Size != size {
			t.Errorf("put %s printed size %d sha256 %s, was sent %d bytes with sha256 %s", p.remote, out.Size, out.SHA256, size, sum)
		}
		acked[p.remote] = sum
		c.mu.Lock()
		c.files[p.remote] = sum
		c.mu.Unlock()
	}
	t.Logf("%d of %d uploads acknowledged", len(acked), uploads)
	if len(acked) == 0 {
		// Three nodes are left for three replicas: some upload should
		// have made it, or the test proves nothing.
		t.Errorf("no upload was acknowledged")
	}
	for _, p := range sortedKeys(acked) {
		c.checkGet(t, p, acked[p])
	}
	start := time.Now()
	eventually(t, healTimeout, "every acknowledged file on 3 live nodes", func() error {
		return c.replicaProblem(t, acked, 3, victimID)
	})
	t.Logf("acknowledged files fully replicated %v after they were read back", time.Since(start).Round(time.Millisecond))
	for _, p := range sortedKeys(acked) {
		c.checkGet(t, p, acked[p])
	}
}

// A copy rotting on a disk, never read by a client, is found by the
// scrubber, moved to quarantine/, and replaced.
func TestHealScrub(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoSeparate, datanodes: 4, coordFlags: fastRepair,
		dnFlags: []string{"--scrub-rate", "100", "--scrub-interval", "1s"}})
	dir := t.TempDir()
	local, sum := randomFile(t, dir, "file.bin", 6<<20)
	remote := "heal-scrub/file.bin"
	c.put(t, local, remote)
	other, otherSum := randomFile(t, dir, "other.bin", 1<<20)
	c.put(t, other, "heal-scrub/other.bin")
	c.waitReplicated(t, c.storedFiles())
	st := c.stat(t, remote)

	ch := st.Chunks[len(st.Chunks)/2]
	node := ch.Replicas[0]
	nodeDir, ok := c.nodeDirs(t)[node]
	if !ok {
		t.Fatalf("no data directory for node %s", node)
	}
	flipChunkByte(t, nodeDir, ch.Hash, ch.Size/3)
	flipped := time.Now()

	// No read until the scrubber has moved the bad copy aside.
	var quarantined string
	eventually(t, healTimeout, "the scrubber quarantines the bad copy", func() error {
		q, _ := filepath.Glob(filepath.Join(nodeDir, "quarantine", ch.Hash+".*"))
		if len(q) == 0 {
			return fmt.Errorf("nothing in %s", filepath.Join(nodeDir, "quarantine"))
		}
		quarantined = q[0]
		return nil
	})
	t.Logf("quarantined %v after the flip: %s", time.Since(flipped).Round(time.Millisecond), quarantined)
	if got, n := fileSHA(t, quarantined); got == ch.Hash || n != ch.Size {
		t.Errorf("the quarantined file has %d bytes with sha256 %s; want the damaged %d-byte copy of %s", n, got, ch.Size, ch.Hash)
	}

	c.checkGet(t, remote, sum)
	c.checkGet(t, "heal-scrub/other.bin", otherSum)
	eventually(t, healTimeout, "fsck shows the chunk repaired", func() error {
		f := c.fsck(t, "heal-scrub/")
		if f.Corrupt != 0 || f.Healthy != f.Chunks || f.Repaired < 1 {
			return fmt.Errorf("fsck: %+v", f)
		}
		return c.goodCopies(t, remote, 3)
	})
	var corrupt int64 = -1
	for _, n := range decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json")) {
		if n.ID == node {
			corrupt = n.CorruptChunks
		}
	}
	if corrupt < 1 {
		t.Errorf("dfs nodes --json: corrupt_chunks %d on %s, want at least 1", corrupt, node)
	}
	c.checkReplicated(t, remote, sum, 3)
	c.checkGetFile(t, remote, filepath.Join(dir, "got.bin"), sum)
}

// Deleting files that share chunks with a kept one: GC removes from every
// disk the chunks only the deleted files used, and keeps the shared ones.
func TestHealGC(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoSeparate, datanodes: 4,
		coordFlags: []string{"--gc-grace", "2s", "--gc-interval", "1s", "--version-retention", "0"}})
	dir := t.TempDir()
	const size = 10 << 20
	a := filepath.Join(dir, "a.bin")
	aSHA, _ := writeFile(t, a, io.LimitReader(randomData(t, "a"), size))
	b := filepath.Join(dir, "b.bin")
	writeFile(t, b, io.LimitReader(randomData(t, "b"), size))
	ab := filepath.Join(dir, "ab.bin")
	writeFile(t, ab, io.MultiReader(io.LimitReader(randomData(t, "a"), size), io.LimitReader(randomData(t, "b"), size)))

	c.put(t, a, "heal-gc/kept-a.bin")
	c.put(t, ab, "heal-gc/gone-ab.bin")
	c.put(t, b, "heal-gc/gone-b.bin")
	c.waitReplicated(t, c.storedFiles())

	kept := chunkSet(c.stat(t, "heal-gc/kept-a.bin"))
	gone := chunkSet(c.stat(t, "heal-gc/gone-ab.bin"))
	for h := range chunkSet(c.stat(t, "heal-gc/gone-b.bin")) {
		gone[h] = true
	}
	var unique, shared []string
	for h := range gone {
		if kept[h] {
			shared = append(shared, h)
		} else {
			unique = append(unique, h)
		}
	}
	t.Logf("the deleted files have %d chunks of their own and share %d with the kept file's %d", len(unique), len(shared), len(kept))
	if len(unique) == 0 || len(shared) == 0 {
		t.Fatalf("want chunks both unique to the deleted files and shared: %d unique, %d shared", len(unique), len(shared))
	}
	copies := chunkCopies(t, c.dir)
	for h := range gone {
		if copies[h] != 3 {
			t.Fatalf("before the deletion chunk %s has %d copies on disk, want 3", h, copies[h])
		}
	}

	c.mustDFS(t, "rm", "heal-gc/gone-ab.bin")
	c.forget("heal-gc/gone-ab.bin")
	c.mustDFS(t, "rm", "heal-gc/gone-b.bin")
	c.forget("heal-gc/gone-b.bin")
	removed := time.Now()

	eventually(t, healTimeout, "GC deletes the chunks of the deleted files only", func() error {
		copies := chunkCopies(t, c.dir)
		for h := range kept {
			if copies[h] < 3 {
				t.Fatalf("chunk %s of the kept file has %d copies on disk, want 3", h, copies[h])
			}
		}
		var left []string
		for _, h := range unique {
			if copies[h] > 0 {
				left = append(left, fmt.Sprintf("%s×%d", h[:12], copies[h]))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("%d of %d chunks of the deleted files still on disk: %v", len(left), len(unique), left)
		}
		return nil
	})
	t.Logf("the deleted files' own chunks left every disk %v after rm (--gc-grace 2s --gc-interval 1s)", time.Since(removed).Round(time.Millisecond))

	c.checkGet(t, "heal-gc/kept-a.bin", aSHA)
	c.checkReplicated(t, "heal-gc/kept-a.bin", aSHA, 3)
	eventually(t, healTimeout, "fsck shows no garbage pending", func() error {
		if f := c.fsck(t, ""); f.PendingGC != 0 || f.Collected < int64(3*len(unique)) {
			return fmt.Errorf("fsck: %+v; want pending_gc 0, garbage_collected >= %d", f, 3*len(unique))
		}
		return nil
	})
	copies = chunkCopies(t, c.dir)
	for h := range kept {
		if copies[h] != 3 {
			t.Errorf("chunk %s of the kept file has %d copies on disk, want 3", h, copies[h])
		}
	}
}

// A drained node's chunks are copied to the others first: drain returns
// at once, the node goes draining then drained, and every chunk then has
// three copies elsewhere.
func TestHealDrain(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoSeparate, datanodes: 4, coordFlags: fastRepair})
	dir := t.TempDir()
	for i, n := range []int64{1 << 20, 6 << 20, 20 << 20} {
		local, _ := randomFile(t, dir, fmt.Sprintf("%d.bin", i), n)
		c.put(t, local, fmt.Sprintf("heal-drain/%d.bin", i))
	}
	files := c.storedFiles()
	c.waitReplicated(t, files)

	const victim = 2
	id := c.datanodeID(t, victim)
	start := time.Now()
	r := c.mustDFS(t, "drain", id)
	t.Logf("dfs drain returned in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stdout))
	if st := c.nodeState(t, id); st != "draining" {
		t.Fatalf("right after dfs drain, node %s is %q, want draining", id, st)
	}
	states := []string{"draining"}
	eventually(t, healTimeout, "the node is drained", func() error {
		st := c.nodeState(t, id)
		if st != states[len(states)-1] {
			states = append(states, st)
		}
		if st != "drained" {
			return fmt.Errorf("node %s is %s", id, st)
		}
		return nil
	})
	t.Logf("node %s went %s, drained %v after dfs drain", id, strings.Join(states, " -> "), time.Since(start).Round(time.Millisecond))
	if !slices.Equal(states, []string{"draining", "drained"}) {
		t.Errorf("node %s went through states %v, want draining then drained", id, states)
	}
	if err := c.replicaProblem(t, files, 3, id); err != nil {
		t.Errorf("once drained: %v", err)
	}
	for _, n := range decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json")) {
		if n.ID == id && n.DrainRemaining != 0 {
			t.Errorf("drained node %s: drain_remaining %d, want 0", id, n.DrainRemaining)
		}
	}
	for _, p := range sortedKeys(files) {
		c.checkGet(t, p, files[p])
	}
}

// A datanode whose disk fills up: uploads go elsewhere or fail saying why,
// no partial chunk ever shows on that node, and what was acknowledged reads
// back.
func TestHealFullDisk(t *testing.T) {
	skipShort(t)
	const full = 3
	// Placement draws nodes weighted by free space: on the host's disk the
	// others would weigh thousands of times more than 24 MiB and the small
	// node would get nothing. On modest tmpfs mounts of their own they
	// weigh 80:24, so the small node gets its share until it is full.
	dirs := map[int]string{}
	for i := range 4 {
		size := "80m"
		if i == full {
			size = "24m"
		}
		dirs[i] = mountTmpfs(t, size)
	}
	c := newCluster(t, clusterSpec{topo: topoSeparate, datanodes: 4, coordFlags: fastRepair, dnDirs: dirs})
	fullID := c.datanodeID(t, full)
	fullChunks := filepath.Join(c.datanodeDir(full), "chunks")

	// Watch the small node's chunks while the uploads run.
	ctx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan []string)
	go func() {
		var bad []string
		for ctx.Err() == nil {
			bad = append(bad, partialChunks(fullChunks)...)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond): // scan interval
			}
		}
		watchDone <- bad
	}()

	dir := t.TempDir()
	const uploads = 6
	results := make([]result, uploads)
	sums := make([]string, uploads)
	locals := make([]string, uploads)
	for i := range uploads {
		locals[i], sums[i] = randomFile(t, dir, fmt.Sprintf("%d.bin", i), 12<<20)
	}
	var wg sync.WaitGroup
	for i := range uploads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runQuiet(cmdTimeout, c.args([]string{"put", "--json", locals[i], fmt.Sprintf("heal-full/%d.bin", i)}))
		}()
	}
	wg.Wait()
	stopWatch()
	bad := <-watchDone
	bad = append(bad, partialChunks(fullChunks)...)
	if len(bad) > 0 {
		t.Errorf("partial or damaged chunk files seen on the full node %s: %v", fullID, bad)
	}

	acked := map[string]string{}
	for i, r := range results {
		remote := fmt.Sprintf("heal-full/%d.bin", i)
		switch {
		case r.code == -1:
			t.Errorf("put %s: %s", remote, r.stderr)
		case r.code != 0:
			if !strings.Contains(strings.ToLower(r.stderr), "space") {
				t.Errorf("a failed upload should say space ran out: %s", r)
			} else {
				t.Logf("upload refused: %s", r)
			}
		default:
			acked[remote] = sums[i]
		}
	}
	var used, free, chunks int64
	for _, n := range decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json")) {
		if n.ID == fullID {
			free, chunks = n.FreeBytes, n.Chunks
		}
	}
	used = chunkBytesUnder(t, c.datanodeDir(full))
	noSpace := strings.Count(readLog(t, c.datanodeProc(t, full).errPath), "no space left")
	t.Logf("%d of %d uploads of 12 MiB acknowledged; the 24 MiB node holds %d chunks, %.1f MiB, reports %.1f MiB free; it logged %d no-space errors",
		len(acked), uploads, chunks, float64(used)/(1<<20), float64(free)/(1<<20), noSpace)
	for _, p := range sortedKeys(acked) {
		c.checkGet(t, p, acked[p])
	}
	c.waitReplicated(t, acked)
	// A write that ran out of space left no temporary behind.
	if left := tempFiles(fullChunks); len(left) > 0 {
		t.Errorf("temporaries left on the full node %s: %v", fullID, left)
	}
	if bad := partialChunks(fullChunks); len(bad) > 0 {
		t.Errorf("partial or damaged chunk files on the full node %s: %v", fullID, bad)
	}
}

// After a stop of every process (SIGTERM) and a start on the same
// directories, the node table, the files and their three replicas are back.
func TestHealRestart(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoSeparate, datanodes: 4, coordFlags: fastRepair})
	dir := t.TempDir()
	for i, n := range []int64{300 << 10, 5 << 20, 18 << 20} {
		local, _ := randomFile(t, dir, fmt.Sprintf("%d.bin", i), n)
		c.put(t, local, fmt.Sprintf("heal-restart/%d.bin", i))
	}
	files := c.storedFiles()
	c.waitReplicated(t, files)
	idsBefore := nodeIDs(decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json")))

	c.restart(t)

	nodes := decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json"))
	if ids := nodeIDs(nodes); !slices.Equal(ids, idsBefore) {
		t.Errorf("node ids before the restart %v, after %v", idsBefore, ids)
	}
	for _, n := range nodes {
		if n.State != "alive" {
			t.Errorf("after the restart node %s is %s", n.ID, n.State)
		}
	}
	for _, p := range sortedKeys(files) {
		c.checkGet(t, p, files[p])
	}
	c.waitReplicated(t, files)
	if f := c.fsck(t, "heal-restart/"); f.Files != int64(len(files)) || f.Healthy != f.Chunks {
		t.Errorf("fsck after the restart: %+v, want %d files, every chunk healthy", f, len(files))
	}
}

// eventually calls f until it returns nil, every pollHeal, and fails the
// test if it has not within timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(pollHeal)
	}
}

// pollHeal is the poll interval of checks that run dfs commands.
const pollHeal = 200 * time.Millisecond

// nodeState returns the state dfs nodes --json shows for node id.
func (c *cluster) nodeState(t *testing.T, id string) string {
	t.Helper()
	for _, n := range decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json")) {
		if n.ID == id {
			return n.State
		}
	}
	t.Fatalf("dfs nodes does not list %s", id)
	return ""
}

// waitReplicated waits until every chunk of files (path -> sha256) has 3
// replicas, and checks them. Repair may copy a chunk an upload is still
// writing, and trim the extra copy a moment later: the count settles.
func (c *cluster) waitReplicated(t *testing.T, files map[string]string) {
	t.Helper()
	eventually(t, healTimeout, "3 replicas of every chunk", func() error {
		return c.replicaProblem(t, files, 3, "")
	})
	for _, p := range sortedKeys(files) {
		c.checkReplicated(t, p, files[p], 3)
	}
}

// replicaProblem says why some chunk of files (path -> sha256) has not
// exactly want distinct live replicas on nodes other than skip, or returns
// nil. A replica on skip is ignored.
func (c *cluster) replicaProblem(t *testing.T, files map[string]string, want int, skip string) error {
	t.Helper()
	for _, p := range sortedKeys(files) {
		st := c.stat(t, p)
		if st.SHA256 != files[p] {
			t.Fatalf("stat %s: sha256 %s, want %s", p, st.SHA256, files[p])
		}
		for i, ch := range st.Chunks {
			distinct := map[string]bool{}
			for _, r := range ch.Replicas {
				if r != skip {
					distinct[r] = true
				}
			}
			if len(distinct) != want {
				return fmt.Errorf("%s: chunk %d (%s) has replicas %v, want %d besides %q", p, i, ch.Hash[:12], ch.Replicas, want, skip)
			}
		}
	}
	return nil
}

// goodCopies checks that every chunk of remote has want replicas and that
// each replica's node holds a copy with the right bytes on its disk.
func (c *cluster) goodCopies(t *testing.T, remote string, want int) error {
	t.Helper()
	dirs := c.nodeDirs(t)
	for i, ch := range c.stat(t, remote).Chunks {
		if len(ch.Replicas) != want {
			return fmt.Errorf("%s: chunk %d (%s) has replicas %v, want %d", remote, i, ch.Hash[:12], ch.Replicas, want)
		}
		for _, r := range ch.Replicas {
			if err := goodCopy(dirs[r], ch.Hash); err != nil {
				return fmt.Errorf("%s: chunk %d on %s: %v", remote, i, r, err)
			}
		}
	}
	return nil
}

// goodCopy checks that the node in nodeDir holds chunk hash with its bytes.
func goodCopy(nodeDir, hash string) error {
	b, err := copyOf(nodeDir, hash)
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != hash {
		return fmt.Errorf("the copy of %s under %s has sha256 %x", hash, nodeDir, sum)
	}
	return nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// partialChunks returns the chunk files (named by 64 hex digits) under dir
// whose bytes do not hash to their name. A file deleted while it is read
// is no finding.
func partialChunks(dir string) []string {
	var bad []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isHexHash(d.Name()) {
			return nil
		}
		got, err := hashFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: %v", p, err))
		case got != d.Name():
			bad = append(bad, fmt.Sprintf("%s: sha256 %s", p, got))
		}
		return nil
	})
	return bad
}

// tempFiles returns the files under dir that are not chunk files.
func tempFiles(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !isHexHash(d.Name()) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// chunkSet returns the chunk hashes of a stat.
func chunkSet(st statOutput) map[string]bool {
	out := map[string]bool{}
	for _, ch := range st.Chunks {
		out[ch.Hash] = true
	}
	return out
}

// chunkCopies counts the copies of each chunk stored under dir: its copies
// on the disks of the cluster.
func chunkCopies(t *testing.T, dir string) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := scanStores(dir, func(h dfs.ChunkHash, _ string, _, _ int64) error {
		out[h.String()]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func nodeIDs(nodes []nodeInfo) []string {
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.ID)
	}
	slices.Sort(ids)
	return ids
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mountTmpfs mounts a tmpfs of the given size (as mount's size= option) on
// a new directory, unmounted when the test ends, and returns the directory.
// It skips the test when mounting is not permitted.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs of %s on %s: %v: %s", size, dir, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, bytes.TrimSpace(out))
		}
	})
	return dir
}

// runQuiet runs a dfs command like runDFS, but from any goroutine: a
// timeout or a failure to start is returned as exit code -1 with the
// reason in stderr, not a test failure.
func runQuiet(timeout time.Duration, args []string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, dfsBin, args...)
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{args: args, stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.code, r.stderr = -1, fmt.Sprintf("did not finish within %v\n%s", timeout, r.stderr)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		r.code, r.stderr = -1, err.Error()
	}
	return r
}

// stdinPut is a dfs put --json - REMOTE fed through a pipe.
type stdinPut struct {
	remote         string
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	stdout, stderr bytes.Buffer
	sum            hash.Hash // of every byte fed
	fed            chan error
	exited         chan error
}

func (c *cluster) startStdinPut(t *testing.T, remote string) *stdinPut {
	t.Helper()
	p := &stdinPut{remote: remote, sum: sha256.New(), fed: make(chan error, 1), exited: make(chan error, 1)}
	p.cmd = exec.Command(dfsBin, c.args([]string{"put", "--json", "-", remote})...)
	p.cmd.Env = cleanEnv()
	p.cmd.SysProcAttr = sysProcAttr()
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
		}
	})
	return p
}

// feed writes size bytes of src to the put's stdin, calls half once the
// first at bytes are taken, and closes stdin. Run it in a goroutine; a write
// error (the put exited) ends it early, calling half if not yet called.
func (p *stdinPut) feed(src io.Reader, size, at int64, half func()) {
	w := io.MultiWriter(p.stdin, p.sum)
	_, err := io.CopyN(w, src, at)
	half()
	if err == nil {
		_, err = io.CopyN(w, src, size-at)
	}
	if cerr := p.stdin.Close(); err == nil {
		err = cerr
	}
	p.fed <- err
}

// wait waits for the put to end and returns its result and the sha256 of
// what it was fed.
func (p *stdinPut) wait(t *testing.T) (result, string) {
	t.Helper()
	r := result{args: p.cmd.Args[1:]}
	select {
	case err := <-p.exited:
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			r.code = ee.ExitCode()
		case err != nil:
			t.Fatalf("put %s: %v", p.remote, err)
		}
	case <-time.After(cmdTimeout):
		p.cmd.Process.Kill()
		t.Fatalf("put %s did not finish within %v\nstderr: %s", p.remote, cmdTimeout, clip(p.stderr.String()))
	}
	ferr := <-p.fed // stdin is closed once the put exited
	r.stdout, r.stderr = p.stdout.String(), p.stderr.String()
	if r.code == 0 && ferr != nil {
		t.Errorf("put %s succeeded though its input broke off: %v", p.remote, ferr)
	}
	return r, hex.EncodeToString(p.sum.Sum(nil))
}
