package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/rpc"
)

// node is what the coordinator knows of a datanode.
type node struct {
	rec      *api.NodeRecord // as in the registry
	idx      uint16          // its index in the location map
	gen      uint64          // generation of its current registration; 0: not registered
	lastBeat time.Time
	stats    *api.NodeStats // never nil
	chunks   int64          // entries of the location map naming this node

	// incarnation is the datanode process the locations came from;
	// reported says they are complete (a full report was merged, and
	// deltas since). A registration of the same incarnation then needs no
	// full report, unless resync says the coordinator dropped locations it
	// is unsure of.
	incarnation uint64
	reported    bool
	resync      bool

	// removing: the node is being forgotten (lifecycle.go); it may not
	// register until that is done.
	removing bool
}

// newNodeLocked adds a datanode to the node table. s.mu is held (or s is
// not shared yet).
func (s *Server) newNodeLocked(id dfs.NodeID, rec *api.NodeRecord) (*node, error) {
	i, ok := s.locs.nodeIndex(id)
	if !ok {
		return nil, fmt.Errorf("%w: datanode %s: the coordinator knows %d datanodes, its most", dfs.ErrNoSpace, id, maxNodes)
	}
	s.hl.addNode(i)
	n := &node{rec: rec, idx: i, stats: &api.NodeStats{}}
	s.nodes[id] = n
	return n, nil
}

// stateLocked returns a node's state at now. s.mu is held.
func (s *Server) stateLocked(n *node, now time.Time) dfs.NodeState {
	if n.gen == 0 || n.lastBeat.IsZero() {
		return dfs.NodeDead
	}
	since := now.Sub(n.lastBeat)
	switch {
	case since >= s.cfg.DeadAfter:
		return dfs.NodeDead
	case since >= s.cfg.SuspectAfter:
		return dfs.NodeSuspect
	}
	switch n.rec.AdminState {
	case "draining":
		return dfs.NodeDraining
	case "drained":
		return dfs.NodeDrained
	}
	return dfs.NodeAlive
}

// addLocLocked records that id holds h, keeping the health counters in
// step. It reports whether the copy was new. s.mu is held.
func (s *Server) addLocLocked(h dfs.Hash, id dfs.NodeID, n *node) bool {
	return s.addLoc(h, n, false)
}

// markLocLocked is addLocLocked for a full report replacing what n held
// before: the copy is flagged as reported, and sweepNode removes the
// unflagged ones. s.mu is held.
func (s *Server) markLocLocked(h dfs.Hash, n *node) {
	s.addLoc(h, n, true)
}

func (s *Server) addLoc(h dfs.Hash, n *node, mark bool) bool {
	before := s.viewLocked(h)
	var added bool
	if mark {
		added, _ = s.locs.mark(h, n.idx)
	} else {
		added, _ = s.locs.add(h, n.idx)
	}
	if !added {
		return false
	}
	n.chunks++
	s.applyLocked(h, before, s.viewLocked(h))
	return true
}

// removeLocLocked records that id no longer holds h. s.mu is held.
func (s *Server) removeLocLocked(h dfs.Hash, id dfs.NodeID, n *node) {
	if !s.locs.has(h) {
		return
	}
	before := s.viewLocked(h)
	if removed, _ := s.locs.remove(h, n.idx); !removed {
		return
	}
	n.chunks--
	s.applyLocked(h, before, s.viewLocked(h))
}

// holdersLocked returns the nodes holding h, whatever their state. s.mu is
// held.
func (s *Server) holdersLocked(h dfs.Hash) []dfs.NodeID {
	return s.locs.holders(h)
}

// wantFullReportLocked makes n send a full report at its next heartbeat
// (by registering again): the coordinator dropped locations of n's it is
// not sure of. s.mu is held.
func (s *Server) wantFullReportLocked(n *node) {
	n.resync = true
}

// notifyLocked wakes commits waiting for replicas. s.mu is held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Register implements api.RegistryServer.
func (s *Server) Register(ctx context.Context, req *api.RegisterRequest) (*api.RegisterResponse, error) {
	nd := req.GetNode()
	if nd.GetId() == "" || nd.GetAddr() == "" {
		return nil, status.Error(codes.InvalidArgument, "register: node id and data address are required")
	}
	id := dfs.NodeID(nd.Id)
	key := peerKey(ctx)

	s.mu.Lock()
	n := s.nodes[id]
	var rec *api.NodeRecord
	if n == nil {
		rec = &api.NodeRecord{Id: nd.Id, RegisteredUnixNano: time.Now().UnixNano()}
	} else {
		rec = proto.Clone(n.rec).(*api.NodeRecord)
	}
	s.mu.Unlock()
	if key != "" && rec.CertKey != "" && rec.CertKey != key {
		return nil, s.certRefused(id, "register")
	}

	changed := rec.Addr != nd.Addr || rec.GrpcAddr != nd.GrpcAddr || rec.Zone != nd.Zone || (key != "" && rec.CertKey != key)
	rec.Addr, rec.GrpcAddr, rec.Zone = nd.Addr, nd.GrpcAddr, nd.Zone
	fromEtcd := false
	if changed {
		stored, err := s.meta.RegisterNode(ctx, id, nd.Addr, nd.GrpcAddr, nd.Zone, key)
		if errors.Is(err, meta.ErrCertMismatch) {
			return nil, s.certRefused(id, "register")
		}
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "register %s: %v", id, err)
		}
		rec, fromEtcd = stored, true
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	n = s.nodes[id]
	if n != nil && n.removing {
		return nil, status.Errorf(codes.Unavailable, "register %s: the node is being removed; register again in a moment", id)
	}
	if n == nil {
		var err error
		if n, err = s.newNodeLocked(id, rec); err != nil {
			return nil, rpc.ToStatus(err)
		}
	}
	s.gen++
	if n.rec != nil && !fromEtcd {
		// Keep an administrative state set meanwhile (a drain started).
		rec.AdminState = n.rec.AdminState
	}
	n.rec, n.gen, n.lastBeat = rec, s.gen, time.Now()
	if req.Stats != nil {
		n.stats = cloneStats(req.Stats)
	}
	// The locations held for this node are complete if they come from the
	// same datanode process, were reported in full and kept up by deltas
	// since: the datanode then goes on with deltas (it keeps those not
	// acknowledged). Otherwise (a new coordinator, a restarted datanode, or
	// locations dropped) it sends everything.
	full := req.Incarnation == 0 || req.Incarnation != n.incarnation || !n.reported || n.resync
	if full {
		n.reported = false
	}
	n.incarnation = req.Incarnation
	s.reclassQuickLocked(n, time.Now())
	s.log.Info("datanode registered", "node", id, "addr", nd.Addr, "generation", n.gen, "full_report", full)
	resp := &api.RegisterResponse{Generation: n.gen, LeaderTerm: s.KnownTerm(), FullReport: full, Replicas: int32(s.cfg.Replicas)}
	if s.tokens != nil {
		resp.TokenKey, resp.TokenKeyId = s.tokens.Secret, uint32(s.tokens.ID)
	}
	return resp, nil
}

func cloneStats(st *api.NodeStats) *api.NodeStats {
	return proto.Clone(st).(*api.NodeStats)
}

// ReportChunks implements api.RegistryServer: a node's full chunk list
// replaces what the coordinator believed it held. Each batch is merged as
// it arrives, under the lock for that batch only. When the coordinator held
// no locations for the node (a coordinator start), merging costs the
// report's size; when it replaces older ones (a datanode restart), the
// report flags each copy it names, and the end of the report walks the map
// once, a shard at a time, to remove the copies it did not name.
func (s *Server) ReportChunks(stream api.Registry_ReportChunksServer) error {
	var (
		id       dfs.NodeID
		gen      uint64
		n        *node
		replace  bool
		total    int
		hashes   []dfs.Hash
		finished bool
	)
	defer func() {
		if replace && !finished {
			// Leave no flag behind for the next report to trip on.
			s.sweepNode(n, false)
		}
	}()
	for {
		rep, err := stream.Recv()
		if err == io.EOF {
			return status.Error(codes.InvalidArgument, "chunk report ended without its last batch")
		}
		if err != nil {
			return err
		}
		if id == "" {
			id, gen = dfs.NodeID(rep.NodeId), rep.Generation
			if !s.boundTo(id, peerKey(stream.Context())) {
				return s.certRefused(id, "chunk report")
			}
		}
		hashes = hashes[:0]
		for _, b := range rep.Hashes {
			h, err := dfs.HashFromBytes(b)
			if err != nil {
				return status.Errorf(codes.InvalidArgument, "chunk report of %s: %v", id, err)
			}
			hashes = append(hashes, h)
		}
		if len(rep.PackedHashes)%len(dfs.Hash{}) != 0 {
			return status.Errorf(codes.InvalidArgument, "chunk report of %s: %d packed bytes, not a whole number of %d-byte hashes",
				id, len(rep.PackedHashes), len(dfs.Hash{}))
		}
		for p := rep.PackedHashes; len(p) > 0; p = p[len(dfs.Hash{}):] {
			hashes = append(hashes, dfs.Hash(p[:len(dfs.Hash{})]))
		}
		s.mu.Lock()
		cur := s.nodes[id]
		if cur == nil || cur.gen != gen || (n != nil && cur != n) {
			s.mu.Unlock()
			return status.Errorf(codes.FailedPrecondition, "chunk report of %s: stale registration %d", id, gen)
		}
		if n == nil {
			n, replace = cur, cur.chunks > 0
		}
		for _, h := range hashes {
			if replace {
				s.markLocLocked(h, n)
			} else {
				s.addLocLocked(h, id, n)
			}
		}
		total += len(hashes)
		s.notifyLocked()
		s.mu.Unlock()
		if rep.Last {
			break
		}
	}
	if replace {
		s.sweepNode(n, true)
	}
	finished = true
	s.mu.Lock()
	if n.gen == gen {
		n.reported, n.resync = true, false
	}
	s.mu.Unlock()
	s.log.Info("datanode reported", "node", id, "chunks", total, "replaced", replace)
	return stream.SendAndClose(&api.ChunkReportResponse{})
}

// sweepNode ends a full report that replaced n's locations: with remove,
// the copies the report did not name are removed; either way the report's
// flags are cleared. It walks the map a shard at a time.
func (s *Server) sweepNode(n *node, remove bool) {
	var stale []dfs.Hash
	for k := range locShards {
		s.mu.Lock()
		stale = s.locs.sweepShard(k, n.idx, stale[:0])
		if remove {
			for _, h := range stale {
				s.removeLocLocked(h, "", n)
			}
		}
		s.mu.Unlock()
	}
}

// Heartbeat implements api.RegistryServer.
func (s *Server) Heartbeat(ctx context.Context, req *api.HeartbeatRequest) (*api.HeartbeatResponse, error) {
	id := dfs.NodeID(req.NodeId)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[id]
	if key := peerKey(ctx); key != "" && n != nil && n.rec != nil && n.rec.CertKey != key {
		return nil, s.certRefused(id, "heartbeat")
	}
	if n == nil || n.gen == 0 || n.gen != req.Generation || n.resync {
		// A node told to register again because of resync is asked for a
		// full report then.
		return &api.HeartbeatResponse{Reregister: true, LeaderTerm: s.KnownTerm()}, nil
	}
	n.lastBeat = time.Now()
	if req.Stats != nil {
		n.stats = cloneStats(req.Stats)
	}
	grew := false
	for _, b := range req.Added {
		if h, err := dfs.HashFromBytes(b); err == nil {
			if len(s.holdersLocked(h)) == 0 {
				s.gcNoteNewLocked(h, n.lastBeat) // a chunk just written: garbage if never committed
			}
			grew = s.addLocLocked(h, id, n) || grew
		}
	}
	for _, b := range req.Removed {
		if h, err := dfs.HashFromBytes(b); err == nil {
			s.removeLocLocked(h, id, n)
		}
	}
	now := time.Now()
	for _, b := range req.Corrupt {
		if h, err := dfs.HashFromBytes(b); err == nil {
			s.noteCorruptLocked(h, id, now)
			s.log.Warn("datanode found a corrupt copy", "chunk", h.Short(), "node", id)
		}
	}
	if len(req.Corrupt) > 0 {
		defer s.kickRepair()
	}
	if grew {
		s.notifyLocked()
	}
	return &api.HeartbeatResponse{LeaderTerm: s.KnownTerm()}, nil
}

// NodeTable returns every known datanode, by id.
func (s *Server) NodeTable() []dfs.NodeInfo {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]dfs.NodeInfo, 0, len(s.nodes))
	for id, n := range s.nodes {
		st := s.stateLocked(n, now)
		out = append(out, dfs.NodeInfo{
			ID:            id,
			Addr:          n.rec.Addr,
			GRPCAddr:      n.rec.GrpcAddr,
			Zone:          n.rec.Zone,
			State:         st,
			Alive:         st != dfs.NodeDead && st != dfs.NodeSuspect,
			LastHeartbeat: n.lastBeat,
			CapacityBytes: n.stats.CapacityBytes,
			UsedBytes:     n.stats.UsedBytes,
			FreeBytes:     n.stats.FreeBytes,
			Chunks:        n.chunks,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// liveReplicasLocked returns the nodes holding h that are not dead, alive
// ones first. s.mu is held.
func (s *Server) liveReplicasLocked(h dfs.Hash, now time.Time) []dfs.NodeID {
	if _, doomed := s.heal.doomed[h]; doomed {
		// Garbage collection is deleting it: it no longer counts.
		return nil
	}
	var out, suspect []dfs.NodeID
	s.locs.eachHolder(h, func(i uint16) {
		id := s.locs.nodeID(i)
		n := s.nodes[id]
		if n == nil {
			return
		}
		switch s.stateLocked(n, now) {
		case dfs.NodeDead:
		case dfs.NodeSuspect:
			suspect = append(suspect, id)
		default:
			out = append(out, id)
		}
	})
	return append(out, suspect...)
}

// goodReplicasLocked returns the nodes holding h whose copies count toward
// the replication factor (alive or suspect, not draining or drained). s.mu
// is held.
func (s *Server) goodReplicasLocked(h dfs.Hash, now time.Time) []dfs.NodeID {
	var out []dfs.NodeID
	for _, id := range s.liveReplicasLocked(h, now) {
		if s.goodLocked(s.nodes[id], now) {
			out = append(out, id)
		}
	}
	return out
}

// cand is a node pickLocked may place a copy on, weighted by free space.
type cand struct {
	id   dfs.NodeID
	zone string
	w    float64
}

// pickLocked chooses up to want distinct nodes for new copies of a chunk of
// size bytes that holders hold already: alive (suspect ones only when the
// alive are too few), accepting writes, neither a holder nor in exclude,
// with room for it. Nodes are drawn at random
// weighted by free space, and nodes in a zone that holds no copy yet are
// preferred. Only the holders' zones count as used: an excluded node (one
// that failed the client) holds nothing, so its zone still wants a copy.
// s.mu is held.
func (s *Server) pickLocked(want int, size int64, holders []dfs.NodeID, exclude map[dfs.NodeID]bool, now time.Time) []dfs.NodeID {
	var cands, suspects []cand
	usedZones := map[string]bool{}
	for _, id := range holders {
		if n := s.nodes[id]; n != nil && n.rec.Zone != "" {
			usedZones[n.rec.Zone] = true
		}
	}
	for id, n := range s.nodes {
		if exclude[id] || slices.Contains(holders, id) || n.stats.FreeBytes < size {
			continue
		}
		c := cand{id: id, zone: n.rec.Zone, w: float64(n.stats.FreeBytes-size) + 1}
		switch st := s.stateLocked(n, now); {
		case st == dfs.NodeAlive:
			cands = append(cands, c)
		case st == dfs.NodeSuspect && n.rec.GetAdminState() == "":
			suspects = append(suspects, c)
		}
	}
	var out []dfs.NodeID
	out = draw(out, want, cands, usedZones)
	if len(out) < want {
		// A suspect node has missed heartbeats for a few seconds but is not
		// dead: it takes copies only when the alive ones are too few. Its
		// silence may be the coordinator's own (a stalled process, a busy
		// machine), and a node that is really gone fails the client's
		// chain, which then asks again without it.
		out = draw(out, want, suspects, usedZones)
	}
	return out
}

// draw appends to out, until it has want, candidates drawn at random
// weighted by free space, preferring zones not in usedZones (which it
// updates).
func draw(out []dfs.NodeID, want int, cands []cand, usedZones map[string]bool) []dfs.NodeID {
	for len(out) < want && len(cands) > 0 {
		// Prefer candidates in zones not used yet, when there are any.
		pool := make([]int, 0, len(cands))
		for i, c := range cands {
			if c.zone == "" || !usedZones[c.zone] {
				pool = append(pool, i)
			}
		}
		if len(pool) == 0 {
			for i := range cands {
				pool = append(pool, i)
			}
		}
		var total float64
		for _, i := range pool {
			total += cands[i].w
		}
		r := rand.Float64() * total
		pick := pool[len(pool)-1]
		for _, i := range pool {
			r -= cands[i].w
			if r < 0 {
				pick = i
				break
			}
		}
		c := cands[pick]
		out = append(out, c.id)
		if c.zone != "" {
			usedZones[c.zone] = true
		}
		cands[pick] = cands[len(cands)-1]
		cands = cands[:len(cands)-1]
	}
	return out
}

func (s *Server) apiNodeLocked(id dfs.NodeID) *api.Node {
	n := s.nodes[id]
	if n == nil {
		return &api.Node{Id: string(id)}
	}
	return &api.Node{Id: string(id), Addr: n.rec.Addr, GrpcAddr: n.rec.GrpcAddr, Zone: n.rec.Zone}
}

// notEnoughNodesLocked explains why fewer than need datanodes can hold a
// chunk of size bytes, have of them counting (those holding it already and
// those picked): it counts the others by the reason each was passed over, so
// the user reads "without space" rather than a bare count. It wraps
// dfs.ErrNoSpace when full disks are what is missing (the nodes passed over
// for space alone would have been enough), dfs.ErrUnavailable otherwise.
// s.mu is held.
func (s *Server) notEnoughNodesLocked(have, need int, size int64, holders []dfs.NodeID, exclude map[dfs.NodeID]bool, now time.Time) error {
	var full, down, excluded int
	for id, n := range s.nodes {
		switch {
		case slices.Contains(holders, id):
		case exclude[id]:
			excluded++
		case s.stateLocked(n, now) != dfs.NodeAlive:
			down++
		case n.stats.FreeBytes < size:
			full++
		}
	}
	var why []string
	if full > 0 {
		why = append(why, fmt.Sprintf("%d without space for %d bytes", full, size))
	}
	if down > 0 {
		why = append(why, fmt.Sprintf("%d not alive or draining", down))
	}
	if excluded > 0 {
		why = append(why, fmt.Sprintf("%d excluded after failing this client", excluded))
	}
	kind := dfs.ErrUnavailable
	if full > 0 && have+full >= need {
		kind = dfs.ErrNoSpace
	}
	msg := fmt.Sprintf("only %d of %d datanodes can take a copy, need %d", have, len(s.nodes), need)
	if len(why) > 0 {
		msg += ": " + strings.Join(why, ", ")
	}
	return fmt.Errorf("%w: %s", kind, msg)
}

// coldLocked reports whether this coordinator may still be missing chunk
// locations: some datanode of the registry has not registered with it and
// reported since it started, and it started less than a dead-node timeout ago. s.mu
// is held.
func (s *Server) coldLocked(now time.Time) bool {
	if now.Sub(s.started) >= s.cfg.DeadAfter {
		return false
	}
	for _, n := range s.nodes {
		if (n.gen == 0 || !n.reported) && n.rec.GetAdminState() != "drained" {
			return true
		}
	}
	return false
}

// peerKey is the key of the certificate the caller presented over TLS, or
// "" on a cluster run in plain text.
func peerKey(ctx context.Context) string {
	if p, ok := rpc.Peer(ctx); ok {
		return p.Key
	}
	return ""
}

// boundTo reports whether node id may be spoken for by the certificate of
// key: always in plain text (key ""), else only by the certificate it
// registered with.
func (s *Server) boundTo(id dfs.NodeID, key string) bool {
	if key == "" {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[id]
	return n != nil && n.rec != nil && n.rec.CertKey == key
}

// certRefused is the error for a caller speaking for a node bound to
// another certificate.
func (s *Server) certRefused(id dfs.NodeID, what string) error {
	s.log.Warn("refused a datanode call with another certificate than the node's", "node", id, "call", what)
	return status.Errorf(codes.PermissionDenied, "%s as %s: the node is bound to another certificate", what, id)
}
