package meta

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// GetJob returns the processing job of a content, or an error wrapping
// dfs.ErrNotFound when the content has none.
func (s *Store) GetJob(ctx context.Context, h dfs.ContentHash) (*api.JobRecord, error) {
	resp, err := s.read(ctx, s.schema.Job(h))
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", h.Short(), etcdErr(err))
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("job of %s: %w", h.Short(), dfs.ErrNotFound)
	}
	var rec api.JobRecord
	if err := proto.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return nil, fmt.Errorf("job of %s: decode: %w", h.Short(), err)
	}
	return &rec, nil
}

// Jobs returns the jobs in state (every state if empty), in content-hash
// order after startAfter (a hex content hash, or ""), at most limit of
// them (no limit if limit <= 0). It reads the jobs
// a page at a time, so memory follows what is returned, not what is stored.
func (s *Store) Jobs(ctx context.Context, state string, startAfter string, limit int) ([]*api.JobRecord, error) {
	const page = 1000
	var out []*api.JobRecord
	start, end := s.schema.JobsPrefix(), clientv3.GetPrefixRangeEnd(s.schema.JobsPrefix())
	if startAfter != "" {
		start = s.schema.JobsPrefix() + startAfter + "\x00"
	}
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(page)}
		if rev != 0 {
			// Every page from the same revision: one consistent listing.
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, start, opts...)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", etcdErr(err))
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			var rec api.JobRecord
			if err := proto.Unmarshal(kv.Value, &rec); err != nil {
				return nil, fmt.Errorf("job record %s: %w", kv.Key, err)
			}
			if state != "" && rec.State != state {
				continue
			}
			out = append(out, &rec)
			if limit > 0 && len(out) == limit {
				return out, nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
