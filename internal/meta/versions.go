package meta

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
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
// count. Work follows what expires, never what is stored.
//
// Version ids sort a path's versions newest first: 16 hex digits of
// MaxInt64 minus the commit's time in ns, then 4 random hex digits.

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
func (s *Store) policy(val []byte) (keep bool, d time.Duration) {
	var rec api.BucketRecord
	if val != nil {
		_ = proto.Unmarshal(val, &rec) // a record that does not decode: the default
	}
	switch rec.Versioning {
	case api.Versioning_VERSIONING_ENABLED:
		return true, time.Duration(rec.VersionRetentionSeconds) * time.Second
	case api.Versioning_VERSIONING_SUSPENDED:
		return false, 0
	}
	d = time.Duration(s.defRetention.Load())
	return d > 0, d
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

// markerOps writes a delete marker of path made at now.
func (s *Store) markerOps(path string, now time.Time, d time.Duration) ([]clientv3.Op, error) {
	return s.versionOps(path, &api.FileRecord{VersionId: VersionID(now), DeleteMarker: true,
		ModifiedUnixNano: now.UnixNano(), CreatedUnixNano: now.UnixNano()}, now, d)
}

func (s *Store) versionOps(path string, v *api.FileRecord, now time.Time, d time.Duration) ([]clientv3.Op, error) {
	v.ExpiresUnixNano = 0
	if d > 0 {
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
	return versionFromRecord(path, &rec)
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

// ListVersions returns up to limit versions of the paths under prefix (of
// path prefix alone if exact), by path and each path's newest first,
// after the version (keyMarker, versionMarker); an empty versionMarker
// starts after every version of keyMarker. Each page reads at most limit
// paths and limit versions, each in a range bounded by the page.
func (s *Store) ListVersions(ctx context.Context, prefix string, exact bool, keyMarker, versionMarker string, limit int) (VersionListing, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	fp, vp := s.schema.FilesPrefix(), s.schema.VersionsPrefix()
	var fStart, fEnd, vStart, vEnd string
	if exact {
		fStart, fEnd = fp+prefix, fp+prefix+"\x00"
		vStart, vEnd = s.schema.PathVersions(prefix), vp+prefix+"\x01"
	} else {
		fStart, fEnd = fp+prefix, clientv3.GetPrefixRangeEnd(fp+prefix)
		vStart, vEnd = vp+prefix, clientv3.GetPrefixRangeEnd(vp+prefix)
	}
	if keyMarker != "" {
		if k := fp + keyMarker + "\x00"; k > fStart {
			fStart = k
		}
		vs := vp + keyMarker + "\x01"
		if versionMarker != "" {
			vs = s.schema.Version(keyMarker, versionMarker) + "\x00"
		}
		if vs > vStart {
			vStart = vs
		}
	}
	var out VersionListing
	var entries []*versionEntry
	var fMore, vMore bool
	if fStart < fEnd {
		resp, err := s.read(ctx, fStart, clientv3.WithRange(fEnd), clientv3.WithLimit(int64(limit)))
		if err != nil {
			return out, fmt.Errorf("list versions of %s: %w", prefix, etcdErr(err))
		}
		fMore = resp.More
		for _, kv := range resp.Kvs {
			e := &versionEntry{path: s.schema.PathOf(string(kv.Key)), current: true}
			if err := proto.Unmarshal(kv.Value, &e.rec); err != nil {
				return out, fmt.Errorf("file %s: decode: %w", e.path, err)
			}
			e.id = versionIDOf(&e.rec)
			entries = append(entries, e)
		}
	}
	if vStart < vEnd {
		resp, err := s.read(ctx, vStart, clientv3.WithRange(vEnd), clientv3.WithLimit(int64(limit)))
		if err != nil {
			return out, fmt.Errorf("list versions of %s: %w", prefix, etcdErr(err))
		}
		vMore = resp.More
		for _, kv := range resp.Kvs {
			path, id, ok := s.schema.VersionOf(string(kv.Key))
			if !ok {
				continue
			}
			e := &versionEntry{path: path, id: id}
			if err := proto.Unmarshal(kv.Value, &e.rec); err != nil {
				return out, fmt.Errorf("version %s of %s: decode: %w", id, path, err)
			}
			entries = append(entries, e)
		}
	}
	// Of each range only what comes before its first unread key is
	// known: the page ends at the earlier of the two bounds.
	var fLast, vLast *versionEntry
	for _, e := range entries {
		if e.current {
			fLast = e
		} else {
			vLast = e
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].less(entries[j]) })
	prev := ""
	if versionMarker != "" {
		prev = keyMarker // the page goes on with a path begun on the last one
	}
	for _, e := range entries {
		if (fMore && fLast.less(e)) || (vMore && vLast.less(e)) || len(out.Versions) == limit {
			out.Truncated = true
			break
		}
		v, err := versionFromRecord(e.path, &e.rec)
		if err != nil {
			return out, err
		}
		v.Latest = e.path != prev
		prev = e.path
		out.Versions = append(out.Versions, v)
	}
	if !out.Truncated && (fMore || vMore) {
		out.Truncated = true
	}
	if out.Truncated && len(out.Versions) > 0 {
		last := out.Versions[len(out.Versions)-1]
		out.NextKey, out.NextVersion = last.Path, last.VersionID
	}
	return out, nil
}

// DeleteVersion removes version id of path for good and returns it. The
// current file's id deletes the file without keeping a version of it, and
// the newest earlier version, unless it is a delete marker, becomes the
// current file again (as S3 does). It fails with dfs.ErrNotFound if there
// is no such version.
func (s *Store) DeleteVersion(ctx context.Context, path, id string) (dfs.Version, error) {
	if !dfs.ValidVersionID(id) {
		return dfs.Version{}, fmt.Errorf("%w: version id %.40q: want 20 hex digits", dfs.ErrInvalid, id)
	}
	var out dfs.Version
	sent := false
	err := retryWrite(ctx, func(ctx context.Context) error {
		fkey, vkey := s.schema.File(path), s.schema.Version(path, id)
		read, err := s.kv.Txn(ctx).Then(clientv3.OpGet(fkey), clientv3.OpGet(vkey),
			clientv3.OpGet(s.schema.PathVersions(path), clientv3.WithPrefix(), clientv3.WithLimit(2))).Commit()
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
		if len(cur) == 1 && versionIDOf(&curRec) == id {
			// The current file: delete it, and make the newest earlier
			// version current if it is a file.
			out, err = versionFromRecord(path, &curRec)
			if err != nil {
				return err
			}
			out.Latest = true
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(fkey), "=", cur[0].ModRevision))
			deltas[recordContent(&curRec)]--
			promoted := false
			if older := read.Responses[2].GetResponseRange().Kvs; len(older) > 0 {
				var rec api.FileRecord
				if err := proto.Unmarshal(older[0].Value, &rec); err != nil {
					return fmt.Errorf("versions of %s: decode: %w", path, err)
				}
				_, oid, _ := s.schema.VersionOf(string(older[0].Key))
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(older[0].Key)), "=", older[0].ModRevision))
				if !rec.DeleteMarker {
					ops = append(ops, s.dropVersionOps(path, &rec)...)
					rec.ExpiresUnixNano, rec.VersionId = 0, oid
					val, err := proto.Marshal(&rec)
					if err != nil {
						return err
					}
					ops = append(ops, clientv3.OpPut(fkey, string(val)))
					promoted = true
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
			// The newest version of a path with no current file (a delete
			// marker, say): the one after it becomes current if it is a
			// file, as S3 does.
			newest := read.Responses[2].GetResponseRange().Kvs
			if len(cur) == 0 && len(newest) == 2 && string(newest[0].Key) == vkey {
				var next api.FileRecord
				if err := proto.Unmarshal(newest[1].Value, &next); err != nil {
					return fmt.Errorf("versions of %s: decode: %w", path, err)
				}
				if !next.DeleteMarker {
					_, nid, _ := s.schema.VersionOf(string(newest[1].Key))
					next.VersionId = nid
					ops = append(ops, s.dropVersionOps(path, &next)...)
					next.ExpiresUnixNano = 0
					val, err := proto.Marshal(&next)
					if err != nil {
						return err
					}
					ops = append(ops, clientv3.OpPut(fkey, string(val)))
					if Sampled(path) {
						ops = append(ops, clientv3.OpPut(s.schema.Skip(path), ""))
					}
					cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(fkey), "=", 0),
						clientv3.Compare(clientv3.ModRevision(string(newest[1].Key)), "=", newest[1].ModRevision))
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
		var rec api.FileRecord
		if len(resp.Kvs) == 0 || proto.Unmarshal(resp.Kvs[0].Value, &rec) != nil || rec.ExpiresUnixNano != at {
			// Purged, or kept again under another expiry: only the key goes.
			_, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(ekey.Key)), ">", 0)).
				Then(clientv3.OpDelete(string(ekey.Key))).Commit()
			return etcdErr(err)
		}
		rec.VersionId = id
		// Candidates are stamped with the real time: the grace period
		// runs from now, whatever time the caller expires for.
		cmps, cops, err := s.countDeltaOps(ctx, map[dfs.ContentHash]int64{recordContent(&rec): -1}, time.Now())
		if err != nil {
			return fmt.Errorf("expire version %s of %s: %w", id, path, err)
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(vkey), "=", resp.Kvs[0].ModRevision))
		txn, err := s.kv.Txn(ctx).If(cmps...).Then(append(s.dropVersionOps(path, &rec), cops...)...).Commit()
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
	vid := VersionID(time.Now())
	sent := false
	err := retryWrite(ctx, func(ctx context.Context) error {
		skey, dkey := s.schema.File(src), s.schema.File(dst)
		read, err := s.kv.Txn(ctx).Then(clientv3.OpGet(skey), clientv3.OpGet(dkey),
			clientv3.OpGet(s.bucketKey(src)), clientv3.OpGet(s.bucketKey(dst))).Commit()
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
			if sent && len(dk) == 1 && drec.VersionId == vid {
				f, err := FileFromRecord(&drec)
				f.Path, f.VersionID = dst, vid
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
		now := time.Now()
		bval := func(i int) []byte {
			if kvs := read.Responses[i].GetResponseRange().Kvs; len(kvs) == 1 {
				return kvs[0].Value
			}
			return nil
		}
		keepSrc, srcFor := s.policy(bval(2))
		keepDst, dstFor := s.policy(bval(3))

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
			m, err := s.markerOps(src, now, srcFor)
			if err != nil {
				return err
			}
			ops = append(append(ops, a...), m...)
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
		sent = true
		resp, err := s.kv.Txn(ctx).If(append(cmps, ccmps...)...).Then(append(ops, cops...)...).Commit()
		if err != nil {
			return fmt.Errorf("rename %s to %s: %w", src, dst, etcdErr(err))
		}
		if !resp.Succeeded {
			sent = false
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
		v = Versioning{Mode: rec.Versioning, Retention: time.Duration(rec.VersionRetentionSeconds) * time.Second}
	}
	keep, d = s.policy(val)
	return v, keep, d, nil
}

// SetVersioning sets bucket's versioning. A bucket without a record (one
// made by writing into it) gets one, owned by no key. The new setting
// applies to versions made from then on; versions kept already keep their
// expiry.
func (s *Store) SetVersioning(ctx context.Context, bucket string, v Versioning) error {
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
// version or a delete marker.
func (s *Store) HasVersions(ctx context.Context, prefix string) (bool, error) {
	resp, err := s.read(ctx, s.schema.VersionsPrefix()+prefix, clientv3.WithPrefix(), clientv3.WithLimit(1), clientv3.WithKeysOnly())
	if err != nil {
		return false, fmt.Errorf("versions of %s: %w", prefix, etcdErr(err))
	}
	return len(resp.Kvs) > 0, nil
}

// dropVersions removes every earlier version and delete marker under
// prefix for good, a page at a time, and returns how many.
func (s *Store) dropVersions(ctx context.Context, prefix string) (int, error) {
	n := 0
	start, end := s.schema.VersionsPrefix()+prefix, clientv3.GetPrefixRangeEnd(s.schema.VersionsPrefix()+prefix)
	for {
		resp, err := s.kv.Get(ctx, start, clientv3.WithRange(end), clientv3.WithLimit(expiryBatch), clientv3.WithKeysOnly())
		if err != nil {
			return n, fmt.Errorf("drop versions of %s: %w", prefix, etcdErr(err))
		}
		for _, kv := range resp.Kvs {
			path, id, ok := s.schema.VersionOf(string(kv.Key))
			if !ok {
				continue
			}
			if _, err := s.DeleteVersion(ctx, path, id); err != nil && !errors.Is(err, dfs.ErrNotFound) {
				return n, err
			}
			n++
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return n, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
