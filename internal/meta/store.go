// Package meta is typed access to the metadata dfs keeps in etcd: paths,
// contents, the node registry and upload sessions. The key schema is in
// keys.go. Every write that must be atomic is one etcd transaction; no write
// grows with the number of chunks in a file beyond one key per 4096 chunks
// (and, for a new content, one reference per distinct chunk, written in
// batches before the transaction).
//
// Reads of many keys go a page at a time through ScanPrefix (scan.go), whose
// requests each make etcd count about a page of keys, never the rest of the
// prefix, and which is not pinned to one revision. Other packages that page
// through a prefix should use it.
//
// Reference counts (store.go) and garbage candidates (gc.go) let garbage
// collection read only what may be garbage.
package meta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// PageSize is the number of chunks in one page of a chunk list. A page of
// 32-byte hashes and varint sizes is about 150 KiB, well below etcd's request
// limit.
const PageSize = 4096

// Store reads and writes dfs metadata in etcd.
type Store struct {
	cli    *clientv3.Client
	kv     clientv3.KV // cli, or a wrapper of it in tests
	schema Schema
	// defRetention is how long buckets in the default mode keep earlier
	// versions (ns; 0: none). See versions.go.
	defRetention atomic.Int64
}

// New returns a Store over cli under the given schema.
func New(cli *clientv3.Client, schema Schema) *Store {
	return &Store{cli: cli, kv: cli, schema: schema}
}

// WithKV returns a Store that reads and writes keys through kv (for one,
// an embedded member called in-process: etcdserver.Server.KV) and keeps
// cli for watches and leases.
func (s *Store) WithKV(kv clientv3.KV) *Store {
	cp := &Store{cli: s.cli, kv: kv, schema: s.schema}
	cp.defRetention.Store(s.defRetention.Load())
	return cp
}

// Client returns the etcd client.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Schema returns the key schema.
func (s *Store) Schema() Schema { return s.schema }

// Commit describes one commit: a path pointing at a content.
type Commit struct {
	File    dfs.FileInfo
	Content dfs.Content // Hash, Size and Chunks
	// Job is queued in the same transaction when the content is new.
	QueueJob bool
	// DedupAny points the path at a stored content of the same hash
	// whatever its chunk list. Without it, a stored content with another
	// chunk list is a *LayoutConflict: the coordinator must first check
	// which chunk list really hashes to the content's hash.
	DedupAny bool
	// Part, if set, commits part Part of the open upload Upload instead of
	// the path: the record goes to the part's key and holds its reference
	// to the content as a path's does.
	Upload *Upload
	Part   int
	// CompleteUpload: the commit of the path completes Upload, marking it
	// so in the same transaction (its parts are dropped after).
	CompleteUpload bool
	// IfAbsent commits only if the path holds no file; IfMatch only if
	// the path's file has this ETag (see ETag). Either failing is an
	// error wrapping dfs.ErrPrecondition, IfMatch on no file one wrapping
	// dfs.ErrNotFound.
	IfAbsent bool
	IfMatch  string // "*": any file
	// IfNoneMatch commits only if the path holds no file with this ETag.
	IfNoneMatch string
}

// ETag is a file's entity tag: its "etag" attribute (S3's MD5), or its
// content hash in hex when it has none.
func ETag(f dfs.FileInfo) string {
	if e := f.Attrs["etag"]; e != "" {
		return e
	}
	return f.Content.String()
}

// LayoutConflict is the error of a commit whose content hash is stored
// already with another chunk list. Either two clients cut the same bytes
// differently, or one of the two chunk lists does not hash to the claimed
// hash: a forged commit, or one that would take a forged content's bytes
// for its own. Stored is the stored content, at Revision.
type LayoutConflict struct {
	Stored   dfs.Content
	Revision int64
}

func (e *LayoutConflict) Error() string {
	return fmt.Sprintf("content %s is stored with another chunk list", e.Stored.Hash.Short())
}

func (e *LayoutConflict) Unwrap() error { return dfs.ErrConflict }

// LayoutOf names a content's chunk list as its record does: "" for one
// chunk named by the content's hash.
func LayoutOf(c dfs.Content) string {
	if selfChunk(c) {
		return ""
	}
	return layoutOf(c.Chunks)
}

// CommitFile writes the file record, and the content record if the content
// is new, in one transaction. It reports duplicate when the content was
// already stored (the file then points at the existing record and no job is
// queued). A path that exists is replaced; its created time is kept.
func (s *Store) CommitFile(ctx context.Context, c Commit) (info dfs.FileInfo, duplicate bool, err error) {
	// The record is fixed once, so that a retry writes the same one and can
	// recognise it as already written; but for its version id, which each
	// attempt picks after it read the path (see newVersionID).
	if c.File.Modified.IsZero() {
		c.File.Modified = time.Now()
	}
	// A content of few chunks has its references written in the commit's
	// own transaction, under the same compare of its collection marker:
	// two etcd round trips (a read and the transaction), not four.
	st := commitState{inline: len(c.Content.Chunks) <= inlineRefs}
	for range 10 {
		if !st.inline {
			if err := s.prepareContent(ctx, c.Content, &st); err != nil {
				return info, false, fmt.Errorf("commit %s: %w", c.File.Path, err)
			}
		}
		err = retryWrite(ctx, func(ctx context.Context) error {
			var err error
			info, duplicate, err = s.commitFile(ctx, c, &st)
			return err
		})
		if !errors.Is(err, errPrepare) {
			return info, duplicate, err
		}
	}
	return info, false, fmt.Errorf("commit %s: %w: the content was collected and written again under it too often", c.File.Path, dfs.ErrConflict)
}

// errPrepare makes a commit write its content's references and pages
// (again) before its transaction.
var errPrepare = errors.New("content to prepare")

// prepareContent writes what a new content needs before the transaction
// that creates it: its chunk references, then its pages, each batch in
// short attempts of its own. It notes the revision of the content's
// collection marker it wrote them after; nothing if the content exists.
func (s *Store) prepareContent(ctx context.Context, c dfs.Content, st *commitState) error {
	st.prepared = false
	var exists bool
	err := retryWrite(ctx, func(ctx context.Context) error {
		read, err := s.kv.Txn(ctx).Then(
			clientv3.OpGet(s.schema.Content(c.Hash), clientv3.WithCountOnly()),
			clientv3.OpGet(s.schema.DeadContent(c.Hash), clientv3.WithKeysOnly()),
		).Commit()
		if err != nil {
			return fmt.Errorf("read content %s: %w", c.Hash.Short(), etcdErr(err))
		}
		exists = read.Responses[0].GetResponseRange().Count > 0
		st.dead = revOf(read.Responses[1].GetResponseRange().Kvs)
		return nil
	})
	if err != nil || exists {
		return err
	}
	now := time.Now()
	rec, pages := contentRecord(c, now)
	if err := s.writeRefsAndPages(ctx, c, rec, pages, now); err != nil {
		return err
	}
	st.prepared = true
	return nil
}

// writeRefsAndPages writes content c's chunk references and the pages of
// its record rec, each batch in short attempts of its own.
func (s *Store) writeRefsAndPages(ctx context.Context, c dfs.Content, rec *api.ContentRecord, pages []*api.ChunkPage, now time.Time) error {
	err := s.batches(ctx, s.chunkRefOps(c, now), func(ctx context.Context, ops []clientv3.Op) error {
		if _, err := s.kv.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("write chunk references of %s: %w", c.Hash.Short(), etcdErr(err))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, p := range pages {
		val, err := proto.Marshal(p)
		if err != nil {
			return err
		}
		err = retryWrite(ctx, func(ctx context.Context) error {
			if _, err := s.kv.Put(ctx, s.schema.ContentPage(c.Hash, rec.Layout, i), string(val)); err != nil {
				return fmt.Errorf("write chunk page %d of %s: %w", i, c.Hash.Short(), etcdErr(err))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// batches runs write over ops, txnOps at a time, each batch in attempts
// of its own.
func (s *Store) batches(ctx context.Context, ops []clientv3.Op, write func(ctx context.Context, ops []clientv3.Op) error) error {
	for i := 0; i < len(ops); i += txnOps {
		batch := ops[i:min(i+txnOps, len(ops))]
		if err := retryWrite(ctx, func(ctx context.Context) error { return write(ctx, batch) }); err != nil {
			return err
		}
	}
	return nil
}

// commitState is what the attempts of one commit know of each other.
type commitState struct {
	// sent: an attempt sent its writes and did not learn their outcome,
	// so they may have been applied.
	sent bool
	// As the first attempt that sent its writes found them: whether the
	// content was stored already, and the path's revision (0: absent).
	contentExisted bool
	fileRev        int64
	// prepared: the content's references and pages are written, after
	// its collection marker was at revision dead.
	prepared bool
	dead     int64
	// versionID: the version id of the last attempt that sent its writes.
	versionID string
	// inline: a new content's chunk references go in the commit's
	// transaction (there are few), not before it.
	inline bool
}

// inlineRefs is the most chunks a content may have for its references to
// be written in the transaction that commits it, with the file's own
// operations (a handful) well within etcd's limit of txnOps.
const inlineRefs = 32

func (s *Store) commitFile(ctx context.Context, c Commit, st *commitState) (info dfs.FileInfo, duplicate bool, err error) {
	h := c.Content.Hash
	ckey, fkey, rkey, dkey := s.schema.Content(h), s.schema.File(c.File.Path), s.schema.Ref(h), s.schema.DeadContent(h)
	ukey := "\x00" // no upload: a key that never exists
	if c.Upload != nil {
		ukey = s.schema.Upload(c.Upload.Path, c.Upload.ID)
		if c.Part > 0 {
			fkey = s.schema.UploadPart(c.Upload.ID, c.Part)
		}
	}
	now := time.Now()
	cand := VersionID(now)
	reads := []clientv3.Op{
		clientv3.OpGet(ckey),
		clientv3.OpGet(fkey),
		clientv3.OpGet(rkey),
		clientv3.OpGet(dkey, clientv3.WithKeysOnly()),
		clientv3.OpGet(ukey),
		clientv3.OpGet(s.bucketKey(c.File.Path)),
	}
	if c.Part == 0 {
		reads = append(reads, s.newerOp(c.File.Path, cand))
	}
	read, err := s.kv.Txn(ctx).Then(reads...).Commit()
	if err != nil {
		return info, false, fmt.Errorf("commit %s: read: %w", c.File.Path, etcdErr(err))
	}
	stored := read.Responses[0].GetResponseRange().Kvs
	exists := len(stored) > 0
	layout := LayoutOf(c.Content)
	if exists {
		var rec api.ContentRecord
		if err := proto.Unmarshal(stored[0].Value, &rec); err != nil {
			return info, false, fmt.Errorf("commit %s: content record %s: %w", c.File.Path, h.Short(), err)
		}
		if rec.Layout != layout && !c.DedupAny {
			sc, err := s.GetContentFresh(ctx, h)
			if err != nil {
				return info, false, err
			}
			return info, false, &LayoutConflict{Stored: sc, Revision: stored[0].ModRevision}
		}
		layout = rec.Layout
	}
	old := read.Responses[1].GetResponseRange().Kvs
	ref := countOf(read.Responses[2].GetResponseRange().Kvs)
	dead := revOf(read.Responses[3].GetResponseRange().Kvs)

	info = c.File
	info.VersionID = ""
	info.Content = h
	info.Size = c.Content.Size
	info.Layout = layout
	if info.Created.IsZero() {
		info.Created = info.Modified
	}
	var fileRev int64
	var oldContent dfs.ContentHash // what the path pointed at; zero if nothing
	var oldRec api.FileRecord
	if len(old) == 1 {
		fileRev = old[0].ModRevision
		rec := &oldRec
		if proto.Unmarshal(old[0].Value, rec) == nil {
			if st.sent && bytes.Equal(rec.ContentHash, h[:]) && rec.ModifiedUnixNano == info.Modified.UnixNano() {
				// An earlier attempt of this commit went through.
				info.Created = time.Unix(0, rec.CreatedUnixNano)
				info.VersionID = rec.VersionId
				return info, st.contentExisted, nil
			}
			if rec.CreatedUnixNano != 0 {
				info.Created = time.Unix(0, rec.CreatedUnixNano)
			}
			oldContent, _ = dfs.HashFromBytes(rec.ContentHash)
		}
	}
	if c.IfAbsent && len(old) == 1 {
		return info, false, fmt.Errorf("commit %s: %w: the path holds a file", c.File.Path, dfs.ErrPrecondition)
	}
	if c.IfMatch != "" {
		if len(old) == 0 {
			return info, false, fmt.Errorf("commit %s: %w: no file to match", c.File.Path, dfs.ErrNotFound)
		}
		of, err := s.fileFromKV(old[0].Key, old[0].Value)
		if err != nil {
			return info, false, err
		}
		if c.IfMatch != "*" && ETag(of) != c.IfMatch {
			return info, false, fmt.Errorf("commit %s: %w: its ETag is %s, not %s", c.File.Path, dfs.ErrPrecondition, ETag(of), c.IfMatch)
		}
	}
	if c.IfNoneMatch != "" && len(old) == 1 {
		of, err := s.fileFromKV(old[0].Key, old[0].Value)
		if err != nil {
			return info, false, err
		}
		if ETag(of) == c.IfNoneMatch {
			return info, false, fmt.Errorf("commit %s: %w: its ETag is %s", c.File.Path, dfs.ErrPrecondition, c.IfNoneMatch)
		}
	}
	if st.sent && fileRev != st.fileRev {
		// The path was written after our earlier attempt read it, and not
		// with our record: whether or not that attempt went through, a
		// newer file holds the path and must stay. This commit took effect
		// before it.
		info.VersionID = st.versionID
		return info, st.contentExisted, nil
	}
	if c.Part == 0 {
		// The new file is the path's newest version: newer than the file
		// it replaces and than any version the path keeps.
		oldID := ""
		if len(old) == 1 {
			oldID = versionIDOf(&oldRec)
		}
		info.VersionID = newVersionID(now, oldID, s.newerID(read.Responses[6]))
	}
	fileVal, err := proto.Marshal(fileRecord(info))
	if err != nil {
		return info, false, err
	}
	var uploadCmps []clientv3.Cmp
	var uploadOps []clientv3.Op
	if c.Upload != nil {
		// The upload must be open, and stay so until the transaction.
		up := read.Responses[4].GetResponseRange().Kvs
		var rec api.UploadRecord
		if len(up) == 0 || proto.Unmarshal(up[0].Value, &rec) != nil || rec.State != api.UploadRecord_OPEN {
			return info, false, fmt.Errorf("upload %s of %s: %w", c.Upload.ID, c.File.Path, ErrNoUpload)
		}
		uploadCmps = append(uploadCmps, clientv3.Compare(clientv3.ModRevision(ukey), "=", up[0].ModRevision))
		if c.CompleteUpload {
			rec.State = api.UploadRecord_COMPLETED
			rec.CompletedUnixNano = c.File.Modified.UnixNano()
			rec.ContentHash = h[:]
			val, err := proto.Marshal(&rec)
			if err != nil {
				return info, false, err
			}
			uploadOps = append(uploadOps, clientv3.OpPut(ukey, string(val)))
		}
	}

	// The path, the counts of the content it points at now and of the one
	// it pointed at, and the candidates of both change in one transaction,
	// on condition that none of them changed since they were read.
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(fkey), "=", fileRev),
		clientv3.Compare(clientv3.ModRevision(rkey), "=", ref.rev),
	}
	cmps = append(cmps, uploadCmps...)
	if c.Part == 0 {
		cmps = append(cmps, s.noNewer(c.File.Path, info.VersionID))
	}
	ops := []clientv3.Op{clientv3.OpPut(fkey, string(fileVal))}
	ops = append(ops, uploadOps...)
	if c.Part == 0 && Sampled(c.File.Path) {
		ops = append(ops, clientv3.OpPut(s.schema.Skip(c.File.Path), ""))
	}
	// The file the path held is kept as an earlier version, with its
	// reference to its content, if the bucket keeps versions.
	var bucketVal []byte
	if kvs := read.Responses[5].GetResponseRange().Kvs; len(kvs) == 1 {
		bucketVal = kvs[0].Value
	}
	keep, keepFor, err := s.policy(c.File.Path, bucketVal)
	if err != nil {
		return info, false, fmt.Errorf("commit %s: %w", c.File.Path, err)
	}
	keepOld := keep && c.Part == 0 && len(old) == 1 && !oldContent.IsZero()
	if keepOld {
		aops, err := s.archiveOps(c.File.Path, &oldRec, now, keepFor)
		if err != nil {
			return info, false, err
		}
		ops = append(ops, aops...)
	}
	if oldContent != h || keepOld {
		if exists {
			ops = append(ops, s.countOps(h, ref.n+1, now)...)
		} else {
			ops = append(ops, s.countOps(h, 1, now)...) // whatever a key left over says
		}
		if !oldContent.IsZero() && !keepOld {
			oref, err := s.kv.Get(ctx, s.schema.Ref(oldContent))
			if err != nil {
				return info, false, fmt.Errorf("commit %s: read count of %s: %w", c.File.Path, oldContent.Short(), etcdErr(err))
			}
			o := countOf(oref.Kvs)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.schema.Ref(oldContent)), "=", o.rev))
			ops = append(ops, s.countOps(oldContent, o.n-1, now)...)
		}
	}

	if exists {
		// The content is known: point the path at it. The compare makes
		// sure it still exists at the moment of the write (garbage
		// collection deletes it only at a count of 0 it read, so the
		// count's compare guards it too).
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(ckey), ">", 0))
	} else {
		// A new content: its chunk references and pages were written
		// (prepareContent) after the collection marker read then, which
		// must be the one read now; or, for few chunks, its references go
		// in this transaction, under the compare of the marker read now.
		if st.inline {
			ops = append(ops, s.chunkRefOps(c.Content, now)...)
		} else if !st.prepared || st.dead != dead {
			return info, false, errPrepare
		}
		rec, _ := contentRecord(c.Content, now)
		recVal, err := proto.Marshal(rec)
		if err != nil {
			return info, false, err
		}
		ops = append(ops, clientv3.OpPut(ckey, string(recVal)))
		if c.QueueJob {
			job, err := proto.Marshal(QueuedJob(now, c.File.Path))
			if err != nil {
				return info, false, err
			}
			ops = append(ops, clientv3.OpPut(s.schema.Job(h), string(job)))
		}
		// A collection still removing the references of an earlier
		// content of this hash bumps the marker with every batch: these
		// references were all written after the last one it removed.
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(ckey), "=", 0),
			clientv3.Compare(clientv3.ModRevision(dkey), "=", dead))
		if dead != 0 {
			ops = append(ops, clientv3.OpDelete(dkey))
		}
	}
	wasSent, wasID := st.sent, st.versionID
	if !st.sent {
		st.contentExisted, st.fileRev = exists, fileRev
	}
	st.sent, st.versionID = true, info.VersionID
	resp, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return info, false, fmt.Errorf("commit %s: %w", info.Path, etcdErr(err))
	}
	if !resp.Succeeded {
		// Not applied: something read changed meanwhile (another commit
		// of the path or of the content, a collection, a version that
		// took a newer id). Read again.
		st.sent, st.versionID = wasSent, wasID
		return info, false, errChanged
	}
	return info, exists, nil
}

// count is a content's reference count as read, with its key's revision.
type count struct {
	n   int64
	rev int64 // 0: no key
}

// countOf parses a count key. No key means 1: most contents have one path,
// and keep no count key at all. An empty mark of the old layout reads 0.
func countOf(kvs []*mvccpb.KeyValue) count {
	if len(kvs) == 0 {
		return count{n: 1}
	}
	n, _ := strconv.ParseInt(string(kvs[0].Value), 10, 64)
	return count{n: n, rev: kvs[0].ModRevision}
}

func revOf(kvs []*mvccpb.KeyValue) int64 {
	if len(kvs) == 0 {
		return 0
	}
	return kvs[0].ModRevision
}

// countOps sets content h's count to n, and makes it a garbage candidate
// if n is 0, or no longer one if it is not.
func (s *Store) countOps(h dfs.ContentHash, n int64, now time.Time) []clientv3.Op {
	switch n {
	case 0:
		return []clientv3.Op{clientv3.OpPut(s.schema.Ref(h), "0"),
			clientv3.OpPut(s.schema.ContentCandidate(h), strconv.FormatInt(now.UnixNano(), 10))}
	case 1:
		return []clientv3.Op{clientv3.OpDelete(s.schema.Ref(h)), clientv3.OpDelete(s.schema.ContentCandidate(h))}
	}
	return []clientv3.Op{clientv3.OpPut(s.schema.Ref(h), strconv.FormatInt(n, 10)),
		clientv3.OpDelete(s.schema.ContentCandidate(h))}
}

// selfChunk reports whether c is one chunk whose hash is the content's:
// its record is then the chunk's reference, and it has no crefs.
func selfChunk(c dfs.Content) bool {
	return len(c.Chunks) == 1 && c.Chunks[0].Hash == c.Hash
}

// selfRecord reports whether rec is the record of a content of one chunk
// whose hash is the content's, written without its chunk list.
func selfRecord(rec *api.ContentRecord) bool {
	return rec.ChunkCount == 1 && rec.PageCount == 0 && (rec.Inline == nil || len(rec.Inline.Hashes) == 0)
}

// txnOps is the most operations dfs puts in one transaction: etcd's
// default limit.
const txnOps = 128

// chunkRefOps writes content c's reference to each of its chunks.
func (s *Store) chunkRefOps(c dfs.Content, now time.Time) []clientv3.Op {
	if selfChunk(c) {
		return nil
	}
	val := strconv.FormatInt(now.UnixNano(), 10)
	seen := map[dfs.Hash]bool{}
	var ops []clientv3.Op
	for _, ch := range c.Chunks {
		if !seen[ch.Hash] {
			seen[ch.Hash] = true
			ops = append(ops, clientv3.OpPut(s.schema.ChunkRef(ch.Hash, c.Hash), val))
		}
	}
	return ops
}

// layoutOf names a chunk list: the first 8 bytes of a hash over it.
func layoutOf(chunks []dfs.ChunkRef) string {
	h := sha256.New()
	var buf [8]byte
	for _, c := range chunks {
		h.Write(c.Hash[:])
		for i := range buf {
			buf[i] = byte(c.Size >> (8 * i))
		}
		h.Write(buf[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func contentRecord(c dfs.Content, now time.Time) (*api.ContentRecord, []*api.ChunkPage) {
	// The hash is the key's; the record does not repeat it. A content of
	// one chunk whose hash is the content's (a small file) keeps no chunk
	// list and no layout at all: both follow from the key and the size.
	rec := &api.ContentRecord{
		Size:            c.Size,
		ChunkCount:      int64(len(c.Chunks)),
		CreatedUnixNano: now.UnixNano(),
	}
	for _, p := range c.Parts {
		rec.Parts = append(rec.Parts, &api.ContentPart{Hash: p.Hash[:], Size: p.Size})
	}
	if selfChunk(c) {
		return rec, nil
	}
	rec.Layout = layoutOf(c.Chunks)
	page := func(cs []dfs.ChunkRef) *api.ChunkPage {
		p := &api.ChunkPage{Hashes: make([][]byte, len(cs)), Sizes: make([]int64, len(cs))}
		for i := range cs {
			p.Hashes[i] = cs[i].Hash[:]
			p.Sizes[i] = cs[i].Size
		}
		return p
	}
	if len(c.Chunks) <= PageSize {
		rec.Inline = page(c.Chunks)
		return rec, nil
	}
	var pages []*api.ChunkPage
	for i := 0; i < len(c.Chunks); i += PageSize {
		pages = append(pages, page(c.Chunks[i:min(i+PageSize, len(c.Chunks))]))
	}
	rec.PageCount = int32(len(pages))
	return rec, pages
}

func fileRecord(f dfs.FileInfo) *api.FileRecord {
	// The path is the key's; the record does not repeat it.
	return &api.FileRecord{
		ContentHash:      f.Content[:],
		Size:             f.Size,
		ContentType:      f.ContentType,
		CreatedUnixNano:  f.Created.UnixNano(),
		ModifiedUnixNano: f.Modified.UnixNano(),
		Layout:           f.Layout,
		Attrs:            f.Attrs,
		VersionId:        f.VersionID,
	}
}

// FileFromRecord converts a stored file record.
func FileFromRecord(r *api.FileRecord) (dfs.FileInfo, error) {
	h, err := dfs.HashFromBytes(r.ContentHash)
	if err != nil {
		return dfs.FileInfo{}, fmt.Errorf("file record %q: %w", r.Path, err)
	}
	return dfs.FileInfo{
		Path:        r.Path,
		Size:        r.Size,
		Content:     h,
		ContentType: r.ContentType,
		Created:     time.Unix(0, r.CreatedUnixNano),
		Modified:    time.Unix(0, r.ModifiedUnixNano),
		Layout:      r.Layout,
		Attrs:       r.Attrs,
		VersionID:   versionIDOf(r),
	}, nil
}

// GetFile returns the record of path, or an error wrapping dfs.ErrNotFound.
func (s *Store) GetFile(ctx context.Context, path string) (dfs.FileInfo, error) {
	resp, err := s.read(ctx, s.schema.File(path))
	if err != nil {
		return dfs.FileInfo{}, fmt.Errorf("get %s: %w", path, etcdErr(err))
	}
	if len(resp.Kvs) == 0 {
		return dfs.FileInfo{}, fmt.Errorf("file %q: %w", path, dfs.ErrNotFound)
	}
	return s.fileFromKV(resp.Kvs[0].Key, resp.Kvs[0].Value)
}

// fileFromKV decodes a path's record. The path is the key's: records carry
// none since the slim layout (older ones still do, and say the same).
func (s *Store) fileFromKV(key, value []byte) (dfs.FileInfo, error) {
	path := s.schema.PathOf(string(key))
	var rec api.FileRecord
	if err := proto.Unmarshal(value, &rec); err != nil {
		return dfs.FileInfo{}, fmt.Errorf("file %q: decode: %w", path, err)
	}
	rec.Path = path
	return FileFromRecord(&rec)
}

// GetContent returns a content with its whole chunk list, or an error
// wrapping dfs.ErrNotFound.
func (s *Store) GetContent(ctx context.Context, h dfs.ContentHash) (dfs.Content, error) {
	return s.getContent(ctx, h, false)
}

// GetContentFresh is GetContent with a linearizable read: the content as
// the last write left it.
func (s *Store) GetContentFresh(ctx context.Context, h dfs.ContentHash) (dfs.Content, error) {
	return s.getContent(ctx, h, true)
}

func (s *Store) getContent(ctx context.Context, h dfs.ContentHash, fresh bool) (dfs.Content, error) {
	key := s.schema.Content(h)
	// A content's chunk list changes only when a forged content is
	// replaced (ReplaceContent), so a serializable read (this member's
	// copy, no quorum round) is exact when it finds one but in that rare
	// case; a miss, or a reader that finds the chunk list it expected
	// gone, reads again linearizably.
	var resp *clientv3.GetResponse
	var err error
	if !fresh {
		resp, err = s.kv.Get(ctx, key, clientv3.WithSerializable())
	}
	if fresh || (err == nil && len(resp.Kvs) == 0) {
		resp, err = s.read(ctx, key)
	}
	if err != nil {
		return dfs.Content{}, fmt.Errorf("get content %s: %w", h.Short(), etcdErr(err))
	}
	if len(resp.Kvs) == 0 {
		return dfs.Content{}, fmt.Errorf("content %s: %w", h, dfs.ErrNotFound)
	}
	var rec api.ContentRecord
	if err := proto.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return dfs.Content{}, fmt.Errorf("get content %s: decode: %w", h.Short(), err)
	}
	c := dfs.Content{Hash: h, Size: rec.Size, Created: time.Unix(0, rec.CreatedUnixNano), Layout: rec.Layout,
		Chunks: make([]dfs.ChunkRef, 0, rec.ChunkCount)}
	for _, p := range rec.Parts {
		ph, err := dfs.HashFromBytes(p.Hash)
		if err != nil {
			return dfs.Content{}, fmt.Errorf("content %s: part: %w", h.Short(), err)
		}
		c.Parts = append(c.Parts, dfs.Part{Hash: ph, Size: p.Size})
	}
	add := func(p *api.ChunkPage) error {
		if len(p.Hashes) != len(p.Sizes) {
			return fmt.Errorf("content %s: corrupt chunk page", h.Short())
		}
		for i, b := range p.Hashes {
			ch, err := dfs.HashFromBytes(b)
			if err != nil {
				return fmt.Errorf("content %s: %w", h.Short(), err)
			}
			c.Chunks = append(c.Chunks, dfs.ChunkRef{Hash: ch, Size: p.Sizes[i]})
		}
		return nil
	}
	if rec.PageCount == 0 {
		if selfRecord(&rec) {
			c.Chunks = append(c.Chunks, dfs.ChunkRef{Hash: h, Size: rec.Size})
		} else if rec.Inline != nil {
			if err := add(rec.Inline); err != nil {
				return dfs.Content{}, err
			}
		}
		return c, nil
	}
	pages, err := s.kv.Get(ctx, key+"/"+rec.Layout+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return dfs.Content{}, fmt.Errorf("get content %s pages: %w", h.Short(), etcdErr(err))
	}
	if len(pages.Kvs) != int(rec.PageCount) {
		return dfs.Content{}, fmt.Errorf("content %s: %d of %d chunk pages present", h.Short(), len(pages.Kvs), rec.PageCount)
	}
	for _, kv := range pages.Kvs {
		var p api.ChunkPage
		if err := proto.Unmarshal(kv.Value, &p); err != nil {
			return dfs.Content{}, fmt.Errorf("content %s: decode page: %w", h.Short(), err)
		}
		if err := add(&p); err != nil {
			return dfs.Content{}, err
		}
	}
	if int64(len(c.Chunks)) != rec.ChunkCount {
		return dfs.Content{}, fmt.Errorf("content %s: %d of %d chunks in pages", h.Short(), len(c.Chunks), rec.ChunkCount)
	}
	return c, nil
}

// DeleteFile removes a path, or fails with an error wrapping dfs.ErrNotFound.
func (s *Store) DeleteFile(ctx context.Context, path string) error {
	_, err := s.Delete(ctx, path, DeleteOptions{})
	return err
}

// DeleteOptions qualify a delete.
type DeleteOptions struct {
	// MarkAbsent writes a delete marker even when the path holds no file,
	// if its bucket enabled versioning (S3's DeleteObject does).
	MarkAbsent bool
}

// Delete removes a path as DeleteFile does, and returns the id of the
// delete marker it left ("" if its bucket keeps no versions).
func (s *Store) Delete(ctx context.Context, path string, o DeleteOptions) (marker string, err error) {
	key := s.schema.File(path)
	var rev int64     // the version being deleted
	sent := false     // a delete of it went out without an answer
	markOnly := false // what went out was only a marker of the absent path
	err = retryWrite(ctx, func(ctx context.Context) error {
		now := time.Now()
		cand := VersionID(now)
		read, err := s.kv.Txn(ctx).Then(clientv3.OpGet(key), clientv3.OpGet(s.bucketKey(path)), s.newerOp(path, cand)).Commit()
		if err != nil {
			return fmt.Errorf("delete %s: %w", path, etcdErr(err))
		}
		resp := read.Responses[0].GetResponseRange()
		var bucketVal []byte
		if kvs := read.Responses[1].GetResponseRange().Kvs; len(kvs) == 1 {
			bucketVal = kvs[0].Value
		}
		// The marker is the path's newest version: newer than the file it
		// replaces and than any version the path keeps.
		newer := s.newerID(read.Responses[2])
		if sent && markOnly {
			// Whether the marker went in (a file written since came
			// after it); if not, the delete starts again.
			got, err := s.kv.Get(ctx, s.schema.Version(path, marker), clientv3.WithCountOnly())
			if err != nil {
				return fmt.Errorf("delete %s: %w", path, etcdErr(err))
			}
			if got.Count > 0 {
				return nil
			}
			sent, markOnly, marker = false, false, ""
		}
		if len(resp.Kvs) == 0 {
			if sent {
				return nil // the earlier attempt deleted it
			}
			var rec api.BucketRecord
			if o.MarkAbsent && bucketVal != nil && proto.Unmarshal(bucketVal, &rec) == nil && rec.Versioning == api.Versioning_VERSIONING_ENABLED {
				_, d, err := s.policy(path, bucketVal)
				if err != nil {
					return err
				}
				mid := newVersionID(now, newer)
				m, err := s.markerOps(path, mid, now, d)
				if err != nil {
					return err
				}
				sent, markOnly, marker = true, true, mid
				txn, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0), s.noNewer(path, mid)).Then(m...).Commit()
				if err != nil {
					return fmt.Errorf("delete %s: %w", path, etcdErr(err))
				}
				if !txn.Succeeded {
					// A file or a newer version came meanwhile: read again.
					sent, markOnly, marker = false, false, ""
					return errChanged
				}
				return nil
			}
			return fmt.Errorf("file %q: %w", path, dfs.ErrNotFound)
		}
		if sent && resp.Kvs[0].ModRevision != rev {
			// Written anew since: that newer file stays, and this delete
			// took effect before it.
			return nil
		}
		rev = resp.Kvs[0].ModRevision
		marker = ""
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}
		ops := []clientv3.Op{clientv3.OpDelete(key)}
		if Sampled(path) {
			ops = append(ops, clientv3.OpDelete(s.schema.Skip(path)))
		}
		var rec api.FileRecord
		if err := proto.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
			return fmt.Errorf("delete %s: decode: %w", path, err)
		}
		keep, d, err := s.policy(path, bucketVal)
		if err != nil {
			return fmt.Errorf("delete %s: %w", path, err)
		}
		if keep {
			// The file is kept as an earlier version, with its reference
			// to its content, and a delete marker says when it went.
			a, err := s.archiveOps(path, &rec, now, d)
			if err != nil {
				return err
			}
			mid := newVersionID(now, versionIDOf(&rec), newer)
			m, err := s.markerOps(path, mid, now, d)
			if err != nil {
				return err
			}
			ops = append(append(ops, a...), m...)
			cmps = append(cmps, s.noNewer(path, mid))
			marker = mid
		} else if h, err := dfs.HashFromBytes(rec.ContentHash); err == nil {
			// One path fewer points at the content, in the same
			// transaction.
			rresp, err := s.kv.Get(ctx, s.schema.Ref(h))
			if err != nil {
				return fmt.Errorf("delete %s: read count of %s: %w", path, h.Short(), etcdErr(err))
			}
			c := countOf(rresp.Kvs)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.schema.Ref(h)), "=", c.rev))
			ops = append(ops, s.countOps(h, c.n-1, time.Now())...)
		}
		sent, markOnly = true, false
		txn, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("delete %s: %w", path, etcdErr(err))
		}
		if !txn.Succeeded {
			sent = false // a commit came between the read and the delete (of the path or the content): read again
			return errChanged
		}
		return nil
	})
	return marker, err
}

// Listing is one page of a listing.
type Listing struct {
	Files     []dfs.FileInfo
	Prefixes  []string // common prefixes, each ending in the delimiter
	Truncated bool
	// Next is the start-after value of the following page.
	Next string
}

// List returns up to limit entries (files and common prefixes) under prefix,
// in byte order, after startAfter. With a delimiter, paths that contain it
// after the prefix are folded into one common prefix, as in S3.
func (s *Store) List(ctx context.Context, prefix, delim, startAfter string, limit int) (Listing, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	var out Listing
	fp := s.schema.FilesPrefix()
	start := fp + prefix
	if startAfter != "" && startAfter >= prefix {
		if delim != "" && strings.HasSuffix(startAfter, delim) {
			start = clientv3.GetPrefixRangeEnd(fp + startAfter)
		} else {
			start = fp + startAfter + "\x00"
		}
	}
	pg := newPager(s.cli, fp+prefix, start, limit+1)
	pg.get = s.read
	s.guide(pg, prefix)
	count := 0
	for {
		kvs, err := pg.next(ctx, int64(limit-count)+1)
		if err != nil {
			return out, fmt.Errorf("list %q: %w", prefix, etcdErr(err))
		}
		if len(kvs) == 0 {
			break
		}
		for _, kv := range kvs {
			if count == limit {
				out.Truncated = true
				return out, nil
			}
			path := s.schema.PathOf(string(kv.Key))
			if delim != "" {
				if i := strings.Index(path[len(prefix):], delim); i >= 0 {
					cp := path[:len(prefix)+i+len(delim)]
					out.Prefixes = append(out.Prefixes, cp)
					out.Next = cp
					count++
					// Go on past every path under this common prefix.
					pg.resume(clientv3.GetPrefixRangeEnd(fp + cp))
					break
				}
			}
			fi, err := s.fileFromKV(kv.Key, kv.Value)
			if err != nil {
				return out, fmt.Errorf("list %q: %w", prefix, err)
			}
			out.Files = append(out.Files, fi)
			out.Next = path
			count++
		}
	}
	if !out.Truncated {
		out.Next = ""
	}
	return out, nil
}

// guide makes a pager over the file keys under prefix bound its ranges by the sample keys
// (Schema.Skip): each range then holds about as many paths as the ranges
// between the marks it spans, however the paths cluster. Finding the
// marks counts the sample keys left in the scan, one in SkipEvery of its
// paths, once per 16 marks.
func (s *Store) guide(pg *pager, prefix string) {
	fp, sp := s.schema.FilesPrefix(), s.schema.SkipPrefix()
	end := clientv3.GetPrefixRangeEnd(sp + prefix)
	pg.every = SkipEvery
	pg.guide = func(ctx context.Context, after string, n int) ([]string, int64, error) {
		from := sp + strings.TrimPrefix(after, fp) + "\x00"
		resp, err := s.read(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(int64(n)), clientv3.WithKeysOnly())
		if err != nil {
			return nil, 0, err
		}
		marks := make([]string, len(resp.Kvs))
		for i, kv := range resp.Kvs {
			marks[i] = fp + strings.TrimPrefix(string(kv.Key), sp)
		}
		return marks, resp.Count, nil
	}
}

// PutNode writes a datanode's registry record, if f holds.
func (s *Store) PutNode(ctx context.Context, f Fence, rec *api.NodeRecord) error {
	val, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	resp, err := s.kv.Txn(ctx).If(f.cmps()...).
		Then(clientv3.OpPut(s.schema.Node(dfs.NodeID(rec.Id)), string(val))).Commit()
	if err != nil {
		return fmt.Errorf("put node %s: %w", rec.Id, etcdErr(err))
	}
	if !resp.Succeeded {
		return s.fenced(ctx, f, "put node "+rec.Id)
	}
	return nil
}

// Nodes returns every datanode in the registry, by id.
func (s *Store) Nodes(ctx context.Context) ([]*api.NodeRecord, error) {
	resp, err := s.kv.Get(ctx, s.schema.NodesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", etcdErr(err))
	}
	out := make([]*api.NodeRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec api.NodeRecord
		if err := proto.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("node record %s: %w", kv.Key, err)
		}
		out = append(out, &rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out, nil
}

// etcdErr marks errors from an unreachable etcd as dfs.ErrUnavailable, so
// callers can tell "try again" from "no".
func etcdErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if noLeader(err) {
		return fmt.Errorf("%w: metadata store has no quorum (too few etcd members are up): %v", dfs.ErrUnavailable, err)
	}
	return fmt.Errorf("%w: etcd: %v", dfs.ErrUnavailable, err)
}

// ErrCertMismatch says a datanode id is bound to another certificate than
// the one it came with.
var ErrCertMismatch = errors.New("the node id is bound to another certificate")

// RegisterNode records a datanode's addresses and zone, creating its record
// if it is new, and returns the record as stored. Any coordinator may call
// it; it keeps what only the leader writes (the administrative state) as it
// is in etcd, so a coordinator that has not yet seen a drain cannot undo it.
//
// certKey, if not empty, is the key of the certificate the node registers
// with: a node seen for the first time (or first over TLS) is bound to it,
// and a node bound to another key is refused with an error wrapping
// ErrCertMismatch.
func (s *Store) RegisterNode(ctx context.Context, id dfs.NodeID, addr, grpcAddr, zone, certKey string) (*api.NodeRecord, error) {
	key := s.schema.Node(id)
	for {
		resp, err := s.kv.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("register node %s: %w", id, etcdErr(err))
		}
		rec := &api.NodeRecord{Id: string(id), RegisteredUnixNano: time.Now().UnixNano()}
		var rev int64
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			if err := proto.Unmarshal(resp.Kvs[0].Value, rec); err != nil {
				return nil, fmt.Errorf("register node %s: bad record: %w", id, err)
			}
			if certKey != "" && rec.CertKey != "" && rec.CertKey != certKey {
				return nil, fmt.Errorf("register node %s: %w", id, ErrCertMismatch)
			}
			if rec.Addr == addr && rec.GrpcAddr == grpcAddr && rec.Zone == zone && (certKey == "" || rec.CertKey == certKey) {
				return rec, nil
			}
		}
		rec.Addr, rec.GrpcAddr, rec.Zone = addr, grpcAddr, zone
		if certKey != "" {
			rec.CertKey = certKey
		}
		val, err := proto.Marshal(rec)
		if err != nil {
			return nil, err
		}
		txn, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return nil, fmt.Errorf("register node %s: %w", id, etcdErr(err))
		}
		if txn.Succeeded {
			return rec, nil
		}
		// Changed meanwhile (a drain, another coordinator): read again.
	}
}

// AnnounceCoordinator records a running coordinator on its lease.
func (s *Store) AnnounceCoordinator(ctx context.Context, addr string, lease clientv3.LeaseID) error {
	if _, err := s.kv.Put(ctx, s.schema.Coordinator(addr), "", clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("announce coordinator %s: %w", addr, etcdErr(err))
	}
	return nil
}

// Coordinators lists the running coordinators' addresses. It reads the
// local etcd member's state (serializable), so it answers even when etcd
// has lost its quorum.
func (s *Store) Coordinators(ctx context.Context) ([]string, error) {
	resp, err := s.kv.Get(ctx, s.schema.CoordinatorsPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSerializable())
	if err != nil {
		return nil, fmt.Errorf("list coordinators: %w", etcdErr(err))
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, strings.TrimPrefix(string(kv.Key), s.schema.CoordinatorsPrefix()))
	}
	return out, nil
}

// read is a linearizable Get that falls back to this member's own state
// (serializable) when etcd has no leader: paths then still resolve, to what
// they were when the quorum was lost, and reads of committed files keep
// working while writes cannot.
func (s *Store) read(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	resp, err := s.kv.Get(clientv3.WithRequireLeader(ctx), key, opts...)
	if err == nil || ctx.Err() != nil || !noLeader(err) {
		return resp, err
	}
	return s.kv.Get(ctx, key, append(opts, clientv3.WithSerializable())...)
}

// noLeader reports whether err says the etcd member has no leader (lost
// its quorum).
func noLeader(err error) bool {
	return errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrGRPCNoLeader) ||
		strings.Contains(err.Error(), rpctypes.ErrNoLeader.Error())
}

// Writes on the client path are tried in short attempts. When etcd's
// leader dies, a proposal in flight through another member is lost and
// etcd answers only when its own request timeout (about 7 s) runs out; a
// new leader is there after about one election timeout (1 s), so a fresh
// attempt succeeds long before. Without a quorum, attempts fail at once
// (they require a leader) and the write gives up after noQuorumFor, with
// an error that says so.
const (
	writeAttempt = 2 * time.Second
	noQuorumFor  = 3 * time.Second
	writeBudget  = 30 * time.Second
)

// errChanged makes retryWrite try again at once: what the write depends on
// changed under it.
var errChanged = errors.New("changed meanwhile")

// retryWrite runs an idempotent write until it succeeds, fails for good,
// or its time is up.
func retryWrite(ctx context.Context, write func(ctx context.Context) error) error {
	start := time.Now()
	for {
		actx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), writeAttempt)
		err := write(actx)
		timedOut := actx.Err() == context.DeadlineExceeded
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		msg := err.Error()
		retry := timedOut || errors.Is(err, errChanged) || strings.Contains(msg, "request timed out") || strings.Contains(msg, "leader changed")
		if noLeader(err) {
			retry = time.Since(start) < noQuorumFor
		}
		if !retry || time.Since(start) > writeBudget {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ReplaceContent gives content c.Hash the chunk list of c in place of the
// one stored at revision rev, which the caller found does not hash to it (a
// forged commit): the content keeps its paths and their count, its job is
// queued again, and paths committed with the forged chunk list no longer
// read (their layout is gone). The forged list's chunks lose the content's
// references and become garbage candidates. It fails with dfs.ErrConflict
// if the content changed since rev.
func (s *Store) ReplaceContent(ctx context.Context, c dfs.Content, forged dfs.Content, rev int64) error {
	h := c.Hash
	now := time.Now()
	rec, pages := contentRecord(c, now)
	if err := s.writeRefsAndPages(ctx, c, rec, pages, now); err != nil {
		return err
	}
	val, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	job, err := proto.Marshal(QueuedJob(now, ""))
	if err != nil {
		return err
	}
	ckey := s.schema.Content(h)
	resp, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(ckey), "=", rev)).
		Then(clientv3.OpPut(ckey, string(val)), clientv3.OpPut(s.schema.Job(h), string(job))).Commit()
	if err != nil {
		return fmt.Errorf("replace content %s: %w", h.Short(), etcdErr(err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("replace content %s: %w: it changed meanwhile", h.Short(), dfs.ErrConflict)
	}
	// The forged list's references and pages go; its chunks are checked by
	// the next collection (a chunk another content refers to keeps that
	// content's reference).
	keep := map[dfs.Hash]bool{}
	if selfChunk(c) {
		keep[h] = true
	}
	for _, ch := range c.Chunks {
		keep[ch.Hash] = true
	}
	stamp := strconv.FormatInt(now.UnixNano(), 10)
	var ops []clientv3.Op
	seen := map[dfs.Hash]bool{}
	for _, ch := range forged.Chunks {
		if keep[ch.Hash] || seen[ch.Hash] || (selfChunk(forged) && ch.Hash == h) {
			continue
		}
		seen[ch.Hash] = true
		ops = append(ops, clientv3.OpDelete(s.schema.ChunkRef(ch.Hash, h)), clientv3.OpPut(s.schema.ChunkCandidate(ch.Hash), stamp))
	}
	if forged.Layout != "" && forged.Layout != rec.Layout {
		ops = append(ops, clientv3.OpDelete(ckey+"/"+forged.Layout+"/", clientv3.WithPrefix()))
	}
	return s.batches(ctx, ops, func(ctx context.Context, ops []clientv3.Op) error {
		if _, err := s.kv.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("drop the forged chunk list of %s: %w", h.Short(), etcdErr(err))
		}
		return nil
	})
}
