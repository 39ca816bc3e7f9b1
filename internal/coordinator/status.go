package coordinator

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/rpc"
)

// The control plane's own health: which coordinators run, which leads, and
// how etcd is doing. Coordinators announce themselves under the schema's
// coordinators prefix on their session lease, so a crashed one drops out of
// the list once its lease expires; until then it is listed as not alive.

// Status implements api.CoordinatorServer.
func (s *Server) Status(ctx context.Context, req *api.StatusRequest) (*api.StatusResponse, error) {
	resp := &api.StatusResponse{Addr: s.cfg.Addr}
	resp.Leader, resp.Term = s.Leader()
	self := &api.CoordinatorStatus{Addr: s.cfg.Addr, Alive: true, Leader: s.IsLeader(), Term: s.TermNumber()}
	if req.Local {
		resp.Coordinators = []*api.CoordinatorStatus{self}
		return resp, nil
	}
	lctx, cancel := context.WithTimeout(ctx, rpc.ProbeTimeout)
	addrs, err := s.meta.Coordinators(lctx)
	cancel()
	if err != nil {
		s.log.Debug("status: list coordinators", "err", err)
	}
	if resp.Leader != "" {
		addrs = append(addrs, resp.Leader)
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)

	var wg sync.WaitGroup
	out := make([]*api.CoordinatorStatus, len(addrs))
	for i, addr := range addrs {
		if addr == s.cfg.Addr {
			out[i] = self
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.probeCoordinator(ctx, addr)
		}()
	}
	var es *api.EtcdStatus
	wg.Add(1)
	go func() {
		defer wg.Done()
		es = s.etcdStatus(ctx)
	}()
	wg.Wait()
	if !slices.Contains(addrs, s.cfg.Addr) {
		out = append(out, self)
	}
	resp.Coordinators, resp.Etcd = out, es
	return resp, nil
}

// probeCoordinator asks another coordinator for its own view.
func (s *Server) probeCoordinator(ctx context.Context, addr string) *api.CoordinatorStatus {
	conn, err := s.peer(addr)
	if err != nil {
		return &api.CoordinatorStatus{Addr: addr, Error: err.Error()}
	}
	return rpc.ProbeCoordinator(ctx, api.NewCoordinatorClient(conn), addr)
}

// peer returns a connection to another coordinator, kept for reuse.
func (s *Server) peer(addr string) (*grpc.ClientConn, error) {
	s.peersMu.Lock()
	defer s.peersMu.Unlock()
	if c := s.peers[addr]; c != nil {
		return c, nil
	}
	if s.ctx.Err() != nil {
		return nil, fmt.Errorf("coordinator %s is closing", s.cfg.Addr)
	}
	c, err := rpc.DialTLS(addr, s.cfg.TLS)
	if err != nil {
		return nil, err
	}
	if s.peers == nil {
		s.peers = map[string]*grpc.ClientConn{}
	}
	s.peers[addr] = c
	return c, nil
}

func (s *Server) closePeers() {
	s.peersMu.Lock()
	defer s.peersMu.Unlock()
	for _, c := range s.peers {
		c.Close()
	}
	s.peers = nil
}

// etcdStatus lists etcd's members, asks each for its status, and checks
// that the cluster answers a linearizable read (it has a quorum).
func (s *Server) etcdStatus(ctx context.Context) *api.EtcdStatus {
	cli := s.meta.Client()
	es := &api.EtcdStatus{}
	ctx, cancel := context.WithTimeout(ctx, 2*rpc.ProbeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		qctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), rpc.ProbeTimeout)
		defer cancel()
		if _, err := cli.Get(qctx, s.meta.Schema().Election(), clientv3.WithCountOnly()); err != nil {
			es.Error = fmt.Sprintf("no quorum: %v", err)
			return
		}
		es.Healthy = true
	}()
	ml, err := cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		wg.Wait()
		if es.Error == "" {
			es.Error = err.Error()
		}
		es.Healthy = false
		return es
	}
	es.Members = make([]*api.EtcdMember, len(ml.Members))
	for i, m := range ml.Members {
		em := &api.EtcdMember{Name: m.Name, Id: m.ID, ClientUrls: m.ClientURLs, PeerUrls: m.PeerURLs}
		es.Members[i] = em
		if len(m.ClientURLs) == 0 {
			em.Error = "not started"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			mctx, cancel := context.WithTimeout(ctx, rpc.ProbeTimeout)
			defer cancel()
			st, err := cli.Status(mctx, m.ClientURLs[0])
			switch {
			case err != nil:
				em.Error = err.Error()
			case st.Leader == 0:
				em.Error = "no raft leader"
			default:
				em.Healthy = true
				em.Leader = st.Leader == m.ID
			}
		}()
	}
	wg.Wait()
	return es
}

// forwardDrain hands a drain to the leader coordinator.
func (s *Server) forwardDrain(ctx context.Context, req *api.DrainRequest) (*api.DrainResponse, error) {
	cc, err := s.leaderClient(ctx, "drain "+req.Node, req.Term)
	if err != nil {
		return nil, err
	}
	if cc == nil {
		return s.Drain(ctx, req)
	}
	fwd := proto.Clone(req).(*api.DrainRequest)
	fwd.Term = s.KnownTerm()
	return cc.Drain(ctx, fwd)
}

// watchNodes keeps the node table's records in step with the registry, so
// a drain the leader records shows on every coordinator, a standby that
// becomes leader carries on with it, and a node the leader removes is
// forgotten everywhere.
func (s *Server) watchNodes() {
	defer s.wg.Done()
	cli := s.meta.Client()
	prefix := s.meta.Schema().NodesPrefix()
	for s.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			select {
			case <-s.ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for _, kv := range resp.Kvs {
			s.applyNodeRecord(kv.Value)
		}
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
		for wr := range cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				switch ev.Type {
				case clientv3.EventTypePut:
					s.applyNodeRecord(ev.Kv.Value)
				case clientv3.EventTypeDelete:
					// Removed (lifecycle.go): forget its copies too.
					s.forgetNode(dfs.NodeID(strings.TrimPrefix(string(ev.Kv.Key), prefix)))
				}
			}
		}
		wcancel()
	}
}

func (s *Server) applyNodeRecord(val []byte) {
	var rec api.NodeRecord
	if proto.Unmarshal(val, &rec) != nil || rec.Id == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[dfs.NodeID(rec.Id)]
	if n == nil {
		if _, err := s.newNodeLocked(dfs.NodeID(rec.Id), &rec); err != nil {
			s.log.Warn("node registry", "err", err)
		}
		return
	}
	if n.rec == nil || n.rec.AdminState != rec.AdminState {
		upd := &api.NodeRecord{}
		if n.rec != nil {
			upd = proto.Clone(n.rec).(*api.NodeRecord)
		}
		upd.AdminState = rec.AdminState
		if upd.Id == "" {
			upd.Id = rec.Id
		}
		n.rec = upd
		s.reclassQuickLocked(n, time.Now())
	}
}

// Counters implements api.CoordinatorServer: this coordinator's own
// counters, read in O(1). A standby answers too, from its own map; clients
// ask the leader when they can.
func (s *Server) Counters(ctx context.Context, req *api.CountersRequest) (*api.CountersResponse, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countersAPILocked(now), nil
}

// countersAPILocked returns the counters as the API carries them. s.mu is
// held.
func (s *Server) countersAPILocked(now time.Time) *api.CountersResponse {
	c := s.countersLocked(now)
	return &api.CountersResponse{
		Files:             s.fc.files.Load(),
		FilesKnown:        s.fc.known.Load(),
		Chunks:            c.Chunks,
		Copies:            c.Copies,
		Healthy:           c.Healthy,
		UnderReplicated:   c.UnderReplicated,
		MissingRepairable: c.MissingRepairable,
		MissingLost:       c.MissingLost,
		Corrupt:           c.Corrupt,
		OverReplicated:    c.OverReplicated,
		PendingRepair:     c.PendingRepair,
		Unplaceable:       c.Unplaceable,
		PendingGc:         c.PendingGC,
		Repaired:          c.Repaired,
		GarbageCollected:  c.GarbageCollected,
		Cold:              c.Cold,
		Addr:              s.cfg.Addr,
		Leader:            s.IsLeader(),
	}
}
