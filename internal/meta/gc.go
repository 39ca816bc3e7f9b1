package meta

// What garbage collection reads and deletes: only candidates.
//
// A content whose reference count falls to 0 becomes a candidate in the
// transaction that lowered the count (store.go). A collection reads the
// candidates a page at a time; one older than the grace period whose count
// is still 0 loses its record, pages, job, result, count and candidate in
// one transaction that compares the count's revision, so a commit that
// points a path at it meanwhile wins. Before that, each of its chunks is
// made a chunk candidate (harmless if the content survives: a chunk is
// checked before it is deleted); after, its chunk references are removed
// under a marker (gc/crefs/<sha256>) that every batch rewrites, so a commit
// writing the same content afresh meanwhile, whose transaction compares the
// marker's revision, writes its references again after the last batch.
//
// A chunk is referenced while a content record of its hash exists (a
// content of one chunk) or a reference crefs/<chunk>/<content> exists whose
// content exists — or whose content does not exist yet and was written
// within staleRefs: a commit between writing its references and its
// transaction. Older references to absent contents are stale (a commit that
// never finished, a cleanup a leader change cut short) and are deleted when
// a check meets them.

import (
	"context"
	"errors"
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

// scanPage is the page size of the scans here.
const scanPage = 1000

// staleRefs is how old a chunk reference to an absent content must be
// before it is taken for stale: far longer than a commit takes between
// writing its references and its transaction (writeBudget), whatever the
// grace period.
const staleRefs = 10 * time.Minute

// FormatRefCounts is the layout version with reference counts.
const FormatRefCounts = "2"

// FormatSkip is the layout version with reference counts and the sample
// keys of the paths (Schema.Skip).
const FormatSkip = "3"

// FormatResults is the layout version that also keeps finished jobs in
// their contents' records, not under job-results/.
const FormatResults = "4"

// FormatCurrent is the layout this release writes.
const FormatCurrent = FormatResults

// ContentGC says what CollectContents did.
type ContentGC struct {
	Candidates int // candidate keys read
	Deleted    int // contents deleted
	Young      int // candidates within the grace period
	Chunks     int // chunk candidates made
}

// CollectContents deletes the candidate contents older than grace whose
// count is still 0, and makes their chunks candidates. It reads the
// candidates and what they name, nothing else.
func (s *Store) CollectContents(ctx context.Context, f Fence, grace time.Duration) (ContentGC, error) {
	var st ContentGC
	cutoff := time.Now().Add(-grace)
	prefix := s.schema.ContentCandidatesPrefix()
	err := ScanPrefix(ctx, s.kv, prefix, "", scanPage, func(kv *mvccpb.KeyValue) error {
		st.Candidates++
		h, err := dfs.ParseHash(strings.TrimPrefix(string(kv.Key), prefix))
		if err != nil {
			return nil
		}
		at, _ := strconv.ParseInt(string(kv.Value), 10, 64)
		if time.Unix(0, at).After(cutoff) {
			st.Young++
			return nil
		}
		n, err := s.collectContent(ctx, f, h)
		if err != nil {
			return err
		}
		if n >= 0 {
			st.Deleted++
			st.Chunks += n
		}
		return nil
	})
	return st, err
}

// collectContent deletes content h if its count is 0, and returns how many
// chunk candidates it made; -1 if it kept the content.
func (s *Store) collectContent(ctx context.Context, f Fence, h dfs.ContentHash) (int, error) {
	ckey, rkey, cand := s.schema.Content(h), s.schema.Ref(h), s.schema.ContentCandidate(h)
	read, err := s.kv.Txn(ctx).Then(clientv3.OpGet(rkey), clientv3.OpGet(ckey, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return -1, fmt.Errorf("collect content %s: %w", h.Short(), etcdErr(err))
	}
	ref := countOf(read.Responses[0].GetResponseRange().Kvs)
	crev := revOf(read.Responses[1].GetResponseRange().Kvs)
	if ref.n != 0 || crev == 0 {
		// Referenced again (or its record is gone): not a candidate.
		ops := []clientv3.Op{clientv3.OpDelete(cand)}
		if crev == 0 && ref.n <= 0 {
			ops = append(ops, clientv3.OpDelete(rkey))
		}
		_, err := s.kv.Txn(ctx).If(append(f.cmps(), clientv3.Compare(clientv3.ModRevision(rkey), "=", ref.rev))...).Then(ops...).Commit()
		if err != nil {
			return -1, fmt.Errorf("collect content %s: %w", h.Short(), etcdErr(err))
		}
		return -1, nil
	}
	c, err := s.GetContent(ctx, h)
	if errors.Is(err, dfs.ErrNotFound) {
		return -1, nil // deleted meanwhile
	}
	if err != nil {
		return -1, fmt.Errorf("collect content %s: %w", h.Short(), err)
	}
	chunks := distinctChunks(c)
	if err := s.AddChunkCandidates(ctx, f, chunks); err != nil {
		return -1, err
	}
	refs := 0
	if !selfChunk(c) {
		refs = len(chunks)
	}
	ops := []clientv3.Op{
		clientv3.OpDelete(ckey),
		clientv3.OpDelete(ckey+"/", clientv3.WithPrefix()),
		clientv3.OpDelete(s.schema.Job(h)),
		clientv3.OpDelete(s.schema.Result(h)),
		clientv3.OpDelete(rkey),
		clientv3.OpDelete(cand),
	}
	if refs > 0 {
		ops = append(ops, clientv3.OpPut(s.schema.DeadContent(h), strconv.Itoa(refs)))
	}
	resp, err := s.kv.Txn(ctx).If(append(f.cmps(),
		clientv3.Compare(clientv3.ModRevision(rkey), "=", ref.rev),
		clientv3.Compare(clientv3.ModRevision(ckey), "=", crev))...).Then(ops...).Commit()
	if err != nil {
		return -1, fmt.Errorf("delete content %s: %w", h.Short(), etcdErr(err))
	}
	if !resp.Succeeded {
		return -1, s.fenced(ctx, f, "delete content "+h.Short())
	}
	if refs > 0 {
		if err := s.removeChunkRefs(ctx, f, h, chunks, resp.Header.Revision); err != nil {
			return len(chunks), err
		}
	}
	return len(chunks), nil
}

func distinctChunks(c dfs.Content) []dfs.Hash {
	seen := make(map[dfs.Hash]bool, len(c.Chunks))
	var out []dfs.Hash
	for _, ch := range c.Chunks {
		if !seen[ch.Hash] {
			seen[ch.Hash] = true
			out = append(out, ch.Hash)
		}
	}
	return out
}

// removeChunkRefs deletes deleted content h's references to chunks, a
// batch at a time, each batch on condition that the marker is as the last
// batch left it (rev). A commit that writes h afresh deletes the marker:
// its references stay.
func (s *Store) removeChunkRefs(ctx context.Context, f Fence, h dfs.ContentHash, chunks []dfs.Hash, rev int64) error {
	dkey := s.schema.DeadContent(h)
	const batch = txnOps - 2
	for i := 0; i < len(chunks); i += batch {
		part := chunks[i:min(i+batch, len(chunks))]
		ops := make([]clientv3.Op, 0, len(part)+1)
		for _, c := range part {
			ops = append(ops, clientv3.OpDelete(s.schema.ChunkRef(c, h)))
		}
		left := len(chunks) - i - len(part)
		if left > 0 {
			ops = append(ops, clientv3.OpPut(dkey, strconv.Itoa(left)))
		} else {
			ops = append(ops, clientv3.OpDelete(dkey))
		}
		resp, err := s.kv.Txn(ctx).If(append(f.cmps(), clientv3.Compare(clientv3.ModRevision(dkey), "=", rev))...).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("remove chunk references of %s: %w", h.Short(), etcdErr(err))
		}
		if !resp.Succeeded {
			// Written afresh, or the term ended: stop either way.
			return s.fenced(ctx, f, "remove chunk references of "+h.Short())
		}
		rev = resp.Header.Revision
	}
	return nil
}

// AddChunkCandidates makes chunks garbage candidates, txnOps to a
// transaction.
func (s *Store) AddChunkCandidates(ctx context.Context, f Fence, chunks []dfs.Hash) error {
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	const batch = txnOps
	for i := 0; i < len(chunks); i += batch {
		var ops []clientv3.Op
		for _, c := range chunks[i:min(i+batch, len(chunks))] {
			ops = append(ops, clientv3.OpPut(s.schema.ChunkCandidate(c), now))
		}
		resp, err := s.kv.Txn(ctx).If(f.cmps()...).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("note chunk candidates: %w", etcdErr(err))
		}
		if !resp.Succeeded {
			return s.fenced(ctx, f, "note chunk candidates")
		}
	}
	return nil
}

// ChunkCandidates returns up to limit chunk candidates after startAfter
// (zero: from the first), in hash order.
func (s *Store) ChunkCandidates(ctx context.Context, startAfter dfs.Hash, limit int) ([]dfs.Hash, error) {
	prefix := s.schema.ChunkCandidatesPrefix()
	after := ""
	if !startAfter.IsZero() {
		after = s.schema.ChunkCandidate(startAfter)
	}
	var out []dfs.Hash
	stop := errors.New("page full")
	err := ScanPrefix(ctx, s.kv, prefix, after, limit, func(kv *mvccpb.KeyValue) error {
		if h, err := dfs.ParseHash(strings.TrimPrefix(string(kv.Key), prefix)); err == nil {
			out = append(out, h)
		}
		if len(out) == limit {
			return stop
		}
		return nil
	}, clientv3.WithKeysOnly())
	if err == stop {
		err = nil
	}
	return out, err
}

// DropChunkCandidates deletes chunk candidates: chunks found referenced, or
// deleted.
func (s *Store) DropChunkCandidates(ctx context.Context, f Fence, chunks []dfs.Hash) error {
	for i := 0; i < len(chunks); i += txnOps {
		var ops []clientv3.Op
		for _, c := range chunks[i:min(i+txnOps, len(chunks))] {
			ops = append(ops, clientv3.OpDelete(s.schema.ChunkCandidate(c)))
		}
		resp, err := s.kv.Txn(ctx).If(f.cmps()...).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("drop chunk candidates: %w", etcdErr(err))
		}
		if !resp.Succeeded {
			return s.fenced(ctx, f, "drop chunk candidates")
		}
	}
	return nil
}

// Referenced reports which of chunks some content references, reading
// linearizably. On the way it deletes the stale references it meets
// (fenced by f).
func (s *Store) Referenced(ctx context.Context, f Fence, chunks []dfs.Hash) (map[dfs.Hash]bool, error) {
	out := map[dfs.Hash]bool{}
	const batch = 32
	for i := 0; i < len(chunks); i += batch {
		part := chunks[i:min(i+batch, len(chunks))]
		var ops []clientv3.Op
		for _, c := range part {
			ops = append(ops, clientv3.OpGet(s.schema.Content(c), clientv3.WithCountOnly()),
				clientv3.OpGet(s.schema.ChunkRefs(c), clientv3.WithPrefix()))
		}
		resp, err := s.kv.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("check chunk references: %w", etcdErr(err))
		}
		type cref struct {
			chunk   dfs.Hash
			content dfs.ContentHash
			kv      *mvccpb.KeyValue
		}
		var crefs []cref
		for j, c := range part {
			if resp.Responses[2*j].GetResponseRange().Count > 0 {
				out[c] = true
				continue
			}
			for _, kv := range resp.Responses[2*j+1].GetResponseRange().Kvs {
				h, err := dfs.ParseHash(strings.TrimPrefix(string(kv.Key), s.schema.ChunkRefs(c)))
				if err == nil {
					crefs = append(crefs, cref{c, h, kv})
				}
			}
		}
		// The contents the references name, and their markers.
		for k := 0; k < len(crefs); k += txnOps / 2 {
			cpart := crefs[k:min(k+txnOps/2, len(crefs))]
			var ops []clientv3.Op
			for _, r := range cpart {
				ops = append(ops, clientv3.OpGet(s.schema.Content(r.content), clientv3.WithCountOnly()),
					clientv3.OpGet(s.schema.DeadContent(r.content)))
			}
			cresp, err := s.kv.Txn(ctx).Then(ops...).Commit()
			if err != nil {
				return nil, fmt.Errorf("check chunk references: %w", etcdErr(err))
			}
			for j, r := range cpart {
				if cresp.Responses[2*j].GetResponseRange().Count > 0 {
					out[r.chunk] = true
					continue
				}
				dead := cresp.Responses[2*j+1].GetResponseRange().Kvs
				at, _ := strconv.ParseInt(string(r.kv.Value), 10, 64)
				if len(dead) == 0 && time.Since(time.Unix(0, at)) < staleRefs {
					out[r.chunk] = true // a commit on its way
					continue
				}
				if err := s.dropStaleRef(ctx, f, r.chunk, r.content, r.kv, dead); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// dropStaleRef deletes a reference to an absent content: under the marker
// of its collection if there is one (rewriting it, as removeChunkRefs
// does), else with the pages of a commit that never finished.
func (s *Store) dropStaleRef(ctx context.Context, f Fence, c dfs.Hash, h dfs.ContentHash, ref *mvccpb.KeyValue, dead []*mvccpb.KeyValue) error {
	key := string(ref.Key)
	cmps := append(f.cmps(), clientv3.Compare(clientv3.ModRevision(key), "=", ref.ModRevision),
		clientv3.Compare(clientv3.CreateRevision(s.schema.Content(h)), "=", 0))
	ops := []clientv3.Op{clientv3.OpDelete(key)}
	dkey := s.schema.DeadContent(h)
	if len(dead) == 1 {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(dkey), "=", dead[0].ModRevision))
		if left, _ := strconv.Atoi(string(dead[0].Value)); left > 1 {
			ops = append(ops, clientv3.OpPut(dkey, strconv.Itoa(left-1)))
		} else {
			ops = append(ops, clientv3.OpDelete(dkey))
		}
	} else {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(dkey), "=", 0))
		ops = append(ops, clientv3.OpDelete(s.schema.Content(h)+"/", clientv3.WithPrefix()))
	}
	resp, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("drop stale reference of %s to %s: %w", h.Short(), c.Short(), etcdErr(err))
	}
	if !resp.Succeeded {
		return s.fenced(ctx, f, "drop stale reference of "+h.Short())
	}
	return nil
}

// decodeContentKV decodes a content record read from kv; the hash is the
// key's.
func (s *Store) decodeContentKV(kv *mvccpb.KeyValue) (dfs.ContentHash, *api.ContentRecord, error) {
	h, err := dfs.ParseHash(strings.TrimPrefix(string(kv.Key), s.schema.ContentsPrefix()))
	if err != nil {
		return h, nil, err
	}
	var rec api.ContentRecord
	if err := proto.Unmarshal(kv.Value, &rec); err != nil {
		return h, nil, fmt.Errorf("content %s: decode: %w", h.Short(), err)
	}
	return h, &rec, nil
}
