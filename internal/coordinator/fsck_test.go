package coordinator

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/rpc"
)

// TestFsckPages walks fsck a page at a time: every file comes exactly once,
// in order, no page is longer than asked, and each file's chunks are
// classed by their copies.
func TestFsckPages(t *testing.T) {
	h := start(t, Config{CommitWait: time.Second})
	for i := range 3 {
		h.register(dfs.NodeID(fmt.Sprint("dn", i)), "", 100*gib)
	}
	const files = 23
	want := map[string]int64{} // path -> chunks under-replicated
	for i := range files {
		cs := newChunks(2, 1<<10)
		for _, c := range cs {
			h.added("dn0", hashOf(c))
			h.added("dn1", hashOf(c))
		}
		under := int64(2)
		if i%3 == 0 {
			// Fully replicated.
			for _, c := range cs {
				h.added("dn2", hashOf(c))
			}
			under = 0
		}
		path := fmt.Sprintf("fsck/%02d", i)
		if _, err := h.coord.Commit(h.ctx, commitReq(path, cs)); err != nil {
			t.Fatalf("commit %s: %v", path, err)
		}
		want[path] = under
	}
	seen := map[string]bool{}
	after, pages, last := "", 0, ""
	for {
		p, err := h.coord.Fsck(h.ctx, &api.FsckRequest{Prefix: "fsck/", Files: true, StartAfter: after, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(p.FileList) > 5 || p.Files != int64(len(p.FileList)) {
			t.Fatalf("page %d: %d files listed, %d counted; want at most 5, the same", pages, len(p.FileList), p.Files)
		}
		for _, f := range p.FileList {
			if seen[f.Path] {
				t.Fatalf("%s listed twice", f.Path)
			}
			if f.Path <= last {
				t.Fatalf("%s listed after %s", f.Path, last)
			}
			seen[f.Path], last = true, f.Path
			u, ok := want[f.Path]
			if !ok {
				t.Fatalf("fsck listed %s, which was not written", f.Path)
			}
			if f.Chunks != 2 || f.UnderReplicated != u || f.Healthy != 2-u {
				t.Fatalf("%s: %+v; want 2 chunks, %d under-replicated", f.Path, f, u)
			}
		}
		if !p.Truncated {
			break
		}
		after = p.NextStartAfter
	}
	if len(seen) != files || pages != (files+4)/5 {
		t.Fatalf("%d files in %d pages, want %d in %d", len(seen), pages, files, (files+4)/5)
	}
	if _, err := h.coord.Fsck(h.ctx, &api.FsckRequest{Limit: -1}); !errors.Is(rpc.FromStatus(err), dfs.ErrInvalid) {
		t.Fatalf("fsck with a negative limit: %v, want invalid", err)
	}
	if n := h.s.FsckPages(); n != int64(pages)+1 {
		t.Fatalf("%d fsck pages served, want %d", n, pages+1)
	}
}

// TestCountersCountFilesAndChunks checks the counters: files from the
// etcd watch (an overwrite is no new file, a delete one fewer), chunks and
// copies from the location map.
func TestCountersCountFilesAndChunks(t *testing.T) {
	h := start(t, Config{CommitWait: time.Second})
	for i := range 3 {
		h.register(dfs.NodeID(fmt.Sprint("dn", i)), "", 100*gib)
	}
	commit := func(path string) {
		t.Helper()
		cs := newChunks(1, 1<<10)
		for i := range 3 {
			h.added(dfs.NodeID(fmt.Sprint("dn", i)), hashOf(cs[0]))
		}
		if _, err := h.coord.Commit(h.ctx, commitReq(path, cs)); err != nil {
			t.Fatalf("commit %s: %v", path, err)
		}
	}
	commit("a")
	commit("b")
	commit("b") // an overwrite
	commit("c")
	if _, err := h.coord.Delete(h.ctx, &api.DeleteRequest{Path: "c"}); err != nil {
		t.Fatal(err)
	}
	var c *api.CountersResponse
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if c, err = h.coord.Counters(h.ctx, &api.CountersRequest{}); err != nil {
			t.Fatal(err)
		}
		if c.FilesKnown && c.Files == 2 && c.Healthy == 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if !c.FilesKnown || c.Files != 2 {
		t.Fatalf("files %d (known %v), want 2: two paths written, one overwritten, one deleted", c.Files, c.FilesKnown)
	}
	if c.Chunks != 4 || c.Copies != 12 || c.Healthy != 4 || c.UnderReplicated != 0 || c.PendingRepair != 0 || c.Cold {
		t.Fatalf("counters %+v; want 4 chunks, 12 copies, all healthy, not cold", c)
	}
}

// TestFullReportOnlyForANewIncarnation checks that a re-registration of the
// same datanode process is not asked for a full report, and a new process
// is, its report replacing the old one's locations.
func TestFullReportOnlyForANewIncarnation(t *testing.T) {
	h := start(t, Config{})
	register := func(inc uint64) bool {
		t.Helper()
		resp, err := h.reg.Register(h.ctx, &api.RegisterRequest{Node: &api.Node{Id: "dn0", Addr: "dn0.test:1", GrpcAddr: "dn0.test:2"}, Incarnation: inc})
		if err != nil {
			t.Fatal(err)
		}
		h.gens["dn0"] = resp.Generation
		return resp.FullReport
	}
	report := func(hs ...dfs.Hash) {
		t.Helper()
		stream, err := h.reg.ReportChunks(h.ctx)
		if err != nil {
			t.Fatal(err)
		}
		rep := &api.ChunkReport{NodeId: "dn0", Generation: h.gens["dn0"], Last: true}
		for _, x := range hs {
			rep.Hashes = append(rep.Hashes, x[:])
		}
		stream.Send(rep)
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
	}
	a, b := hashOf(newChunks(1, 1)[0]), hashOf(newChunks(1, 1)[0])
	if !register(7) {
		t.Fatal("first registration not asked for a full report")
	}
	if !register(7) {
		t.Fatal("registration before any report was made not asked for a full report")
	}
	report(a)
	if register(7) {
		t.Fatal("re-registration of the same incarnation asked for a full report")
	}
	h.added("dn0", b) // deltas go on
	if register(0) != true {
		t.Fatal("a datanode that names no incarnation not asked for a full report")
	}
	report(a, b)
	if register(8) != true {
		t.Fatal("a new incarnation not asked for a full report")
	}
	report(b)
	h.s.mu.Lock()
	la, lb, n := h.s.holdersLocked(a), h.s.holdersLocked(b), h.s.nodes["dn0"].chunks
	h.s.mu.Unlock()
	if len(la) != 0 || len(lb) != 1 || n != 1 {
		t.Fatalf("after the new incarnation's report: a on %v, b on %v, node counts %d; want b alone", la, lb, n)
	}
	// Locations dropped on doubt (a failed delete) ask for a full report
	// at the next heartbeat, through a re-registration.
	h.s.mu.Lock()
	h.s.wantFullReportLocked(h.s.nodes["dn0"])
	h.s.mu.Unlock()
	resp, err := h.reg.Heartbeat(h.ctx, &api.HeartbeatRequest{NodeId: "dn0", Generation: h.gens["dn0"]})
	if err != nil || !resp.Reregister {
		t.Fatalf("heartbeat after locations were dropped: %v, %v; want told to register again", resp, err)
	}
	if !register(8) {
		t.Fatal("registration after locations were dropped not asked for a full report")
	}
}

// TestPackedReport checks a report of concatenated hashes, and that one
// whose length is not a whole number of hashes is refused.
func TestPackedReport(t *testing.T) {
	h := start(t, Config{})
	resp, err := h.reg.Register(h.ctx, &api.RegisterRequest{Node: &api.Node{Id: "dn0", Addr: "dn0.test:1", GrpcAddr: "dn0.test:2"}, Incarnation: 1})
	if err != nil {
		t.Fatal(err)
	}
	a, b := hashOf(newChunks(1, 1)[0]), hashOf(newChunks(1, 1)[0])
	send := func(packed []byte) error {
		stream, err := h.reg.ReportChunks(h.ctx)
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(&api.ChunkReport{NodeId: "dn0", Generation: resp.Generation, PackedHashes: packed, Last: true})
		_, err = stream.CloseAndRecv()
		return err
	}
	if err := send(append(a[:], 0)); !errors.Is(rpc.FromStatus(err), dfs.ErrInvalid) {
		t.Fatalf("report of 33 packed bytes: %v, want invalid", err)
	}
	if err := send(append(a[:], b[:]...)); err != nil {
		t.Fatal(err)
	}
	h.s.mu.Lock()
	la, lb := h.s.holdersLocked(a), h.s.holdersLocked(b)
	h.s.mu.Unlock()
	if len(la) != 1 || len(lb) != 1 {
		t.Fatalf("after a packed report of a and b: a on %v, b on %v", la, lb)
	}
}
