package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
)

// errFenced says a write was rejected because the worker no longer holds
// the job's lock, or the job changed since the worker read it (another
// worker took it over, or garbage collection deleted it with its content):
// the result is dropped.
var errFenced = errors.New("write rejected by the fence: the job's lock is no longer this worker's, or the job changed")

type worker struct {
	id   string
	cfg  *Config
	q    *queue
	log  *slog.Logger
	sess *concurrency.Session
}

func (w *worker) run(ctx context.Context) {
	defer func() {
		if w.sess != nil {
			w.sess.Close() // revokes the lease: our lock keys go at once
		}
	}()
	for {
		h, ok := w.q.next(ctx)
		if !ok {
			return
		}
		finished, held, err := w.try(ctx, h)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("job", "sha256", h.Short(), "err", err)
			if !errors.Is(err, errFenced) {
				// etcd trouble: do not spin on it.
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
		w.q.release(h, finished, held)
	}
}

// session returns the worker's etcd session, a new one if the last expired.
func (w *worker) session(ctx context.Context) (*concurrency.Session, error) {
	if w.sess != nil {
		select {
		case <-w.sess.Done():
			w.log.Warn("etcd session expired; the locks it held are lost")
			w.sess.Close()
			w.sess = nil
		default:
			return w.sess, nil
		}
	}
	ttl := int((w.cfg.LockTTL + time.Second - 1) / time.Second)
	s, err := concurrency.NewSession(w.cfg.Etcd, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("etcd session: %w", err)
	}
	w.sess = s
	return s, nil
}

// try claims a job and processes it. It reports whether the job needs no
// more tries from this pool, or else the revision at which another worker
// held its lock (0 if none was seen).
func (w *worker) try(ctx context.Context, h dfs.Hash) (finished bool, heldRev int64, err error) {
	lockPfx := w.cfg.Schema.Lock(h)
	// Contending for a lock someone holds writes and deletes a key, which
	// every pool sees; look first.
	held, err := w.cfg.Etcd.Get(ctx, lockPfx+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, 0, err
	}
	if held.Count > 0 {
		return false, held.Header.Revision, nil
	}
	sess, err := w.session(ctx)
	if err != nil {
		return false, 0, err
	}
	m := concurrency.NewMutex(sess, lockPfx)
	if err := m.TryLock(ctx); err != nil {
		if errors.Is(err, concurrency.ErrLocked) {
			// Taken since the look: its holder's key came after it.
			return false, held.Header.Revision, nil
		}
		return false, 0, fmt.Errorf("lock: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Unlock(uctx)
	}()
	c := &claim{w: w, h: h, m: m, key: w.cfg.Schema.Job(h)}
	return c.run(ctx)
}

// claim is a job in a worker's hands, under its lock.
type claim struct {
	w   *worker
	h   dfs.Hash
	m   *concurrency.Mutex
	key string // of the pending job
	rec *api.JobRecord
	rev int64 // the job key's mod revision as last read or written
}

func (c *claim) run(ctx context.Context) (finished bool, heldRev int64, err error) {
	// Re-check under the lock: the job may have ended since it was seen.
	resp, err := c.w.cfg.Etcd.Get(ctx, c.key)
	if err != nil {
		return false, 0, err
	}
	if len(resp.Kvs) == 0 {
		return true, 0, nil
	}
	if c.rec, err = meta.DecodeJob(c.h, resp.Kvs[0].Value); err != nil {
		return true, 0, err
	}
	c.rec.ContentHash = nil // the key names it
	c.rev = resp.Kvs[0].ModRevision
	switch dfs.JobState(c.rec.State) {
	case dfs.JobQueued, dfs.JobProcessing:
	default:
		return true, 0, nil // finished in place by an older worker: the queue moves it
	}
	cfg := c.w.cfg
	if dfs.JobState(c.rec.State) == dfs.JobProcessing && c.rec.Attempts >= int32(cfg.MaxAttempts) {
		// Every try so far ended with its worker gone.
		msg := fmt.Sprintf("gave up after %d attempts: worker %s stopped during the last one", c.rec.Attempts, c.rec.Worker)
		return true, 0, c.fail(ctx, msg)
	}
	backoff := cfg.Backoff
	for {
		if err := c.start(ctx); err != nil {
			return errors.Is(err, errFenced), 0, err
		}
		c.w.log.Info("processing", "sha256", c.h.Short(), "attempt", c.rec.Attempts)
		results, perr := c.process(ctx)
		if ctx.Err() != nil {
			// Shutting down: give the job back untouched.
			return false, 0, c.requeue()
		}
		if perr == nil {
			if err := c.finish(ctx, results); err != nil {
				return errors.Is(err, errFenced), 0, err
			}
			c.w.log.Info("done", "sha256", c.h.Short(), "attempt", c.rec.Attempts)
			return true, 0, nil
		}
		c.w.log.Warn("processing failed", "sha256", c.h.Short(), "attempt", c.rec.Attempts, "err", perr)
		var bad *badInput
		if errors.As(perr, &bad) || c.rec.Attempts >= int32(cfg.MaxAttempts) {
			return true, 0, c.fail(ctx, perr.Error())
		}
		c.rec.Error = perr.Error()
		select {
		case <-ctx.Done():
			return false, 0, c.requeue()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// process runs every processor on the content and merges their results.
func (c *claim) process(ctx context.Context) (map[string]string, error) {
	cfg := c.w.cfg
	if cfg.ProcessDelay > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(cfg.ProcessDelay):
		}
	}
	content, err := openContent(ctx, cfg.Client, c.h)
	if err != nil {
		return nil, err
	}
	// A datanode that stalls mid-read must not hold the job (and its lock,
	// kept alive by this worker's session) forever: the attempt has a
	// deadline generous for the content's size, and running out of it is
	// an error to retry.
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout(content.Size))
	defer cancel()
	results := map[string]string{}
	for _, p := range cfg.Processors {
		r, err := runProcessor(ctx, p, content)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name(), err)
		}
		for k, v := range r {
			results[p.Name()+"."+k] = v
		}
	}
	return results, nil
}

// runProcessor runs p, turning a panic on malformed input into an error.
func runProcessor(ctx context.Context, p Processor, c *Content) (r map[string]string, err error) {
	defer func() {
		if v := recover(); v != nil {
			r, err = nil, &badInput{fmt.Errorf("processor failed on this content: %v", v)}
		}
	}()
	return p.Process(ctx, c)
}

// start marks the job processing by this worker: one more attempt.
func (c *claim) start(ctx context.Context) error {
	now := time.Now().UnixNano()
	c.rec.State = string(dfs.JobProcessing)
	c.rec.Worker = c.w.id
	c.rec.Attempts++
	c.rec.StartedUnixNano = now
	c.rec.UpdatedUnixNano = now
	return c.write(ctx)
}

func (c *claim) finish(ctx context.Context, results map[string]string) error {
	c.rec.State = string(dfs.JobDone)
	c.rec.Error = ""
	c.rec.Results = results
	c.rec.UpdatedUnixNano = time.Now().UnixNano()
	return c.writeFinal(ctx)
}

func (c *claim) fail(ctx context.Context, msg string) error {
	c.w.log.Warn("job failed", "sha256", c.h.Short(), "attempts", c.rec.Attempts, "err", msg)
	c.rec.State = string(dfs.JobError)
	c.rec.Worker = c.w.id
	c.rec.Error = msg
	c.rec.Results = nil
	c.rec.UpdatedUnixNano = time.Now().UnixNano()
	return c.writeFinal(ctx)
}

// requeue gives the job back on shutdown: queued, this attempt not counted.
func (c *claim) requeue() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.rec.State = string(dfs.JobQueued)
	c.rec.Worker = ""
	c.rec.Attempts = max(0, c.rec.Attempts-1)
	c.rec.UpdatedUnixNano = time.Now().UnixNano()
	return c.write(ctx)
}

// write puts the job record if and only if this worker still holds the
// job's lock (its lock key exists with the create revision it got: the
// fencing token) and nobody else wrote the job since this worker last did.
func (c *claim) write(ctx context.Context) error {
	val, err := proto.Marshal(c.rec)
	if err != nil {
		return err
	}
	return c.commit(ctx, clientv3.OpPut(c.key, string(val)))
}

// writeFinal ends the job under the same fence as write: the finished
// record goes into the content's record, and the job leaves the queue's
// prefix, in one transaction.
func (c *claim) writeFinal(ctx context.Context) error {
	rev, ok, err := meta.FinishJob(ctx, c.w.cfg.Etcd, c.w.cfg.Schema, c.h, c.rec,
		c.m.IsOwner(), clientv3.Compare(clientv3.ModRevision(c.key), "=", c.rev))
	if err != nil {
		return fmt.Errorf("write job %s: %w", c.rec.State, err)
	}
	if !ok {
		c.w.log.Warn("stale write rejected by the fence", "sha256", c.h.Short(), "state", c.rec.State, "lock", c.m.Key())
		return fmt.Errorf("job %s (%s): %w", c.h.Short(), c.rec.State, errFenced)
	}
	c.rev = rev
	return nil
}

func (c *claim) commit(ctx context.Context, ops ...clientv3.Op) error {
	resp, err := c.w.cfg.Etcd.Txn(ctx).
		If(c.m.IsOwner(), clientv3.Compare(clientv3.ModRevision(c.key), "=", c.rev)).
		Then(ops...).
		Commit()
	if err != nil {
		return fmt.Errorf("write job %s: %w", c.rec.State, err)
	}
	if !resp.Succeeded {
		c.w.log.Warn("stale write rejected by the fence", "sha256", c.h.Short(), "state", c.rec.State, "lock", c.m.Key())
		return fmt.Errorf("job %s (%s): %w", c.h.Short(), c.rec.State, errFenced)
	}
	c.rev = resp.Header.Revision
	return nil
}

// attemptTimeout bounds one processing attempt of a content of size bytes:
// ten minutes, or the time to read it at 5 MiB/s if that is longer.
func attemptTimeout(size int64) time.Duration {
	return max(10*time.Minute, time.Duration(size/(5<<20))*time.Second)
}
