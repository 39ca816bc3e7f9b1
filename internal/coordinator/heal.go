package coordinator

// Keeping data safe: re-replication, trimming, draining and garbage
// collection, run by the coordinator in the background.
//
// Repair. Every RepairInterval, and at once when a node dies, a scan takes
// the chunks with fewer than Replicas good copies (on nodes that are alive
// or suspect, not draining) from the under-replicated set kept as locations
// change (health.go), never walking the location map: most endangered first
// (one copy before two), it tells a holder to copy the chunk to nodes that
// lack it, as a chain the receivers verify by hash. At most CopiesPerNode
// copies run from and to each node at once, and at most maxRepairBatch
// chunks are planned per scan (the next scan follows at once). When nothing
// is under-replicated, copies beyond Replicas (a dead node that came back)
// are trimmed, from the over-replicated set.
//
// Drain. Copies on a draining node do not count, so repair copies its chunks
// away (using the draining node itself as a source); once none of them
// needs it (its count of chunks below Replicas is zero), the node is marked
// drained.
//
// Garbage collection works from candidates, never from a mark of
// everything stored: see gc.go. A commit registers its chunks and the sweep
// dooms chunks under the same lock, so a commit that dedups onto a chunk at
// the moment it becomes garbage either registered first (the sweep keeps
// the chunk) or finds the chunk doomed and has no copies to commit with (it
// fails, nothing is lost). No chunk a committed file or an open session
// refers to is ever deleted, whatever the grace period; the grace period
// protects what no session records: chunks just written to a datanode, and
// touches a restarted coordinator forgot.

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/rpc"
)

// session is an open upload session this coordinator knows.
type session struct {
	owner   string // who opened it: an access key id, or a certificate's "cert:" name
	expires time.Time
	chunks  map[dfs.Hash]struct{} // chunks allocated in it
	bytes   int64                 // their sizes, added up
}

// healState is the coordinator's record of repair and collection. Guarded
// by Server.mu.
type healState struct {
	touched    map[dfs.Hash]time.Time                // last allocation or commit naming the chunk
	committing map[dfs.Hash]int                      // chunks of commits in progress
	doomed     map[dfs.Hash]struct{}                 // being deleted by GC
	corrupt    map[dfs.Hash]map[dfs.NodeID]time.Time // copies reported corrupt
	dead       map[dfs.NodeID]bool                   // nodes seen dead at the last check

	pendingGC int64 // garbage chunks at the last collection
	repaired  int64 // copies made by repair
	collected int64 // copies deleted by GC
	drainLeft map[dfs.NodeID]int64

	kick chan struct{} // starts a repair scan at once

	// gcMu runs one collection at a time.
	gcMu sync.Mutex

	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn // datanode control, by address
}

func (h *healState) init() {
	h.touched = map[dfs.Hash]time.Time{}
	h.committing = map[dfs.Hash]int{}
	h.doomed = map[dfs.Hash]struct{}{}
	h.corrupt = map[dfs.Hash]map[dfs.NodeID]time.Time{}
	h.dead = map[dfs.NodeID]bool{}
	h.drainLeft = map[dfs.NodeID]int64{}
	h.kick = make(chan struct{}, 1)
	h.conns = map[string]*grpc.ClientConn{}
}

// touchLocked records that h is in use now. s.mu is held.
func (s *Server) touchLocked(h dfs.Hash, now time.Time) {
	s.heal.touched[h] = now
}

// beginCommit marks chunks as named by a commit in progress: garbage
// collection leaves them alone until endCommit, whatever its grace period.
func (s *Server) beginCommit(chunks []dfs.ChunkRef) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range chunks {
		s.heal.committing[c.Hash]++
		s.touchLocked(c.Hash, now)
	}
}

// endCommit ends what beginCommit started, touching the chunks once more:
// a collection whose mark began before the commit's transaction may not
// have seen the new file, and the touch, later than that mark's start,
// keeps its sweep off these chunks.
func (s *Server) endCommit(chunks []dfs.ChunkRef) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range chunks {
		s.touchLocked(c.Hash, now)
		if s.heal.committing[c.Hash]--; s.heal.committing[c.Hash] <= 0 {
			delete(s.heal.committing, c.Hash)
		}
	}
}

// maxChunk is the size assumed for a chunk whose size the location map
// does not know, when checking a target's free space.
const maxChunk = 8 << 20

// control returns a control client for datanode id, connecting to the
// address it registered with.
func (s *Server) control(id dfs.NodeID) (api.DatanodeClient, error) {
	s.mu.Lock()
	n := s.nodes[id]
	addr := ""
	if n != nil {
		addr = n.rec.GrpcAddr
	}
	s.mu.Unlock()
	if addr == "" {
		return nil, fmt.Errorf("datanode %s: no control address known", id)
	}
	s.heal.connMu.Lock()
	defer s.heal.connMu.Unlock()
	if c, ok := s.heal.conns[addr]; ok {
		return api.NewDatanodeClient(c), nil
	}
	c, err := rpc.DialTLS(addr, s.cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("datanode %s: %w", id, err)
	}
	s.heal.conns[addr] = c
	return api.NewDatanodeClient(c), nil
}

func (s *Server) closeDatanodeConns() {
	s.heal.connMu.Lock()
	defer s.heal.connMu.Unlock()
	for _, c := range s.heal.conns {
		c.Close()
	}
	s.heal.conns = map[string]*grpc.ClientConn{}
}

// goodLocked reports whether a copy on n counts toward the replication
// factor: its node is alive or suspect (a blip is not a loss), and not
// draining or drained.
func (s *Server) goodLocked(n *node, now time.Time) bool {
	switch s.stateLocked(n, now) {
	case dfs.NodeAlive, dfs.NodeSuspect:
		return true
	}
	return false
}

// usableLocked reports whether n can serve as the source of a copy.
func (s *Server) usableLocked(n *node, now time.Time) bool {
	return s.stateLocked(n, now) != dfs.NodeDead
}

// repairLoop scans for under-replicated chunks every RepairInterval, at
// once when a node dies, and when kicked.
func (s *Server) repairLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		case <-s.heal.kick:
			last = time.Time{}
		}
		died := s.newlyDead()
		if !s.IsLeader() {
			continue // a standby keeps its map warm and leaves the work to the leader
		}
		if died || time.Since(last) >= s.cfg.RepairInterval {
			last = time.Now()
			s.repairScan(s.ctx)
		}
	}
}

// kickRepair starts a scan without waiting for the interval.
func (s *Server) kickRepair() {
	select {
	case s.heal.kick <- struct{}{}:
	default:
	}
}

// newlyDead reports whether a node died since the last check.
func (s *Server) newlyDead() bool {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	died := false
	for id, n := range s.nodes {
		dead := s.stateLocked(n, now) == dfs.NodeDead
		if dead && !s.heal.dead[id] && n.gen != 0 {
			s.log.Warn("datanode dead", "node", id, "silent_for", now.Sub(n.lastBeat).Round(time.Second))
			died = true
		}
		s.heal.dead[id] = dead
	}
	return died
}

// repairJob is one chunk to copy.
type repairJob struct {
	hash    dfs.Hash
	good    int
	holders []dfs.NodeID // usable copies, good ones first
	suspect bool         // a good copy is on a suspect node
}

// repairScan finds under-replicated chunks and copies them, most
// endangered first; when none is left, it trims extra copies and finishes
// drains.
func (s *Server) repairScan(ctx context.Context) {
	fence, err := s.confirmLeader(ctx)
	if err != nil {
		s.log.Warn("repair scan", "err", err)
		return
	}
	// Everything below is done under this term and stops with it.
	ctx = s.termContext(fence.Rev)
	now := time.Now()
	s.mu.Lock()
	// Chunks an upload is still writing have one or two copies reported
	// until its chains finish: leave them to the upload for a while.
	settle := s.cfg.CommitWait + 5*time.Second
	writing := map[dfs.Hash]struct{}{}
	for _, ss := range s.sessions {
		for h := range ss.chunks {
			if now.Sub(s.heal.touched[h]) < settle {
				writing[h] = struct{}{}
			}
		}
	}
	var jobs, over []repairJob
	more := false
	targets := s.placeableLocked()
	for good, set := range s.hl.under {
		if good >= targets {
			break // no node to copy to (Counters.Unplaceable): nothing to plan
		}
		for h := range set {
			if _, ok := writing[h]; ok {
				continue
			}
			if s.heal.committing[h] > 0 {
				continue
			}
			if len(jobs) == maxRepairBatch {
				more = true
				break
			}
			jobs = append(jobs, s.repairJobLocked(h, good, now))
		}
	}
	if len(jobs) == 0 {
		for h := range s.hl.over {
			if len(over) == maxRepairBatch {
				more = true
				break
			}
			j := s.repairJobLocked(h, 0, now)
			if j.suspect || j.good <= s.cfg.Replicas {
				// Trim only when every copy's node is answering: a suspect
				// node may be about to die.
				continue
			}
			j.holders = j.holders[:j.good]
			over = append(over, j)
		}
	}
	// Corrupt copies of chunks back at full strength are repaired.
	for h := range s.heal.corrupt {
		if v := s.viewLocked(h); v.good >= s.cfg.Replicas {
			delete(s.heal.corrupt, h)
		}
	}
	drainLeft := map[dfs.NodeID]int64{}
	var finished []dfs.NodeID
	for id, n := range s.nodes {
		nh := s.hl.nodes[n.idx]
		if nh.cur != classDraining || nh.walked != locShards {
			continue // not draining, or its chunks are not all counted yet
		}
		if left := s.hl.drainNeed[n.idx]; left > 0 {
			drainLeft[id] = left
		} else if s.stateLocked(n, now) == dfs.NodeDraining {
			finished = append(finished, id)
		}
	}
	s.heal.drainLeft = drainLeft
	s.mu.Unlock()

	for _, id := range finished {
		s.setAdminState(ctx, id, "drained")
	}
	if more {
		defer s.kickRepair()
	}
	if len(jobs) == 0 {
		s.trim(ctx, fence, over)
		return
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].good < jobs[j].good })
	s.log.Info("repair scan", "under_replicated", len(jobs), "most_endangered_copies", jobs[0].good)
	s.runRepairs(ctx, fence, jobs)
}

// maxRepairBatch bounds the chunks one repair scan plans, so that the lock
// is held briefly however many chunks a node's death left short.
const maxRepairBatch = 10000

// repairJobLocked describes h as repair sees it now: its good copies first,
// then the other readable ones. s.mu is held.
func (s *Server) repairJobLocked(h dfs.Hash, good int, now time.Time) repairJob {
	j := repairJob{hash: h}
	var usable []dfs.NodeID
	s.locs.eachHolder(h, func(i uint16) {
		id := s.locs.nodeID(i)
		n := s.nodes[id]
		if n == nil {
			return
		}
		if s.goodLocked(n, now) {
			j.holders = append(j.holders, id)
			j.suspect = j.suspect || s.stateLocked(n, now) == dfs.NodeSuspect
		} else if s.usableLocked(n, now) {
			usable = append(usable, id)
		}
	})
	j.good = len(j.holders)
	j.holders = append(j.holders, usable...)
	return j
}

// runRepairs copies chunks with at most CopiesPerNode copies in flight from
// and to each node.
func (s *Server) runRepairs(ctx context.Context, fence meta.Fence, jobs []repairJob) {
	var (
		mu    sync.Mutex
		busy  = map[dfs.NodeID]int{}
		wg    sync.WaitGroup
		freed = make(chan struct{}, 1)
	)
	release := func(ids ...dfs.NodeID) {
		mu.Lock()
		for _, id := range ids {
			busy[id]--
		}
		mu.Unlock()
		select {
		case freed <- struct{}{}:
		default:
		}
	}
	for len(jobs) > 0 && ctx.Err() == nil {
		var rest []repairJob
		started := 0
		for _, j := range jobs {
			src, chain, ok := s.planCopy(j, func(id dfs.NodeID) bool {
				mu.Lock()
				defer mu.Unlock()
				return busy[id] < s.cfg.CopiesPerNode
			})
			if !ok {
				rest = append(rest, j)
				continue
			}
			if src == "" {
				continue // nowhere to copy to: nothing to do for now
			}
			ids := []dfs.NodeID{src}
			for _, n := range chain {
				ids = append(ids, dfs.NodeID(n.Id))
			}
			mu.Lock()
			for _, id := range ids {
				busy[id]++
			}
			mu.Unlock()
			started++
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer release(ids...)
				s.copyChunk(ctx, fence, j.hash, src, chain)
			}()
		}
		jobs = rest
		if len(jobs) == 0 {
			break
		}
		if started == 0 {
			select {
			case <-freed:
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	wg.Wait()
}

// planCopy picks a source holding j's chunk and targets lacking it, among
// nodes free says have room for another copy. ok is false when the busy
// limits stop it for now; src is empty when no target exists at all.
func (s *Server) planCopy(j repairJob, free func(dfs.NodeID) bool) (src dfs.NodeID, chain []*api.Node, ok bool) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range j.holders {
		if n := s.nodes[id]; n != nil && s.usableLocked(n, now) && free(id) {
			src = id
			break
		}
	}
	if src == "" {
		for _, id := range j.holders {
			if n := s.nodes[id]; n != nil && s.usableLocked(n, now) {
				return "", nil, false // a holder is busy: later
			}
		}
		return "", nil, true // every holder is gone: the next scan re-plans
	}
	busy := map[dfs.NodeID]bool{}
	for id := range s.nodes {
		if !free(id) {
			busy[id] = true
		}
	}
	holders := s.locs.holders(j.hash)
	targets := s.pickLocked(s.cfg.Replicas-j.good, maxChunk, holders, busy, now)
	if len(targets) == 0 {
		if len(s.pickLocked(1, maxChunk, holders, nil, now)) > 0 {
			return "", nil, false // targets exist but are busy: later
		}
		return "", nil, true // no node can take a copy
	}
	for _, id := range targets {
		chain = append(chain, s.apiNodeLocked(id))
	}
	return src, chain, true
}

func (s *Server) copyChunk(ctx context.Context, fence meta.Fence, h dfs.Hash, src dfs.NodeID, chain []*api.Node) {
	dn, err := s.control(src)
	if err != nil {
		s.log.Warn("repair: reach source", "chunk", h.Short(), "node", src, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := dn.ReplicateChunk(ctx, &api.ReplicateChunkRequest{Hash: h[:], Targets: chain, Term: fence.Rev})
	if fencedErr(err) {
		s.refusedAsStale(ctx, fence, src)
	}
	if err != nil {
		s.log.Warn("repair: copy failed", "chunk", h.Short(), "from", src, "err", err)
		return
	}
	s.mu.Lock()
	s.heal.repaired += int64(len(resp.Stored))
	s.mu.Unlock()
	s.log.Info("repair: copied", "chunk", h.Short(), "from", src, "to", resp.Stored)
}

// trim deletes copies beyond the replication factor, from the fullest
// nodes first, and only when every node that keeps a copy is alive and has
// just re-read its copy and found it good: a copy is never given up for
// ones that are gone, rotten or claimed without being held.
//
// Two leaders trimming at once could each delete a different copy, so a
// chunk is trimmed only once every node holding it has reported knowing
// this leader's term: a deposed leader's trim is then refused on all of
// them.
func (s *Server) trim(ctx context.Context, fence meta.Fence, over []repairJob) {
	for _, j := range over {
		s.mu.Lock()
		known := true
		for _, id := range j.holders {
			if n := s.nodes[id]; n == nil || n.stats.LeaderTerm < fence.Rev {
				known = false
			}
		}
		if !known {
			s.mu.Unlock()
			continue // the next scan, once the holders know the term
		}
		ids := append([]dfs.NodeID(nil), j.holders...)
		sort.Slice(ids, func(a, b int) bool {
			return s.nodes[ids[a]].stats.FreeBytes < s.nodes[ids[b]].stats.FreeBytes
		})
		extra, kept := ids[:len(ids)-s.cfg.Replicas], ids[len(ids)-s.cfg.Replicas:]
		now := time.Now()
		live := true
		for _, id := range kept {
			live = live && s.stateLocked(s.nodes[id], now) == dfs.NodeAlive
		}
		s.mu.Unlock()
		if !live || !s.keptCopiesGood(ctx, j.hash, kept) {
			continue // the next scan: nothing is deleted while a kept copy is in doubt
		}
		for _, id := range extra {
			dn, err := s.control(id)
			if err != nil {
				continue
			}
			_, err = dn.DeleteChunks(ctx, &api.DeleteChunksRequest{Hashes: [][]byte{j.hash[:]}, Term: fence.Rev})
			if fencedErr(err) && s.refusedAsStale(ctx, fence, id) {
				return
			}
			if err != nil {
				s.log.Warn("trim: delete failed", "chunk", j.hash.Short(), "node", id, "err", err)
				continue
			}
			s.log.Info("trim: removed extra copy", "chunk", j.hash.Short(), "node", id)
		}
	}
}

// keptCopiesGood has every node that is to keep a copy of h re-read it
// from its disk: trim deletes a copy only once the copies it keeps are
// known to be there and good.
func (s *Server) keptCopiesGood(ctx context.Context, h dfs.Hash, kept []dfs.NodeID) bool {
	for _, id := range kept {
		dn, err := s.control(id)
		if err != nil {
			return false
		}
		vctx, cancel := context.WithTimeout(ctx, time.Minute)
		resp, err := dn.VerifyChunk(vctx, &api.VerifyChunkRequest{Hash: h[:]})
		cancel()
		if err != nil || !resp.Present || !resp.Ok {
			s.log.Warn("trim: a copy to keep is not known good; nothing trimmed", "chunk", h.Short(), "node", id, "err", err)
			return false
		}
	}
	return true
}

// setAdminState records a node's administrative state (draining, drained).
func (s *Server) setAdminState(ctx context.Context, id dfs.NodeID, state string) error {
	s.mu.Lock()
	n := s.nodes[id]
	if n == nil {
		s.mu.Unlock()
		return fmt.Errorf("node %s: %w", id, dfs.ErrNotFound)
	}
	rec := proto.Clone(n.rec).(*api.NodeRecord)
	s.mu.Unlock()
	if rec.AdminState == state {
		return nil
	}
	rec.AdminState = state
	f := s.fence.Load()
	if f == nil {
		return fmt.Errorf("set node %s %s: %w", id, state, dfs.ErrNotLeader)
	}
	if err := s.meta.PutNode(ctx, *f, rec); err != nil {
		return err
	}
	s.mu.Lock()
	if n := s.nodes[id]; n != nil {
		// Only the field this path owns: a registration meanwhile may have
		// changed the addresses.
		upd := proto.Clone(n.rec).(*api.NodeRecord)
		upd.AdminState = state
		n.rec = upd
		s.reclassQuickLocked(n, time.Now())
	}
	s.mu.Unlock()
	s.log.Info("datanode state", "node", id, "state", state)
	return nil
}

// Drain implements api.CoordinatorServer.
func (s *Server) Drain(ctx context.Context, req *api.DrainRequest) (*api.DrainResponse, error) {
	id := dfs.NodeID(req.Node)
	if !s.IsLeader() {
		// Only the leader moves chunks: hand the request to it.
		return s.forwardDrain(ctx, req)
	}
	// A drain needs somewhere to put the copies: Replicas other nodes
	// that take writes.
	now := time.Now()
	s.mu.Lock()
	others := 0
	for oid, n := range s.nodes {
		if oid != id && s.stateLocked(n, now) == dfs.NodeAlive {
			others++
		}
	}
	_, known := s.nodes[id]
	s.mu.Unlock()
	if known && others < s.cfg.Replicas {
		return nil, rpc.ToStatus(fmt.Errorf("%w: cannot drain %s: only %d other datanodes take copies, %d are needed",
			dfs.ErrConflict, id, others, s.cfg.Replicas))
	}
	if err := s.setAdminState(ctx, id, "draining"); err != nil {
		return nil, rpc.ToStatus(err)
	}
	s.kickRepair()
	s.mu.Lock()
	defer s.mu.Unlock()
	return &api.DrainResponse{Chunks: s.nodes[id].chunks}, nil
}

// noteCorruptLocked records copies a node found corrupt. s.mu is held.
func (s *Server) noteCorruptLocked(h dfs.Hash, id dfs.NodeID, now time.Time) {
	m := s.heal.corrupt[h]
	if m == nil {
		m = map[dfs.NodeID]time.Time{}
		s.heal.corrupt[h] = m
	}
	m[id] = now
}

// verifyReported asks a node to re-hash a copy a client found bad; the
// node quarantines it if it is.
func (s *Server) verifyReported(h dfs.Hash, id dfs.NodeID) {
	dn, err := s.control(id)
	if err != nil {
		s.log.Warn("verify reported copy", "chunk", h.Short(), "node", id, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	resp, err := dn.VerifyChunk(ctx, &api.VerifyChunkRequest{Hash: h[:]})
	if err != nil {
		s.log.Warn("verify reported copy", "chunk", h.Short(), "node", id, "err", err)
		// Whether the node still holds the copy is unknown: have it report
		// in full.
		s.mu.Lock()
		if n := s.nodes[id]; n != nil {
			s.wantFullReportLocked(n)
		}
		s.mu.Unlock()
		return
	}
	switch {
	case resp.Present && !resp.Ok:
		s.mu.Lock()
		s.noteCorruptLocked(h, id, time.Now())
		s.mu.Unlock()
		s.kickRepair()
	case resp.Present:
		// The copy is good after all (the client's read went wrong): list
		// it again.
		s.mu.Lock()
		if n := s.nodes[id]; n != nil && s.addLocLocked(h, id, n) {
			s.notifyLocked()
		}
		s.mu.Unlock()
	}
}
