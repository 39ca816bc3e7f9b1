package meta

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// Versions of a path.
//
// When a bucket keeps versions, an overwrite or a delete does not drop the
// path's file: its record moves, unchanged but for an expiry time, to
// versions/<path>\x00<version id>, and keeps its reference to its content
// (the content's count does not fall, so garbage collection keeps its
// chunks). A delete also writes a delete marker there. A version costs one
// small record in etcd and no chunk bytes of its own: only the chunks it
// does not share with other versions stay on the datanodes because of it.
//
// A version that expires has a key under version-expiry/ named by its
// expiry time; the leader reads only the keys that are due (ExpireVersions)
// and drops those versions, each in one transaction with its content's
// count. Work follows what expires, never what is stored. An expiry makes
// no version current again: when the delete marker that says a path is
// deleted expires before the versions under it, the path stays deleted,
// and none of its versions is listed as latest.
//
// Version ids sort a path's versions newest first: 16 hex digits of
// MaxInt64 minus the commit's time in ns, then 4 random hex digits. A
// write picks the id of the version it makes in each attempt, after it
// read the path: the id sorts before the file it replaces and every
// version the path keeps, whatever the writers' clocks say, and the write
// holds only while no version took a place before it (newerOp, noNewer).

// VersionID returns a new version id for a version made at t.
func VersionID(t time.Time) string {
	var r [2]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%016x%04x", uint64(math.MaxInt64-t.UnixNano()), binary.BigEndian.Uint16(r[:]))
}

// versionIDOf is the version id of a record: its own, or, for a record
// written before versions, one derived from its modified time.
func versionIDOf(rec *api.FileRecord) string {
	if rec.VersionId != "" {
		return rec.VersionId
	}
	return fmt.Sprintf("%016x0000", uint64(math.MaxInt64-rec.ModifiedUnixNano))
}

// newVersionID returns the id of a version made at now that sorts before
// each id in older ("": none): VersionID(now), or, where a clock ahead of
// this one or a write in the same nanosecond put an id there first, an id
// just before it.
func newVersionID(now time.Time, older ...string) string {
	id := VersionID(now)
	for _, o := range older {
		if o != "" && id >= o {
			id = idBefore(o)
		}
	}
	return id
}

// idBefore returns an id that sorts just before id: one nanosecond later.
func idBefore(id string) string {
	p, err := strconv.ParseUint(id[:min(16, len(id))], 16, 64)
	if err != nil || p == 0 {
		return strings.Repeat("0", 20) // not an id of ours, or the year 2262
	}
	var r [2]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%016x%04x", p-1, binary.BigEndian.Uint16(r[:]))
}

// newerOp reads the newest of path's versions whose ids sort at or
// before id: normally none, as a new version's id comes from now. Its
// range holds only such versions, so etcd counts no others.
func (s *Store) newerOp(path, id string) clientv3.Op {
	return clientv3.OpGet(s.schema.PathVersions(path), clientv3.WithRange(s.schema.Version(path, id)+"\x00"),
		clientv3.WithLimit(1), clientv3.WithKeysOnly())
}

// newerID is the id of the version a newerOp found, or "".
func (s *Store) newerID(r *etcdserverpb.ResponseOp) string {
	if kvs := r.GetResponseRange().Kvs; len(kvs) > 0 {
		_, id, _ := s.schema.VersionOf(string(kvs[0].Key))
		return id
	}
	return ""
}

// noNewer holds while path has no version whose id sorts at or before id.
func (s *Store) noNewer(path, id string) clientv3.Cmp {
	return s.noVersions(s.schema.PathVersions(path), s.schema.Version(path, id)+"\x00")
}

// noVersions holds while no key lies in [from, to): a range expected
// empty, which etcd reads whole to check.
func (s *Store) noVersions(from, to string) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(from), "=", 0).WithRange(to)
}

// MaxRetention is the longest time versions can be kept for before they
// expire: their expiry time, in ns since 1970, must fit in 64 bits (until
// 2262). A longer retention is refused where it is set; one stored anyway
// keeps versions until purged.
const MaxRetention = 100 * 365 * 24 * time.Hour

// retention converts a bucket record's retention: 0 (until purged) for one
// that is not positive or exceeds MaxRetention.
func retention(seconds int64) time.Duration {
	if seconds <= 0 || seconds > int64(MaxRetention/time.Second) {
		return 0
	}
	return time.Duration(seconds) * time.Second
}

// Versioning is how a bucket keeps earlier versions.
type Versioning struct {
	Mode      api.Versioning
	Retention time.Duration // with VERSIONING_ENABLED; 0: until purged
}

// SetDefaultRetention sets how long buckets in the default mode keep
// earlier versions; 0 keeps none. Set before the store is used.
func (s *Store) SetDefaultRetention(d time.Duration) { s.defRetention.Store(int64(d)) }

// policy says whether a bucket with record val (nil: none) keeps earlier
// versions, and for how long (0: until purged).
func (s *Store) policy(path string, val []byte) (keep bool, d time.Duration, err error) {
	var rec api.BucketRecord
	if val != nil {
		if err := proto.Unmarshal(val, &rec); err != nil {
			b, _, _ := strings.Cut(path, "/")
			return false, 0, fmt.Errorf("bucket record %s: %w", b, err)
		}
	}
	switch rec.Versioning {
	case api.Versioning_VERSIONING_ENABLED:
		return true, retention(rec.VersionRetentionSeconds), nil
	case api.Versioning_VERSIONING_SUSPENDED:
		return false, 0, nil
	}
	d = time.Duration(s.defRetention.Load())
	return d > 0, d, nil
}

// bucketKey is the key of the record of path's bucket.
func (s *Store) bucketKey(path string) string {
	b, _, _ := strings.Cut(path, "/")
	return s.schema.Bucket(b)
}

// archiveOps keeps rec, path's file until now, as an earlier version that
// expires after d (0: never).
func (s *Store) archiveOps(path string, rec *api.FileRecord, now time.Time, d time.Duration) ([]clientv3.Op, error) {
	v := proto.Clone(rec).(*api.FileRecord)
	v.VersionId = versionIDOf(rec)
	return s.versionOps(path, v, now, d)
}

// markerOps writes delete marker id of path, made at now.
func (s *Store) markerOps(path, id string, now time.Time, d time.Duration) ([]clientv3.Op, error) {
	return s.versionOps(path, &api.FileRecord{VersionId: id, DeleteMarker: true,
		ModifiedUnixNano: now.UnixNano(), CreatedUnixNano: now.UnixNano()}, now, d)
}

// versionOps writes version v of path, to expire after d (0, or more than
// MaxRetention: never).
func (s *Store) versionOps(path string, v *api.FileRecord, now time.Time, d time.Duration) ([]clientv3.Op, error) {
	v.ExpiresUnixNano = 0
	if d > 0 && d <= MaxRetention {
		v.ExpiresUnixNano = now.Add(d).UnixNano()
	}
	val, err := proto.Marshal(v)
	if err != nil {
		return nil, err
	}
	ops := []clientv3.Op{clientv3.OpPut(s.schema.Version(path, v.VersionId), string(val))}
	if v.ExpiresUnixNano != 0 {
		ops = append(ops, clientv3.OpPut(s.schema.Expiry(v.ExpiresUnixNano, path, v.VersionId), ""))
	}
	return ops, nil
}

// dropVersionOps deletes version rec of path and its expiry key.
func (s *Store) dropVersionOps(path string, rec *api.FileRecord) []clientv3.Op {
	ops := []clientv3.Op{clientv3.OpDelete(s.schema.Version(path, rec.VersionId))}
	if rec.ExpiresUnixNano != 0 {
		ops = append(ops, clientv3.OpDelete(s.schema.Expiry(rec.ExpiresUnixNano, path, rec.VersionId)))
	}
	return ops
}

// countDeltaOps reads the counts of the contents in deltas and returns the
// operations that change each by its delta, on condition that none changed
// since read.
func (s *Store) countDeltaOps(ctx context.Context, deltas map[dfs.ContentHash]int64, now time.Time) ([]clientv3.Cmp, []clientv3.Op, error) {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for h, d := range deltas {
		if d == 0 || h.IsZero() {
			continue
		}
		resp, err := s.kv.Get(ctx, s.schema.Ref(h))
		if err != nil {
			return nil, nil, fmt.Errorf("read count of %s: %w", h.Short(), etcdErr(err))
		}
		c := countOf(resp.Kvs)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.schema.Ref(h)), "=", c.rev))
		ops = append(ops, s.countOps(h, c.n+d, now)...)
	}
	return cmps, ops, nil
}

func recordContent(rec *api.FileRecord) dfs.ContentHash {
	if rec.DeleteMarker {
		return dfs.ContentHash{}
	}
	h, _ := dfs.HashFromBytes(rec.ContentHash)
	return h
}

// undecodable stands for a version record val that does not decode, so
// that it can be dropped with the reference it holds: its content hash
// (field 2) if that can still be read before the damage, else none (the
// content's count then stays one too high and the content is kept).
func undecodable(val []byte) *api.FileRecord {
	rec := &api.FileRecord{}
	for len(val) > 0 {
		num, typ, n := protowire.ConsumeTag(val)
		if n < 0 {
			break
		}
		val = val[n:]
		if num == 2 && typ == protowire.BytesType {
			b, n := protowire.ConsumeBytes(val)
			if n >= 0 && len(b) == len(dfs.ContentHash{}) {
				rec.ContentHash = b
			}
			break
		}
		n = protowire.ConsumeFieldValue(num, typ, val)
		if n < 0 {
			break
		}
		val = val[n:]
	}
	return rec
}

func versionFromRecord(path string, rec *api.FileRecord) (dfs.Version, error) {
	v := dfs.Version{DeleteMarker: rec.DeleteMarker}
	if rec.DeleteMarker {
		v.FileInfo = dfs.FileInfo{Path: path, Created: time.Unix(0, rec.CreatedUnixNano), Modified: time.Unix(0, rec.ModifiedUnixNano)}
	} else {
		f, err := FileFromRecord(rec)
		if err != nil {
			return v, err
		}
		v.FileInfo = f
	}
	v.Path = path
	v.VersionID = versionIDOf(rec)
	if rec.ExpiresUnixNano != 0 {
		v.Expires = time.Unix(0, rec.ExpiresUnixNano)
	}
	return v, nil
}

// GetVersion returns version id of path: the current file (Latest) or an
// earlier version or delete marker. It fails with dfs.ErrNotFound if the
// path has no such version.
func (s *Store) GetVersion(ctx context.Context, path, id string) (dfs.Version, error) {
	if !dfs.ValidVersionID(id) {
		return dfs.Version{}, fmt.Errorf("%w: version id %.40q: want 20 hex digits", dfs.ErrInvalid, id)
	}
	resp, err := s.kv.Txn(ctx).Then(clientv3.OpGet(s.schema.File(path)), clientv3.OpGet(s.schema.Version(path, id))).Commit()
	if err != nil {
		return dfs.Version{}, fmt.Errorf("version %s of %s: %w", id, path, etcdErr(err))
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		var rec api.FileRecord
		if err := proto.Unmarshal(kvs[0].Value, &rec); err != nil {
			return dfs.Version{}, fmt.Errorf("file %s: decode: %w", path, err)
		}
		if versionIDOf(&rec) == id {
			v, err := versionFromRecord(path, &rec)
			v.Latest = true
			return v, err
		}
	}
	kvs := resp.Responses[1].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return dfs.Version{}, fmt.Errorf("version %s of %q: %w", id, path, dfs.ErrNotFound)
	}
	var rec api.FileRecord
	if err := proto.Unmarshal(kvs[0].Value, &rec); err != nil {
		return dfs.Version{}, fmt.Errorf("version %s of %s: decode: %w", id, path, err)
	}
	rec.VersionId = id
	return versionFromRecord(path, &rec)
}

// versionWindow is the span of version ids (of commit times) that the
// first read of a path's versions covers back from now, besides any newer
// ones. Later windows grow or shrink with what they hold (see hexScan); an
// empty one grows by the page size, 16 to 256 times: a read of the
// newest version or two counts few of the versions after it, and a page
// of 1000 reaches past the path's oldest version (32 years back) in four
// empty windows at most.
const versionWindow = time.Minute

// pathVersions scans path's versions, newest first, from key start, in
// windows of version-id space: reading the newest few counts about those,
// however many versions the path keeps.
func (s *Store) pathVersions(path, start string, page int, get func(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)) *hexScan {
	now := uint64(math.MaxInt64 - time.Now().UnixNano())
	grow := uint64(max(16, min(256, page)))
	return newHexScan(s.schema.PathVersions(path), start, now, uint64(versionWindow), grow, page, get)
}

// newestVersions returns up to n of path's newest versions, newest first.
func (s *Store) newestVersions(ctx context.Context, path string, n int) ([]*mvccpb.KeyValue, error) {
	h := s.pathVersions(path, "", n, s.kv.Get)
	var out []*mvccpb.KeyValue
	for len(out) < n {
		kvs, err := h.next(ctx, int64(n-len(out)))
		if err != nil {
			return nil, fmt.Errorf("versions of %s: %w", path, etcdErr(err))
		}
		if len(kvs) == 0 {
			break
		}
		out = append(out, kvs...)
	}
	return out, nil
}

// VersionListing is one page of versions.
type VersionListing struct {
	Versions  []dfs.Version
	Truncated bool
	// The markers the next page starts after.
	NextKey, NextVersion string
}

// versionEntry is a current file or an earlier version, in listing order.
type versionEntry struct {
	path    string
	current bool
	id      string
	rec     api.FileRecord
}

func (a *versionEntry) less(b *versionEntry) bool {
	if a.path != b.path {
		return a.path < b.path
	}
	if a.current != b.current {
		return a.current
	}
	return a.id < b.id
}

// keySource reads keys in order: at most max of them (if above 0) a
// call, and none at or after until if it can help it ("": no bound).
// pager and hexScan are ones.
type keySource interface {
	nextBefore(ctx context.Context, max int64, until string) ([]*mvccpb.KeyValue, error)
	over() bool
}

// oneKey is a keySource of one key.
type oneKey struct {
	key  string
	get  func(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
	done bool
}

func (o *oneKey) nextBefore(ctx context.Context, _ int64, until string) ([]*mvccpb.KeyValue, error) {
	if o.done || until != "" && o.key >= until {
		return nil, nil
	}
	o.done = true
	resp, err := o.get(ctx, o.key)
	if err != nil {
		return nil, err
	}
	return resp.Kvs, nil
}

func (o *oneKey) over() bool { return o.done }

// entryStream reads entries in listing order from its sources, one after
// the other.
type entryStream struct {
	srcs   []keySource
	decode func(kv *mvccpb.KeyValue) (*versionEntry, error) // nil: not an entry
	buf    []*versionEntry
}

// peek returns the next entry, reading on if need be (about want keys at
// most, and if it can help it none at or after until); nil if there is
// none (before until).
func (st *entryStream) peek(ctx context.Context, want int64, until string) (*versionEntry, error) {
	for len(st.buf) == 0 && len(st.srcs) > 0 {
		kvs, err := st.srcs[0].nextBefore(ctx, want, until)
		if err != nil {
			return nil, etcdErr(err)
		}
		if len(kvs) == 0 {
			if !st.srcs[0].over() {
				return nil, nil
			}
			st.srcs = st.srcs[1:]
		}
		for _, kv := range kvs {
			e, err := st.decode(kv)
			if err != nil {
				return nil, err
			}
			if e != nil {
				st.buf = append(st.buf, e)
			}
		}
	}
	if len(st.buf) == 0 {
		return nil, nil
	}
	return st.buf[0], nil
}

func (st *entryStream) head() *versionEntry {
	if len(st.buf) == 0 {
		return nil
	}
	return st.buf[0]
}

// last is the last entry read and not yet taken, or nil.
func (st *entryStream) last() *versionEntry {
	if len(st.buf) == 0 {
		return nil
	}
	return st.buf[len(st.buf)-1]
}

// ListVersions returns up to limit versions of the paths under prefix (of
// path prefix alone if exact), by path and each path's newest first,
// after the version (keyMarker, versionMarker); an empty versionMarker
// starts after every version of keyMarker. Latest marks a path's current
// file, or, when it has none, its newest version if that is a delete
// marker: what a read of the path gives or says, as GetFile does. Each
// request's range is bounded by a window (see pager and pathVersions), so
// a page makes etcd count about its own keys, not every key after it.
func (s *Store) ListVersions(ctx context.Context, prefix string, exact bool, keyMarker, versionMarker string, limit int) (VersionListing, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	fp, vp := s.schema.FilesPrefix(), s.schema.VersionsPrefix()
	var fStart, fEnd, vStart string
	if exact {
		fStart, fEnd, vStart = fp+prefix, fp+prefix+"\x00", s.schema.PathVersions(prefix)
	} else {
		fStart, fEnd, vStart = fp+prefix, clientv3.GetPrefixRangeEnd(fp+prefix), vp+prefix
	}
	// cont is the path a page goes on with (after one of its versions):
	// the rest of its versions come first. lastFile: the last page ended
	// with a current file.
	cont, contStart := "", ""
	lastFile := true
	if keyMarker != "" {
		if k := fp + keyMarker + "\x00"; k > fStart {
			fStart = k
		}
		if k := vp + keyMarker + "\x01"; k > vStart {
			vStart = k
		}
		if versionMarker != "" && (keyMarker == prefix || !exact && strings.HasPrefix(keyMarker, prefix)) {
			cont, contStart = keyMarker, s.schema.Version(keyMarker, versionMarker)+"\x00"
			// After the current file, every version follows, even one
			// whose id sorts before it (written by a release that picked
			// ids before it read the path).
			resp, err := s.read(ctx, fp+keyMarker)
			if err != nil {
				return VersionListing{}, fmt.Errorf("list versions of %s: %w", prefix, etcdErr(err))
			}
			var rec api.FileRecord
			lastFile = len(resp.Kvs) == 1 && proto.Unmarshal(resp.Kvs[0].Value, &rec) == nil && versionIDOf(&rec) == versionMarker
			if lastFile {
				contStart = s.schema.PathVersions(keyMarker)
			}
		}
	}

	files := &entryStream{decode: func(kv *mvccpb.KeyValue) (*versionEntry, error) {
		e := &versionEntry{path: s.schema.PathOf(string(kv.Key)), current: true}
		if err := proto.Unmarshal(kv.Value, &e.rec); err != nil {
			return nil, fmt.Errorf("file %s: decode: %w", e.path, err)
		}
		e.id = versionIDOf(&e.rec)
		return e, nil
	}}
	if fStart < fEnd {
		if exact {
			files.srcs = append(files.srcs, &oneKey{key: fStart, get: s.read})
		} else {
			pg := newPager(s.kv, fp+prefix, fStart, limit+1)
			pg.get = s.read
			s.guide(pg, prefix)
			files.srcs = append(files.srcs, pg)
		}
	}
	vers := &entryStream{decode: func(kv *mvccpb.KeyValue) (*versionEntry, error) {
		path, id, ok := s.schema.VersionOf(string(kv.Key))
		if !ok {
			return nil, nil
		}
		e := &versionEntry{path: path, id: id}
		if err := proto.Unmarshal(kv.Value, &e.rec); err != nil {
			return nil, fmt.Errorf("version %s of %s: decode: %w", id, path, err)
		}
		e.rec.VersionId = id
		return e, nil
	}}
	if cont != "" {
		vers.srcs = append(vers.srcs, s.pathVersions(cont, contStart, limit+1, s.read))
	}
	if exact {
		if cont == "" {
			vers.srcs = append(vers.srcs, s.pathVersions(prefix, vStart, limit+1, s.read))
		}
	} else {
		pg := newPager(s.kv, vp+prefix, vStart, limit+1)
		pg.get = s.read
		vers.srcs = append(vers.srcs, pg)
	}

	var out VersionListing
	prev := cont // the page goes on with a path begun on the last one
	for {
		want := int64(limit-len(out.Versions)) + 1
		// Each stream is read only as far as the entries the other has
		// read, so that neither scans on past what the page takes; with
		// neither known, the one the last entry came from is read first.
		f, v := files.head(), vers.head()
		var err error
		if f == nil && v == nil {
			if lastFile {
				f, err = files.peek(ctx, want, "")
			} else {
				v, err = vers.peek(ctx, want, "")
			}
			if err != nil {
				return out, fmt.Errorf("list versions of %s: %w", prefix, err)
			}
		}
		if f == nil {
			until := "" // files at or before the versions' paths
			if v != nil {
				until = fp + vers.last().path + "\x00"
			}
			if f, err = files.peek(ctx, want, until); err != nil {
				return out, fmt.Errorf("list versions of %s: %w", prefix, err)
			}
		}
		if v == nil {
			until := "" // versions of paths before the files'
			if f != nil {
				until = vp + files.last().path
			}
			if v, err = vers.peek(ctx, want, until); err != nil {
				return out, fmt.Errorf("list versions of %s: %w", prefix, err)
			}
		}
		e := f
		switch {
		case f == nil && v == nil:
			return out, nil
		case f == nil || v != nil && v.less(f):
			e = v
			vers.buf = vers.buf[1:]
		default:
			files.buf = files.buf[1:]
		}
		if len(out.Versions) == limit {
			out.Truncated = true
			last := out.Versions[len(out.Versions)-1]
			out.NextKey, out.NextVersion = last.Path, last.VersionID
			return out, nil
		}
		ver, err := versionFromRecord(e.path, &e.rec)
		if err != nil {
			return out, err
		}
		// A path's current file comes before its versions: a path whose
		// first entry is a version has none.
		ver.Latest = e.current || e.path != prev && e.rec.DeleteMarker
		prev, lastFile = e.path, e.current
		out.Versions = append(out.Versions, ver)
	}
}

// DeleteVersion removes version id of path for good and returns it. The
// current file's id deletes the file without keeping a version of it, and
// the newest earlier version, unless it is a delete marker, becomes the
// current file again (as S3 does); so does the version under the delete
// marker that says the path is deleted, when that marker goes. It fails
// with dfs.ErrNotFound if there is no such version.
func (s *Store) DeleteVersion(ctx context.Context, path, id string) (dfs.Version, error) {
	if !dfs.ValidVersionID(id) {
		return dfs.Version{}, fmt.Errorf("%w: version id %.40q: want 20 hex digits", dfs.ErrInvalid, id)
	}
	var out dfs.Version
	sent := false
	err := retryWrite(ctx, func(ctx context.Context) error {
		fkey, vkey := s.schema.File(path), s.schema.Version(path, id)
		read, err := s.kv.Txn(ctx).Then(clientv3.OpGet(fkey), clientv3.OpGet(vkey)).Commit()
		if err != nil {
			return fmt.Errorf("delete version %s of %s: %w", id, path, etcdErr(err))
		}
		now := time.Now()
		cur := read.Responses[0].GetResponseRange().Kvs
		var curRec api.FileRecord
		if len(cur) == 1 {
			if err := proto.Unmarshal(cur[0].Value, &curRec); err != nil {
				return fmt.Errorf("file %s: decode: %w", path, err)
			}
		}
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		deltas := map[dfs.ContentHash]int64{}
		// promote makes version kv of path its current file.
		promote := func(kv *mvccpb.KeyValue, rec *api.FileRecord) error {
			_, rec.VersionId, _ = s.schema.VersionOf(string(kv.Key))
			ops = append(ops, s.dropVersionOps(path, rec)...)
			rec.ExpiresUnixNano = 0
			val, err := proto.Marshal(rec)
			if err != nil {
				return err
			}
			ops = append(ops, clientv3.OpPut(fkey, string(val)))
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
			return nil
		}
		if len(cur) == 1 && versionIDOf(&curRec) == id {
			// The current file: delete it, and make the newest earlier
			// version current if it is a file. While the path's file
			// stays as read, no version can be added to the path.
			out, err = versionFromRecord(path, &curRec)
			if err != nil {
				return err
			}
			out.Latest = true
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(fkey), "=", cur[0].ModRevision))
			deltas[recordContent(&curRec)]--
			older, err := s.newestVersions(ctx, path, 1)
			if err != nil {
				return fmt.Errorf("delete version %s of %s: %w", id, path, err)
			}
			promoted := false
			if len(older) > 0 {
				var rec api.FileRecord
				if err := proto.Unmarshal(older[0].Value, &rec); err != nil {
					return fmt.Errorf("versions of %s: decode: %w", path, err)
				}
				if !rec.DeleteMarker {
					if err := promote(older[0], &rec); err != nil {
						return err
					}
					promoted = true
				} else {
					// A marker: the path goes unless the marker went meanwhile.
					cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(older[0].Key)), "=", older[0].ModRevision))
				}
			}
			if !promoted {
				ops = append(ops, clientv3.OpDelete(fkey))
				if Sampled(path) {
					ops = append(ops, clientv3.OpDelete(s.schema.Skip(path)))
				}
			}
		} else {
			kvs := read.Responses[1].GetResponseRange().Kvs
			if len(kvs) == 0 {
				if sent {
					return nil // the earlier attempt went through
				}
				return fmt.Errorf("version %s of %q: %w", id, path, dfs.ErrNotFound)
			}
			var rec api.FileRecord
			if err := proto.Unmarshal(kvs[0].Value, &rec); err != nil {
				return fmt.Errorf("version %s of %s: decode: %w", id, path, err)
			}
			rec.VersionId = id
			out, err = versionFromRecord(path, &rec)
			if err != nil {
				return err
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(vkey), "=", kvs[0].ModRevision))
			ops = append(ops, s.dropVersionOps(path, &rec)...)
			deltas[recordContent(&rec)]--
			// The delete marker that says the path is deleted (its newest
			// version, with no current file): the version under it
			// becomes current if it is a file, as S3 does.
			if len(cur) == 0 && rec.DeleteMarker {
				newest, err := s.newestVersions(ctx, path, 2)
				if err != nil {
					return fmt.Errorf("delete version %s of %s: %w", id, path, err)
				}
				if len(newest) > 0 && string(newest[0].Key) == vkey {
					out.Latest = true
				}
				if len(newest) == 2 && string(newest[0].Key) == vkey {
					var next api.FileRecord
					if err := proto.Unmarshal(newest[1].Value, &next); err != nil {
						return fmt.Errorf("versions of %s: decode: %w", path, err)
					}
					if !next.DeleteMarker {
						if err := promote(newest[1], &next); err != nil {
							return err
						}
						if Sampled(path) {
							ops = append(ops, clientv3.OpPut(s.schema.Skip(path), ""))
						}
						// Still no file, and nothing newer than the
						// marker (a marker of an absent path, say).
						cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(fkey), "=", 0),
							s.noVersions(s.schema.PathVersions(path), vkey),
							s.noVersions(vkey+"\x00", string(newest[1].Key)))
					}
				}
			}
		}
		ccmps, cops, err := s.countDeltaOps(ctx, deltas, now)
		if err != nil {
			return fmt.Errorf("delete version %s of %s: %w", id, path, err)
		}
		sent = true
		resp, err := s.kv.Txn(ctx).If(append(cmps, ccmps...)...).Then(append(ops, cops...)...).Commit()
		if err != nil {
			return fmt.Errorf("delete version %s of %s: %w", id, path, etcdErr(err))
		}
		if !resp.Succeeded {
			sent = false
			return errChanged
		}
		return nil
	})
	return out, err
}

// expiryBatch is how many due versions ExpireVersions reads at a time.
const expiryBatch = 256

// ExpireVersions drops the versions whose expiry time is before now, a
// batch of due keys at a time, and returns how many it dropped. It reads
// only due keys.
func (s *Store) ExpireVersions(ctx context.Context, now time.Time) (int, error) {
	n := 0
	start, end := s.schema.ExpiryPrefix(), s.schema.ExpiryBefore(now.UnixNano())
	for {
		resp, err := s.kv.Get(ctx, start, clientv3.WithRange(end), clientv3.WithLimit(expiryBatch), clientv3.WithKeysOnly())
		if err != nil {
			return n, fmt.Errorf("expire versions: %w", etcdErr(err))
		}
		for _, kv := range resp.Kvs {
			dropped, err := s.expire(ctx, kv, now)
			if err != nil {
				return n, err
			}
			if dropped {
				n++
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return n, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// expire drops the version an expiry key names, if it is still there and
// still due then.
func (s *Store) expire(ctx context.Context, ekey *mvccpb.KeyValue, now time.Time) (bool, error) {
	rest := strings.TrimPrefix(string(ekey.Key), s.schema.ExpiryPrefix())
	ts, rest, ok1 := strings.Cut(rest, "/")
	path, id, ok2 := strings.Cut(rest, "\x00")
	at, err := strconv.ParseInt(ts, 10, 64)
	if !ok1 || !ok2 || err != nil {
		// Not a key of ours: leave it rather than loop on it.
		return false, nil
	}
	dropped := false
	err = retryWrite(ctx, func(ctx context.Context) error {
		vkey := s.schema.Version(path, id)
		resp, err := s.kv.Get(ctx, vkey)
		if err != nil {
			return fmt.Errorf("expire version %s of %s: %w", id, path, etcdErr(err))
		}
		rec := &api.FileRecord{}
		if len(resp.Kvs) == 1 && proto.Unmarshal(resp.Kvs[0].Value, rec) != nil {
			// A record that does not decode goes when its key says,
			// with what can be read of its reference.
			rec = undecodable(resp.Kvs[0].Value)
			rec.ExpiresUnixNano = at
		}
		if len(resp.Kvs) == 0 || rec.ExpiresUnixNano != at {
			// Purged, or kept again under another expiry: only the key goes.
			_, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(ekey.Key)), ">", 0)).
				Then(clientv3.OpDelete(string(ekey.Key))).Commit()
			return etcdErr(err)
		}
		rec.VersionId = id
		// Candidates are stamped with the real time: the grace period
		// runs from now, whatever time the caller expires for.
		cmps, cops, err := s.countDeltaOps(ctx, map[dfs.ContentHash]int64{recordContent(rec): -1}, time.Now())
		if err != nil {
			return fmt.Errorf("expire version %s of %s: %w", id, path, err)
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(vkey), "=", resp.Kvs[0].ModRevision))
		txn, err := s.kv.Txn(ctx).If(cmps...).Then(append(s.dropVersionOps(path, rec), cops...)...).Commit()
		if err != nil {
			return fmt.Errorf("expire version %s of %s: %w", id, path, etcdErr(err))
		}
		if !txn.Succeeded {
			return errChanged
		}
		dropped = true
		return nil
	})
	return dropped, err
}

// Rename moves the file at src to dst in one transaction, with src's
// content, attributes and times, and returns the file at dst. An
// existing dst is replaced (kept as an earlier version if its bucket keeps
// them) unless ifAbsent, which fails with an error wrapping
// dfs.ErrPrecondition. src is kept as an earlier version with a delete
// marker if its bucket keeps them. It fails with dfs.ErrNotFound if src
// holds no file.
func (s *Store) Rename(ctx context.Context, src, dst string, ifAbsent bool) (dfs.FileInfo, error) {
	if src == dst {
		return dfs.FileInfo{}, fmt.Errorf("%w: rename %s: source and destination are the same path", dfs.ErrInvalid, src)
	}
	var info dfs.FileInfo
	sentID := "" // the id at dst of an attempt sent without an answer
	err := retryWrite(ctx, func(ctx context.Context) error {
		skey, dkey := s.schema.File(src), s.schema.File(dst)
		now := time.Now()
		cand := VersionID(now)
		read, err := s.kv.Txn(ctx).Then(clientv3.OpGet(skey), clientv3.OpGet(dkey),
			clientv3.OpGet(s.bucketKey(src)), clientv3.OpGet(s.bucketKey(dst)),
			s.newerOp(src, cand), s.newerOp(dst, cand)).Commit()
		if err != nil {
			return fmt.Errorf("rename %s: %w", src, etcdErr(err))
		}
		sk, dk := read.Responses[0].GetResponseRange().Kvs, read.Responses[1].GetResponseRange().Kvs
		var drec api.FileRecord
		if len(dk) == 1 {
			if err := proto.Unmarshal(dk[0].Value, &drec); err != nil {
				return fmt.Errorf("file %s: decode: %w", dst, err)
			}
		}
		if len(sk) == 0 {
			if sentID != "" && len(dk) == 1 && drec.VersionId == sentID {
				f, err := FileFromRecord(&drec)
				f.Path, f.VersionID = dst, sentID
				info = f
				return err // the earlier attempt went through
			}
			return fmt.Errorf("file %q: %w", src, dfs.ErrNotFound)
		}
		if ifAbsent && len(dk) == 1 {
			return fmt.Errorf("rename %s to %s: %w: the destination holds a file", src, dst, dfs.ErrPrecondition)
		}
		var srec api.FileRecord
		if err := proto.Unmarshal(sk[0].Value, &srec); err != nil {
			return fmt.Errorf("file %s: decode: %w", src, err)
		}
		bval := func(i int) []byte {
			if kvs := read.Responses[i].GetResponseRange().Kvs; len(kvs) == 1 {
				return kvs[0].Value
			}
			return nil
		}
		keepSrc, srcFor, err := s.policy(src, bval(2))
		if err != nil {
			return err
		}
		keepDst, dstFor, err := s.policy(dst, bval(3))
		if err != nil {
			return err
		}

		// The moved file is dst's newest version: newer than the file it
		// replaces and than any version dst keeps.
		dstOld := ""
		if len(dk) == 1 {
			dstOld = versionIDOf(&drec)
		}
		vid := newVersionID(now, dstOld, s.newerID(read.Responses[5]))
		moved := proto.Clone(&srec).(*api.FileRecord)
		moved.VersionId = vid
		moved.Path = ""
		val, err := proto.Marshal(moved)
		if err != nil {
			return err
		}
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(skey), "=", sk[0].ModRevision),
			clientv3.Compare(clientv3.ModRevision(dkey), "=", revOf(dk)),
			s.noNewer(dst, vid),
		}
		ops := []clientv3.Op{clientv3.OpPut(dkey, string(val)), clientv3.OpDelete(skey)}
		if Sampled(src) {
			ops = append(ops, clientv3.OpDelete(s.schema.Skip(src)))
		}
		if Sampled(dst) {
			ops = append(ops, clientv3.OpPut(s.schema.Skip(dst), ""))
		}
		h := recordContent(&srec)
		deltas := map[dfs.ContentHash]int64{h: 1}
		if keepSrc {
			a, err := s.archiveOps(src, &srec, now, srcFor)
			if err != nil {
				return err
			}
			mid := newVersionID(now, versionIDOf(&srec), s.newerID(read.Responses[4]))
			m, err := s.markerOps(src, mid, now, srcFor)
			if err != nil {
				return err
			}
			ops = append(append(ops, a...), m...)
			cmps = append(cmps, s.noNewer(src, mid))
		} else {
			deltas[h]--
		}
		if len(dk) == 1 {
			if keepDst {
				a, err := s.archiveOps(dst, &drec, now, dstFor)
				if err != nil {
					return err
				}
				ops = append(ops, a...)
			} else {
				deltas[recordContent(&drec)]--
			}
		}
		ccmps, cops, err := s.countDeltaOps(ctx, deltas, now)
		if err != nil {
			return fmt.Errorf("rename %s: %w", src, err)
		}
		wasSent := sentID
		sentID = vid
		resp, err := s.kv.Txn(ctx).If(append(cmps, ccmps...)...).Then(append(ops, cops...)...).Commit()
		if err != nil {
			return fmt.Errorf("rename %s to %s: %w", src, dst, etcdErr(err))
		}
		if !resp.Succeeded {
			sentID = wasSent
			return errChanged
		}
		f, err := FileFromRecord(moved)
		f.Path, f.VersionID = dst, vid
		info = f
		return err
	})
	return info, err
}

// GetVersioning returns bucket's versioning, whether it keeps versions in
// effect, and for how long (0: until purged).
func (s *Store) GetVersioning(ctx context.Context, bucket string) (v Versioning, keep bool, d time.Duration, err error) {
	resp, err := s.read(ctx, s.schema.Bucket(bucket))
	if err != nil {
		return v, false, 0, fmt.Errorf("bucket %s: %w", bucket, etcdErr(err))
	}
	var val []byte
	if len(resp.Kvs) == 1 {
		val = resp.Kvs[0].Value
		var rec api.BucketRecord
		if err := proto.Unmarshal(val, &rec); err != nil {
			return v, false, 0, fmt.Errorf("bucket record %s: %w", bucket, err)
		}
		v = Versioning{Mode: rec.Versioning, Retention: retention(rec.VersionRetentionSeconds)}
	}
	keep, d, err = s.policy(bucket, val)
	return v, keep, d, err
}

// SetVersioning sets bucket's versioning. A bucket without a record (one
// made by writing into it) gets one, owned by no key. The new setting
// applies to versions made from then on; versions kept already keep their
// expiry. A retention below 0 or above MaxRetention is an error wrapping
// dfs.ErrInvalid.
func (s *Store) SetVersioning(ctx context.Context, bucket string, v Versioning) error {
	if v.Retention < 0 || v.Retention > MaxRetention {
		return fmt.Errorf("%w: versioning of bucket %s: a retention of %v: want 0 (until purged) to %v (100 years)", dfs.ErrInvalid, bucket, v.Retention, MaxRetention)
	}
	key := s.schema.Bucket(bucket)
	for {
		resp, err := s.kv.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", bucket, etcdErr(err))
		}
		rec := &api.BucketRecord{CreatedUnixNano: time.Now().UnixNano()}
		if len(resp.Kvs) == 1 {
			if err := proto.Unmarshal(resp.Kvs[0].Value, rec); err != nil {
				return fmt.Errorf("bucket record %s: %w", bucket, err)
			}
		}
		rec.Versioning, rec.VersionRetentionSeconds = v.Mode, int64(v.Retention/time.Second)
		val, err := proto.Marshal(rec)
		if err != nil {
			return err
		}
		txn, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", revOf(resp.Kvs))).
			Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return fmt.Errorf("set versioning of bucket %s: %w", bucket, etcdErr(err))
		}
		if txn.Succeeded {
			return nil
		}
	}
}

// HasVersions reports whether any path under prefix has an earlier
// version or a delete marker. It reads in bounded windows until it finds
// one: the window that does counts the keys it holds.
func (s *Store) HasVersions(ctx context.Context, prefix string) (bool, error) {
	pg := newPager(s.kv, s.schema.VersionsPrefix()+prefix, s.schema.VersionsPrefix()+prefix, 1, clientv3.WithKeysOnly())
	pg.get = s.read
	kvs, err := pg.next(ctx, 1)
	if err != nil {
		return false, fmt.Errorf("versions of %s: %w", prefix, etcdErr(err))
	}
	return len(kvs) > 0, nil
}

// purgeTxn is how many versions purgeVersions drops in one transaction:
// with its expiry key and its content's count, each takes up to four of
// etcd's 128 operations.
const purgeTxn = 32

// purgeVersions removes every earlier version and delete marker under
// prefix for good, with their expiry keys and references, a page at a
// time. It makes no version current: it is for a bucket that goes, whose
// paths hold no file.
func (s *Store) purgeVersions(ctx context.Context, prefix string) error {
	pg := newPager(s.kv, s.schema.VersionsPrefix()+prefix, s.schema.VersionsPrefix()+prefix, expiryBatch)
	for {
		kvs, err := pg.next(ctx, 0)
		if err != nil {
			return fmt.Errorf("purge versions of %s: %w", prefix, etcdErr(err))
		}
		if len(kvs) == 0 {
			return nil
		}
		for i := 0; i < len(kvs); i += purgeTxn {
			if err := s.purgeBatch(ctx, kvs[i:min(i+purgeTxn, len(kvs))]); err != nil {
				return fmt.Errorf("purge versions of %s: %w", prefix, err)
			}
		}
	}
}

// purgeBatch drops the versions kvs, as they are when it writes.
func (s *Store) purgeBatch(ctx context.Context, kvs []*mvccpb.KeyValue) error {
	first := true
	return retryWrite(ctx, func(ctx context.Context) error {
		if !first {
			// Changed meanwhile (expired, dropped, a count moved): the
			// versions as they are now.
			var gets []clientv3.Op
			for _, kv := range kvs {
				gets = append(gets, clientv3.OpGet(string(kv.Key)))
			}
			resp, err := s.kv.Txn(ctx).Then(gets...).Commit()
			if err != nil {
				return etcdErr(err)
			}
			var still []*mvccpb.KeyValue
			for _, r := range resp.Responses {
				still = append(still, r.GetResponseRange().Kvs...)
			}
			kvs = still
		}
		first = false
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		deltas := map[dfs.ContentHash]int64{}
		for _, kv := range kvs {
			path, id, ok := s.schema.VersionOf(string(kv.Key))
			if !ok {
				continue
			}
			rec := &api.FileRecord{}
			if proto.Unmarshal(kv.Value, rec) != nil {
				rec = undecodable(kv.Value) // its expiry key, if any, finds it gone
			}
			rec.VersionId = id
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
			ops = append(ops, s.dropVersionOps(path, rec)...)
			deltas[recordContent(rec)]--
		}
		if len(ops) == 0 {
			return nil
		}
		ccmps, cops, err := s.countDeltaOps(ctx, deltas, time.Now())
		if err != nil {
			return err
		}
		resp, err := s.kv.Txn(ctx).If(append(cmps, ccmps...)...).Then(append(ops, cops...)...).Commit()
		if err != nil {
			return etcdErr(err)
		}
		if !resp.Succeeded {
			return errChanged
		}
		return nil
	})
}
