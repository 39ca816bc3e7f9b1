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
// (FinishJob) deletes it there and writes the finished record (done or
// error, with the results) into the content's own record
// (ContentRecord.job), where it stays with the content and costs no key of
// its own. Clusters before layout 4 kept finished jobs under
// job-results/<sha256>; the leader's migration folds them into the content
// records, and readers look there too until it has. A reader of one
// content's state reads the pending key first.
//
// Records leave out what their key says: the content hash (the key names
// it) and, in a queued record, the update time (the queue time). Decode
// fills both in, so records written before this layout and after read the
// same.

// QueuedJob returns the record a commit writes to queue a new content's job.
func QueuedJob(now time.Time, path string) *api.JobRecord {
	return &api.JobRecord{State: string(dfs.JobQueued), QueuedUnixNano: now.UnixNano(), Path: path}
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

// ContentJob returns the finished job kept in the record val of content h,
// or nil if it holds none.
func ContentJob(h dfs.ContentHash, val []byte) (*api.JobRecord, error) {
	var rec api.ContentRecord
	if err := proto.Unmarshal(val, &rec); err != nil {
		return nil, fmt.Errorf("content %s: decode: %w", h.Short(), err)
	}
	if rec.Job == nil {
		return nil, nil
	}
	j := rec.Job
	j.ContentHash = h[:]
	if j.UpdatedUnixNano == 0 {
		j.UpdatedUnixNano = j.QueuedUnixNano
	}
	return j, nil
}

// GetJob returns the processing job of a content, pending or finished, or
// an error wrapping dfs.ErrNotFound when the content has none.
func (s *Store) GetJob(ctx context.Context, h dfs.ContentHash) (*api.JobRecord, error) {
	// The pending key, the content's record, and a finished record of the
	// old layout.
	keys := []string{s.schema.Job(h), s.schema.Content(h), s.schema.Result(h)}
	var found [][]*mvccpb.KeyValue
	// All in one read (a finish moves the job from one to the other in
	// one transaction, so one read sees it in exactly one place)...
	resp, err := s.cli.Txn(clientv3.WithRequireLeader(ctx)).Then(clientv3.OpGet(keys[0]), clientv3.OpGet(keys[1]), clientv3.OpGet(keys[2])).Commit()
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
	if kvs := found[0]; len(kvs) == 1 {
		return DecodeJob(h, kvs[0].Value)
	}
	if kvs := found[1]; len(kvs) == 1 {
		j, err := ContentJob(h, kvs[0].Value)
		if j != nil || err != nil {
			return j, err
		}
	}
	if kvs := found[2]; len(kvs) == 1 {
		return DecodeJob(h, kvs[0].Value)
	}
	return nil, fmt.Errorf("job of %s: %w", h.Short(), dfs.ErrNotFound)
}

// FinishJob ends content h's job with rec (done or error), if every
// compare of fence holds: one transaction deletes the pending key (and a
// finished record of the old layout) and writes rec into the content's
// record, or only deletes them if the content is gone. It returns the
// revision it wrote at, or ok false if the fence failed. A content record
// rewritten between its read and the write is read again.
func FinishJob(ctx context.Context, kv clientv3.KV, sc Schema, h dfs.ContentHash, rec *api.JobRecord, fence ...clientv3.Cmp) (rev int64, ok bool, err error) {
	for {
		resp, err := kv.Get(ctx, sc.Content(h))
		if err != nil {
			return 0, false, fmt.Errorf("finish job %s: read content: %w", h.Short(), etcdErr(err))
		}
		cmp, ops, err := foldOps(sc, h, resp.Kvs, rec)
		if err != nil {
			return 0, false, err
		}
		ops = append(ops, clientv3.OpDelete(sc.Job(h)), clientv3.OpDelete(sc.Result(h)))
		txn, err := kv.Txn(ctx).If(append(fence[:len(fence):len(fence)], cmp)...).Then(ops...).
			Else(clientv3.OpTxn(fence, nil, nil)).Commit()
		if err != nil {
			return 0, false, fmt.Errorf("finish job %s: %w", h.Short(), etcdErr(err))
		}
		if txn.Succeeded {
			return txn.Header.Revision, true, nil
		}
		if !txn.Responses[0].GetResponseTxn().Succeeded {
			return 0, false, nil
		}
	}
}

// foldOps returns the write that keeps job in content h's record as read
// (kvs: the record, or none if the content is gone), and the compare that
// the record is still the one read.
func foldOps(sc Schema, h dfs.ContentHash, kvs []*mvccpb.KeyValue, job *api.JobRecord) (clientv3.Cmp, []clientv3.Op, error) {
	ckey := sc.Content(h)
	if len(kvs) == 0 {
		return clientv3.Compare(clientv3.CreateRevision(ckey), "=", 0), nil, nil
	}
	var rec api.ContentRecord
	if err := proto.Unmarshal(kvs[0].Value, &rec); err != nil {
		return clientv3.Cmp{}, nil, fmt.Errorf("content %s: decode: %w", h.Short(), err)
	}
	rec.Job = proto.Clone(job).(*api.JobRecord)
	rec.Job.ContentHash = nil // the key names it
	val, err := proto.Marshal(&rec)
	if err != nil {
		return clientv3.Cmp{}, nil, err
	}
	return clientv3.Compare(clientv3.ModRevision(ckey), "=", kvs[0].ModRevision), []clientv3.Op{clientv3.OpPut(ckey, string(val))}, nil
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
// (1000 if limit <= 0), reading at most a few times limit records from
// each place. Pending states are read from jobs/ alone; finished ones from
// the content records, from job-results/ (the old layout, until the
// migration) and from jobs/, which may still hold finished jobs written
// before either.
func (s *Store) Jobs(ctx context.Context, state string, startAfter string, limit int) (JobsPage, error) {
	if limit <= 0 {
		limit = 1000
	}
	want := func(rec *api.JobRecord) bool { return state == "" || rec.State == state }
	type source struct {
		prefix string
		decode func(h dfs.ContentHash, val []byte) (*api.JobRecord, error) // nil, nil: no job there
	}
	sources := []source{{s.schema.JobsPrefix(), DecodeJob}}
	if state == "" || JobFinished(state) {
		sources = append(sources, source{s.schema.ContentsPrefix(), ContentJob}, source{s.schema.ResultsPrefix(), DecodeJob})
	}
	type found struct {
		name string
		rec  *api.JobRecord
	}
	var all []found
	bound, bounded := "", false // every record up to bound was read from every source
	for _, src := range sources {
		prefix := src.prefix
		n, read, reached, ended := 0, 0, "", true
		_, err := ScanHex(ctx, s.cli, prefix, startAfter, min(limit*jobsScanFactor, 1000), func(kv *mvccpb.KeyValue) (bool, error) {
			name := strings.TrimPrefix(string(kv.Key), prefix)
			h, err := dfs.ParseHash(name)
			if err != nil {
				return true, nil // not a job or a content record (a chunk page)
			}
			rec, err := src.decode(h, kv.Value)
			if err != nil {
				return false, err
			}
			read++
			reached = name
			if rec != nil && want(rec) {
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

// FinishedJob is a finished job found under jobs/ (where clusters kept
// them before job-results/ existed) or under job-results/ (before layout
// 4), to fold into its content's record.
type FinishedJob struct {
	Content dfs.ContentHash
	ModRev  int64  // of its key, as read
	Value   []byte // the record as read
}

// moveBatch is the most jobs one folding transaction carries: two
// operations each, etcd's default limit of 128 per transaction.
const moveBatch = 64

// MoveFinishedJobs folds finished jobs found under jobs/ into their
// contents' records (see FoldFinished).
func (s *Store) MoveFinishedJobs(ctx context.Context, jobs []FinishedJob) (int, error) {
	return s.FoldFinished(ctx, s.schema.Job, jobs)
}

// FoldFinished moves finished jobs from the keys key names into their
// contents' records, each only if its key is still the record read (its
// mod revision), so a move is idempotent and safe beside workers and
// garbage collection; the job of a content that is gone is only deleted.
// It reports how many moved.
func (s *Store) FoldFinished(ctx context.Context, key func(dfs.ContentHash) string, jobs []FinishedJob) (int, error) {
	moved := 0
	for len(jobs) > 0 {
		n := min(len(jobs), moveBatch)
		batch := jobs[:n]
		jobs = jobs[n:]
		ok, err := s.foldJobs(ctx, key, batch)
		if err != nil {
			return moved, err
		}
		if ok {
			moved += len(batch)
			continue
		}
		// One of them changed: move the others one at a time.
		for _, j := range batch {
			ok, err := s.foldJobs(ctx, key, []FinishedJob{j})
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

func (s *Store) foldJobs(ctx context.Context, key func(dfs.ContentHash) string, jobs []FinishedJob) (bool, error) {
	reads := make([]clientv3.Op, len(jobs))
	for i, j := range jobs {
		reads[i] = clientv3.OpGet(s.schema.Content(j.Content))
	}
	contents, err := s.cli.Txn(ctx).Then(reads...).Commit()
	if err != nil {
		return false, fmt.Errorf("fold %d finished jobs: read contents: %w", len(jobs), etcdErr(err))
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for i, j := range jobs {
		rec, err := DecodeJob(j.Content, j.Value)
		if err != nil {
			return false, err
		}
		if !JobFinished(rec.State) {
			return false, fmt.Errorf("fold job %s: it is %s, not finished", j.Content.Short(), rec.State)
		}
		cmp, put, err := foldOps(s.schema, j.Content, contents.Responses[i].GetResponseRange().Kvs, rec)
		if err != nil {
			return false, err
		}
		k := key(j.Content)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", j.ModRev), cmp)
		ops = append(append(ops, clientv3.OpDelete(k)), put...)
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("fold %d finished jobs into their contents: %w", len(jobs), etcdErr(err))
	}
	return resp.Succeeded, nil
}
