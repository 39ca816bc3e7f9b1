package meta

import (
	"context"
	"crypto/rand"
	"fmt"
	"sort"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// MaxAccessKeys bounds how many access keys a cluster holds, so that
// listing them is one bounded read.
const MaxAccessKeys = 10000

// CreateAccessKey stores a new access key; it fails with dfs.ErrConflict if
// the id exists or the cluster holds MaxAccessKeys already.
func (s *Store) CreateAccessKey(ctx context.Context, rec *api.AccessKeyRecord) error {
	n, err := s.kv.Get(ctx, s.schema.AccessKeysPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("create access key: %w", etcdErr(err))
	}
	if n.Count >= MaxAccessKeys {
		return fmt.Errorf("%w: the cluster holds %d access keys, the most it takes", dfs.ErrConflict, n.Count)
	}
	val, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	key := s.schema.AccessKey(rec.Id)
	resp, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("create access key: %w", etcdErr(err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: access key %s exists", dfs.ErrConflict, rec.Id)
	}
	return nil
}

// AccessKey returns the access key id, or dfs.ErrNotFound.
func (s *Store) AccessKey(ctx context.Context, id string) (*api.AccessKeyRecord, error) {
	rec, _, err := s.accessKey(ctx, id)
	return rec, err
}

func (s *Store) accessKey(ctx context.Context, id string) (*api.AccessKeyRecord, int64, error) {
	resp, err := s.read(ctx, s.schema.AccessKey(id))
	if err != nil {
		return nil, 0, fmt.Errorf("access key %s: %w", id, etcdErr(err))
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("access key %s: %w", id, dfs.ErrNotFound)
	}
	var rec api.AccessKeyRecord
	if err := proto.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return nil, 0, fmt.Errorf("access key record %s: %w", id, err)
	}
	return &rec, resp.Kvs[0].ModRevision, nil
}

// AccessKeys returns every access key, by id (at most MaxAccessKeys).
func (s *Store) AccessKeys(ctx context.Context) ([]*api.AccessKeyRecord, error) {
	resp, err := s.read(ctx, s.schema.AccessKeysPrefix(), clientv3.WithPrefix(), clientv3.WithLimit(MaxAccessKeys))
	if err != nil {
		return nil, fmt.Errorf("list access keys: %w", etcdErr(err))
	}
	out := make([]*api.AccessKeyRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec api.AccessKeyRecord
		if err := proto.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("access key record %s: %w", kv.Key, err)
		}
		out = append(out, &rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out, nil
}

// DeleteAccessKey deletes access key id, or returns dfs.ErrNotFound.
func (s *Store) DeleteAccessKey(ctx context.Context, id string) error {
	resp, err := s.kv.Delete(ctx, s.schema.AccessKey(id))
	if err != nil {
		return fmt.Errorf("delete access key %s: %w", id, etcdErr(err))
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("access key %s: %w", id, dfs.ErrNotFound)
	}
	return nil
}

// SetGrant changes the rights key id holds on bucket with change (whose
// answer 0 removes the grant) and returns the updated record. It reads and
// writes the record in one compare-and-swap, so concurrent grants never
// undo each other.
func (s *Store) SetGrant(ctx context.Context, id, bucket string, change func(old uint32) uint32) (*api.AccessKeyRecord, error) {
	for {
		rec, rev, err := s.accessKey(ctx, id)
		if err != nil {
			return nil, err
		}
		if rights := change(rec.Grants[bucket]); rights == 0 {
			delete(rec.Grants, bucket)
		} else {
			if rec.Grants == nil {
				rec.Grants = map[string]uint32{}
			}
			rec.Grants[bucket] = rights
		}
		val, err := proto.Marshal(rec)
		if err != nil {
			return nil, err
		}
		key := s.schema.AccessKey(id)
		resp, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return nil, fmt.Errorf("grant on %s to %s: %w", bucket, id, etcdErr(err))
		}
		if resp.Succeeded {
			return rec, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// TokenKey returns the cluster's capability token key: its id and its
// secret, made (id 1, 32 bytes from crypto/rand) by the first caller.
func (s *Store) TokenKey(ctx context.Context) (id byte, secret []byte, err error) {
	key := s.schema.TokenKey()
	fresh := make([]byte, 33)
	fresh[0] = 1
	if _, err := rand.Read(fresh[1:]); err != nil {
		return 0, nil, err
	}
	resp, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(fresh))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, nil, fmt.Errorf("token key: %w", etcdErr(err))
	}
	v := fresh
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) != 1 || len(kvs[0].Value) < 17 {
			return 0, nil, fmt.Errorf("token key: the value in etcd is malformed")
		}
		v = kvs[0].Value
	}
	return v[0], v[1:], nil
}
