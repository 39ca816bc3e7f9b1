package coordinator

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// bare returns a coordinator with no etcd and no background loops: the
// tests drive its clock and its node states themselves.
func bare(t testing.TB, cfg Config) *Server {
	t.Helper()
	cfg.Logger = quiet()
	cfg.fill()
	s := &Server{cfg: cfg, log: cfg.Logger, nodes: map[dfs.NodeID]*node{}, locs: newLocMap(),
		changed: make(chan struct{}), sessions: map[string]*session{}, started: time.Now()}
	s.heal.init()
	s.hl.init(cfg.Replicas)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	t.Cleanup(s.cancel)
	return s
}

// recount is chunk health computed from scratch: every chunk of the map,
// each copy classed by its node's class in the counters' view (what the
// counters must equal at any time), or at now (what they equal once
// reclassNodes(now) ran).
type recount struct {
	byGood    [][2]int64
	chunks    int64
	copies    int64
	under     []map[dfs.Hash]struct{}
	over      map[dfs.Hash]struct{}
	drainNeed map[uint16]int64
}

func (s *Server) recountLocked(class func(i uint16, shard int) nodeClass) recount {
	r := recount{byGood: make([][2]int64, s.cfg.Replicas+2), over: map[dfs.Hash]struct{}{}, drainNeed: map[uint16]int64{}}
	for range s.cfg.Replicas {
		r.under = append(r.under, map[dfs.Hash]struct{}{})
	}
	for k := range locShards {
		s.locs.eachInShard(k, func(h dfs.Hash) {
			if _, doomed := s.heal.doomed[h]; doomed {
				return
			}
			good, usable, copies := 0, 0, 0
			var draining []uint16
			s.locs.eachHolder(h, func(i uint16) {
				copies++
				switch class(i, k) {
				case classGood:
					good++
				case classDraining:
					usable++
					draining = append(draining, i)
				case classDrained:
					usable++
				}
			})
			u := 0
			if usable > 0 {
				u = 1
			}
			r.byGood[min(good, s.cfg.Replicas+1)][u]++
			r.chunks++
			r.copies += int64(copies)
			if good < s.cfg.Replicas && good+usable > 0 {
				r.under[good][h] = struct{}{}
			}
			if good > s.cfg.Replicas {
				r.over[h] = struct{}{}
			}
			if good < s.cfg.Replicas {
				for _, i := range draining {
					r.drainNeed[i]++
				}
			}
		})
	}
	return r
}

// checkHealth fails the test unless the counters equal a recount.
func checkHealth(t *testing.T, s *Server, step string, now time.Time, caughtUp bool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	class := s.hl.classOf
	if caughtUp {
		class = func(i uint16, _ int) nodeClass {
			return classOfState(s.stateLocked(s.nodes[s.locs.nodeID(i)], now))
		}
	}
	r := s.recountLocked(class)
	for g := range r.byGood {
		if r.byGood[g] != s.hl.byGood[g] {
			t.Fatalf("%s: chunks with %d good copies (no other, other readable): %v, recount %v", step, g, s.hl.byGood[g], r.byGood[g])
		}
	}
	if r.chunks != s.hl.chunks || r.copies != s.hl.copies {
		t.Fatalf("%s: %d chunks, %d copies; recount %d, %d", step, s.hl.chunks, s.hl.copies, r.chunks, r.copies)
	}
	for g := range r.under {
		if !maps.Equal(r.under[g], s.hl.under[g]) {
			t.Fatalf("%s: under-replicated with %d good copies: %d chunks, recount %d", step, g, len(s.hl.under[g]), len(r.under[g]))
		}
	}
	if !maps.Equal(r.over, s.hl.over) {
		t.Fatalf("%s: over-replicated: %d chunks, recount %d", step, len(s.hl.over), len(r.over))
	}
	if !maps.Equal(r.drainNeed, s.hl.drainNeed) {
		t.Fatalf("%s: chunks draining nodes hold below the factor: %v, recount %v", step, s.hl.drainNeed, r.drainNeed)
	}
	for id, n := range s.nodes {
		held := int64(0)
		for k := range locShards {
			held += int64(len(s.locs.heldInShard(k, n.idx, nil)))
		}
		if held != n.chunks {
			t.Fatalf("%s: node %s counts %d chunks, holds %d", step, id, n.chunks, held)
		}
	}
	c := s.countersLocked(now)
	if c.Healthy+c.UnderReplicated+c.MissingRepairable+c.MissingLost != c.Chunks {
		t.Fatalf("%s: counters %+v do not add up to the chunks", step, c)
	}
	// A chunk is pending repair if some node that takes copies lacks it,
	// else it has no node to place a copy on.
	targets := 0
	for _, n := range s.nodes {
		if s.hl.nodes[n.idx].cur == classGood {
			targets++
		}
	}
	pending, unplaceable := int64(0), int64(0)
	for g, u := range r.under {
		if g < targets {
			pending += int64(len(u))
		} else {
			unplaceable += int64(len(u))
		}
	}
	if c.PendingRepair != pending || c.Unplaceable != unplaceable {
		t.Fatalf("%s: pending repair %d, unplaceable %d; recount %d, %d", step, c.PendingRepair, c.Unplaceable, pending, unplaceable)
	}
}

// reportStream is a chunk report as a datanode streams it.
type reportStream struct {
	grpc.ServerStream
	msgs []*api.ChunkReport
}

func (r *reportStream) Recv() (*api.ChunkReport, error) {
	if len(r.msgs) == 0 {
		return nil, io.EOF
	}
	m := r.msgs[0]
	r.msgs = r.msgs[1:]
	return m, nil
}

func (r *reportStream) SendAndClose(*api.ChunkReportResponse) error { return nil }
func (r *reportStream) Context() context.Context                    { return context.Background() }

// fullReport registers id (incarnation inc) and merges a full report of
// hashes in batches, as the gRPC calls would.
func fullReport(t *testing.T, s *Server, id dfs.NodeID, inc uint64, hashes []dfs.Hash) {
	t.Helper()
	nd := &api.Node{Id: string(id), Addr: string(id) + ":1", GrpcAddr: string(id) + ":2"}
	s.mu.Lock()
	if s.nodes[id] == nil {
		// As if in the registry already: registering writes nothing to
		// etcd, which this coordinator has not.
		s.newNodeLocked(id, &api.NodeRecord{Id: nd.Id, Addr: nd.Addr, GrpcAddr: nd.GrpcAddr})
	}
	s.mu.Unlock()
	resp, err := s.Register(context.Background(), &api.RegisterRequest{Node: nd, Incarnation: inc})
	if err != nil {
		t.Fatal(err)
	}
	st := &reportStream{}
	for i := 0; ; i += 7 {
		end := min(i+7, len(hashes))
		m := &api.ChunkReport{NodeId: string(id), Generation: resp.Generation, Last: end == len(hashes)}
		for _, h := range hashes[i:end] {
			m.Hashes = append(m.Hashes, h[:])
		}
		st.msgs = append(st.msgs, m)
		if m.Last {
			break
		}
	}
	if err := s.ReportChunks(st); err != nil {
		t.Fatalf("report of %s: %v", id, err)
	}
}

// TestHealthAgreesWithRecount runs random sequences of full and delta
// reports, deaths, revivals, drains, undrains, corrupt reports, dooming,
// removals and nodes forgotten, and after each step checks the counters and sets against a
// recount from scratch; after each node check, against the nodes' states
// at the test's clock.
func TestHealthAgreesWithRecount(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { healthRandomRun(t, seed) })
	}
}

func healthRandomRun(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	s := bare(t, Config{Replicas: 3, SuspectAfter: 3 * time.Second, DeadAfter: 60 * time.Second})
	ids := []dfs.NodeID{"n0", "n1", "n2", "n3", "n4", "n5"}
	now := time.Now()
	truth := map[dfs.NodeID]map[dfs.Hash]bool{}
	inc := map[dfs.NodeID]uint64{}
	hash := func() dfs.Hash { return testHash(rng.IntN(400)) }
	for _, id := range ids {
		truth[id] = map[dfs.Hash]bool{}
		inc[id] = 1
		fullReport(t, s, id, inc[id], nil)
	}
	steps := 3000
	if testing.Short() {
		steps = 600
	}
	for step := range steps {
		id := ids[rng.IntN(len(ids))]
		s.mu.Lock()
		n := s.nodes[id]
		s.mu.Unlock()
		var what string
		switch op := rng.IntN(100); {
		case op < 40:
			what = "add"
			h := hash()
			truth[id][h] = true
			s.mu.Lock()
			s.addLocLocked(h, id, n)
			s.mu.Unlock()
		case op < 60:
			what = "remove"
			h := hash()
			delete(truth[id], h)
			s.mu.Lock()
			s.removeLocLocked(h, id, n)
			s.mu.Unlock()
		case op < 64:
			// A restart (new incarnation) or a re-registration with a full
			// report: the report replaces what the node held.
			what = "full report"
			if rng.IntN(2) == 0 {
				inc[id]++
			} else {
				s.mu.Lock()
				s.wantFullReportLocked(n)
				s.mu.Unlock()
			}
			held := map[dfs.Hash]bool{}
			for h := range truth[id] {
				if rng.IntN(4) > 0 {
					held[h] = true
				}
			}
			for range rng.IntN(20) {
				held[hash()] = true
			}
			truth[id] = held
			fullReport(t, s, id, inc[id], slicesOf(held))
		case op < 70:
			what = "death"
			s.mu.Lock()
			n.lastBeat = now.Add(-s.cfg.DeadAfter)
			s.mu.Unlock()
		case op < 74:
			what = "suspicion"
			s.mu.Lock()
			n.lastBeat = now.Add(-s.cfg.SuspectAfter)
			s.mu.Unlock()
		case op < 80:
			what = "revival"
			s.mu.Lock()
			n.lastBeat = now
			s.mu.Unlock()
		case op < 84:
			what = "drain"
			setAdmin(s, n, "draining")
		case op < 86:
			what = "drained"
			setAdmin(s, n, "drained")
		case op < 90:
			what = "undrain"
			setAdmin(s, n, "")
		case op < 93:
			what = "corrupt"
			s.mu.Lock()
			s.noteCorruptLocked(hash(), id, now)
			s.mu.Unlock()
		case op < 97:
			what = "doom"
			s.mu.Lock()
			s.doomLocked(hash())
			s.mu.Unlock()
		case op < 99:
			what = "undoom"
			s.mu.Lock()
			for h := range s.heal.doomed {
				s.undoomLocked(h)
				break
			}
			s.mu.Unlock()
		default:
			// Removed from the registry, then back as a new node with an
			// empty disk.
			what = "forget"
			s.forgetNode(id)
			s.mu.Lock()
			_, still := s.nodes[id]
			s.mu.Unlock()
			if still {
				t.Fatalf("step %d: %s still in the node table after forgetNode", step, id)
			}
			checkHealth(t, s, fmt.Sprintf("step %d (forgot %s)", step, id), now, false)
			truth[id] = map[dfs.Hash]bool{}
			inc[id]++
			fullReport(t, s, id, inc[id], nil)
		}
		label := fmt.Sprintf("step %d (%s %s)", step, what, id)
		checkHealth(t, s, label, now, false)
		if rng.IntN(3) == 0 {
			s.reclassNodes(now)
			checkHealth(t, s, label+" after the node check", now, true)
		}
		now = now.Add(time.Duration(rng.IntN(2000)) * time.Millisecond)
	}
	// The map holds what the nodes said they hold.
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, held := range truth {
		for h := range held {
			if !s.locs.holds(h, s.nodes[id].idx) {
				t.Fatalf("%s holds %s, the map says not", id, h.Short())
			}
		}
		if int64(len(held)) != s.nodes[id].chunks {
			t.Fatalf("%s holds %d chunks, the map %d", id, len(held), s.nodes[id].chunks)
		}
	}
}

func setAdmin(s *Server, n *node, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := proto.Clone(n.rec).(*api.NodeRecord)
	rec.AdminState = state
	n.rec = rec
}

func slicesOf(m map[dfs.Hash]bool) []dfs.Hash {
	var out []dfs.Hash
	for h := range m {
		out = append(out, h)
	}
	return out
}

// TestHealthUnderConcurrentChanges re-classes nodes while other goroutines
// add and remove copies; once they stop, the counters equal a recount.
func TestHealthUnderConcurrentChanges(t *testing.T) {
	s := bare(t, Config{Replicas: 2, DeadAfter: time.Minute})
	ids := []dfs.NodeID{"a", "b", "c", "d"}
	now := time.Now()
	for _, id := range ids {
		fullReport(t, s, id, 1, nil)
	}
	for i := range 5000 {
		s.mu.Lock()
		s.addLocLocked(testHash(i), ids[i%4], s.nodes[ids[i%4]])
		s.addLocLocked(testHash(i), ids[(i+1)%4], s.nodes[ids[(i+1)%4]])
		s.mu.Unlock()
	}
	s.reclassNodes(now)
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 5000 {
				id := ids[rng.IntN(4)]
				h := testHash(rng.IntN(6000))
				s.mu.Lock()
				if rng.IntN(2) == 0 {
					s.addLocLocked(h, id, s.nodes[id])
				} else {
					s.removeLocLocked(h, id, s.nodes[id])
				}
				s.mu.Unlock()
			}
		}()
	}
	for k := range 20 {
		id := ids[k%4]
		s.mu.Lock()
		if k%2 == 0 {
			s.nodes[id].lastBeat = now.Add(-time.Hour) // dies
		} else {
			s.nodes[id].lastBeat = now
		}
		s.mu.Unlock()
		s.reclassNodes(now)
	}
	wg.Wait()
	checkHealth(t, s, "after the concurrent changes", now, false)
	s.reclassNodes(now)
	checkHealth(t, s, "after the node check", now, true)
}

// TestRepairWorksFromTheSet checks that a node's death puts its chunks in
// the under-replicated set, most endangered bucket by good copies, and that
// a drain finishes by the count of chunks that still need the node.
func TestRepairSetsAfterDeathAndDrain(t *testing.T) {
	s := bare(t, Config{Replicas: 2, DeadAfter: time.Minute})
	now := time.Now()
	for _, id := range []dfs.NodeID{"a", "b", "c"} {
		fullReport(t, s, id, 1, nil)
	}
	s.mu.Lock()
	for i := range 100 {
		s.addLocLocked(testHash(i), "a", s.nodes["a"])
		s.addLocLocked(testHash(i), "b", s.nodes["b"])
	}
	s.mu.Unlock()
	s.reclassNodes(now)
	if c := s.counters(now); c.Healthy != 100 || c.PendingRepair != 0 {
		t.Fatalf("before: %+v, want 100 healthy, nothing to repair", c)
	}
	s.mu.Lock()
	s.nodes["a"].lastBeat = now.Add(-time.Hour)
	s.mu.Unlock()
	s.reclassNodes(now)
	if c := s.counters(now); c.UnderReplicated != 100 || c.PendingRepair != 100 || len(s.hl.under[1]) != 100 {
		t.Fatalf("after a's death: %+v, %d in the one-copy bucket; want 100 under-replicated", c, len(s.hl.under[1]))
	}
	s.mu.Lock()
	s.nodes["b"].lastBeat = now.Add(-time.Hour)
	s.mu.Unlock()
	s.reclassNodes(now)
	if c := s.counters(now); c.MissingLost != 100 || c.PendingRepair != 0 {
		t.Fatalf("after b's death too: %+v; want 100 lost, none repairable", c)
	}
	// Both come back; b is drained: its copies are readable, do not count,
	// and every chunk needs it until copied elsewhere.
	s.mu.Lock()
	s.nodes["a"].lastBeat, s.nodes["b"].lastBeat = now, now
	s.mu.Unlock()
	setAdmin(s, s.nodes["b"], "draining")
	s.reclassNodes(now)
	bi := s.nodes["b"].idx
	if c := s.counters(now); c.UnderReplicated != 100 || s.hl.drainNeed[bi] != 100 {
		t.Fatalf("b draining: %+v, b needed by %d; want 100 under-replicated needing b", c, s.hl.drainNeed[bi])
	}
	s.mu.Lock()
	for i := range 100 {
		s.addLocLocked(testHash(i), "c", s.nodes["c"])
	}
	s.mu.Unlock()
	if c := s.counters(now); c.Healthy != 100 || s.hl.drainNeed[bi] != 0 {
		t.Fatalf("copied to c: %+v, b needed by %d; want all healthy, b needed by none", c, s.hl.drainNeed[bi])
	}
}

func (s *Server) counters(now time.Time) Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countersLocked(now)
}

// BenchmarkReportMerge merges the full reports of three datanodes holding
// the same million chunks each, at once, as a restarted coordinator does:
// the time of one operation is the coordinator's share of its restart to
// ready at a million chunks per node.
func BenchmarkReportMerge(b *testing.B) {
	const chunks = 1 << 20
	hashes := make([]dfs.Hash, chunks)
	for i := range hashes {
		hashes[i] = testHash(i)
	}
	for range b.N {
		b.StopTimer()
		s := bare(b, Config{Replicas: 3})
		msgs := make([][]*api.ChunkReport, 3)
		for k := range msgs {
			id := fmt.Sprint("dn", k)
			for i := 0; i < chunks; i += 16384 {
				m := &api.ChunkReport{NodeId: id, Last: i+16384 >= chunks}
				for _, h := range hashes[i:min(i+16384, chunks)] {
					m.PackedHashes = append(m.PackedHashes, h[:]...)
				}
				msgs[k] = append(msgs[k], m)
			}
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		var wg sync.WaitGroup
		for k := range msgs {
			id := dfs.NodeID(fmt.Sprint("dn", k))
			nd := &api.Node{Id: string(id), Addr: string(id) + ":1", GrpcAddr: string(id) + ":2"}
			s.mu.Lock()
			s.newNodeLocked(id, &api.NodeRecord{Id: nd.Id, Addr: nd.Addr, GrpcAddr: nd.GrpcAddr})
			s.mu.Unlock()
			resp, err := s.Register(context.Background(), &api.RegisterRequest{Node: nd, Incarnation: 1})
			if err != nil {
				b.Fatal(err)
			}
			for _, m := range msgs[k] {
				m.Generation = resp.Generation
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.ReportChunks(&reportStream{msgs: msgs[k]}); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		if c := s.counters(time.Now()); c.Healthy != chunks || c.Copies != 3*chunks {
			b.Fatalf("after the reports: %+v", c)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/chunks, "heapB/chunk")
		runtime.KeepAlive(s)
		runtime.KeepAlive(msgs)
		s.cancel()
		b.StartTimer()
	}
	b.ReportMetric(float64(chunks), "chunks/node")
}
