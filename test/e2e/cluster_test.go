//go:build linux || darwin

package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/chunkstore/disk"
)

// The two ways to run dfs that every scenario is checked against.
const (
	topoServer   = "server"   // dfs server: everything in one process
	topoSeparate = "separate" // dfs coordinator --etcd-embed + dfs datanode × N
	// three dfs coordinators, each with an embedded etcd member of one
	// etcd cluster, and dfs datanode × N reporting to all three
	topoHA = "ha"
)

var topologies = []string{topoServer, topoSeparate}

// clusterSpec says what to start.
type clusterSpec struct {
	topo      string
	datanodes int            // default 3; a server runs them with --datanodes
	reserve   map[int]string // separate only: --reserve of datanode i
	// separate only: more flags for the coordinator, and for every datanode
	coordFlags []string
	dnFlags    []string
	// separate only: the data directory of datanode i (a mount point, say),
	// instead of one under the cluster's directory
	dnDirs map[int]string
}

// cluster is a running dfs cluster made of real processes.
type cluster struct {
	spec    clusterSpec
	dir     string // everything: data directories and logs
	coord   string // coordinator gRPC address
	http    string // gateway HTTP address (server topology)
	s3      string // gateway S3 address (server topology)
	dnAddrs []string
	// separate only: every other address a process listens on, picked by
	// the test like the ones above. A port a process picked itself (":0")
	// could be one picked here for a process not started yet.
	dnGRPC   []string
	etcdURLs []string // client, peer
	// ha only: each coordinator's gRPC address, etcd client and peer URL
	coords                []string
	etcdClientURLs, peers []string
	restarts              int // of single coordinators, for their log names
	picked                map[string]bool
	gen                   int     // how many times the cluster was launched
	procs                 []*proc // processes of the current launch, in start order
	past                  []*proc // processes of earlier launches, for their logs
	broken                string  // why a shared cluster is unusable, if it is

	mu    sync.Mutex
	files map[string]string // remote path -> sha256 of every file put and not removed
}

// newCluster starts a cluster for one test, stopped when the test ends.
func newCluster(t *testing.T, spec clusterSpec) *cluster {
	t.Helper()
	c := &cluster{spec: spec, dir: t.TempDir(), files: map[string]string{}}
	t.Cleanup(func() {
		// A role that crashed, or that does not stop on SIGTERM, is a bug
		// a user would notice.
		for _, err := range c.stop() {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	c.logOnFailure(t)
	c.start(t)
	return c
}

var (
	suiteDir string // removed by TestMain
	sharedMu sync.Mutex
	shared   = map[string]*cluster{}
)

// sharedCluster returns the suite's cluster of the topology, starting it on
// first use. Tests that leave it healthy share it; TestMain stops it.
func sharedCluster(t *testing.T, topo string) *cluster {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if c := shared[topo]; c != nil {
		if c.broken != "" {
			t.Fatalf("the shared %s cluster is unusable: %s", topo, c.broken)
		}
		c.logOnFailure(t)
		return c
	}
	dir, err := os.MkdirTemp(suiteDir, "shared-"+topo+"-")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{spec: clusterSpec{topo: topo}, dir: dir, files: map[string]string{}}
	shared[topo] = c
	c.logOnFailure(t)
	c.broken = "it failed to start"
	c.start(t)
	c.broken = ""
	return c
}

// stopSharedClusters stops the shared clusters and reports whether every
// process stopped cleanly on SIGTERM.
func stopSharedClusters() bool {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	ok := true
	for _, c := range shared {
		for _, err := range c.stop() {
			fmt.Fprintf(os.Stderr, "e2e: stopping the shared %s cluster: %v\n%s", c.spec.topo, err, c.logs())
			ok = false
		}
	}
	return ok
}

// logOnFailure prints the tail of every process's output if t fails.
func (c *cluster) logOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("processes of the %s cluster in %s:\n%s", c.spec.topo, c.dir, c.logs())
		}
	})
}

func (c *cluster) logs() string {
	var b strings.Builder
	for _, p := range append(append([]*proc{}, c.past...), c.procs...) {
		b.WriteString(p.logTail(40))
	}
	return b.String()
}

// start picks the addresses and launches the cluster.
func (c *cluster) start(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(c.dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.coord = c.pickAddr(t)
	c.http = c.pickAddr(t)
	c.s3 = c.pickAddr(t)
	if c.spec.topo == topoHA {
		c.coords = []string{c.coord, c.pickAddr(t), c.pickAddr(t)}
		for range c.coords {
			c.etcdClientURLs = append(c.etcdClientURLs, "https://"+c.pickAddr(t))
			c.peers = append(c.peers, "https://"+c.pickAddr(t))
		}
		c.coord = strings.Join(c.coords, ",")
	}
	if c.spec.topo == topoSeparate || c.spec.topo == topoHA {
		if c.spec.datanodes == 0 {
			c.spec.datanodes = 3
		}
		for range c.spec.datanodes {
			c.dnAddrs = append(c.dnAddrs, c.pickAddr(t))
			c.dnGRPC = append(c.dnGRPC, c.pickAddr(t))
		}
		c.etcdURLs = []string{"https://" + c.pickAddr(t), "https://" + c.pickAddr(t)}
	}
	c.launch(t)
}

// pickAddr returns a free loopback address distinct from those the
// cluster picked before.
func (c *cluster) pickAddr(t *testing.T) string {
	t.Helper()
	if c.picked == nil {
		c.picked = map[string]bool{}
	}
	for {
		if a := freeAddr(t); !c.picked[a] {
			c.picked[a] = true
			return a
		}
	}
}

// launch starts the processes on the cluster's directories and addresses
// and waits until every datanode is alive.
func (c *cluster) launch(t *testing.T) {
	t.Helper()
	c.gen++
	logDir := filepath.Join(c.dir, "logs")
	run := func(name string, args ...string) *proc {
		p, err := startProc(logDir, fmt.Sprintf("%s.%d", name, c.gen), args...)
		if err != nil {
			t.Fatal(err)
		}
		c.procs = append(c.procs, p)
		return p
	}
	ready := func(p *proc) {
		if err := p.waitReady(); err != nil {
			t.Fatal(err)
		}
	}
	switch c.spec.topo {
	case topoServer:
		// The suite's certificates, so that one client configuration
		// serves every cluster (TestServerSecureByDefault starts one that
		// makes its own).
		if err := copyCerts(filepath.Join(c.dir, "data", "certs")); err != nil {
			t.Fatal(err)
		}
		args := []string{"server", "--data", filepath.Join(c.dir, "data"), "--grpc", c.coord, "--http", c.http, "--s3", c.s3}
		nodes := 3
		if c.spec.datanodes != 0 {
			nodes = c.spec.datanodes
			args = append(args, "--datanodes", strconv.Itoa(nodes))
		}
		ready(run("server", args...))
		c.importSuiteKey(t)
		c.waitNodes(t, nodes, nil)
	case topoHA:
		var cs []*proc
		for i := range c.coords {
			cs = append(cs, run(fmt.Sprintf("coordinator%d", i), c.haCoordArgs(i)...))
		}
		for _, p := range cs {
			ready(p) // each is ready once the members have a quorum
		}
		var dns []*proc
		for i, addr := range c.dnAddrs {
			args := []string{"datanode", "--coordinator", c.coord, "--data", c.datanodeDir(i), "--listen", addr, "--grpc", c.dnGRPC[i]}
			dns = append(dns, run(fmt.Sprintf("datanode%d", i), append(args, c.spec.dnFlags...)...))
		}
		for _, p := range dns {
			ready(p)
		}
		c.importSuiteKey(t)
		c.waitNodes(t, len(c.dnAddrs), nil)
	case topoSeparate:
		coordArgs := []string{"coordinator", "--etcd-embed", "--data", filepath.Join(c.dir, "coordinator"), "--grpc", c.coord,
			"--etcd-client-url", c.etcdURLs[0], "--etcd-peer-url", c.etcdURLs[1]}
		ready(run("coordinator", append(coordArgs, c.spec.coordFlags...)...))
		var dns []*proc
		for i, addr := range c.dnAddrs {
			args := []string{"datanode", "--coordinator", c.coord, "--data", c.datanodeDir(i), "--listen", addr, "--grpc", c.dnGRPC[i]}
			if r := c.spec.reserve[i]; r != "" {
				args = append(args, "--reserve", r)
			}
			args = append(args, c.spec.dnFlags...)
			dns = append(dns, run(fmt.Sprintf("datanode%d", i), args...))
		}
		for _, p := range dns {
			ready(p)
		}
		c.importSuiteKey(t)
		c.waitNodes(t, len(c.dnAddrs), nil)
	default:
		t.Fatalf("unknown topology %q", c.spec.topo)
	}
}

// importSuiteKey stores the suite's admin access key (the one its client
// configuration names) in the cluster, as an operator does with the node
// certificate (dfs key import --certs-dir, from DFS_CERTS_DIR). A cluster
// that holds it already (a restart) answers that it exists.
func (c *cluster) importSuiteKey(t *testing.T) {
	t.Helper()
	r := runDFS(t, cmdTimeout, nil, nil, "key", "import", "--coordinator", c.coord, "--admin", "--secret-file", suiteSecretFile, "suite admin", suiteKeyID)
	if r.code != 0 && !strings.Contains(r.stderr, "exists") {
		t.Fatalf("import the suite's access key: %s", r)
	}
}

// haCoordArgs are the arguments of coordinator i of an ha cluster.
func (c *cluster) haCoordArgs(i int) []string {
	var initial []string
	for j := range c.coords {
		initial = append(initial, fmt.Sprintf("c%d=%s", j, c.peers[j]))
	}
	args := []string{"coordinator", "--etcd-embed", "--etcd-name", fmt.Sprintf("c%d", i),
		"--etcd-initial-cluster", strings.Join(initial, ","),
		"--etcd-peer-url", c.peers[i], "--etcd-client-url", c.etcdClientURLs[i],
		"--data", filepath.Join(c.dir, fmt.Sprintf("coordinator%d", i)), "--grpc", c.coords[i]}
	return append(args, c.spec.coordFlags...)
}

// stop stops every process, the last started first, and returns what did
// not exit cleanly on SIGTERM.
func (c *cluster) stop() []error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		if p.killed {
			continue
		}
		if err := p.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	c.past = append(c.past, c.procs...)
	c.procs = nil
	return errs
}

// restart stops every process with SIGTERM, starts them again on the same
// directories and addresses, and waits until every datanode is alive and
// has reported at least the chunks it held before.
func (c *cluster) restart(t *testing.T) {
	t.Helper()
	before := decodeJSON[[]nodeInfo](t, c.mustDFS(t, "nodes", "--json"))
	for _, err := range c.stop() {
		t.Errorf("restart: %v", err)
	}
	c.launch(t)
	c.waitNodes(t, len(before), func(now []nodeInfo) error {
		byID := map[string]nodeInfo{}
		for _, n := range now {
			byID[n.ID] = n
		}
		for _, b := range before {
			n, ok := byID[b.ID]
			switch {
			case !ok:
				return fmt.Errorf("node %s is gone", b.ID)
			case !n.Alive:
				return fmt.Errorf("node %s is %s", b.ID, n.State)
			case n.Chunks < b.Chunks:
				return fmt.Errorf("node %s reports %d chunks, held %d before", b.ID, n.Chunks, b.Chunks)
			}
		}
		return nil
	})
}

// datanodeProc returns the running process of datanode i (separate topology).
func (c *cluster) datanodeProc(t *testing.T, i int) *proc {
	t.Helper()
	want := fmt.Sprintf("datanode%d.%d", i, c.gen)
	for _, p := range c.procs {
		if p.name == want {
			return p
		}
	}
	t.Fatalf("no process %s", want)
	return nil
}

// datanodeDir returns the data directory of datanode i (separate topology).
func (c *cluster) datanodeDir(i int) string {
	if d := c.spec.dnDirs[i]; d != "" {
		return d
	}
	return filepath.Join(c.dir, fmt.Sprintf("dn%d", i))
}

// datanodeID returns the id of datanode i (separate topology).
func (c *cluster) datanodeID(t *testing.T, i int) string {
	t.Helper()
	for id, d := range c.nodeDirs(t) {
		if d == c.datanodeDir(i) {
			return id
		}
	}
	t.Fatalf("no node id in %s", c.datanodeDir(i))
	return ""
}

// nodeDirs maps each datanode's id to its data directory, by the node-id
// file every datanode keeps there.
func (c *cluster) nodeDirs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	roots := []string{c.dir}
	for _, d := range c.spec.dnDirs {
		roots = append(roots, d)
	}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "chunks" {
				return filepath.SkipDir
			}
			if !d.IsDir() && d.Name() == "node-id" {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				out[strings.TrimSpace(string(b))] = filepath.Dir(p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// chunkBytes returns the bytes of every chunk file on the cluster's disks:
// all replicas of all chunks.
func (c *cluster) chunkBytes(t *testing.T) int64 {
	t.Helper()
	return chunkBytesUnder(t, c.dir)
}

// scanStores calls fn for every chunk copy stored under dir, in chunk files
// and volumes: each datanode directory below dir (one holding a "chunks"
// directory) is scanned as its store would read it.
func scanStores(dir string, fn func(h dfs.ChunkHash, path string, off, size int64) error) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted during the walk
			}
			return err
		}
		if !d.IsDir() || d.Name() != "chunks" {
			return nil
		}
		if err := disk.Scan(filepath.Dir(p), fn); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return filepath.SkipDir
	})
}

// chunkBytesUnder sums the sizes of the chunk copies stored under dir.
func chunkBytesUnder(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := scanStores(dir, func(_ dfs.ChunkHash, _ string, _, size int64) error {
		total += size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// copyOf reads the first copy of chunk hash stored under dir.
func copyOf(dir, hash string) ([]byte, error) {
	h, err := dfs.ParseHash(hash)
	if err != nil {
		return nil, err
	}
	var out []byte
	found := errors.New("found")
	err = scanStores(dir, func(c dfs.ChunkHash, p string, off, size int64) error {
		if c != h {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		out = make([]byte, size)
		if _, err := f.ReadAt(out, off); err != nil {
			return err
		}
		return found
	})
	if err == found {
		return out, nil
	}
	if err == nil {
		err = fmt.Errorf("no copy of chunk %s under %s: %w", hash, dir, fs.ErrNotExist)
	}
	return nil, err
}

// findChunk returns where chunk hash lies under dir, a datanode's
// directory: its file, or its volume, and the offset of its first byte.
func findChunk(t *testing.T, dir, hash string) (string, int64) {
	t.Helper()
	h, err := dfs.ParseHash(hash)
	if err != nil {
		t.Fatal(err)
	}
	p, off, err := disk.Locate(dir, h)
	if err != nil {
		t.Fatalf("chunk %s under %s: %v", hash, dir, err)
	}
	return p, off
}

func isHexHash(name string) bool {
	if len(name) != 64 {
		return false
	}
	for _, r := range name {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

func underChunks(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return false
	}
	for _, part := range strings.Split(filepath.Dir(rel), string(filepath.Separator)) {
		if part == "chunks" {
			return true
		}
	}
	return false
}

// nodeInfo is a row of dfs nodes --json.
type nodeInfo struct {
	ID        string `json:"id"`
	Addr      string `json:"addr"`
	Alive     bool   `json:"alive"`
	State     string `json:"state"`
	FreeBytes int64  `json:"free_bytes"`
	Chunks    int64  `json:"chunks"`

	DrainRemaining int64 `json:"drain_remaining"`
	ScrubbedChunks int64 `json:"scrubbed_chunks"`
	CorruptChunks  int64 `json:"corrupt_chunks"`
}

// waitNodes polls dfs nodes --json until exactly want nodes are alive and
// check (if any) accepts the table, and returns the table.
func (c *cluster) waitNodes(t *testing.T, want int, check func([]nodeInfo) error) []nodeInfo {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		var why error
		r := c.dfs(t, "nodes", "--json")
		var nodes []nodeInfo
		if r.code != 0 {
			why = fmt.Errorf("%s", r)
		} else {
			nodes = decodeJSON[[]nodeInfo](t, r)
			alive := 0
			for _, n := range nodes {
				if n.Alive {
					alive++
				}
			}
			if alive != want {
				why = fmt.Errorf("%d of %d nodes alive, want %d: %+v", alive, len(nodes), want, nodes)
			} else if check != nil {
				why = check(nodes)
			}
		}
		if why == nil {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes not ready within %v: %v", readyTimeout, why)
		}
		time.Sleep(pollEvery)
	}
}

// reserveBeyondFree returns a --reserve value larger than the free space of
// the file system holding dir.
func reserveBeyondFree(t *testing.T, dir string) string {
	t.Helper()
	free := freeBytes(t, dir)
	return strconv.FormatInt(2*free+1<<30, 10)
}
