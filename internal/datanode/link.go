package datanode

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/rpc"
)

// reportBatch is the number of hashes in one message of a full report.
const reportBatch = 16384

// maxDelta is the number of changes one heartbeat carries at most; more
// go in the heartbeats that follow at once.
const maxDelta = 65536

// link reports to one coordinator. It registers whenever it is not
// registered, with a full chunk report when the coordinator asks for one
// (it holds no complete state for this datanode process), and otherwise
// sends a heartbeat every interval, or at once when kicked, carrying the
// changes not yet acknowledged.
//
// Changes are kept as the latest state of each chunk (present or not) with
// the sequence number of the change that set it, until a heartbeat that
// carried that state is acknowledged. A heartbeat that failed (or whose
// answer was lost) leaves them queued: they are sent again, after a
// re-registration too, and applying a chunk's latest state twice is
// harmless.
type link struct {
	n    *Node
	addr string
	conn *grpc.ClientConn
	reg  api.RegistryClient

	mu      sync.Mutex
	pending map[dfs.Hash]change // chunks whose latest state the coordinator has not acknowledged
	corrupt []dfs.Hash          // quarantined or found bad; kept until a heartbeat delivers them
	seq     uint64              // changes queued so far
	acked   uint64              // changes the coordinator has acknowledged
	ackCh   chan struct{}       // closed and replaced when acked grows
	kick    chan struct{}
	gen     uint64 // 0: not registered; owned by run

	registered atomic.Bool // gen != 0, for other goroutines
}

func newLink(n *Node, addr string) (*link, error) {
	var tc *tls.Config
	if n.cfg.TLS != nil {
		tc = n.cfg.TLS.ClientTLS()
	}
	conn, err := rpc.DialTLS(addr, tc)
	if err != nil {
		return nil, err
	}
	return &link{n: n, addr: addr, conn: conn, reg: api.NewRegistryClient(conn),
		pending: map[dfs.Hash]change{}, ackCh: make(chan struct{}), kick: make(chan struct{}, 1)}, nil
}

// change is a chunk's latest state to report.
type change struct {
	present bool
	seq     uint64
}

func (l *link) enqueueAdded(h dfs.Hash) {
	l.mu.Lock()
	l.seq++
	l.pending[h] = change{present: true, seq: l.seq}
	l.mu.Unlock()
}

// enqueueRemoved queues a removal, and, if corrupt, the reason with it.
func (l *link) enqueueRemoved(h dfs.Hash, corrupt bool) {
	l.mu.Lock()
	l.seq++
	l.pending[h] = change{present: false, seq: l.seq}
	if corrupt {
		l.corrupt = append(l.corrupt, h)
	}
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
		// Not registered: the change stays queued for after registration.
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
			// the change stays queued for after its next registration.
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

// register announces the node and, if the coordinator asks for it, sends
// its full chunk list. Changes that happen meanwhile stay queued and go
// with the next heartbeat; a chunk both reported and queued is harmless.
// Quarantined chunks are no longer in the store, so the report leaves them
// out; corrupt reports not yet delivered are kept for the next heartbeat,
// as the full report does not carry them.
func (l *link) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	resp, err := l.reg.Register(ctx, &api.RegisterRequest{Node: l.n.apiNode(), Stats: l.n.stats(), Incarnation: l.n.incarnation})
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	if resp.FullReport {
		if err := l.report(ctx, resp.Generation); err != nil {
			return err
		}
	}
	l.observeTerm(resp.LeaderTerm)
	if len(resp.TokenKey) > 0 {
		l.n.tokenKeys.Store(&dataplane.TokenKey{ID: byte(resp.TokenKeyId), Secret: resp.TokenKey})
	}
	if resp.Replicas > 0 {
		l.n.replicas.Store(resp.Replicas)
	}
	l.gen = resp.Generation
	l.registered.Store(true)
	l.n.firstRegOnce.Do(func() { close(l.n.firstReg) })
	l.n.log.Info("registered with coordinator", "coordinator", l.addr, "generation", l.gen, "full_report", resp.FullReport)
	l.poke() // deliver what is queued now
	return nil
}

// report sends the full chunk list for registration gen. The changes
// queued before it are in it and need no heartbeat.
func (l *link) report(ctx context.Context, gen uint64) error {
	l.mu.Lock()
	snap := l.seq
	l.mu.Unlock()
	stream, err := l.reg.ReportChunks(ctx)
	if err != nil {
		return fmt.Errorf("chunk report: %w", err)
	}
	batch := make([]byte, 0, reportBatch*len(dfs.Hash{}))
	send := func(last bool) error {
		err := stream.Send(&api.ChunkReport{NodeId: string(l.n.id), Generation: gen, PackedHashes: batch, Last: last})
		batch = batch[:0]
		return err
	}
	err = l.n.store.Walk(ctx, func(h dfs.ChunkHash, _ int64) error {
		batch = append(batch, h[:]...)
		if len(batch) == cap(batch) {
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
	l.mu.Lock()
	for h, c := range l.pending {
		if c.seq <= snap {
			delete(l.pending, h)
		}
	}
	l.mu.Unlock()
	l.ack(snap)
	return nil
}

func (l *link) heartbeat(ctx context.Context) error {
	l.mu.Lock()
	var added, removed []dfs.Hash
	sent := make(map[dfs.Hash]uint64, min(len(l.pending), maxDelta))
	ackTo := l.seq
	for h, c := range l.pending {
		if len(sent) == maxDelta {
			// Acknowledge only what is older than every change left.
			ackTo = min(ackTo, c.seq-1)
			continue
		}
		sent[h] = c.seq
		if c.present {
			added = append(added, h)
		} else {
			removed = append(removed, h)
		}
	}
	corrupt := l.corrupt
	l.corrupt = nil
	more := len(sent) < len(l.pending)
	l.mu.Unlock()
	req := &api.HeartbeatRequest{NodeId: string(l.n.id), Generation: l.gen, Stats: l.n.stats(),
		Added: hashBytes(added), Removed: hashBytes(removed), Corrupt: hashBytes(corrupt)}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := l.reg.Heartbeat(ctx, req)
	if err != nil {
		// The changes stay queued for the next heartbeat, after a new
		// registration if need be; so do the corrupt reports.
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
	l.mu.Lock()
	for h, seq := range sent {
		if c, ok := l.pending[h]; ok && c.seq == seq {
			delete(l.pending, h)
		}
	}
	l.mu.Unlock()
	l.ack(ackTo)
	if more {
		l.poke()
	}
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
