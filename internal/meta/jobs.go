package meta

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// Post-upload processing jobs live in two places. jobs/<sha256> holds the
// jobs still to do (queued, processing, or waiting for a retry), so the
// workers' queue reads only those; the transaction that finishes a job
// deletes it there and writes the finished record (done or error, with the
// results) under job-results/<sha256>, where it stays with its content. A
// reader of one content's state reads both keys, the pending one first.
//
// Records leave out what their key says: the content hash (the key names
// it) and, in a queued record, the update time (the queue time). Decode
// fills both in, so records written before this layout and after read the
// same.

// QueuedJob returns the record a commit writes to queue a new content's job.
func QueuedJob(now time.Time) *api.JobRecord {
	return &api.JobRecord{State: string(dfs.JobQueued), QueuedUnixNano: now.UnixNano()}
}

// DecodeJob decodes the job record of content h, filling in what the
// stored record leaves out.
func DecodeJob(h dfs.ContentHash, val []byte) (*api.JobRecord, error) {
	var rec api.JobRecord
	if err := proto.Unmarshal(val, &rec); err != nil {
		return nil, fmt.Errorf("job of %s: decode: %w", h.Short(), err)
	}
	rec.ContentHash = h[:]
	if rec.UpdatedUnixNano == 0 {
		rec.UpdatedUnixNano = rec.QueuedUnixNano
	}
	return &rec, nil
}

// JobFinished reports whether a job in state needs no more work.
func JobFinished(state string) bool {
	return state == string(dfs.JobDone) || state == string(dfs.JobError)
}

// GetJob returns the processing job of a content, pending or finished, or
// an error wrapping dfs.ErrNotFound when the content has none.
func (s *Store) GetJob(ctx context.Context, h dfs.ContentHash) (*api.JobRecord, error) {
	keys := []string{s.schema.Job(h), s.schema.Result(h)}
	var found [][]*mvccpb.KeyValue
	// Both keys in one read (a finish moves the job from one to the other
	// in one transaction, so one read sees it in exactly one place)...
	resp, err := s.cli.Txn(clientv3.WithRequireLeader(ctx)).Then(clientv3.OpGet(keys[0]), clientv3.OpGet(keys[1])).Commit()
	if err == nil {
		for _, r := range resp.Responses {
			found = append(found, r.GetResponseRange().Kvs)
		}
	} else if ctx.Err() == nil && noLeader(err) {
		// ...or, without a quorum, this member's state, as read does.
		for _, k := range keys {
			r, err := s.cli.Get(ctx, k, clientv3.WithSerializable())
			if err != nil {
				return nil, fmt.Errorf("get job %s: %w", h.Short(), etcdErr(err))
			}
			found = append(found, r.Kvs)
		}
	} else {
		return nil, fmt.Errorf("get job %s: %w", h.Short(), etcdErr(err))
	}
	for _, kvs := range found {
		if len(kvs) == 1 {
			return DecodeJob(h, kvs[0].Value)
		}
	}
	return nil, fmt.Errorf("job of %s: %w", h.Short(), dfs.ErrNotFound)
}

// JobsPage is one answer of Jobs.
type JobsPage struct {
	// Jobs in content-hash order, each with its ContentHash.
	Jobs []*api.JobRecord
	// Next is the content hash to list after for the following page; ""
	// when the listing is complete. A page may hold fewer than the limit,
	// even none, and still have a Next: each answer reads a bounded number
	// of records.
	Next string
}

// jobsScanFactor bounds the records one Jobs answer reads: this many times
// its limit from each prefix, whatever the state asked for.
const jobsScanFactor = 8

// Jobs lists the jobs in state (every state if empty) in content-hash
// order after startAfter (a hex content hash, or ""): at most limit of them
// (1000 if limit <= 0), reading at most a few times limit records. Pending
// states are read from jobs/ alone; finished ones from job-results/ and
// from jobs/, which may still hold finished jobs written before the
// results had their own prefix.
func (s *Store) Jobs(ctx context.Context, state string, startAfter string, limit int) (JobsPage, error) {
	if limit <= 0 {
		limit = 1000
	}
	want := func(rec *api.JobRecord) bool { return state == "" || rec.State == state }
	sources := []string{s.schema.JobsPrefix()}
	if state == "" || JobFinished(state) {
		sources = append(sources, s.schema.ResultsPrefix())
	}
	type found struct {
		name string
		rec  *api.JobRecord
	}
	var all []found
	bound, bounded := "", false // every record up to bound was read from every source
	for _, prefix := range sources {
		n, read, reached, ended := 0, 0, "", true
		_, err := ScanHex(ctx, s.cli, prefix, startAfter, min(limit*jobsScanFactor, 1000), func(kv *mvccpb.KeyValue) (bool, error) {
			name := strings.TrimPrefix(string(kv.Key), prefix)
			h, err := dfs.ParseHash(name)
			if err != nil {
				return true, nil // not a job (nothing else is written here)
			}
			rec, err := DecodeJob(h, kv.Value)
			if err != nil {
				return false, err
			}
			read++
			reached = name
			if want(rec) {
				all = append(all, found{name, rec})
				n++
			}
			if n == limit || read == limit*jobsScanFactor {
				ended = false
				return false, nil
			}
			return true, nil
		})
		if err != nil {
			return JobsPage{}, fmt.Errorf("list jobs: %w", err)
		}
		if !ended && (!bounded || reached < bound) {
			bound, bounded = reached, true
		}
	}
	// A content's job is in one place at a time, but a reader between two
	// moves of an old record could see it in both: the pending one wins.
	sort.SliceStable(all, func(i, j int) bool { return all[i].name < all[j].name })
	var page JobsPage
	last := ""
	for i, f := range all {
		if bounded && f.name > bound {
			break
		}
		if i > 0 && all[i-1].name == f.name {
			continue
		}
		if len(page.Jobs) == limit {
			page.Next = last
			return page, nil
		}
		page.Jobs = append(page.Jobs, f.rec)
		last = f.name
	}
	if bounded {
		page.Next = bound
	}
	return page, nil
}

// FinishedJob is a finished job found under jobs/, where clusters kept
// them before job-results/ existed.
type FinishedJob struct {
	Content dfs.ContentHash
	ModRev  int64  // of its jobs/ key, as read
	Value   []byte // the record as read
}

// moveBatch is the most jobs one moving transaction carries: two
// operations each, etcd's default limit of 128 per transaction.
const moveBatch = 64

// MoveFinishedJobs moves finished jobs from jobs/ to job-results/, each
// only if its jobs/ key is still the record read (its mod revision), so a
// move is idempotent and safe beside workers and garbage collection. It
// reports how many moved.
func (s *Store) MoveFinishedJobs(ctx context.Context, jobs []FinishedJob) (int, error) {
	moved := 0
	for len(jobs) > 0 {
		n := min(len(jobs), moveBatch)
		batch := jobs[:n]
		jobs = jobs[n:]
		ok, err := s.moveJobs(ctx, batch)
		if err != nil {
			return moved, err
		}
		if ok {
			moved += len(batch)
			continue
		}
		// One of them changed: move the others one at a time.
		for _, j := range batch {
			ok, err := s.moveJobs(ctx, []FinishedJob{j})
			if err != nil {
				return moved, err
			}
			if ok {
				moved++
			}
		}
	}
	return moved, nil
}

func (s *Store) moveJobs(ctx context.Context, jobs []FinishedJob) (bool, error) {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for _, j := range jobs {
		rec, err := DecodeJob(j.Content, j.Value)
		if err != nil {
			return false, err
		}
		if !JobFinished(rec.State) {
			return false, fmt.Errorf("move job %s: it is %s, not finished", j.Content.Short(), rec.State)
		}
		rec.ContentHash = nil
		val, err := proto.Marshal(rec)
		if err != nil {
			return false, err
		}
		key := s.schema.Job(j.Content)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", j.ModRev))
		ops = append(ops, clientv3.OpDelete(key), clientv3.OpPut(s.schema.Result(j.Content), string(val)))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("move %d finished jobs to %s: %w", len(jobs), s.schema.ResultsPrefix(), etcdErr(err))
	}
	return resp.Succeeded, nil
}
