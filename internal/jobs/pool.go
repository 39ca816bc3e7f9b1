// Package jobs runs post-upload processing: every new content's job, queued
// in etcd by the commit that created the content, is claimed by one worker,
// processed (verify the stored bytes, read media metadata) and marked done
// or error, exactly once in effect however many workers run on however many
// hosts, and whether they crash or pause.
//
// A worker claims a job with an etcd mutex on the content's lock key
// (<root>/v1/locks/<sha256>) and re-reads the job under the lock. A lock
// alone does not make the holder the only writer: a worker that pauses
// (GC, SIGSTOP, a slow disk) past its session's TTL loses the lock without
// knowing, and another worker takes the job over. So every state change a
// worker writes is one etcd transaction that compares the worker's own lock
// key's create revision, the fencing token, and the job's mod revision; a
// worker whose lock is gone has every later write rejected, and its result
// never lands. Processors are idempotent (they only read the content and
// return results), so a run whose result is rejected leaves no trace.
//
// The transaction that finishes a job (done, or error for good) also moves
// it out of the queue's prefix into the results (see meta/jobs.go), so the
// queue, listed by every pool, holds only what is still to do.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/meta"
)

// Config configures a pool of workers. Zero values take the defaults.
type Config struct {
	// Etcd holds the jobs and the locks; Schema names their keys.
	Etcd   *clientv3.Client
	Schema meta.Schema
	// Client reads content bytes from the cluster.
	Client *client.Client
	// Workers is the number of workers (default 3).
	Workers int
	// Name prefixes the workers' ids: "NAME/worker-1", …; with no name
	// they are "worker-1", ….
	Name string
	// LockTTL is the lease of each worker's etcd session: a worker that
	// stops renewing it (crashed, paused) loses its locks after this long
	// (default 10s, at least 1s).
	LockTTL time.Duration
	// MaxAttempts bounds the tries of a job, counting those of workers that
	// died during it (default 3).
	MaxAttempts int
	// Backoff is the wait before the first retry of a failed job; it
	// doubles with every retry, up to 30s (default 1s).
	Backoff time.Duration
	// Resync is how often the pool lists the pending jobs again, in case a
	// watch event was missed (default 30s). Finished jobs are not under
	// the listed prefix, so this costs what is pending.
	Resync time.Duration
	// ProcessDelay holds every job for this long after it is claimed and
	// before it is processed. It is a testing aid, to keep jobs in hand
	// while a test kills or pauses the worker.
	ProcessDelay time.Duration
	// Processors run on every job, in order (default Verify and Media).
	Processors []Processor
	Logger     *slog.Logger
}

func (c *Config) fill() error {
	if c.Etcd == nil || c.Client == nil {
		return errors.New("jobs: no etcd or dfs client")
	}
	if c.Workers <= 0 {
		c.Workers = 3
	}
	if c.LockTTL <= 0 {
		c.LockTTL = 10 * time.Second
	}
	if c.LockTTL < time.Second {
		c.LockTTL = time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.Backoff <= 0 {
		c.Backoff = time.Second
	}
	if c.Resync <= 0 {
		c.Resync = 30 * time.Second
	}
	if c.Processors == nil {
		c.Processors = []Processor{Verify{}, Media{}}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Pool is a set of workers sharing one view of the queue.
type Pool struct {
	cfg    Config
	q      *queue
	log    *slog.Logger
	ids    []string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start starts the pool's workers. Close stops them.
func Start(cfg Config) (*Pool, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{cfg: cfg, q: newQueue(cfg.Etcd, cfg.Schema), log: cfg.Logger.With("role", "worker"), cancel: cancel}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.q.run(ctx, cfg.Resync, p.log)
	}()
	for i := range cfg.Workers {
		id := fmt.Sprintf("worker-%d", i+1)
		if cfg.Name != "" {
			id = cfg.Name + "/" + id
		}
		p.ids = append(p.ids, id)
		w := &worker{id: id, cfg: &p.cfg, q: p.q, log: p.log.With("worker", id)}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			w.run(ctx)
		}()
	}
	return p, nil
}

// Workers returns the workers' ids.
func (p *Pool) Workers() []string { return append([]string(nil), p.ids...) }

// Close stops every worker. A job in hand goes back to the queue, and its
// lock is released at once, for another worker to take.
func (p *Pool) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}
