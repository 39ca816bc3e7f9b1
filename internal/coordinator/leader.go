package coordinator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/meta"
)

// Leadership. Every coordinator serves the client API; only the one elected
// with etcd's election API (under the schema's election key) runs the
// background work of heal.go and gc.go, so two coordinators never repair,
// trim or collect at once.
//
// Being elected is not enough to act safely: a leader can be paused (a GC
// pause, SIGSTOP, a slow disk) or cut off past its session's lease, and a
// successor elected meanwhile, while it still believes it leads. So every
// leader-only action is fenced by the leader's term, the create revision of
// its election key:
//
//   - every leader-only etcd write is a transaction that compares the
//     election key's create revision with the term (meta.Fence), so it
//     fails once the key is gone, however late it arrives;
//   - every leader-only datanode command (copy, trim, delete) carries the
//     term, and a datanode refuses one older than the newest term it has
//     seen. Every coordinator watches the election and tells the datanodes
//     the newest term in each heartbeat answer, so they learn a successor's
//     term within a heartbeat of its election, before it sends anything;
//   - before each round of leader-only work the leader confirms, with a
//     linearizable read, that its key still exists, and steps down if not.

// Terms are shown to people by number (meta.TakeTerm): the first leader a
// cluster had is term 1, the next term 2. The fence (the election key's
// revision) stays what etcd writes and datanode commands are checked by;
// the number is only what the status, the node table and the logs show.

// IsLeader reports whether this coordinator believes it leads now.
func (s *Server) IsLeader() bool { return s.leader.Load() }

// Term is the revision of this coordinator's election key while it leads,
// and 0 otherwise.
func (s *Server) Term() int64 {
	if f := s.fence.Load(); f != nil {
		return f.Rev
	}
	return 0
}

// KnownTerm is the newest leader term this coordinator knows of: its own
// while it leads, or the newest it has seen in the election.
func (s *Server) KnownTerm() int64 { return max(s.seenTerm.Load(), s.Term()) }

// TermNumber is the number of this coordinator's term while it leads (1
// for a cluster's first leader), and 0 otherwise.
func (s *Server) TermNumber() int64 {
	if s.Term() == 0 {
		return 0
	}
	return s.termNumber.Load()
}

// Leader returns the address of the leader coordinator as last observed,
// and its term number; "" while none is known.
func (s *Server) Leader() (string, int64) {
	l, _ := s.leaderSeen.Load().(leaderInfo)
	return l.addr, l.number
}

type leaderInfo struct {
	addr   string
	term   int64 // the fence: the election key's create revision
	number int64 // the term as people count it; 0 until the leader counted it
}

// termNumbers remembers the numbers of the terms this coordinator has seen,
// by fence, so that the node table can show the term each datanode knows
// by number. It keeps the newest few.
type termNumbers struct {
	mu sync.Mutex
	m  map[int64]int64
}

const keptTermNumbers = 64

func (t *termNumbers) note(fence, number int64) {
	if fence == 0 || number == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[int64]int64{}
	}
	t.m[fence] = number
	for len(t.m) > keptTermNumbers {
		oldest := int64(-1)
		for f := range t.m {
			if oldest < 0 || f < oldest {
				oldest = f
			}
		}
		delete(t.m, oldest)
	}
}

// number returns the number of the term of fence, or 0 if unknown.
func (t *termNumbers) number(fence int64) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[fence]
}

// leadership is the state of the election loop.
type leadership struct {
	mu     sync.Mutex
	term   int64
	ctx    context.Context    // ends with the term
	cancel context.CancelFunc // ends the current term early (step down)
}

// confirmLeader checks, with a linearizable read, that this coordinator's
// election key still exists at its term, and returns the fence for the
// work it is about to do. A coordinator that finds it was deposed steps
// down at once.
func (s *Server) confirmLeader(ctx context.Context) (meta.Fence, error) {
	f := s.fence.Load()
	if f == nil {
		return meta.Fence{}, dfs.ErrNotLeader
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ok, err := s.meta.Holds(ctx, *f)
	if err != nil {
		return meta.Fence{}, fmt.Errorf("confirm leadership: %w", err)
	}
	if !ok {
		s.stepDown(f.Rev)
		return meta.Fence{}, fmt.Errorf("%w: leader term %d has ended", dfs.ErrFenced, f.Rev)
	}
	return *f, nil
}

// stepDown ends the term if it is still the current one.
func (s *Server) stepDown(term int64) {
	f := s.fence.Load()
	if f == nil || f.Rev != term || !s.fence.CompareAndSwap(f, nil) {
		return
	}
	if s.ctx.Err() != nil {
		s.log.Info("resigning leadership: shutting down", "term", s.termNumber.Load(), "fence", term)
	} else {
		s.log.Warn("stepping down: leader term ended", "term", s.termNumber.Load(), "fence", term)
	}
	s.leader.Store(false)
	s.lead.mu.Lock()
	if s.lead.term == term && s.lead.cancel != nil {
		s.lead.cancel()
	}
	s.lead.mu.Unlock()
}

// termContext returns a context that ends with the given term (at once if
// it is not the current one), for the leader-only work done under it.
func (s *Server) termContext(term int64) context.Context {
	s.lead.mu.Lock()
	defer s.lead.mu.Unlock()
	if s.lead.term == term && s.lead.ctx != nil {
		return s.lead.ctx
	}
	ctx, cancel := context.WithCancel(s.ctx)
	cancel()
	return ctx
}

// fencedErr reports whether a datanode refused a command for its term.
// refusedAsStale handles a datanode's refusal of a leader-only command for
// carrying an older term than one the node has seen: the leader steps down
// only if etcd says its term is over. A node holding a term that no leader
// holds (a command forged by a holder of a coordinator certificate, or a
// file edited by hand) must not depose the rightful leader; that node just
// gets no more leader commands until it learns of a term above its own. It
// reports whether the leader stepped down.
func (s *Server) refusedAsStale(ctx context.Context, fence meta.Fence, node dfs.NodeID) bool {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ok, err := s.meta.Holds(cctx, fence); err == nil && ok {
		s.log.Warn("a datanode refused this leader's term, which etcd confirms is current: the node holds a term no leader was elected with",
			"node", node, "fence", fence.Rev)
		return false
	}
	s.stepDown(fence.Rev)
	return true
}

func fencedErr(err error) bool {
	return status.Code(err) == codes.FailedPrecondition && strings.Contains(err.Error(), dfs.ErrFenced.Error())
}

// noteTerm records a leader term seen in the election.
func (s *Server) noteTerm(term int64) {
	for {
		old := s.seenTerm.Load()
		if term <= old || s.seenTerm.CompareAndSwap(old, term) {
			return
		}
	}
}

// campaign runs for leader until the coordinator closes, campaigning again
// whenever its etcd session is lost.
func (s *Server) campaign() {
	defer s.wg.Done()
	for s.ctx.Err() == nil {
		if err := s.leadOnce(); err != nil && s.ctx.Err() == nil {
			s.log.Warn("election", "err", err)
			select {
			case <-s.ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// leadOnce campaigns with a fresh session and, once elected, leads until
// the session ends, the term is found ended, or the coordinator closes.
func (s *Server) leadOnce() error {
	ttl := int((s.cfg.ElectionTTL + time.Second - 1) / time.Second) // whole seconds, rounded up
	sess, err := concurrency.NewSession(s.meta.Client(), concurrency.WithTTL(ttl), concurrency.WithContext(s.ctx))
	if err != nil {
		return err
	}
	defer sess.Close()
	e := concurrency.NewElection(sess, s.meta.Schema().Election())
	if err := e.Campaign(s.ctx, s.cfg.Addr); err != nil {
		return err
	}
	term := e.Rev()
	tctx, tcancel := context.WithTimeout(s.ctx, 10*time.Second)
	number, err := s.meta.TakeTerm(tctx, meta.Fence{Key: e.Key(), Rev: term}, sess.Lease(), s.cfg.Addr)
	tcancel()
	if err != nil {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer rcancel()
		e.Resign(rctx) // let another take it, or campaign again
		return fmt.Errorf("elected, but counting the term failed: %w", err)
	}
	s.terms.note(term, number)
	s.termNumber.Store(number)
	lctx, lcancel := context.WithCancel(s.ctx)
	defer lcancel()
	s.lead.mu.Lock()
	s.lead.term, s.lead.ctx, s.lead.cancel = term, lctx, lcancel
	s.lead.mu.Unlock()

	s.noteTerm(term)
	s.fence.Store(&meta.Fence{Key: e.Key(), Rev: term})
	s.leader.Store(true)
	s.leaderSeen.Store(leaderInfo{addr: s.cfg.Addr, term: term, number: number})
	s.log.Info("elected leader", "term", number, "fence", term)
	select {
	case <-lctx.Done():
	case <-sess.Done():
		s.log.Warn("leadership lost: etcd session ended", "term", number, "fence", term)
	}
	s.stepDown(term)
	if s.ctx.Err() != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		e.Resign(ctx) // let a standby take over at once
	}
	return nil
}

// observeLeader follows the election, leader or not: who leads, and the
// newest term, which every heartbeat answer passes on to the datanodes.
func (s *Server) observeLeader() {
	defer s.wg.Done()
	cli := s.meta.Client()
	prefix := s.meta.Schema().Election() + "/"
	for s.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		resp, err := cli.Get(ctx, prefix, clientv3.WithFirstCreate()...)
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				if !s.IsLeader() {
					s.leaderSeen.Store(leaderInfo{})
				}
				select {
				case <-s.ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		var li leaderInfo
		if len(resp.Kvs) == 1 {
			li.addr, li.number = meta.ParseElectionValue(string(resp.Kvs[0].Value))
			li.term = resp.Kvs[0].CreateRevision
			s.noteTerm(li.term)
			s.terms.note(li.term, li.number)
		}
		if own := s.Term(); own != 0 && li.term > own {
			// Another coordinator was elected after us: our term is over,
			// whatever our session says.
			s.stepDown(own)
		}
		if !s.IsLeader() || li.term >= s.Term() {
			s.leaderSeen.Store(li)
		}
		// Wait for the election to change. A watch that breaks (etcd lost
		// its quorum, a compaction) just makes us read again.
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
		wch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		select {
		case <-s.ctx.Done():
		case <-wch:
		}
		wcancel()
	}
}

// Fence returns the fence of this coordinator's term while it leads, and
// the zero Fence otherwise.
func (s *Server) Fence() meta.Fence {
	if f := s.fence.Load(); f != nil {
		return *f
	}
	return meta.Fence{}
}
