package coordinator

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/etcdserver"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/rpc"
)

// One embedded etcd serves the package; each test has its own key root,
// fresh on every run (go test -count).
var (
	etcd  *clientv3.Client
	roots atomic.Int64
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "coordinator-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	srv, err := etcdserver.Start(context.Background(), etcdserver.Config{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Close()
	etcd, err = clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer etcd.Close()
	return m.Run()
}

func quiet() *slog.Logger {
	if os.Getenv("DFS_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// harness is a coordinator served over gRPC on a loopback port, with
// clients of both its services.
type harness struct {
	t     *testing.T
	s     *Server
	meta  *meta.Store
	coord api.CoordinatorClient
	reg   api.RegistryClient
	gens  map[dfs.NodeID]uint64
	ctx   context.Context
}

func start(t *testing.T, cfg Config, registry ...*api.NodeRecord) *harness {
	t.Helper()
	return startOn(t, meta.New(etcd, meta.NewSchema(fmt.Sprintf("/test/%d/%s", roots.Add(1), t.Name()))), cfg, registry...)
}

// startOn starts a coordinator on the metadata store m.
func startOn(t *testing.T, m *meta.Store, cfg Config, registry ...*api.NodeRecord) *harness {
	t.Helper()
	ctx := context.Background()
	for _, r := range registry {
		if err := m.PutNode(ctx, meta.Fence{}, r); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Logger = quiet()
	s, err := New(ctx, m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := rpc.NewServer(quiet())
	api.RegisterCoordinatorServer(g, s)
	api.RegisterRegistryServer(g, s)
	go g.Serve(ln)
	conn, err := rpc.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		s.Close()
	})
	return &harness{t: t, s: s, meta: m, coord: api.NewCoordinatorClient(conn), reg: api.NewRegistryClient(conn),
		gens: map[dfs.NodeID]uint64{}, ctx: ctx}
}

const gib = int64(1) << 30

// register registers a datanode with free bytes of space and reports the
// chunks it holds.
func (h *harness) register(id dfs.NodeID, zone string, free int64, holds ...dfs.Hash) {
	h.t.Helper()
	resp, err := h.reg.Register(h.ctx, &api.RegisterRequest{
		Node:  &api.Node{Id: string(id), Addr: string(id) + ".test:9500", GrpcAddr: string(id) + ".test:9501", Zone: zone},
		Stats: &api.NodeStats{CapacityBytes: 2 * free, FreeBytes: free},
	})
	if err != nil {
		h.t.Fatalf("register %s: %v", id, err)
	}
	h.gens[id] = resp.Generation
	stream, err := h.reg.ReportChunks(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	rep := &api.ChunkReport{NodeId: string(id), Generation: resp.Generation, Last: true}
	for _, c := range holds {
		rep.Hashes = append(rep.Hashes, c[:])
	}
	if err := stream.Send(rep); err != nil {
		h.t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		h.t.Fatalf("chunk report of %s: %v", id, err)
	}
}

// added tells the coordinator, as a heartbeat does, that id now holds cs.
func (h *harness) added(id dfs.NodeID, cs ...dfs.Hash) {
	h.t.Helper()
	req := &api.HeartbeatRequest{NodeId: string(id), Generation: h.gens[id]}
	for _, c := range cs {
		req.Added = append(req.Added, c[:])
	}
	resp, err := h.reg.Heartbeat(h.ctx, req)
	if err != nil || resp.Reregister {
		h.t.Fatalf("heartbeat of %s: %v, %v", id, resp, err)
	}
}

// silence makes the coordinator's last heartbeat from id be d ago.
func (h *harness) silence(id dfs.NodeID, d time.Duration) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.s.nodes[id].lastBeat = time.Now().Add(-d)
}

var chunkSeq atomic.Uint64

// newChunks returns n chunk specs never used before, of size bytes each.
func newChunks(n int, size int64) []*api.ChunkSpec {
	out := make([]*api.ChunkSpec, n)
	for i := range out {
		h := sha256.Sum256(fmt.Appendf(nil, "chunk %d", chunkSeq.Add(1)))
		out[i] = &api.ChunkSpec{Hash: h[:], Size: size}
	}
	return out
}

func hashOf(c *api.ChunkSpec) dfs.Hash { h, _ := dfs.HashFromBytes(c.Hash); return h }

func (h *harness) allocate(chunks []*api.ChunkSpec, exclude ...string) ([]*api.Placement, error) {
	resp, err := h.coord.Allocate(h.ctx, &api.AllocateRequest{Chunks: chunks, Exclude: exclude})
	if err != nil {
		return nil, rpc.FromStatus(err)
	}
	if len(resp.Placements) != len(chunks) {
		h.t.Fatalf("%d placements for %d chunks", len(resp.Placements), len(chunks))
	}
	return resp.Placements, nil
}

func (h *harness) mustAllocate(chunks []*api.ChunkSpec, exclude ...string) []*api.Placement {
	h.t.Helper()
	p, err := h.allocate(chunks, exclude...)
	if err != nil {
		h.t.Fatalf("allocate: %v", err)
	}
	return p
}

func chainIDs(p *api.Placement) []dfs.NodeID {
	var out []dfs.NodeID
	for _, n := range p.Chain {
		out = append(out, dfs.NodeID(n.Id))
	}
	return out
}

func distinct(ids []dfs.NodeID) bool {
	seen := map[dfs.NodeID]bool{}
	for _, id := range ids {
		if seen[id] {
			return false
		}
		seen[id] = true
	}
	return true
}

func TestChainsAreThreeDistinctNodes(t *testing.T) {
	h := start(t, Config{})
	for i := range 5 {
		h.register(dfs.NodeID(fmt.Sprint("dn", i)), "", 100*gib)
	}
	for _, p := range h.mustAllocate(newChunks(500, 2<<20)) {
		ids := chainIDs(p)
		if p.Have || len(ids) != 3 || !distinct(ids) || p.Need != 2 {
			t.Fatalf("placement have=%v chain %v need %d; want 3 distinct nodes, need 2", p.Have, ids, p.Need)
		}
		for _, n := range p.Chain {
			if n.Addr != n.Id+".test:9500" {
				t.Fatalf("chain node %+v without its data address", n)
			}
		}
	}
}

func TestNoChunksOnDeadSuspectOrDrainingNodes(t *testing.T) {
	h := start(t, Config{SuspectAfter: 3 * time.Second, DeadAfter: time.Minute},
		&api.NodeRecord{Id: "draining", AdminState: "draining"},
		&api.NodeRecord{Id: "never-registered", Addr: "gone:1"})
	for _, id := range []dfs.NodeID{"ok1", "ok2", "ok3", "suspect", "dead", "draining"} {
		h.register(id, "", 100*gib)
	}
	h.silence("suspect", 5*time.Second)
	h.silence("dead", 2*time.Minute)

	states := map[dfs.NodeID]dfs.NodeState{}
	for _, n := range h.s.NodeTable() {
		states[n.ID] = n.State
	}
	want := map[dfs.NodeID]dfs.NodeState{"ok1": dfs.NodeAlive, "ok2": dfs.NodeAlive, "ok3": dfs.NodeAlive,
		"suspect": dfs.NodeSuspect, "dead": dfs.NodeDead, "draining": dfs.NodeDraining, "never-registered": dfs.NodeDead}
	for id, st := range want {
		if states[id] != st {
			t.Errorf("node %s is %q, want %q", id, states[id], st)
		}
	}
	for _, p := range h.mustAllocate(newChunks(300, 1<<20)) {
		for _, id := range chainIDs(p) {
			if !strings.HasPrefix(string(id), "ok") {
				t.Fatalf("chain %v includes %s", chainIDs(p), id)
			}
		}
	}
}

// A coordinator that was itself stalled (a busy machine) finds every node
// suspect at once; it still places on them, but only when the alive nodes
// are too few, and never on a dead or draining one.
func TestSuspectNodesTakeCopiesOnlyWhenAliveAreTooFew(t *testing.T) {
	h := start(t, Config{SuspectAfter: 3 * time.Second, DeadAfter: time.Minute},
		&api.NodeRecord{Id: "draining", AdminState: "draining"})
	for _, id := range []dfs.NodeID{"ok1", "ok2", "suspect1", "suspect2", "dead", "draining"} {
		h.register(id, "", 100*gib)
	}
	h.silence("suspect1", 5*time.Second)
	h.silence("suspect2", 5*time.Second)
	h.silence("dead", 2*time.Minute)
	for _, p := range h.mustAllocate(newChunks(100, 1<<20)) {
		ids := chainIDs(p)
		if len(ids) != 3 {
			t.Fatalf("chain %v: want 3 nodes", ids)
		}
		n := 0
		for _, id := range ids {
			switch {
			case strings.HasPrefix(string(id), "suspect"):
				n++
			case !strings.HasPrefix(string(id), "ok"):
				t.Fatalf("chain %v includes %s", ids, id)
			}
		}
		if n != 1 {
			t.Fatalf("chain %v has %d suspect nodes; want exactly 1 (2 alive nodes exist)", ids, n)
		}
	}
	// Every node silent for a few seconds: copies still find a place.
	h.silence("ok1", 4*time.Second)
	h.silence("ok2", 4*time.Second)
	for _, p := range h.mustAllocate(newChunks(20, 1<<20)) {
		for _, id := range chainIDs(p) {
			if id == "dead" || id == "draining" {
				t.Fatalf("chain %v includes %s", chainIDs(p), id)
			}
		}
	}
}

func TestPlacementIsWeightedByFreeSpace(t *testing.T) {
	h := start(t, Config{})
	h.register("big", "", 100*gib)
	for i := range 5 {
		h.register(dfs.NodeID(fmt.Sprint("small", i)), "", 10*gib)
	}
	const n = 2000
	heads := map[dfs.NodeID]int{}
	for _, p := range h.mustAllocate(newChunks(n, 2<<20)) {
		heads[chainIDs(p)[0]]++
	}
	t.Logf("chain heads over %d allocations: %v", n, heads)
	// Weights 10:1:1:1:1:1 make "big" the head about 2/3 of the time;
	// uniform choice would make it 1/6.
	if heads["big"] < n/2 {
		t.Fatalf("the node with 10x the free space heads %d of %d chains", heads["big"], n)
	}
	for id, c := range heads {
		if id != "big" && c*3 > heads["big"] {
			t.Fatalf("%s heads %d chains, big only %d", id, c, heads["big"])
		}
	}
}

func TestNoChunkOnANodeWithoutRoom(t *testing.T) {
	h := start(t, Config{})
	h.register("roomy1", "", 100*gib)
	h.register("roomy2", "", 100*gib)
	h.register("roomy3", "", 100*gib)
	h.register("tight", "", 1<<20)
	for _, p := range h.mustAllocate(newChunks(200, 2<<20)) {
		for _, id := range chainIDs(p) {
			if id == "tight" {
				t.Fatalf("a 2 MiB chunk placed on a node with 1 MiB free")
			}
		}
	}
}

func TestZonesAreDistinctWhenLabelled(t *testing.T) {
	h := start(t, Config{SuspectAfter: time.Minute, DeadAfter: 2 * time.Minute}) // heartbeats come only from the test
	for _, z := range []string{"a", "b", "c"} {
		// Zone c's nodes have far more room: weighting must not put two
		// copies in it.
		free := 10 * gib
		if z == "c" {
			free = 1000 * gib
		}
		h.register(dfs.NodeID("dn-"+z+"1"), z, free)
		h.register(dfs.NodeID("dn-"+z+"2"), z, free)
	}
	zoneOf := func(id dfs.NodeID) string { return string(id)[3:4] }
	for _, p := range h.mustAllocate(newChunks(500, 1<<20)) {
		zones := map[string]bool{}
		for _, id := range chainIDs(p) {
			zones[zoneOf(id)] = true
		}
		if len(zones) != 3 {
			t.Fatalf("chain %v spans zones %v, want 3", chainIDs(p), zones)
		}
	}

	// A node the client excluded holds nothing: its zone still gets a copy,
	// on the zone's other node.
	for _, p := range h.mustAllocate(newChunks(200, 1<<20), "dn-c1") {
		zones := map[string]bool{}
		for _, id := range chainIDs(p) {
			zones[zoneOf(id)] = true
			if id == "dn-c1" {
				t.Fatalf("chain %v includes the excluded node", chainIDs(p))
			}
		}
		if len(zones) != 3 {
			t.Fatalf("with dn-c1 excluded, chain %v spans zones %v, want 3", chainIDs(p), zones)
		}
	}
	// A copy already in a zone counts: the new copies go to the others.
	c := newChunks(1, 1<<20)
	h.added("dn-c1", hashOf(c[0]))
	for range 50 {
		p := h.mustAllocate(c)[0]
		zones := map[string]bool{}
		for _, id := range chainIDs(p) {
			zones[zoneOf(id)] = true
		}
		if len(p.Chain) != 2 || zones["c"] || len(zones) != 2 {
			t.Fatalf("copy in zone c known: chain %v", chainIDs(p))
		}
	}

	// With two zones for three copies, both zones are used.
	h2 := start(t, Config{})
	for _, id := range []dfs.NodeID{"dn-a1", "dn-a2", "dn-b1", "dn-b2"} {
		h2.register(id, zoneOf(id), 10*gib)
	}
	for _, p := range h2.mustAllocate(newChunks(200, 1<<20)) {
		zones := map[string]bool{}
		for _, id := range chainIDs(p) {
			zones[zoneOf(id)] = true
		}
		if len(zones) != 2 || !distinct(chainIDs(p)) || len(p.Chain) != 3 {
			t.Fatalf("chain %v over two zones", chainIDs(p))
		}
	}
}

// A chunk with no copy needs MinReplicas new ones; one with MinReplicas
// copies is had for a commit, with at most a best-effort top-up (Need 0)
// towards the replication factor; one with Replicas copies is had outright.
func TestHaveItOnceMinReplicasAreKnown(t *testing.T) {
	h := start(t, Config{})
	for i := range 4 {
		h.register(dfs.NodeID(fmt.Sprint("dn", i)), "", 100*gib)
	}
	c := newChunks(1, 1<<20)
	ch := hashOf(c[0])

	p := h.mustAllocate(c)[0]
	if p.Have || len(p.Chain) != 3 || p.Need != 2 {
		t.Fatalf("no copies: have=%v chain %v need %d", p.Have, chainIDs(p), p.Need)
	}

	h.added("dn0", ch)
	for range 50 {
		p = h.mustAllocate(c)[0]
		ids := chainIDs(p)
		if p.Have || len(ids) != 2 || p.Need != 1 || !distinct(append(ids, "dn0")) {
			t.Fatalf("one copy on dn0: have=%v chain %v need %d; want 2 other nodes, need 1", p.Have, ids, p.Need)
		}
	}

	h.added("dn1", ch)
	for range 50 {
		p = h.mustAllocate(c)[0]
		ids := chainIDs(p)
		if p.Need != 0 || len(ids) != 1 || (ids[0] != "dn2" && ids[0] != "dn3") {
			t.Fatalf("MinReplicas copies: have=%v chain %v need %d; want a best-effort top-up on a third node", p.Have, ids, p.Need)
		}
	}
	// The client's exclusions can leave no node to top up on: had as is.
	if p, err := h.allocate(c, "dn2", "dn3"); err != nil || !p[0].Have || len(p[0].Chain) != 0 {
		t.Fatalf("MinReplicas copies, no node free to top up: %v, %v", p, err)
	}

	h.added("dn2", ch)
	if p = h.mustAllocate(c)[0]; !p.Have || len(p.Chain) != 0 {
		t.Fatalf("three copies known: have=%v chain %v", p.Have, chainIDs(p))
	}

	// Copies on dead nodes do not count.
	h.silence("dn1", 2*time.Minute)
	h.silence("dn2", 2*time.Minute)
	if p = h.mustAllocate(c)[0]; p.Have || p.Need != 1 {
		t.Fatalf("one live copy of three: have=%v chain %v need %d", p.Have, chainIDs(p), p.Need)
	}
}

func TestNotEnoughDatanodes(t *testing.T) {
	h := start(t, Config{})
	if _, err := h.allocate(newChunks(1, 1<<20)); !errors.Is(err, dfs.ErrUnavailable) {
		t.Fatalf("allocate with no datanodes: %v; want ErrUnavailable", err)
	}
	h.register("alive", "", 100*gib)
	h.register("dead", "", 100*gib)
	h.silence("dead", 2*time.Minute)
	_, err := h.allocate(newChunks(1, 1<<20))
	if !errors.Is(err, dfs.ErrUnavailable) || !strings.Contains(err.Error(), "1 not alive") {
		t.Fatalf("allocate with one live datanode: %v; want ErrUnavailable counting the dead one", err)
	}

	// Two live nodes suffice for MinReplicas 2; a chunk gets a chain of two.
	h.register("alive2", "", 100*gib)
	p := h.mustAllocate(newChunks(1, 1<<20))[0]
	if len(p.Chain) != 2 || p.Need != 2 {
		t.Fatalf("two live nodes: chain %v need %d", chainIDs(p), p.Need)
	}
	// Unless the client excludes one of them.
	if _, err := h.allocate(newChunks(1, 1<<20), "alive2"); !errors.Is(err, dfs.ErrUnavailable) || !strings.Contains(err.Error(), "excluded") {
		t.Fatalf("allocate excluding one of two live nodes: %v", err)
	}
	// Full disks are named as such.
	h.register("alive2", "", 1<<10)
	if _, err := h.allocate(newChunks(1, 1<<20)); !errors.Is(err, dfs.ErrNoSpace) || !strings.Contains(err.Error(), "space") {
		t.Fatalf("allocate with one node full: %v; want ErrNoSpace", err)
	}
}

func commitReq(path string, chunks []*api.ChunkSpec) *api.CommitRequest {
	var size int64
	whole := sha256.New()
	for _, c := range chunks {
		size += c.Size
		whole.Write(c.Hash)
	}
	return &api.CommitRequest{Path: path, ContentHash: whole.Sum(nil), Size: size, Chunks: chunks}
}

func TestCommitNeedsMinReplicas(t *testing.T) {
	h := start(t, Config{CommitWait: 200 * time.Millisecond})
	for i := range 3 {
		h.register(dfs.NodeID(fmt.Sprint("dn", i)), "", 100*gib)
	}
	cs := newChunks(3, 1<<20)
	for _, c := range cs {
		h.added("dn0", hashOf(c))
	}
	for _, c := range cs[:2] {
		h.added("dn1", hashOf(c))
	}
	_, err := h.coord.Commit(h.ctx, commitReq("short", cs))
	err = rpc.FromStatus(err)
	if !errors.Is(err, dfs.ErrConflict) || !strings.Contains(err.Error(), hashOf(cs[2]).String()) || !strings.Contains(err.Error(), "1 known copies, need 2") {
		t.Fatalf("commit with a chunk on one node: %v; want ErrConflict naming the chunk", err)
	}
	if _, err := h.meta.GetFile(h.ctx, "short"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("refused commit left a file: %v", err)
	}

	// A commit waits for a copy reported while it waits.
	h2 := start(t, Config{CommitWait: time.Minute})
	h2.register("dn0", "", 100*gib)
	h2.register("dn1", "", 100*gib)
	c := newChunks(1, 1<<20)
	h2.added("dn0", hashOf(c[0]))
	done := make(chan error, 1)
	go func() {
		_, err := h2.coord.Commit(h2.ctx, commitReq("waits", c))
		done <- err
	}()
	h2.added("dn1", hashOf(c[0]))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("commit after the second copy was reported: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("commit still waiting after the second copy was reported")
	}
}

func TestCommitChecksItsRequest(t *testing.T) {
	h := start(t, Config{CommitWait: 100 * time.Millisecond})
	cs := newChunks(2, 100)
	bad := []*api.CommitRequest{
		{Path: "p", ContentHash: []byte("short"), Size: 0},
		func() *api.CommitRequest { r := commitReq("p", cs); r.Size++; return r }(),
		func() *api.CommitRequest {
			r := commitReq("p", cs)
			r.Chunks[0] = &api.ChunkSpec{Hash: r.Chunks[0].Hash, Size: 0}
			return r
		}(),
		func() *api.CommitRequest {
			r := commitReq("p", cs)
			r.Chunks[1] = &api.ChunkSpec{Hash: []byte{1, 2, 3}, Size: 100}
			return r
		}(),
	}
	for i, r := range bad {
		if _, err := h.coord.Commit(h.ctx, r); !errors.Is(rpc.FromStatus(err), dfs.ErrInvalid) {
			// InvalidArgument comes back as dfs.ErrInvalid.
			t.Errorf("bad commit %d: %v; want InvalidArgument", i, err)
		}
	}
}

func TestBadChunkReportDropsTheReplica(t *testing.T) {
	h := start(t, Config{})
	for i := range 3 {
		h.register(dfs.NodeID(fmt.Sprint("dn", i)), "", 100*gib)
	}
	cs := newChunks(1, 1<<20)
	for i := range 3 {
		h.added(dfs.NodeID(fmt.Sprint("dn", i)), hashOf(cs[0]))
	}
	resp, err := h.coord.Commit(h.ctx, commitReq("f", cs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.coord.ReportBadChunk(h.ctx, &api.ReportBadChunkRequest{Hash: cs[0].Hash, Node: "dn1", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	loc, err := h.coord.LookupContent(h.ctx, &api.LookupContentRequest{ContentHash: resp.File.ContentHash})
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Chunks[0].Nodes; len(got) != 2 || got[0] == "dn1" || got[1] == "dn1" {
		t.Fatalf("replicas after a bad report on dn1: %v", got)
	}
}

func TestStaleRegistrations(t *testing.T) {
	h := start(t, Config{})
	h.register("dn0", "", gib)
	old := h.gens["dn0"]
	h.register("dn0", "", gib)
	resp, err := h.reg.Heartbeat(h.ctx, &api.HeartbeatRequest{NodeId: "dn0", Generation: old})
	if err != nil || !resp.Reregister {
		t.Fatalf("heartbeat with a stale generation: %v, %v; want told to register again", resp, err)
	}
	resp, err = h.reg.Heartbeat(h.ctx, &api.HeartbeatRequest{NodeId: "stranger", Generation: 1})
	if err != nil || !resp.Reregister {
		t.Fatalf("heartbeat of an unknown node: %v, %v", resp, err)
	}
	stream, err := h.reg.ReportChunks(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&api.ChunkReport{NodeId: "dn0", Generation: old, Last: true})
	if _, err := stream.CloseAndRecv(); !errors.Is(rpc.FromStatus(err), dfs.ErrConflict) {
		t.Fatalf("chunk report with a stale generation: %v; want FailedPrecondition", err)
	}
	// A full report replaces what the node was believed to hold.
	a, b := newChunks(1, 1)[0], newChunks(1, 1)[0]
	h.register("dn1", "", gib, hashOf(a))
	h.register("dn1", "", gib, hashOf(b))
	h.s.mu.Lock()
	la, lb := h.s.holdersLocked(hashOf(a)), h.s.holdersLocked(hashOf(b))
	h.s.mu.Unlock()
	if len(la) != 0 || len(lb) != 1 || lb[0] != "dn1" {
		t.Fatalf("after a second full report: a on %v, b on %v", la, lb)
	}
}

// A retention too long for an expiry time (beyond 100 years) is refused,
// for a bucket and as the default, rather than wrapping into one that
// expires at once.
func TestVersionRetentionTooLong(t *testing.T) {
	h := start(t, Config{})
	for _, secs := range []int64{101 * 365 * 24 * 3600, 300 * 365 * 24 * 3600, 1 << 62, -1} {
		_, err := h.coord.SetVersioning(h.ctx, &api.SetVersioningRequest{Bucket: "b",
			Versioning: &api.BucketVersioning{Mode: "enabled", RetentionSeconds: secs}})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("versioning with a retention of %d s: %v, want invalid argument", secs, err)
		}
	}
	v, err := h.coord.SetVersioning(h.ctx, &api.SetVersioningRequest{Bucket: "b",
		Versioning: &api.BucketVersioning{Mode: "enabled", RetentionSeconds: 100 * 365 * 24 * 3600}})
	if err != nil || v.RetentionSeconds != 100*365*24*3600 {
		t.Fatalf("versioning with a retention of 100 years: %+v, %v", v, err)
	}
	m := meta.New(etcd, meta.NewSchema(fmt.Sprintf("/test/%d/%s", roots.Add(1), t.Name())))
	if s, err := New(context.Background(), m, Config{Logger: quiet(), VersionRetention: 250 * 365 * 24 * time.Hour}); err == nil {
		s.Close()
		t.Fatal("a coordinator started with a default retention of 250 years")
	}
}
