package coordinator

// A datanode's life after it joins: drained and brought back (Undrain), and
// forgotten once it is gone for good (RemoveNode).
//
// Removing a node is metadata only: its registry record is deleted and
// every coordinator drops its copies from its location map (each from its
// own watch of the registry). Nothing on the node's disk is touched, and a
// removed node that starts again registers as a new one and reports its
// chunks; so removal is refused while the node heartbeats (it would come
// straight back). What removal gives up is the right to count on the
// node's disk: it is refused while some chunk the node holds has fewer than
// MinReplicas copies on other nodes that are not dead, as wiping the disk
// after the removal would then leave that chunk with fewer copies than a
// commit needs, or none. Force removes it anyway: for a disk that is
// already gone, whose chunks are lost or short whatever the registry says.

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/rpc"
)

// Undrain implements api.CoordinatorServer: the node is active again. Its
// copies count from then on, so repair stops moving them away; copies made
// meanwhile are extra and trimmed.
func (s *Server) Undrain(ctx context.Context, req *api.DrainRequest) (*api.DrainResponse, error) {
	id := dfs.NodeID(req.Node)
	if !s.IsLeader() {
		cc, err := s.leaderClient(ctx, "undrain "+req.Node, req.Term)
		if err != nil {
			return nil, err
		}
		if cc == nil {
			return s.Undrain(ctx, req)
		}
		fwd := proto.Clone(req).(*api.DrainRequest)
		fwd.Term = s.KnownTerm()
		return cc.Undrain(ctx, fwd)
	}
	if err := s.setAdminState(ctx, id, ""); err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("undrain: %w", err))
	}
	s.kickRepair()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[id]
	if n == nil {
		return &api.DrainResponse{}, nil
	}
	return &api.DrainResponse{Chunks: n.chunks}, nil
}

// RemoveNode implements api.CoordinatorServer: see the top of this file.
func (s *Server) RemoveNode(ctx context.Context, req *api.RemoveNodeRequest) (*api.RemoveNodeResponse, error) {
	id := dfs.NodeID(req.Node)
	if !s.IsLeader() {
		cc, err := s.leaderClient(ctx, "remove node "+req.Node, req.Term)
		if err != nil {
			return nil, err
		}
		if cc == nil {
			return s.RemoveNode(ctx, req)
		}
		fwd := proto.Clone(req).(*api.RemoveNodeRequest)
		fwd.Term = s.KnownTerm()
		return cc.RemoveNode(ctx, fwd)
	}
	fence, err := s.confirmLeader(ctx)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("remove node %s: %w", id, err))
	}
	now := time.Now()
	s.mu.Lock()
	n := s.nodes[id]
	if n == nil {
		s.mu.Unlock()
		return nil, rpc.ToStatus(fmt.Errorf("remove node %s: %w", id, dfs.ErrNotFound))
	}
	if n.gen != 0 && now.Sub(n.lastBeat) < s.cfg.SuspectAfter {
		ago := now.Sub(n.lastBeat).Round(100 * time.Millisecond)
		s.mu.Unlock()
		return nil, rpc.ToStatus(fmt.Errorf("%w: datanode %s is running (last heartbeat %v ago): stop it first, or it registers again at once",
			dfs.ErrConflict, id, ago))
	}
	if s.coldLocked(now) {
		// A datanode that has not reported yet may hold the other copies,
		// or be this very node, running.
		s.mu.Unlock()
		return nil, rpc.ToStatus(fmt.Errorf("%w: remove node %s: not every datanode has reported to the leader since it started; try again within %v",
			dfs.ErrUnavailable, id, s.cfg.DeadAfter))
	}
	s.mu.Unlock()

	held, short, only := s.shortOfCopies(id)
	if short > 0 && !req.Force {
		return nil, rpc.ToStatus(fmt.Errorf("%w: datanode %s holds %d chunks with fewer than %d copies on other nodes that are not dead (%d on no other node): "+
			"start it again and let repair or a drain copy them, then remove it; --force removes it anyway, and those chunks are lost or short if its disk is gone",
			dfs.ErrConflict, id, short, s.cfg.MinReplicas, only))
	}
	if err := s.meta.DeleteNode(ctx, fence, id); err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("remove node %s: %w", id, err))
	}
	// This coordinator's own watch of the registry may forget it first;
	// either way it is forgotten here before the answer.
	s.forgetNode(id)
	s.log.Warn("datanode removed", "node", id, "chunks", held, "short_chunks", short, "force", req.Force)
	s.kickRepair()
	resp := &api.RemoveNodeResponse{Chunks: held}
	if req.Force {
		resp.ShortChunks = short
	}
	return resp, nil
}

// shortOfCopies walks the chunks node id holds, a shard at a time, and
// counts them (held), those with fewer than MinReplicas copies on other
// nodes that are not dead (short), and those with none (only). Chunks
// garbage collection is deleting do not count.
func (s *Server) shortOfCopies(id dfs.NodeID) (held, short, only int64) {
	var buf []dfs.Hash
	for k := range locShards {
		s.mu.Lock()
		n := s.nodes[id]
		if n == nil {
			s.mu.Unlock()
			return
		}
		now := time.Now()
		buf = s.locs.heldInShard(k, n.idx, buf[:0])
		for _, h := range buf {
			if _, doomed := s.heal.doomed[h]; doomed {
				continue
			}
			held++
			others := 0
			s.locs.eachHolder(h, func(i uint16) {
				if i == n.idx {
					return
				}
				if o := s.nodes[s.locs.nodeID(i)]; o != nil && s.stateLocked(o, now) != dfs.NodeDead {
					others++
				}
			})
			if others < s.cfg.MinReplicas {
				short++
			}
			if others == 0 {
				only++
			}
		}
		s.mu.Unlock()
	}
	return held, short, only
}

// forgetNode drops node id from this coordinator: its copies leave the
// location map (and the counters), a shard at a time, then the node leaves
// the node table. While it is under way the node cannot register again
// (Register refuses it, and its reports are stale). It returns the copies
// dropped; forgetting a node not in the table does nothing.
func (s *Server) forgetNode(id dfs.NodeID) int64 {
	// No re-classing of the node's chunks meanwhile (health.go).
	s.hl.walkMu.Lock()
	defer s.hl.walkMu.Unlock()
	s.mu.Lock()
	n := s.nodes[id]
	if n == nil {
		s.mu.Unlock()
		return 0
	}
	n.removing, n.gen = true, 0
	s.mu.Unlock()
	var (
		buf    []dfs.Hash
		forgot int64
	)
	for k := range locShards {
		s.mu.Lock()
		buf = s.locs.heldInShard(k, n.idx, buf[:0])
		for _, h := range buf {
			s.removeLocLocked(h, id, n)
		}
		forgot += int64(len(buf))
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.nodes, id)
	s.hl.nodes[n.idx] = nodeHealth{cur: classDead, prev: classDead, walked: locShards}
	delete(s.hl.drainNeed, n.idx)
	delete(s.heal.dead, id)
	delete(s.heal.drainLeft, id)
	for h, m := range s.heal.corrupt {
		if delete(m, id); len(m) == 0 {
			delete(s.heal.corrupt, h)
		}
	}
	s.log.Info("datanode forgotten", "node", id, "copies", forgot)
	return forgot
}

// leaderClient returns a client of the leader coordinator, for a request
// only the leader serves (what names it), or nil if this coordinator has
// become the leader meanwhile. term is the request's: non-zero
// when another coordinator forwarded it already, which is not done twice.
func (s *Server) leaderClient(ctx context.Context, what string, term int64) (api.CoordinatorClient, error) {
	leader, _ := s.Leader()
	// Just after a start or a failover no leader may be known yet, or the
	// election still names this coordinator while it campaigns again
	// (its session lapsed on a loaded machine): wait a little, as the
	// election takes about one lease.
	unsettled := func() bool { return leader == "" || leader == s.cfg.Addr }
	for wait := time.Now().Add(2 * s.cfg.ElectionTTL); unsettled() && time.Now().Before(wait) && ctx.Err() == nil; leader, _ = s.Leader() {
		if s.IsLeader() {
			return nil, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	if leader == "" || leader == s.cfg.Addr {
		return nil, rpc.ToStatus(fmt.Errorf("%s: %w, and no leader is known yet", what, dfs.ErrNotLeader))
	}
	if term != 0 {
		return nil, rpc.ToStatus(fmt.Errorf("%s: %w (forwarded by a coordinator that thinks it is)", what, dfs.ErrNotLeader))
	}
	conn, err := s.peer(leader)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("%s: reach leader %s: %w", what, leader, err))
	}
	return api.NewCoordinatorClient(conn), nil
}
