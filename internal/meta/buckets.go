package meta

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// MaxBuckets bounds the bucket records a cluster holds (S3 allows 10,000
// buckets per account), so that listing them is one bounded read.
const MaxBuckets = 100000

// Bucket is a bucket record with its name.
type Bucket struct {
	Name    string
	Owner   string // an access key id, or "" for a cluster certificate
	Created time.Time
}

// CreateBucket records bucket name for owner (an access key id, or ""),
// and gives the owner key every right on it, in one transaction. It fails
// with dfs.ErrConflict if the bucket exists: a record of it, or a file in
// it (a bucket made by writing into it belongs to whoever was granted it).
func (s *Store) CreateBucket(ctx context.Context, name, owner string) (Bucket, error) {
	bkey := s.schema.Bucket(name)
	files, err := s.List(ctx, name+"/", "", "", 1)
	if err != nil {
		return Bucket{}, err
	}
	if len(files.Files) > 0 {
		return Bucket{}, fmt.Errorf("%w: bucket %s holds files already", dfs.ErrConflict, name)
	}
	if _, err := s.GetFile(ctx, name); err == nil {
		return Bucket{}, fmt.Errorf("%w: %s is a file", dfs.ErrConflict, name)
	}
	n, err := s.kv.Get(ctx, s.schema.BucketsPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return Bucket{}, fmt.Errorf("create bucket %s: %w", name, etcdErr(err))
	}
	if n.Count >= MaxBuckets {
		return Bucket{}, fmt.Errorf("%w: the cluster holds %d buckets, the most it takes", dfs.ErrConflict, n.Count)
	}
	now := time.Now()
	val, err := proto.Marshal(&api.BucketRecord{Owner: owner, CreatedUnixNano: now.UnixNano()})
	if err != nil {
		return Bucket{}, err
	}
	for {
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(bkey), "=", 0)}
		ops := []clientv3.Op{clientv3.OpPut(bkey, string(val))}
		if owner != "" {
			rec, rev, err := s.accessKey(ctx, owner)
			if err != nil {
				return Bucket{}, err
			}
			if rec.Grants == nil {
				rec.Grants = map[string]uint32{}
			}
			rec.Grants[name] = 7 // read, write, owner
			kv, err := proto.Marshal(rec)
			if err != nil {
				return Bucket{}, err
			}
			k := s.schema.AccessKey(owner)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
			ops = append(ops, clientv3.OpPut(k, string(kv)))
		}
		resp, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(bkey, clientv3.WithCountOnly())).Commit()
		if err != nil {
			return Bucket{}, fmt.Errorf("create bucket %s: %w", name, etcdErr(err))
		}
		if resp.Succeeded {
			// Rights left on the name by an earlier bucket of it are not
			// the new owner's to share.
			if err := s.revokeAll(ctx, name, owner); err != nil {
				return Bucket{}, err
			}
			return Bucket{Name: name, Owner: owner, Created: now}, nil
		}
		if resp.Responses[0].GetResponseRange().Count > 0 {
			return Bucket{}, fmt.Errorf("%w: bucket %s exists", dfs.ErrConflict, name)
		}
		// The owner's key changed meanwhile: read it again.
	}
}

// GetBucket returns bucket name's record, or dfs.ErrNotFound.
func (s *Store) GetBucket(ctx context.Context, name string) (Bucket, error) {
	resp, err := s.read(ctx, s.schema.Bucket(name))
	if err != nil {
		return Bucket{}, fmt.Errorf("bucket %s: %w", name, etcdErr(err))
	}
	if len(resp.Kvs) == 0 {
		return Bucket{}, fmt.Errorf("bucket %s: %w", name, dfs.ErrNotFound)
	}
	return bucketOf(name, resp.Kvs[0].Value)
}

func bucketOf(name string, val []byte) (Bucket, error) {
	var rec api.BucketRecord
	if err := proto.Unmarshal(val, &rec); err != nil {
		return Bucket{}, fmt.Errorf("bucket record %s: %w", name, err)
	}
	return Bucket{Name: name, Owner: rec.Owner, Created: time.Unix(0, rec.CreatedUnixNano)}, nil
}

// Buckets returns every bucket record, by name.
func (s *Store) Buckets(ctx context.Context) ([]Bucket, error) {
	resp, err := s.read(ctx, s.schema.BucketsPrefix(), clientv3.WithPrefix(), clientv3.WithLimit(MaxBuckets))
	if err != nil {
		return nil, fmt.Errorf("list buckets: %w", etcdErr(err))
	}
	out := make([]Bucket, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		b, err := bucketOf(strings.TrimPrefix(string(kv.Key), s.schema.BucketsPrefix()), kv.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// DeleteBucket deletes bucket name's record if the bucket holds no file
// (nor, when its versioning is enabled, any earlier version; otherwise the
// earlier versions go with it, and none of them becomes a file again),
// then every key's rights on it (a bucket made again by someone else
// starts with no one else's rights). It fails with dfs.ErrNotFound if
// there is no record, before anything is dropped, and dfs.ErrConflict if
// files remain.
func (s *Store) DeleteBucket(ctx context.Context, name string) error {
	files, err := s.List(ctx, name+"/", "", "", 1)
	if err != nil {
		return err
	}
	if len(files.Files) > 0 {
		return fmt.Errorf("%w: BucketNotEmpty: bucket %s holds files", dfs.ErrConflict, name)
	}
	bkey := s.schema.Bucket(name)
	for {
		resp, err := s.read(ctx, bkey)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", name, etcdErr(err))
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("bucket %s: %w", name, dfs.ErrNotFound)
		}
		var rec api.BucketRecord
		if err := proto.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
			return fmt.Errorf("bucket record %s: %w", name, err)
		}
		// Earlier versions kept because a bucket asked for them (S3's
		// versioning) keep it from going until purged, as in S3; those
		// kept by the default retention go with it.
		if rec.Versioning == api.Versioning_VERSIONING_ENABLED {
			has, err := s.HasVersions(ctx, name+"/")
			if err != nil {
				return err
			}
			if has {
				return fmt.Errorf("%w: BucketNotEmpty: bucket %s holds earlier versions of files (dfs versions purge)", dfs.ErrConflict, name)
			}
		} else if err := s.purgeVersions(ctx, name+"/"); err != nil {
			return fmt.Errorf("delete bucket %s: %w", name, err)
		}
		// The record goes as it was read: if its versioning changed
		// meanwhile, look again.
		txn, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(bkey), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpDelete(bkey)).Commit()
		if err != nil {
			return fmt.Errorf("delete bucket %s: %w", name, etcdErr(err))
		}
		if txn.Succeeded {
			return s.revokeAll(ctx, name, "")
		}
	}
}

// revokeAll removes every key's rights on bucket name but keep's.
func (s *Store) revokeAll(ctx context.Context, name, keep string) error {
	keys, err := s.AccessKeys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if _, ok := k.Grants[name]; ok && k.Id != keep {
			if _, err := s.SetGrant(ctx, k.Id, name, func(uint32) uint32 { return 0 }); err != nil {
				return fmt.Errorf("revoke the rights of %s on bucket %s: %w", k.Id, name, err)
			}
		}
	}
	return nil
}
