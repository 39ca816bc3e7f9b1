package meta

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// Format returns the layout version ("" before reference counts).
func (s *Store) Format(ctx context.Context) (string, error) {
	resp, err := s.kv.Get(ctx, s.schema.Format())
	if err != nil {
		return "", fmt.Errorf("read layout version: %w", etcdErr(err))
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// MigrateStats says what a migration did.
type MigrateStats struct {
	Files, Contents, ChunkRefs, Candidates int
	// Sampled is how many sample keys (Schema.Skip) were written.
	Sampled int
	// Results is how many finished jobs moved from job-results/ into
	// their contents' records.
	Results int
}

// Migrate brings a cluster to the current layout (FormatCurrent). On one
// written before reference counts it first builds them: it
// counts the paths of every content, writes the chunk references of every
// content, and makes candidates of the contents no path points at. Then it
// writes the sample keys of the paths (before layout 3), moves finished
// jobs from job-results/ into their contents' records (before layout 4),
// and writes the layout version, and garbage collection may run. It does nothing on a cluster at the version already. The leader runs it, fenced
// by f; it can be run again after a failure.
//
// Commits go on meanwhile: they add their changes to the counts as they
// find them (an empty mark of the old layout counts 0). Migrate reads the
// files, counts and contents as of one revision R, and sets each count to
// the paths at R plus what commits added since R. Its reads at R fail if
// etcd compacts R away (periodic compaction keeps 10 minutes): it then
// fails and starts afresh next time. Memory: one count per content (about
// 80 MB at a million contents).
func (s *Store) Migrate(ctx context.Context, f Fence) (MigrateStats, error) {
	var st MigrateStats
	resp, err := s.kv.Get(ctx, s.schema.Format())
	if err != nil {
		return st, fmt.Errorf("migrate: %w", etcdErr(err))
	}
	level := 0 // before reference counts
	if len(resp.Kvs) == 1 {
		level, _ = strconv.Atoi(string(resp.Kvs[0].Value))
	}
	if level >= formatLevel(FormatCurrent) {
		return st, nil
	}
	if level < formatLevel(FormatRefCounts) {
		if st, err = s.migrateCounts(ctx, f, resp.Header.Revision); err != nil {
			return st, err
		}
	}
	if level < formatLevel(FormatSkip) {
		if st.Sampled, err = s.buildSkip(ctx); err != nil {
			return st, fmt.Errorf("migrate: %w", err)
		}
	}
	if st.Results, err = s.foldResults(ctx); err != nil {
		return st, fmt.Errorf("migrate: %w", err)
	}
	put, err := s.kv.Txn(ctx).If(f.cmps()...).Then(clientv3.OpPut(s.schema.Format(), FormatCurrent)).Commit()
	if err != nil {
		return st, fmt.Errorf("migrate: write layout version: %w", etcdErr(err))
	}
	if !put.Succeeded {
		return st, s.fenced(ctx, f, "migrate")
	}
	return st, nil
}

func formatLevel(f string) int {
	n, _ := strconv.Atoi(f)
	return n
}

// foldResults moves the finished jobs of job-results/ into their contents'
// records, a batch at a time.
func (s *Store) foldResults(ctx context.Context) (int, error) {
	n := 0
	var batch []FinishedJob
	flush := func() error {
		m, err := s.FoldFinished(ctx, s.schema.Result, batch)
		n += m
		batch = batch[:0]
		return err
	}
	prefix := s.schema.ResultsPrefix()
	err := ScanPrefix(ctx, s.kv, prefix, "", scanPage, func(kv *mvccpb.KeyValue) error {
		h, err := dfs.ParseHash(strings.TrimPrefix(string(kv.Key), prefix))
		if err != nil {
			return nil // not a result
		}
		batch = append(batch, FinishedJob{Content: h, ModRev: kv.ModRevision, Value: kv.Value})
		if len(batch) == scanPage {
			return flush()
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = flush()
	}
	return n, err
}

// buildSkip writes the sample key of every sampled path that lacks one: a
// scan of the paths' keys. Each key is written on condition that its path
// still exists, so a path deleted meanwhile leaves none behind.
func (s *Store) buildSkip(ctx context.Context) (int, error) {
	n := 0
	err := ScanPrefix(ctx, s.kv, s.schema.FilesPrefix(), "", scanPage, func(kv *mvccpb.KeyValue) error {
		path := s.schema.PathOf(string(kv.Key))
		if !Sampled(path) {
			return nil
		}
		_, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(string(kv.Key)), ">", 0)).
			Then(clientv3.OpPut(s.schema.Skip(path), "")).Commit()
		if err != nil {
			return fmt.Errorf("write sample key of %q: %w", path, etcdErr(err))
		}
		n++
		return nil
	}, clientv3.WithKeysOnly())
	return n, err
}

// migrateCounts brings the reference counts to a cluster written before
// them (see Migrate), reading as of revision rev.
func (s *Store) migrateCounts(ctx context.Context, f Fence, rev int64) (MigrateStats, error) {
	var st MigrateStats
	at := clientv3.WithRev(rev)
	var err error

	paths := map[dfs.ContentHash]int64{}
	err = ScanPrefix(ctx, s.kv, s.schema.FilesPrefix(), "", scanPage, func(kv *mvccpb.KeyValue) error {
		var rec api.FileRecord
		if err := proto.Unmarshal(kv.Value, &rec); err != nil {
			return fmt.Errorf("file %q: decode: %w", s.schema.PathOf(string(kv.Key)), err)
		}
		if h, err := dfs.HashFromBytes(rec.ContentHash); err == nil {
			paths[h]++
		}
		st.Files++
		return nil
	}, at)
	if err != nil {
		return st, fmt.Errorf("migrate: %w", err)
	}
	// The parts of open uploads hold references as paths do.
	err = ScanPrefix(ctx, s.kv, s.schema.AllUploadPartsPrefix(), "", scanPage, func(kv *mvccpb.KeyValue) error {
		var rec api.FileRecord
		if err := proto.Unmarshal(kv.Value, &rec); err != nil {
			return fmt.Errorf("upload part %q: decode: %w", kv.Key, err)
		}
		if h, err := dfs.HashFromBytes(rec.ContentHash); err == nil {
			paths[h]++
		}
		return nil
	}, at)
	if err != nil {
		return st, fmt.Errorf("migrate: %w", err)
	}
	// So do earlier versions of paths (delete markers hold none).
	err = ScanPrefix(ctx, s.kv, s.schema.VersionsPrefix(), "", scanPage, func(kv *mvccpb.KeyValue) error {
		var rec api.FileRecord
		if err := proto.Unmarshal(kv.Value, &rec); err != nil {
			return fmt.Errorf("version %q: decode: %w", kv.Key, err)
		}
		if h := recordContent(&rec); !h.IsZero() {
			paths[h]++
		}
		return nil
	}, at)
	if err != nil {
		return st, fmt.Errorf("migrate: %w", err)
	}
	marks := map[dfs.ContentHash]int64{}
	err = ScanPrefix(ctx, s.kv, s.schema.RefsPrefix(), "", scanPage, func(kv *mvccpb.KeyValue) error {
		if h, err := dfs.ParseHash(strings.TrimPrefix(string(kv.Key), s.schema.RefsPrefix())); err == nil {
			marks[h] = countOf([]*mvccpb.KeyValue{kv}).n
		}
		return nil
	}, at)
	if err != nil {
		return st, fmt.Errorf("migrate: %w", err)
	}

	var batch []dfs.ContentHash
	flush := func() error {
		if err := s.fixCounts(ctx, f, batch, paths, marks, &st); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	now := time.Now()
	err = ScanPrefix(ctx, s.kv, s.schema.ContentsPrefix(), "", scanPage, func(kv *mvccpb.KeyValue) error {
		name := strings.TrimPrefix(string(kv.Key), s.schema.ContentsPrefix())
		if strings.Contains(name, "/") {
			return nil // a chunk page
		}
		h, rec, err := s.decodeContentKV(kv)
		if err != nil {
			return nil
		}
		c, err := s.contentAt(ctx, h, rec, at)
		if err != nil {
			return err
		}
		ops := s.chunkRefOps(c, now)
		st.ChunkRefs += len(ops)
		if err := s.batches(ctx, ops, func(ctx context.Context, ops []clientv3.Op) error {
			resp, err := s.kv.Txn(ctx).If(f.cmps()...).Then(ops...).Commit()
			if err != nil {
				return fmt.Errorf("write chunk references of %s: %w", h.Short(), etcdErr(err))
			}
			if !resp.Succeeded {
				return s.fenced(ctx, f, "migrate")
			}
			return nil
		}); err != nil {
			return err
		}
		st.Contents++
		batch = append(batch, h)
		if len(batch) == txnOps/2 {
			return flush()
		}
		return nil
	}, at)
	if err == nil {
		err = flush()
	}
	if err != nil {
		return st, fmt.Errorf("migrate: %w", err)
	}
	return st, nil
}

// fixCounts sets each content's count to its paths at R plus what commits
// added since (the count now less the mark at R).
func (s *Store) fixCounts(ctx context.Context, f Fence, hs []dfs.ContentHash, paths, marks map[dfs.ContentHash]int64, st *MigrateStats) error {
	if len(hs) == 0 {
		return nil
	}
	return retryWrite(ctx, func(ctx context.Context) error {
		var gets []clientv3.Op
		for _, h := range hs {
			gets = append(gets, clientv3.OpGet(s.schema.Ref(h)), clientv3.OpGet(s.schema.ContentCandidate(h), clientv3.WithKeysOnly()))
		}
		read, err := s.kv.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return fmt.Errorf("read counts: %w", etcdErr(err))
		}
		cmps := f.cmps()
		var ops []clientv3.Op
		zero := 0
		now := time.Now()
		for i, h := range hs {
			cur := countOf(read.Responses[2*i].GetResponseRange().Kvs)
			cand := revOf(read.Responses[2*i+1].GetResponseRange().Kvs)
			mark, ok := marks[h]
			if !ok {
				mark = 1 // no key at R: 1, as countOf reads it
			}
			n := paths[h] + cur.n - mark
			if n == 0 {
				zero++
			}
			if n == cur.n && (n == 0) == (cand != 0) && (n == 1) == (cur.rev == 0) {
				continue // right already
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.schema.Ref(h)), "=", cur.rev),
				clientv3.Compare(clientv3.ModRevision(s.schema.ContentCandidate(h)), "=", cand))
			if n == 0 && cand != 0 {
				// A candidate already: its time stays.
				ops = append(ops, clientv3.OpPut(s.schema.Ref(h), "0"))
			} else {
				ops = append(ops, s.countOps(h, n, now)...)
			}
		}
		if len(ops) == 0 {
			return nil
		}
		resp, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("write counts: %w", etcdErr(err))
		}
		if !resp.Succeeded {
			if err := s.fenced(ctx, f, "migrate"); err != nil {
				return err
			}
			return errChanged // a commit meanwhile: read again
		}
		st.Candidates += zero
		return nil
	})
}

// contentAt returns the content of record rec, its pages read at the given
// revision.
func (s *Store) contentAt(ctx context.Context, h dfs.ContentHash, rec *api.ContentRecord, at clientv3.OpOption) (dfs.Content, error) {
	c := dfs.Content{Hash: h, Size: rec.Size}
	add := func(p *api.ChunkPage) {
		for i, b := range p.Hashes {
			if ch, err := dfs.HashFromBytes(b); err == nil && i < len(p.Sizes) {
				c.Chunks = append(c.Chunks, dfs.ChunkRef{Hash: ch, Size: p.Sizes[i]})
			}
		}
	}
	if rec.PageCount == 0 {
		if selfRecord(rec) {
			c.Chunks = []dfs.ChunkRef{{Hash: h, Size: rec.Size}}
		} else if rec.Inline != nil {
			add(rec.Inline)
		}
		return c, nil
	}
	resp, err := s.kv.Get(ctx, s.schema.Content(h)+"/"+rec.Layout+"/", clientv3.WithPrefix(), at)
	if err != nil {
		return c, fmt.Errorf("content %s pages: %w", h.Short(), etcdErr(err))
	}
	for _, kv := range resp.Kvs {
		var p api.ChunkPage
		if err := proto.Unmarshal(kv.Value, &p); err != nil {
			return c, fmt.Errorf("content %s: decode page: %w", h.Short(), err)
		}
		add(&p)
	}
	return c, nil
}
