package meta

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// Uploads in parts (S3 multipart).
//
// An upload has a head record at uploads/<path>\x00<id> (so the open
// uploads under a prefix list in path order, and a request that names the
// wrong path for an id finds nothing), and its parts at
// upload-parts/<id>/<number>. A part is committed exactly as a file is
// (Commit with Upload and Part): its record is a FileRecord that holds a
// reference to the part's content, which holds references to its chunks,
// so garbage collection keeps a part's chunks for as long as the upload
// lives, however long that is, and an upload costs the coordinators no
// memory. A part committed again replaces the earlier one, whose content
// loses the reference.
//
// Completing commits the path as a new content put together from the
// parts' chunk lists (see dfs.PartsHash) and marks the head completed, in
// one transaction; aborting marks it aborted. Either way the parts are
// then dropped (each record deleted and its content's count lowered, a
// batch at a time) and the head last. A head left completed or aborted by
// a coordinator that stopped halfway is finished by the next clean-up,
// which also aborts uploads older than their expiry: both read the heads
// alone, never the parts of live uploads nor anything stored.

// ErrNoUpload is a commit, completion or listing naming an upload that is
// not open (never made, completed, aborted or expired).
var ErrNoUpload = fmt.Errorf("%w: no such upload", dfs.ErrNotFound)

// MaxParts is the highest part number (S3's limit).
const MaxParts = 10000

// Upload names an upload: the path it will commit and its id.
type Upload struct {
	Path string
	ID   string
}

// UploadsPrefix holds the heads of uploads in parts.
func (s Schema) UploadsPrefix() string { return s.root + "uploads/" }

// Upload is the key of an upload's head.
func (s Schema) Upload(path, id string) string { return s.UploadsPrefix() + path + "\x00" + id }

// UploadPartsPrefix holds the parts of upload id.
func (s Schema) UploadPartsPrefix(id string) string { return s.AllUploadPartsPrefix() + id + "/" }

// AllUploadPartsPrefix holds the parts of every upload.
func (s Schema) AllUploadPartsPrefix() string { return s.root + "upload-parts/" }

// UploadPart is the key of part n of upload id.
func (s Schema) UploadPart(id string, n int) string {
	return fmt.Sprintf("%s%05d", s.UploadPartsPrefix(id), n)
}

// ValidUploadID reports whether id has the form NewUploadID gives.
func ValidUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// CreateUpload begins an upload at path for owner.
func (s *Store) CreateUpload(ctx context.Context, path, owner, contentType string, attrs map[string]string) (*api.UploadRecord, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	rec := &api.UploadRecord{
		Id:                hex.EncodeToString(b[:]),
		Path:              path,
		Owner:             owner,
		InitiatedUnixNano: time.Now().UnixNano(),
		ContentType:       contentType,
		Attrs:             attrs,
	}
	val, err := proto.Marshal(rec)
	if err != nil {
		return nil, err
	}
	key := s.schema.Upload(path, rec.Id)
	err = retryWrite(ctx, func(ctx context.Context) error {
		_, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return fmt.Errorf("create upload at %s: %w", path, etcdErr(err))
		}
		return nil
	})
	return rec, err
}

// KeepCompleted is how long the head of a completed upload is kept, so
// that a completion sent again gets the same answer.
const KeepCompleted = time.Hour

// GetUpload returns the head of an open upload, or an error wrapping
// ErrNoUpload.
func (s *Store) GetUpload(ctx context.Context, u Upload) (*api.UploadRecord, error) {
	rec, err := s.GetUploadAny(ctx, u)
	if err != nil {
		return nil, err
	}
	if rec.State != api.UploadRecord_OPEN {
		return nil, fmt.Errorf("upload %s of %s: %w", u.ID, u.Path, ErrNoUpload)
	}
	return rec, nil
}

// GetUploadAny returns the head of an upload, open, completed (and kept
// for KeepCompleted) or aborted, or an error wrapping ErrNoUpload.
func (s *Store) GetUploadAny(ctx context.Context, u Upload) (*api.UploadRecord, error) {
	if !ValidUploadID(u.ID) {
		return nil, fmt.Errorf("upload %q: %w", u.ID, ErrNoUpload)
	}
	resp, err := s.read(ctx, s.schema.Upload(u.Path, u.ID))
	if err != nil {
		return nil, fmt.Errorf("get upload %s: %w", u.ID, etcdErr(err))
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("upload %s of %s: %w", u.ID, u.Path, ErrNoUpload)
	}
	var rec api.UploadRecord
	if err := proto.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return nil, fmt.Errorf("upload %s: decode: %w", u.ID, err)
	}
	return &rec, nil
}

// PartInfo is a committed part of an upload.
type PartInfo struct {
	Number int
	File   dfs.FileInfo // its record: content, size, time and attributes
}

// errStop ends a scan early.
var errStop = errors.New("stop")

// UploadParts returns up to limit parts of upload id numbered above after,
// in order, and whether more follow.
func (s *Store) UploadParts(ctx context.Context, id string, after, limit int) ([]PartInfo, bool, error) {
	prefix := s.schema.UploadPartsPrefix(id)
	start := ""
	if after > 0 {
		start = s.schema.UploadPart(id, after)
	}
	var parts []PartInfo
	more := false
	err := ScanPrefix(ctx, s.kv, prefix, start, min(limit+1, 1000), func(kv *mvccpb.KeyValue) error {
		if len(parts) == limit {
			more = true
			return errStop
		}
		n, err := strconv.Atoi(strings.TrimPrefix(string(kv.Key), prefix))
		if err != nil {
			return fmt.Errorf("upload %s: part key %q: %w", id, kv.Key, err)
		}
		var rec api.FileRecord
		if err := proto.Unmarshal(kv.Value, &rec); err != nil {
			return fmt.Errorf("upload %s part %d: decode: %w", id, n, err)
		}
		f, err := FileFromRecord(&rec)
		if err != nil {
			return err
		}
		parts = append(parts, PartInfo{Number: n, File: f})
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, false, err
	}
	return parts, more, nil
}

// UploadPartsNumbered returns the parts of upload id with the given
// numbers, in the order given; a number with no part is an error wrapping
// dfs.ErrNotFound.
func (s *Store) UploadPartsNumbered(ctx context.Context, id string, numbers []int) ([]PartInfo, error) {
	out := make([]PartInfo, 0, len(numbers))
	for i := 0; i < len(numbers); i += txnOps {
		batch := numbers[i:min(i+txnOps, len(numbers))]
		ops := make([]clientv3.Op, len(batch))
		for j, n := range batch {
			ops[j] = clientv3.OpGet(s.schema.UploadPart(id, n))
		}
		resp, err := s.kv.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("read parts of upload %s: %w", id, etcdErr(err))
		}
		for j, r := range resp.Responses {
			kvs := r.GetResponseRange().Kvs
			if len(kvs) == 0 {
				return nil, fmt.Errorf("upload %s: part %d: %w", id, batch[j], dfs.ErrNotFound)
			}
			var rec api.FileRecord
			if err := proto.Unmarshal(kvs[0].Value, &rec); err != nil {
				return nil, fmt.Errorf("upload %s part %d: decode: %w", id, batch[j], err)
			}
			f, err := FileFromRecord(&rec)
			if err != nil {
				return nil, err
			}
			out = append(out, PartInfo{Number: batch[j], File: f})
		}
	}
	return out, nil
}

// UploadHead is an upload's head record as listed.
type UploadHead struct {
	Record *api.UploadRecord
	Key    string
}

// ListUploads returns up to limit open uploads under path prefix prefix,
// by path and then id, after (afterPath, afterID), and whether more follow.
// With afterPrefix, it resumes after every upload whose path begins with
// afterPath.
func (s *Store) ListUploads(ctx context.Context, prefix, afterPath, afterID string, afterPrefix bool, limit int) ([]*api.UploadRecord, bool, error) {
	start := ""
	switch {
	case afterPath == "":
	case afterPrefix:
		start = s.schema.UploadsPrefix() + afterPath + "\xff" // no path holds the byte 0xff
	case afterID == "":
		start = s.schema.UploadsPrefix() + afterPath + "\x00\xff" // every upload of afterPath
	default:
		start = s.schema.Upload(afterPath, afterID)
	}
	var out []*api.UploadRecord
	more := false
	err := s.scanUploads(ctx, prefix, start, func(rec *api.UploadRecord, _ *mvccpb.KeyValue) error {
		if rec.State != api.UploadRecord_OPEN {
			return nil
		}
		if len(out) == limit {
			more = true
			return errStop
		}
		out = append(out, rec)
		return nil
	})
	return out, more, err
}

// scanUploads calls fn for each head under path prefix prefix after the
// key start.
func (s *Store) scanUploads(ctx context.Context, prefix, start string, fn func(*api.UploadRecord, *mvccpb.KeyValue) error) error {
	err := ScanPrefix(ctx, s.kv, s.schema.UploadsPrefix()+prefix, start, 1000, func(kv *mvccpb.KeyValue) error {
		var rec api.UploadRecord
		if err := proto.Unmarshal(kv.Value, &rec); err != nil {
			return fmt.Errorf("upload head %q: decode: %w", kv.Key, err)
		}
		return fn(&rec, kv)
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// AbortUpload marks an open upload aborted: no part can be committed to
// it after, nor can it complete. The caller then drops it (DropUpload).
func (s *Store) AbortUpload(ctx context.Context, u Upload) error {
	return s.setUploadState(ctx, u, api.UploadRecord_OPEN, api.UploadRecord_ABORTED)
}

// setUploadState moves an upload's head from state from to state to.
func (s *Store) setUploadState(ctx context.Context, u Upload, from, to api.UploadRecord_State) error {
	key := s.schema.Upload(u.Path, u.ID)
	return retryWrite(ctx, func(ctx context.Context) error {
		resp, err := s.kv.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("upload %s: %w", u.ID, etcdErr(err))
		}
		var rec api.UploadRecord
		if len(resp.Kvs) == 0 || proto.Unmarshal(resp.Kvs[0].Value, &rec) != nil || rec.State != from {
			return fmt.Errorf("upload %s of %s: %w", u.ID, u.Path, ErrNoUpload)
		}
		rec.State = to
		val, err := proto.Marshal(&rec)
		if err != nil {
			return err
		}
		txn, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return fmt.Errorf("upload %s: %w", u.ID, etcdErr(err))
		}
		if !txn.Succeeded {
			return errChanged
		}
		return nil
	})
}

// dropBatch is how many parts one transaction of DropUpload deletes: two
// operations each at most (the record and its content's count, which
// also sets or clears a candidate key), within etcd's default limit.
const dropBatch = 40

// DropUpload deletes the parts of an upload that is no longer open, each
// lowering its content's count as a deleted path does, and then its head,
// unless it completed less than KeepCompleted ago. It is safe to run
// again, and by two coordinators at once.
func (s *Store) DropUpload(ctx context.Context, u Upload) error {
	prefix := s.schema.UploadPartsPrefix(u.ID)
	for {
		resp, err := s.kv.Get(ctx, prefix, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(dropBatch))
		if err != nil {
			return fmt.Errorf("drop upload %s: %w", u.ID, etcdErr(err))
		}
		if len(resp.Kvs) == 0 {
			break
		}
		if err := retryWrite(ctx, func(ctx context.Context) error { return s.dropParts(ctx, resp.Kvs) }); err != nil {
			if errors.Is(err, errChanged) {
				continue // read the batch again
			}
			return fmt.Errorf("drop upload %s: %w", u.ID, err)
		}
	}
	key := s.schema.Upload(u.Path, u.ID)
	return retryWrite(ctx, func(ctx context.Context) error {
		resp, err := s.kv.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("drop upload %s: %w", u.ID, etcdErr(err))
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		var rec api.UploadRecord
		if proto.Unmarshal(resp.Kvs[0].Value, &rec) == nil {
			if rec.State == api.UploadRecord_OPEN {
				return fmt.Errorf("drop upload %s: %w: it is open", u.ID, dfs.ErrConflict)
			}
			if rec.State == api.UploadRecord_COMPLETED && time.Since(time.Unix(0, rec.CompletedUnixNano)) < KeepCompleted {
				return nil // kept a while, for a completion sent again
			}
		}
		_, err = s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpDelete(key)).Commit()
		if err != nil {
			return fmt.Errorf("drop upload %s: %w", u.ID, etcdErr(err))
		}
		return nil
	})
}

// dropParts deletes the part records kvs in one transaction, lowering the
// count of each content they point at by the number of them that do.
func (s *Store) dropParts(ctx context.Context, kvs []*mvccpb.KeyValue) error {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	drop := map[dfs.ContentHash]int64{}
	var order []dfs.ContentHash
	for _, kv := range kvs {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
		ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		var rec api.FileRecord
		if proto.Unmarshal(kv.Value, &rec) != nil {
			continue
		}
		if h, err := dfs.HashFromBytes(rec.ContentHash); err == nil {
			if drop[h] == 0 {
				order = append(order, h)
			}
			drop[h]++
		}
	}
	if len(order) > 0 {
		refs := make([]clientv3.Op, len(order))
		for i, h := range order {
			refs[i] = clientv3.OpGet(s.schema.Ref(h))
		}
		resp, err := s.kv.Txn(ctx).Then(refs...).Commit()
		if err != nil {
			return etcdErr(err)
		}
		now := time.Now()
		for i, h := range order {
			c := countOf(resp.Responses[i].GetResponseRange().Kvs)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.schema.Ref(h)), "=", c.rev))
			ops = append(ops, s.countOps(h, c.n-drop[h], now)...)
		}
	}
	txn, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return etcdErr(err)
	}
	if !txn.Succeeded {
		return errChanged
	}
	return nil
}

// CleanUploads finishes what completions and aborts left (heads no longer
// open, whose parts a stopped coordinator did not drop), and aborts and
// drops open uploads begun before expire (none if expire is zero). It
// reads the heads only, a page at a time; it returns how many uploads it
// dropped.
func (s *Store) CleanUploads(ctx context.Context, expire time.Time) (int, error) {
	var done []Upload
	var abort []Upload
	err := s.scanUploads(ctx, "", "", func(rec *api.UploadRecord, _ *mvccpb.KeyValue) error {
		u := Upload{Path: rec.Path, ID: rec.Id}
		switch {
		case rec.State == api.UploadRecord_COMPLETED && time.Since(time.Unix(0, rec.CompletedUnixNano)) < KeepCompleted:
			// Its parts were dropped when it completed (or are dropped
			// when it is let go).
		case rec.State != api.UploadRecord_OPEN:
			done = append(done, u)
		case !expire.IsZero() && time.Unix(0, rec.InitiatedUnixNano).Before(expire):
			abort = append(abort, u)
		}
		if len(done)+len(abort) >= 10000 {
			return errStop // the rest next time
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, u := range abort {
		if err := s.AbortUpload(ctx, u); err != nil {
			if errors.Is(err, ErrNoUpload) {
				continue // completed or aborted meanwhile: dropped by its own caller
			}
			return n, err
		}
		done = append(done, u)
	}
	for _, u := range done {
		if err := s.DropUpload(ctx, u); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
