package coordinator

import (
	"context"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// Leadership. Every coordinator serves the client API; only the one elected
// with etcd's election API (under the schema's election key) runs the
// background work of heal.go and gc.go, so two coordinators never repair,
// trim or collect at once. The election key's revision is the leader's term.

// IsLeader reports whether this coordinator is the leader now.
func (s *Server) IsLeader() bool { return s.leader.Load() }

// Term is the revision of this coordinator's election key while it leads,
// and 0 otherwise.
func (s *Server) Term() int64 { return s.term.Load() }

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
// the session ends or the coordinator closes.
func (s *Server) leadOnce() error {
	sess, err := concurrency.NewSession(s.meta.Client(), concurrency.WithTTL(int(s.cfg.ElectionTTL/time.Second)), concurrency.WithContext(s.ctx))
	if err != nil {
		return err
	}
	defer sess.Close()
	e := concurrency.NewElection(sess, s.meta.Schema().Election())
	if err := e.Campaign(s.ctx, s.cfg.Addr); err != nil {
		return err
	}
	s.term.Store(e.Rev())
	s.leader.Store(true)
	s.log.Info("elected leader", "term", e.Rev())
	select {
	case <-s.ctx.Done():
	case <-sess.Done():
		s.log.Warn("leadership lost: etcd session ended", "term", e.Rev())
	}
	s.leader.Store(false)
	s.term.Store(0)
	if s.ctx.Err() != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		e.Resign(ctx) // let a standby take over at once
	}
	return nil
}
