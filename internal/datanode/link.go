package datanode

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/rpc"
)

// reportBatch is the number of hashes in one message of a full report.
const reportBatch = 16384

// link reports to one coordinator. It registers (with a full chunk report)
// whenever it is not registered, and otherwise sends a heartbeat every
// interval, or at once when kicked, carrying the changes queued since the
// last one the coordinator acknowledged.
type link struct {
	n    *Node
	addr string
	conn *grpc.ClientConn
	reg  api.RegistryClient

	mu      sync.Mutex
	added   []dfs.Hash
	removed []dfs.Hash
	corrupt []dfs.Hash    // quarantined or found bad; kept until a heartbeat delivers them
	seq     uint64        // changes queued so far
	acked   uint64        // changes the coordinator has acknowledged
	ackCh   chan struct{} // closed and replaced when acked grows
	kick    chan struct{}
	gen     uint64 // 0: not registered; owned by run

	registered atomic.Bool // gen != 0, for other goroutines
}

func newLink(n *Node, addr string) (*link, error) {
	conn, err := rpc.Dial(addr)
	if err != nil {
		return nil, err
	}
	return &link{n: n, addr: addr, conn: conn, reg: api.NewRegistryClient(conn),
		ackCh: make(chan struct{}), kick: make(chan struct{}, 1)}, nil
}

func (l *link) enqueueAdded(h dfs.Hash) {
	l.mu.Lock()
	l.added = append(l.added, h)
	l.seq++
	l.mu.Unlock()
}

// enqueueRemoved queues a removal, and, if corrupt, the reason with it.
func (l *link) enqueueRemoved(h dfs.Hash, corrupt bool) {
	l.mu.Lock()
	l.removed = append(l.removed, h)
	if corrupt {
		l.corrupt = append(l.corrupt, h)
	}
	l.seq++
	l.mu.Unlock()
}

// enqueueCorrupt queues a corrupt copy that is still in the store.
func (l *link) enqueueCorrupt(h dfs.Hash) {
	l.mu.Lock()
	l.corrupt = append(l.corrupt, h)
	l.seq++
	l.mu.Unlock()
}

// poke asks for a heartbeat now.
func (l *link) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// flush sends the changes queued so far and waits until the coordinator has
// acknowledged them, or ctx ends.
func (l *link) flush(ctx context.Context) {
	if !l.registered.Load() {
		// Not registered: the full report at registration will carry it.
		return
	}
	l.mu.Lock()
	want := l.seq
	l.mu.Unlock()
	l.poke()
	for {
		l.mu.Lock()
		done, ch := l.acked >= want, l.ackCh
		l.mu.Unlock()
		if done || !l.registered.Load() {
			// Acknowledged; or the coordinator went away meanwhile, and
			// its next registration's full report will carry the change.
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// wakeWaiters wakes flushes waiting for an acknowledgement, so they see
// the link is down and stop waiting for a coordinator that is gone.
func (l *link) wakeWaiters() {
	l.mu.Lock()
	close(l.ackCh)
	l.ackCh = make(chan struct{})
	l.mu.Unlock()
}

func (l *link) ack(seq uint64) {
	l.mu.Lock()
	if seq > l.acked {
		l.acked = seq
		close(l.ackCh)
		l.ackCh = make(chan struct{})
	}
	l.mu.Unlock()
}

func (l *link) run(ctx context.Context) {
	log := l.n.log.With("coordinator", l.addr)
	tick := time.NewTicker(l.n.cfg.Heartbeat)
	defer tick.Stop()
	failing := false
	for ctx.Err() == nil {
		var err error
		if l.gen == 0 {
			err = l.register(ctx)
		} else {
			err = l.heartbeat(ctx)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				log.Warn("coordinator unreachable", "err", err)
			}
			failing = true
			l.gen = 0
			l.registered.Store(false)
			l.wakeWaiters()
		case err == nil && failing:
			log.Info("coordinator reachable again")
			failing = false
		}
		if l.gen == 0 && err == nil {
			continue // told to register again: do it now
		}
		if l.gen != 0 && !failing {
			select {
			case <-ctx.Done():
			case <-tick.C:
			case <-l.kick:
			}
		} else {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}
}

// register announces the node and sends its full chunk list. Changes that
// happen meanwhile stay queued and go with the next heartbeat; a chunk both
// reported and queued is harmless. Quarantined chunks are no longer in the
// store, so the report leaves them out; corrupt reports not yet delivered
// are kept for the next heartbeat, as the full report does not carry them.
func (l *link) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	resp, err := l.reg.Register(ctx, &api.RegisterRequest{Node: l.n.apiNode(), Stats: l.n.stats()})
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	l.mu.Lock()
	l.added, l.removed = nil, nil
	snap := l.seq
	l.mu.Unlock()

	stream, err := l.reg.ReportChunks(ctx)
	if err != nil {
		return fmt.Errorf("chunk report: %w", err)
	}
	batch := make([][]byte, 0, reportBatch)
	send := func(last bool) error {
		err := stream.Send(&api.ChunkReport{NodeId: string(l.n.id), Generation: resp.Generation, Hashes: batch, Last: last})
		batch = batch[:0]
		return err
	}
	err = l.n.store.Walk(ctx, func(h dfs.ChunkHash, _ int64) error {
		batch = append(batch, append([]byte(nil), h[:]...))
		if len(batch) == reportBatch {
			return send(false)
		}
		return nil
	})
	if err == nil {
		err = send(true)
	}
	if err == nil {
		_, err = stream.CloseAndRecv()
	}
	if err != nil {
		return fmt.Errorf("chunk report: %w", err)
	}
	l.observeTerm(resp.LeaderTerm)
	l.gen = resp.Generation
	l.registered.Store(true)
	l.ack(snap)
	l.n.log.Info("registered with coordinator", "coordinator", l.addr, "generation", l.gen)
	return nil
}

func (l *link) heartbeat(ctx context.Context) error {
	l.mu.Lock()
	added, removed, corrupt, snap := l.added, l.removed, l.corrupt, l.seq
	l.added, l.removed, l.corrupt = nil, nil, nil
	l.mu.Unlock()
	req := &api.HeartbeatRequest{NodeId: string(l.n.id), Generation: l.gen, Stats: l.n.stats(),
		Added: hashBytes(added), Removed: hashBytes(removed), Corrupt: hashBytes(corrupt)}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := l.reg.Heartbeat(ctx, req)
	if err != nil {
		// Added and removed are lost with this heartbeat; the full report
		// at the next registration carries them. Corrupt reports are not in
		// a full report, so they wait for the next heartbeat.
		l.requeueCorrupt(corrupt)
		return fmt.Errorf("heartbeat: %w", err)
	}
	l.observeTerm(resp.LeaderTerm)
	if resp.Reregister {
		// The coordinator restarted or forgot us: register again at once.
		l.requeueCorrupt(corrupt)
		l.gen = 0
		l.registered.Store(false)
		return nil
	}
	l.ack(snap)
	return nil
}

// requeueCorrupt puts corrupt reports a coordinator did not take back at the
// head of the queue.
func (l *link) requeueCorrupt(hs []dfs.Hash) {
	if len(hs) == 0 {
		return
	}
	l.mu.Lock()
	l.corrupt = append(hs, l.corrupt...)
	l.mu.Unlock()
}

func hashBytes(hs []dfs.Hash) [][]byte {
	if len(hs) == 0 {
		return nil
	}
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// observeTerm takes the newest leader term a coordinator knows of.
func (l *link) observeTerm(term int64) {
	if err := l.n.terms.observe(term); err != nil {
		l.n.log.Warn("leader term", "err", err)
	}
}
