package datanode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/chunkstore/disk"
	"github.com/dfs-store/dfs/internal/datanode"
	"github.com/dfs-store/dfs/internal/rpc"
)

// fakeCoordinator is a Registry server for one datanode. It records what
// the node tells it and keeps the node's chunk list as a coordinator would:
// the last full report, then the heartbeats' deltas.
type fakeCoordinator struct {
	api.UnimplementedRegistryServer
	srv *grpc.Server
	ln  net.Listener

	mu          sync.Mutex
	gen         uint64
	registers   int
	incarnation uint64            // of the node whose state it holds
	reported    bool              // it holds a full report of that incarnation
	reports     int               // full reports received
	failBeats   int               // heartbeats to fail, as a network cut would
	view        map[dfs.Hash]bool // chunks the node holds, as far as we know
	pending     map[dfs.Hash]bool // the full report being received
	added       map[dfs.Hash]int  // from heartbeats
	removed     map[dfs.Hash]int
	corrupt     map[dfs.Hash]int
	stats       *api.NodeStats // from the last heartbeat
}

func startFakeCoordinator(t testing.TB) *fakeCoordinator {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeCoordinator{ln: ln, srv: grpc.NewServer(), view: map[dfs.Hash]bool{},
		added: map[dfs.Hash]int{}, removed: map[dfs.Hash]int{}, corrupt: map[dfs.Hash]int{}}
	api.RegisterRegistryServer(fc.srv, fc)
	done := make(chan struct{})
	go func() { defer close(done); fc.srv.Serve(ln) }()
	t.Cleanup(func() { fc.srv.Stop(); <-done })
	return fc
}

func (fc *fakeCoordinator) Addr() string { return fc.ln.Addr().String() }

func (fc *fakeCoordinator) Register(ctx context.Context, req *api.RegisterRequest) (*api.RegisterResponse, error) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.gen++
	fc.registers++
	full := req.Incarnation == 0 || req.Incarnation != fc.incarnation || !fc.reported
	fc.incarnation = req.Incarnation
	if full {
		fc.pending, fc.reported = map[dfs.Hash]bool{}, false
	}
	return &api.RegisterResponse{Generation: fc.gen, FullReport: full, Replicas: 3}, nil
}

func (fc *fakeCoordinator) ReportChunks(stream api.Registry_ReportChunksServer) error {
	for {
		rep, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&api.ChunkReportResponse{})
		}
		if err != nil {
			return err
		}
		fc.mu.Lock()
		for _, b := range rep.Hashes {
			h, _ := dfs.HashFromBytes(b)
			fc.pending[h] = true
		}
		for p := rep.PackedHashes; len(p) >= len(dfs.Hash{}); p = p[len(dfs.Hash{}):] {
			fc.pending[dfs.Hash(p)] = true
		}
		if rep.Last {
			fc.view, fc.pending = fc.pending, nil
			fc.reported = true
			fc.reports++
		}
		fc.mu.Unlock()
	}
}

func (fc *fakeCoordinator) Heartbeat(ctx context.Context, req *api.HeartbeatRequest) (*api.HeartbeatResponse, error) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if req.Generation != fc.gen {
		return &api.HeartbeatResponse{Reregister: true}, nil
	}
	if fc.failBeats > 0 {
		fc.failBeats--
		return nil, status.Error(codes.Unavailable, "cut")
	}
	for _, b := range req.Added {
		h, _ := dfs.HashFromBytes(b)
		fc.added[h]++
		fc.view[h] = true
	}
	for _, b := range req.Removed {
		h, _ := dfs.HashFromBytes(b)
		fc.removed[h]++
		delete(fc.view, h)
	}
	for _, b := range req.Corrupt {
		h, _ := dfs.HashFromBytes(b)
		fc.corrupt[h]++
	}
	fc.stats = req.Stats
	return &api.HeartbeatResponse{}, nil
}

// holds reports whether the coordinator believes the node holds h.
func (fc *fakeCoordinator) holds(h dfs.Hash) bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.view[h]
}

func (fc *fakeCoordinator) corruptReports(h dfs.Hash) int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.corrupt[h]
}

func (fc *fakeCoordinator) lastStats() *api.NodeStats {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.stats
}

func (fc *fakeCoordinator) registered() bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.registers > 0 && fc.pending == nil
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startNode starts a datanode on dir reporting to fc, its configuration
// changed by mod (if not nil). The node is closed when the test ends.
func startNode(t *testing.T, dir string, fc *fakeCoordinator, mod func(*datanode.Config)) *datanode.Node {
	t.Helper()
	cfg := datanode.Config{
		Dir:          dir,
		Listen:       "127.0.0.1:0",
		Coordinators: []string{fc.Addr()},
		NoSync:       true,
		Heartbeat:    50 * time.Millisecond,
		Logger:       quietLogger(),
	}
	if testing.Verbose() {
		cfg.Logger = slog.Default()
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := datanode.Start(cfg)
	if err != nil {
		t.Fatalf("start datanode: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func control(t *testing.T, n *datanode.Node) api.DatanodeClient {
	t.Helper()
	conn, err := rpc.Dial(n.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return api.NewDatanodeClient(conn)
}

func randomChunk(seed uint64, size int) ([]byte, dfs.ChunkHash) {
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b, dfs.Sum(b)
}

// preload stores chunks in dir before a node opens it, as a node restarted
// on its old data finds them.
func preload(t *testing.T, dir string, chunks ...[]byte) {
	t.Helper()
	s, err := disk.Open(dir, disk.Options{NoSync: true, SmallMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if _, err := s.Put(context.Background(), dfs.Sum(c), bytes.NewReader(c)); err != nil {
			t.Fatal(err)
		}
	}
}

func chunkFile(dir string, h dfs.ChunkHash) string {
	x := h.String()
	return filepath.Join(dir, "chunks", x[:3], x)
}

// filesOnly keeps every chunk in a file of its own, for tests that touch
// chunk files by hand.
func filesOnly(c *datanode.Config) { c.SmallChunkMax = -1 }

// flipBit corrupts a chunk in place, in its file or its volume, as bit rot
// would.
func flipBit(t *testing.T, dir string, h dfs.ChunkHash, at int64) {
	t.Helper()
	p, off, err := disk.Locate(dir, h)
	if err != nil {
		t.Fatal(err)
	}
	at += off
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b[:], at); err != nil {
		t.Fatal(err)
	}
}

func putChunk(t *testing.T, addr string, data []byte) dfs.ChunkHash {
	t.Helper()
	h := dfs.Sum(data)
	req, err := http.NewRequest(http.MethodPut, "http://"+addr+"/chunks/"+h.String(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("PUT chunk %s: %v", h.Short(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("PUT chunk %s: %s: %s", h.Short(), resp.Status, b)
	}
	return h
}

func quarantined(t *testing.T, dir string, h dfs.ChunkHash) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "quarantine", h.String()+".*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestScrubQuarantinesCorruptChunk(t *testing.T) {
	fc := startFakeCoordinator(t)
	dir := t.TempDir()
	good, hGood := randomChunk(1, 1<<20)
	bad, hBad := randomChunk(2, 100<<10)
	preload(t, dir, good, bad)
	flipBit(t, dir, hBad, 12345)

	n := startNode(t, dir, fc, func(c *datanode.Config) { c.ScrubRate = 100; c.ScrubInterval = time.Millisecond })
	waitFor(t, 10*time.Second, "the coordinator to hear of the corrupt chunk", func() bool {
		return fc.corruptReports(hBad) > 0 && fc.registered() && !fc.holds(hBad)
	})
	if !fc.holds(hGood) {
		t.Errorf("the coordinator no longer believes the node holds the good chunk")
	}
	if fc.corruptReports(hGood) != 0 {
		t.Errorf("the good chunk was reported corrupt")
	}
	if _, err := n.Store().Stat(hBad); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("corrupt chunk still in the store: Stat err = %v, want ErrNotFound", err)
	}
	if files := quarantined(t, dir, hBad); len(files) != 1 {
		t.Errorf("quarantine/ holds %v for the corrupt chunk, want one file", files)
	}
	if _, err := n.Store().Stat(hGood); err != nil {
		t.Errorf("good chunk: %v", err)
	}

	waitFor(t, 10*time.Second, "scrub stats in a heartbeat", func() bool {
		st := fc.lastStats()
		return st != nil && st.ScrubPassUnixNano != 0
	})
	st := fc.lastStats()
	if st.ScrubbedChunks < 2 || st.ScrubbedBytes < int64(len(good)+len(bad)) || st.CorruptChunks != 1 {
		t.Errorf("stats after a pass: %d chunks, %d bytes scrubbed, %d corrupt; want at least 2, %d, and exactly 1",
			st.ScrubbedChunks, st.ScrubbedBytes, st.CorruptChunks, len(good)+len(bad))
	}
	if st.Chunks != 1 || st.UsedBytes != int64(len(good)) {
		t.Errorf("stats count %d chunks, %d bytes; want 1, %d", st.Chunks, st.UsedBytes, len(good))
	}
}

// The scrubber reads at most ScrubRate: 3 MiB at 1 MiB/s, with a burst of
// at most 1 MiB, cannot take less than 2 s.
func TestScrubRateLimit(t *testing.T) {
	fc := startFakeCoordinator(t)
	dir := t.TempDir()
	var chunks [][]byte
	for i := range 3 {
		c, _ := randomChunk(uint64(10+i), 1<<20)
		chunks = append(chunks, c)
	}
	preload(t, dir, chunks...)

	start := time.Now()
	n := startNode(t, dir, fc, func(c *datanode.Config) { c.ScrubRate = 1; c.ScrubInterval = time.Millisecond })
	dn := control(t, n)
	var last *api.NodeStats
	waitFor(t, 30*time.Second, "the scrubber to read 3 MiB", func() bool {
		info, err := dn.Info(context.Background(), &api.InfoRequest{})
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		last = info.Stats
		return info.Stats.ScrubbedBytes >= 3<<20
	})
	elapsed := time.Since(start)
	if elapsed < 2*time.Second-50*time.Millisecond {
		t.Errorf("scrubbed %d bytes at 1 MiB/s in %v; the rate limit allows no less than 2s", last.ScrubbedBytes, elapsed)
	}
	if last.CorruptChunks != 0 {
		t.Errorf("%d chunks found corrupt in a healthy store", last.CorruptChunks)
	}
	t.Logf("3 MiB scrubbed at 1 MiB/s in %v", elapsed)
}

func TestScrubOff(t *testing.T) {
	fc := startFakeCoordinator(t)
	dir := t.TempDir()
	c, h := randomChunk(1, 1000)
	preload(t, dir, c)
	flipBit(t, dir, h, 10)
	n := startNode(t, dir, fc, nil) // ScrubRate 0
	dn := control(t, n)
	waitFor(t, 10*time.Second, "registration", fc.registered)
	info, err := dn.Info(context.Background(), &api.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Stats; st.ScrubbedChunks != 0 || st.ScrubPassUnixNano != 0 {
		t.Errorf("scrub stats with scrubbing off: %v", st)
	}
	if _, err := n.Store().Stat(h); err != nil {
		t.Errorf("with scrubbing off the chunk was touched: %v", err)
	}
}

func TestVerifyChunk(t *testing.T) {
	fc := startFakeCoordinator(t)
	dir := t.TempDir()
	n := startNode(t, dir, fc, nil)
	dn := control(t, n)
	waitFor(t, 10*time.Second, "registration", fc.registered)
	good, _ := randomChunk(1, 300<<10)
	bad, _ := randomChunk(2, 200<<10)
	hGood := putChunk(t, n.Addr(), good)
	hBad := putChunk(t, n.Addr(), bad)
	flipBit(t, dir, hBad, 199<<10)
	ctx := context.Background()

	verify := func(h dfs.ChunkHash) *api.VerifyChunkResponse {
		t.Helper()
		resp, err := dn.VerifyChunk(ctx, &api.VerifyChunkRequest{Hash: h[:]})
		if err != nil {
			t.Fatalf("VerifyChunk %s: %v", h.Short(), err)
		}
		return resp
	}
	if r := verify(hGood); !r.Present || !r.Ok {
		t.Errorf("VerifyChunk of a good chunk = present %v, ok %v; want true, true", r.Present, r.Ok)
	}
	if r := verify(hBad); !r.Present || r.Ok {
		t.Errorf("VerifyChunk of a corrupt chunk = present %v, ok %v; want true, false", r.Present, r.Ok)
	}
	// VerifyChunk answers once the coordinator has heard.
	if fc.corruptReports(hBad) != 1 || fc.holds(hBad) {
		t.Errorf("after VerifyChunk: coordinator has %d corrupt reports, believes the node holds it: %v; want 1, false",
			fc.corruptReports(hBad), fc.holds(hBad))
	}
	if files := quarantined(t, dir, hBad); len(files) != 1 {
		t.Errorf("quarantine/ holds %v, want one file", files)
	}
	if r := verify(hBad); r.Present || r.Ok {
		t.Errorf("VerifyChunk of a quarantined chunk = present %v, ok %v; want false, false", r.Present, r.Ok)
	}
	if !fc.holds(hGood) || fc.corruptReports(hGood) != 0 {
		t.Errorf("the good chunk is not held or was reported corrupt")
	}
	if _, err := dn.VerifyChunk(ctx, &api.VerifyChunkRequest{Hash: []byte("short")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("VerifyChunk of a malformed hash: err = %v, want InvalidArgument", err)
	}
	info, err := dn.Info(ctx, &api.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Stats.CorruptChunks != 1 {
		t.Errorf("stats count %d corrupt chunks, want 1", info.Stats.CorruptChunks)
	}
}

func TestDeleteChunksUnlessModifiedSince(t *testing.T) {
	fc := startFakeCoordinator(t)
	dir := t.TempDir()
	n := startNode(t, dir, fc, filesOnly)
	dn := control(t, n)
	waitFor(t, 10*time.Second, "registration", fc.registered)
	idle, _ := randomChunk(1, 10000)
	reused, _ := randomChunk(2, 20000)
	touched, _ := randomChunk(3, 30000)
	hIdle := putChunk(t, n.Addr(), idle)
	hReused := putChunk(t, n.Addr(), reused)
	hTouched := putChunk(t, n.Addr(), touched)
	hour := time.Now().Add(-time.Hour)
	for _, h := range []dfs.ChunkHash{hIdle, hReused, hTouched} {
		if err := os.Chtimes(chunkFile(dir, h), hour, hour); err != nil {
			t.Fatal(err)
		}
	}
	// Garbage collection decides at since that all three are garbage; then
	// an upload writes one again, and a coordinator touches another because
	// an upload reuses it.
	since := time.Now().Add(-time.Minute)
	putChunk(t, n.Addr(), reused)
	ctx := context.Background()
	never := dfs.Sum([]byte("never stored"))
	tr, err := dn.TouchChunks(ctx, &api.TouchChunksRequest{Hashes: [][]byte{hTouched[:], never[:]}})
	if err != nil || tr.Touched != 1 {
		t.Fatalf("TouchChunks: %v, %v; want 1 touched (the other is not stored)", tr, err)
	}

	resp, err := dn.DeleteChunks(ctx, &api.DeleteChunksRequest{
		Hashes:                      [][]byte{hIdle[:], hReused[:], hTouched[:], never[:]},
		UnlessModifiedSinceUnixNano: since.UnixNano(),
		Term:                        1,
	})
	if err != nil {
		t.Fatalf("DeleteChunks: %v", err)
	}
	if resp.Deleted != 1 || len(resp.DeletedHashes) != 1 || !bytes.Equal(resp.DeletedHashes[0], hIdle[:]) {
		t.Errorf("DeleteChunks deleted %d (%x), want 1: the idle chunk", resp.Deleted, resp.DeletedHashes)
	}
	if _, err := n.Store().Stat(hIdle); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("idle chunk: Stat err = %v, want ErrNotFound", err)
	}
	for _, h := range []dfs.ChunkHash{hReused, hTouched} {
		if _, err := n.Store().Stat(h); err != nil {
			t.Errorf("chunk modified since: %v", err)
		}
	}
	// DeleteChunks answers once the coordinator has heard.
	if fc.holds(hIdle) || !fc.holds(hReused) || !fc.holds(hTouched) {
		t.Errorf("coordinator's view after DeleteChunks: idle %v, reused %v, touched %v; want false, true, true",
			fc.holds(hIdle), fc.holds(hReused), fc.holds(hTouched))
	}

	// Without a time, deletion is unconditional.
	resp, err = dn.DeleteChunks(ctx, &api.DeleteChunksRequest{Hashes: [][]byte{hReused[:], hIdle[:]}, Term: 1})
	if err != nil {
		t.Fatalf("DeleteChunks: %v", err)
	}
	if resp.Deleted != 1 {
		t.Errorf("unconditional DeleteChunks deleted %d, want 1", resp.Deleted)
	}
	if fc.holds(hReused) {
		t.Errorf("coordinator still believes the node holds a deleted chunk")
	}
	if _, err := dn.DeleteChunks(ctx, &api.DeleteChunksRequest{Hashes: [][]byte{[]byte("short")}, Term: 1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("DeleteChunks of a malformed hash: err = %v, want InvalidArgument", err)
	}
}

func TestReplicateChunk(t *testing.T) {
	fc := startFakeCoordinator(t)
	srcDir := t.TempDir()
	src := startNode(t, srcDir, fc, nil)
	dst := startNode(t, t.TempDir(), startFakeCoordinator(t), nil)
	dn := control(t, src)
	waitFor(t, 10*time.Second, "registration", fc.registered)
	good, _ := randomChunk(1, 3<<20+17)
	bad, _ := randomChunk(2, 3<<20+17)
	hGood := putChunk(t, src.Addr(), good)
	hBad := putChunk(t, src.Addr(), bad)
	flipBit(t, srcDir, hBad, 5)
	ctx := context.Background()
	target := []*api.Node{{Id: string(dst.ID()), Addr: dst.Addr()}}

	resp, err := dn.ReplicateChunk(ctx, &api.ReplicateChunkRequest{Hash: hGood[:], Targets: target, Term: 1})
	if err != nil {
		t.Fatalf("ReplicateChunk of a good chunk: %v", err)
	}
	if len(resp.Stored) != 1 || resp.Stored[0] != string(dst.ID()) {
		t.Errorf("ReplicateChunk stored on %v, want [%s]", resp.Stored, dst.ID())
	}
	if _, err := dst.Store().Stat(hGood); err != nil {
		t.Errorf("target after ReplicateChunk: %v", err)
	}

	_, err = dn.ReplicateChunk(ctx, &api.ReplicateChunkRequest{Hash: hBad[:], Targets: target, Term: 1})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("ReplicateChunk of a corrupt copy: err = %v; want FailedPrecondition naming the corruption", err)
	}
	t.Logf("ReplicateChunk of a corrupt copy: %v", err)
	if _, err := dst.Store().Stat(hBad); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("the target took a corrupt copy: Stat err = %v", err)
	}
	if _, err := src.Store().Stat(hBad); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("the corrupt source copy is still in the store: Stat err = %v", err)
	}
	if files := quarantined(t, srcDir, hBad); len(files) != 1 {
		t.Errorf("quarantine/ holds %v, want one file", files)
	}
	if fc.corruptReports(hBad) != 1 {
		t.Errorf("coordinator got %d corrupt reports, want 1", fc.corruptReports(hBad))
	}
}

func TestNoGoroutinesLeftAfterClose(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		fc := startFakeCoordinator(t)
		dir := t.TempDir()
		var chunks [][]byte
		for i := range 4 {
			c, _ := randomChunk(uint64(i), 512<<10)
			chunks = append(chunks, c)
		}
		preload(t, dir, chunks...)
		cfg := datanode.Config{Dir: dir, Listen: "127.0.0.1:0", Coordinators: []string{fc.Addr()},
			NoSync: true, Heartbeat: 20 * time.Millisecond, ScrubRate: 1, Logger: quietLogger()}
		n, err := datanode.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		dn, err := rpc.Dial(n.GRPCAddr())
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "registration", fc.registered)
		extra, _ := randomChunk(99, 100<<10)
		h := putChunk(t, n.Addr(), extra)
		if _, err := api.NewDatanodeClient(dn).VerifyChunk(context.Background(), &api.VerifyChunkRequest{Hash: h[:]}); err != nil {
			t.Fatal(err)
		}
		// Close while the scrubber waits on its rate limit.
		dn.Close()
		n.Close()
		fc.srv.Stop()
	}()
	const slack = 2
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+slack {
		if time.Now().After(deadline) {
			var buf bytes.Buffer
			pprof.Lookup("goroutine").WriteTo(&buf, 1)
			t.Fatalf("%d goroutines after close, %d before:\n%s", runtime.NumGoroutine(), base, buf.String())
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

func TestBadScrubRate(t *testing.T) {
	for _, r := range []float64{-1} {
		_, err := datanode.Start(datanode.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", ScrubRate: r, Logger: quietLogger()})
		if err == nil || !strings.Contains(err.Error(), "scrub rate") {
			t.Errorf("Start with scrub rate %v: err = %v, want one naming the scrub rate", r, err)
		}
	}
}

// Leader-only commands are fenced by the sender's term: none is refused,
// an older one than the newest seen is, and the newest survives a restart.
func TestLeaderTermFence(t *testing.T) {
	dir := t.TempDir()
	n, err := datanode.Start(datanode.Config{Dir: dir, Listen: "127.0.0.1:0", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	del := func(n *datanode.Node, term int64) error {
		conn, err := rpc.Dial(n.GRPCAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		h := dfs.Sum([]byte("not stored"))
		_, err = api.NewDatanodeClient(conn).DeleteChunks(ctx, &api.DeleteChunksRequest{Hashes: [][]byte{h[:]}, Term: term})
		return err
	}
	if err := del(n, 0); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("delete without a term: %v, want refused", err)
	}
	if err := del(n, 7); err != nil {
		t.Fatalf("delete with term 7: %v", err)
	}
	if err := del(n, 6); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("delete with the older term 6: %v, want refused", err)
	}
	if err := del(n, 7); err != nil {
		t.Fatalf("delete with the current term again: %v", err)
	}
	n.Close()
	n, err = datanode.Start(datanode.Config{Dir: dir, Listen: "127.0.0.1:0", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := del(n, 6); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("after a restart, delete with the older term 6: %v, want refused", err)
	}
}

func (fc *fakeCoordinator) counts() (registers, reports int) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.registers, fc.reports
}

// TestReRegistrationSendsDeltasNotAFullReport checks that a coordinator
// that holds this datanode process's state gets no full report when the
// node registers again, and still learns the changes whose heartbeats
// failed; and that a restarted node (a new incarnation) reports in full,
// replacing what the coordinator held.
func TestReRegistrationSendsDeltasNotAFullReport(t *testing.T) {
	fc := startFakeCoordinator(t)
	dir := t.TempDir()
	a, ha := randomChunk(1, 1000)
	preload(t, dir, a)
	n := startNode(t, dir, fc, filesOnly)
	waitFor(t, 10*time.Second, "registration", fc.registered)
	if _, reports := fc.counts(); reports != 1 || !fc.holds(ha) {
		t.Fatalf("first registration: %d full reports, holds a %v; want 1, true", reports, fc.holds(ha))
	}

	// Heartbeats fail (the node registers again after each failure) while
	// a chunk is written: the change must arrive once they pass, without a
	// full report.
	fc.mu.Lock()
	fc.failBeats = 3
	fc.mu.Unlock()
	b, _ := randomChunk(2, 1000)
	hb := putChunk(t, n.Addr(), b)
	waitFor(t, 10*time.Second, "the written chunk to reach the coordinator", func() bool { return fc.holds(hb) })
	registers, reports := fc.counts()
	if registers < 2 {
		t.Fatalf("%d registrations; want the failed heartbeats to cause another", registers)
	}
	if reports != 1 {
		t.Fatalf("%d full reports after re-registering with the same process, want 1", reports)
	}

	// A restart is a new incarnation: a full report replaces the old view.
	// The chunk file is removed by hand while the node is stopped, with
	// the index its clean stop saved (as docs/operations.md says to).
	n.Close()
	for _, f := range []string{chunkFile(dir, ha), filepath.Join(dir, "chunk-index")} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	startNode(t, dir, fc, filesOnly)
	waitFor(t, 10*time.Second, "a full report from the restarted node", func() bool {
		_, r := fc.counts()
		return r == 2 && fc.registered()
	})
	if fc.holds(ha) || !fc.holds(hb) {
		t.Fatalf("after the restart's report: holds a %v, b %v; want false, true", fc.holds(ha), fc.holds(hb))
	}
}

// A client that sends a chunk slower than dataplane.MinRateBytes per
// window (here a byte every 50 ms, against a window of 300 ms) has its
// connection cut, and nothing is stored; a client at speed is not.
func TestSlowPutIsCut(t *testing.T) {
	fc := startFakeCoordinator(t)
	n := startNode(t, t.TempDir(), fc, func(c *datanode.Config) { c.SlowWindow = 300 * time.Millisecond })
	data, h := randomChunk(77, 200<<10)
	conn, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /chunks/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", h, len(data))
	start := time.Now()
	cut := false
	for i := 0; i < len(data) && time.Since(start) < 20*time.Second; i++ {
		if _, err := conn.Write(data[i : i+1]); err != nil {
			cut = true
			break
		}
		time.Sleep(50 * time.Millisecond)
		// The server answers (an error) or closes once the deadline passes.
		conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := conn.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			cut = true
			break
		}
	}
	if !cut {
		t.Fatalf("a PUT trickling a byte every 50 ms was still open after %v", time.Since(start).Round(time.Millisecond))
	}
	t.Logf("cut after %v", time.Since(start).Round(time.Millisecond))
	if _, _, err := n.Store().Open(h); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("a cut upload left the chunk stored: %v", err)
	}
	// At speed, the same chunk goes through.
	resp, err := http.DefaultClient.Do(mustRequest(t, http.MethodPut, "http://"+n.Addr()+"/chunks/"+h.String(), data))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a PUT at speed: %s", resp.Status)
	}
}

func mustRequest(t *testing.T, method, url string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// A chain that would bring a chunk back to the node, or to a node twice,
// is refused before anything is stored or sent on.
func TestChainLoopsRefused(t *testing.T) {
	fc := startFakeCoordinator(t)
	n := startNode(t, t.TempDir(), fc, nil)
	other := startNode(t, t.TempDir(), fc, nil)
	data, h := randomChunk(78, 4<<10)
	for name, chain := range map[string]string{
		"itself":       string(n.ID()) + "@" + n.Addr(),
		"a node twice": string(other.ID()) + "@" + other.Addr() + "," + string(other.ID()) + "@" + other.Addr(),
	} {
		req := mustRequest(t, http.MethodPut, "http://"+n.Addr()+"/chunks/"+h.String(), data)
		req.Header.Set("X-Dfs-Chain", chain)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("a chain back to %s: %s, want 400", name, resp.Status)
		}
	}
	for _, node := range []*datanode.Node{n, other} {
		if _, _, err := node.Store().Open(h); !errors.Is(err, dfs.ErrNotFound) {
			t.Errorf("node %s stored the chunk of a refused chain: %v", node.ID(), err)
		}
	}
}

// TestGetChunk reads chunks back whole, in ranges, conditionally and by
// HEAD, from a volume and from a chunk file; a chunk whose volume lost its
// tail is an error response, not a short body.
func TestGetChunk(t *testing.T) {
	dir := t.TempDir()
	fc := startFakeCoordinator(t)
	n := startNode(t, dir, fc, nil)
	get := func(method string, h dfs.ChunkHash, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+n.Addr()+"/chunks/"+h.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, h.Short(), err)
		}
		return resp, b
	}
	var hashes []dfs.ChunkHash
	for i, size := range []int{1, 100, 64 << 10, 200 << 10, 1 << 20, 3 << 20 / 2} {
		data, _ := randomChunk(uint64(100+i), size)
		h := putChunk(t, n.Addr(), data)
		hashes = append(hashes, h)
		resp, b := get(http.MethodGet, h)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, data) {
			t.Fatalf("GET %d-byte chunk: %s, %d bytes back, equal %v", size, resp.Status, len(b), bytes.Equal(b, data))
		}
		if resp.ContentLength != int64(size) || resp.Header.Get("ETag") != `"`+h.String()+`"` {
			t.Errorf("GET %d-byte chunk: Content-Length %d, ETag %s", size, resp.ContentLength, resp.Header.Get("ETag"))
		}
		resp, b = get(http.MethodHead, h)
		if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(size) || len(b) != 0 {
			t.Errorf("HEAD %d-byte chunk: %s, Content-Length %d, %d body bytes", size, resp.Status, resp.ContentLength, len(b))
		}
		if size >= 20 {
			resp, b = get(http.MethodGet, h, "Range", "bytes=10-19")
			if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, data[10:20]) {
				t.Errorf("GET bytes 10-19 of %d-byte chunk: %s, %q", size, resp.Status, b)
			}
		}
		resp, _ = get(http.MethodGet, h, "If-None-Match", `"`+h.String()+`"`)
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %d-byte chunk If-None-Match its ETag: %s, want 304", size, resp.Status)
		}
	}

	// Cut the volume that holds the 64 KiB chunk in its middle.
	h := hashes[2]
	p, off, err := disk.Locate(dir, h)
	if err != nil {
		t.Fatal(err)
	}
	if off == 0 {
		t.Fatalf("the 64 KiB chunk is in a file of its own (%s), not a volume", p)
	}
	if err := os.Truncate(p, off+(32<<10)); err != nil {
		t.Fatal(err)
	}
	resp, b := get(http.MethodGet, h)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("GET of a chunk cut short on disk: %s, %d bytes, want 500", resp.Status, len(b))
	}
}
