package coordinator

import (
	"context"
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
)

// node is what the coordinator knows of a datanode.
type node struct {
	rec      *api.NodeRecord // as in the registry
	gen      uint64          // generation of its current registration; 0: not registered
	lastBeat time.Time
	stats    *api.NodeStats // never nil
	chunks   int64          // entries of the location map naming this node
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

// addLocLocked records that id holds h. s.mu is held.
func (s *Server) addLocLocked(h dfs.Hash, id dfs.NodeID, n *node) bool {
	ids := s.locs[h]
	for _, x := range ids {
		if x == id {
			return false
		}
	}
	s.locs[h] = append(ids, id)
	n.chunks++
	return true
}

// removeLocLocked records that id no longer holds h. s.mu is held.
func (s *Server) removeLocLocked(h dfs.Hash, id dfs.NodeID, n *node) {
	ids := s.locs[h]
	for i, x := range ids {
		if x == id {
			ids[i] = ids[len(ids)-1]
			ids = ids[:len(ids)-1]
			if len(ids) == 0 {
				delete(s.locs, h)
			} else {
				s.locs[h] = ids
			}
			n.chunks--
			return
		}
	}
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

	s.mu.Lock()
	n := s.nodes[id]
	var rec *api.NodeRecord
	if n == nil {
		rec = &api.NodeRecord{Id: nd.Id, RegisteredUnixNano: time.Now().UnixNano()}
	} else {
		rec = proto.Clone(n.rec).(*api.NodeRecord)
	}
	s.mu.Unlock()

	changed := rec.Addr != nd.Addr || rec.GrpcAddr != nd.GrpcAddr || rec.Zone != nd.Zone
	rec.Addr, rec.GrpcAddr, rec.Zone = nd.Addr, nd.GrpcAddr, nd.Zone
	fromEtcd := false
	if changed {
		stored, err := s.meta.RegisterNode(ctx, id, nd.Addr, nd.GrpcAddr, nd.Zone)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "register %s: %v", id, err)
		}
		rec, fromEtcd = stored, true
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	n = s.nodes[id]
	if n == nil {
		n = &node{stats: &api.NodeStats{}}
		s.nodes[id] = n
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
	s.log.Info("datanode registered", "node", id, "addr", nd.Addr, "generation", n.gen)
	return &api.RegisterResponse{Generation: n.gen, LeaderTerm: s.KnownTerm()}, nil
}

func cloneStats(st *api.NodeStats) *api.NodeStats {
	return proto.Clone(st).(*api.NodeStats)
}

// ReportChunks implements api.RegistryServer: a node's full chunk list
// replaces what the coordinator believed it held.
func (s *Server) ReportChunks(stream api.Registry_ReportChunksServer) error {
	var (
		id  dfs.NodeID
		gen uint64
		set = map[dfs.Hash]struct{}{}
	)
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
		}
		for _, b := range rep.Hashes {
			h, err := dfs.HashFromBytes(b)
			if err != nil {
				return status.Errorf(codes.InvalidArgument, "chunk report of %s: %v", id, err)
			}
			set[h] = struct{}{}
		}
		if rep.Last {
			break
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[id]
	if n == nil || n.gen != gen {
		return status.Errorf(codes.FailedPrecondition, "chunk report of %s: stale registration %d", id, gen)
	}
	for h, ids := range s.locs {
		for _, x := range ids {
			if x == id {
				if _, ok := set[h]; !ok {
					s.removeLocLocked(h, id, n)
				}
				break
			}
		}
	}
	for h := range set {
		s.addLocLocked(h, id, n)
	}
	s.notifyLocked()
	s.log.Info("datanode reported", "node", id, "chunks", len(set))
	return stream.SendAndClose(&api.ChunkReportResponse{})
}

// Heartbeat implements api.RegistryServer.
func (s *Server) Heartbeat(ctx context.Context, req *api.HeartbeatRequest) (*api.HeartbeatResponse, error) {
	id := dfs.NodeID(req.NodeId)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[id]
	if n == nil || n.gen == 0 || n.gen != req.Generation {
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
	ids := s.locs[h]
	out := make([]dfs.NodeID, 0, len(ids))
	var suspect []dfs.NodeID
	for _, id := range ids {
		n := s.nodes[id]
		if n == nil {
			continue
		}
		switch s.stateLocked(n, now) {
		case dfs.NodeDead:
		case dfs.NodeSuspect:
			suspect = append(suspect, id)
		default:
			out = append(out, id)
		}
	}
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

// pickLocked chooses up to want distinct nodes for new copies of a chunk of
// size bytes that holders hold already: alive, accepting writes, neither a
// holder nor in exclude, with room for it. Nodes are drawn at random
// weighted by free space, and nodes in a zone that holds no copy yet are
// preferred. Only the holders' zones count as used: an excluded node (one
// that failed the client) holds nothing, so its zone still wants a copy.
// s.mu is held.
func (s *Server) pickLocked(want int, size int64, holders []dfs.NodeID, exclude map[dfs.NodeID]bool, now time.Time) []dfs.NodeID {
	type cand struct {
		id   dfs.NodeID
		zone string
		w    float64
	}
	var cands []cand
	usedZones := map[string]bool{}
	for _, id := range holders {
		if n := s.nodes[id]; n != nil && n.rec.Zone != "" {
			usedZones[n.rec.Zone] = true
		}
	}
	for id, n := range s.nodes {
		if exclude[id] || slices.Contains(holders, id) {
			continue
		}
		if s.stateLocked(n, now) != dfs.NodeAlive || n.stats.FreeBytes < size {
			continue
		}
		cands = append(cands, cand{id: id, zone: n.rec.Zone, w: float64(n.stats.FreeBytes-size) + 1})
	}
	var out []dfs.NodeID
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
// locations: some datanode of the registry has not registered with it
// since it started, and it started less than a dead-node timeout ago. s.mu
// is held.
func (s *Server) coldLocked(now time.Time) bool {
	if now.Sub(s.started) >= s.cfg.DeadAfter {
		return false
	}
	for _, n := range s.nodes {
		if n.gen == 0 && n.rec.GetAdminState() != "drained" {
			return true
		}
	}
	return false
}
