package meta

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dfs-store/dfs"
)

// DeleteNode removes a datanode's registry record, if f holds. Deleting a
// record that is not there succeeds: a retried removal is not an error.
func (s *Store) DeleteNode(ctx context.Context, f Fence, id dfs.NodeID) error {
	resp, err := s.kv.Txn(ctx).If(f.cmps()...).
		Then(clientv3.OpDelete(s.schema.Node(id))).Commit()
	if err != nil {
		return fmt.Errorf("delete node %s: %w", id, etcdErr(err))
	}
	if !resp.Succeeded {
		return s.fenced(ctx, f, "delete node "+string(id))
	}
	return nil
}
