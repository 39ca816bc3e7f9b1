package jobs

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
)

// queue is a pool's view of the jobs still to do (queued, or processing by
// a worker that may have died), kept from one listing and then etcd's
// watch. It is only a hint of what to try: the truth is read again under
// the job's lock.
type queue struct {
	etcd   *clientv3.Client
	kv     clientv3.KV // the listing's reads (etcd, or a wrapper in tests)
	store  *meta.Store
	schema meta.Schema
	// afterList, if set, runs after each listing, before the watch starts
	// (tests: compact etcd there).
	afterList func(rev int64)

	mu      sync.Mutex
	pending map[dfs.Hash]*entry
	wake    chan struct{} // closed and replaced when a job may have become available
}

type entry struct {
	busy bool // a worker of this pool is on it
	// heldRev is the revision at which another worker was seen holding
	// the job's lock, freedRev the revision of the last lock key deleted:
	// the job is worth another try only once a lock key went after the
	// holder was seen.
	heldRev, freedRev int64
}

func (e *entry) available() bool { return !e.busy && (e.heldRev == 0 || e.freedRev > e.heldRev) }

func newQueue(cli *clientv3.Client, schema meta.Schema) *queue {
	q := &queue{etcd: cli, schema: schema, pending: map[dfs.Hash]*entry{}, wake: make(chan struct{})}
	if cli != nil {
		q.kv, q.store = cli, meta.New(cli, schema)
	}
	return q
}

func (q *queue) signalLocked() {
	close(q.wake)
	q.wake = make(chan struct{})
}

// next blocks until a job is available, marks it busy and returns it.
func (q *queue) next(ctx context.Context) (dfs.Hash, bool) {
	for ctx.Err() == nil {
		q.mu.Lock()
		for h, e := range q.pending { // map order: workers spread over the jobs
			if e.available() {
				e.busy = true
				q.mu.Unlock()
				return h, true
			}
		}
		wake := q.wake
		q.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
		}
	}
	return dfs.Hash{}, false
}

// release ends a worker's try at a job: finished drops it (it is done or
// in error, or gone), heldRev > 0 says another worker held its lock at that
// revision.
func (q *queue) release(h dfs.Hash, finished bool, heldRev int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.pending[h]
	if e == nil {
		return
	}
	if finished {
		delete(q.pending, h)
		return
	}
	e.busy = false
	if heldRev > 0 {
		e.heldRev = heldRev
	}
	q.signalLocked()
}

// run keeps the queue: list, then watch jobs and locks from the revision
// the listing started at, listing again every resync (and whenever the
// watch breaks, as when etcd compacted the revision it was to start from)
// in case an event was missed. Since jobs/ holds only pending jobs, a
// listing costs what is pending, not what was ever processed.
func (q *queue) run(ctx context.Context, resync time.Duration, log *slog.Logger) {
	for ctx.Err() == nil {
		rev, err := q.list(ctx, log)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("list jobs", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		if q.afterList != nil {
			q.afterList(rev)
		}
		q.watch(ctx, rev, resync, log)
	}
}

// listPage is the most job records one read of the listing returns.
const listPage = 1000

// list replaces the view with every job still to do, and returns the
// revision its first read was at. The listing is not pinned to that
// revision: a change after it may or may not be seen, and the watch from
// it replays it either way. Finished jobs still under jobs/ (written
// before finished jobs had their own prefix, or by a worker that predates
// it) are moved to job-results/ on the way.
func (q *queue) list(ctx context.Context, log *slog.Logger) (int64, error) {
	prefix := q.schema.JobsPrefix()
	todo := map[dfs.Hash]bool{}
	var finished []meta.FinishedJob
	moved := 0
	move := func() error {
		n, err := q.store.MoveFinishedJobs(ctx, finished)
		moved += n
		finished = finished[:0]
		return err
	}
	rev, err := meta.ScanHex(ctx, q.kv, prefix, "", listPage, func(kv *mvccpb.KeyValue) (bool, error) {
		h, ok := q.hashOf(string(kv.Key), prefix)
		if !ok {
			return true, nil
		}
		switch state(kv.Value) {
		case toDo:
			todo[h] = true
			if moved > 0 {
				// A long listing (moving old records): workers need not
				// wait for its end.
				q.mu.Lock()
				if q.pending[h] == nil {
					q.pending[h] = &entry{}
					q.signalLocked()
				}
				q.mu.Unlock()
			}
		case done:
			finished = append(finished, meta.FinishedJob{Content: h, ModRev: kv.ModRevision, Value: kv.Value})
			if len(finished) == listPage {
				return true, move()
			}
		}
		return true, nil
	})
	if err == nil && len(finished) > 0 {
		err = move()
	}
	if moved > 0 {
		log.Info("moved finished jobs out of the queue into their contents' records", "jobs", moved)
	}
	if err != nil {
		return 0, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for h, e := range q.pending {
		if !todo[h] && !e.busy {
			delete(q.pending, h)
		}
	}
	for h := range todo {
		if e := q.pending[h]; e != nil {
			e.heldRev = 0 // try once more: a lock may have gone unseen
		} else {
			q.pending[h] = &entry{}
		}
	}
	q.signalLocked()
	return rev, nil
}

// watch follows jobs and locks from rev+1 (one watch over both prefixes,
// so their events come in one order) until resync passes or the watch
// breaks.
func (q *queue) watch(ctx context.Context, rev int64, resync time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), resync)
	defer cancel()
	jobs, locks := q.schema.JobsPrefix(), q.schema.LocksPrefix()
	// jobs/ sorts before locks/, and nothing else lies between them.
	wch := q.etcd.Watch(ctx, jobs, clientv3.WithRange(clientv3.GetPrefixRangeEnd(locks)), clientv3.WithRev(rev+1))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				log.Debug("watch jobs", "err", err)
			}
			return
		}
		var finished []meta.FinishedJob
		q.mu.Lock()
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			if h, ok := q.hashOf(key, jobs); ok {
				st := gone
				if ev.Type == clientv3.EventTypePut {
					st = state(ev.Kv.Value)
				}
				if st == toDo {
					if q.pending[h] == nil {
						q.pending[h] = &entry{}
					}
				} else if e := q.pending[h]; e != nil && !e.busy {
					delete(q.pending, h)
				}
				if st == done {
					finished = append(finished, meta.FinishedJob{Content: h, ModRev: ev.Kv.ModRevision, Value: ev.Kv.Value})
				}
				continue
			}
			if ev.Type != clientv3.EventTypeDelete || !strings.HasPrefix(key, locks) {
				continue
			}
			// <locks>/<sha256>/<lease>: a holder or a contender let go.
			rest := strings.TrimPrefix(key, locks)
			if i := strings.IndexByte(rest, '/'); i > 0 {
				if h, err := dfs.ParseHash(rest[:i]); err == nil {
					if e := q.pending[h]; e != nil {
						e.freedRev = ev.Kv.ModRevision
					}
				}
			}
		}
		q.signalLocked()
		q.mu.Unlock()
		if len(finished) > 0 {
			// A worker of an older version finished a job in place.
			if _, err := q.store.MoveFinishedJobs(ctx, finished); err != nil && ctx.Err() == nil {
				log.Warn("move finished jobs out of the queue", "err", err)
			}
		}
	}
}

func (q *queue) hashOf(key, prefix string) (dfs.Hash, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return dfs.Hash{}, false
	}
	h, err := dfs.ParseHash(rest)
	return h, err == nil
}

// jobState is what the queue makes of a job record.
type jobState int

const (
	gone jobState = iota // deleted, or not a job record
	toDo                 // queued, or processing by a worker that may have died
	done                 // finished (done or error) but still under jobs/
)

func state(val []byte) jobState {
	var rec api.JobRecord
	if proto.Unmarshal(val, &rec) != nil {
		return gone
	}
	switch {
	case rec.State == string(dfs.JobQueued) || rec.State == string(dfs.JobProcessing):
		return toDo
	case meta.JobFinished(rec.State):
		return done
	}
	return gone
}
