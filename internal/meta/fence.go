package meta

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dfs-store/dfs"
)

// Fence makes a leader-only write conditional on the writer still leading.
// Key is the leader coordinator's election key and Rev its create revision
// (the leader's term): while the leader's etcd session lives, the key exists
// with that revision; once the session has expired — the leader paused,
// crashed or was cut off, and another may have been elected — no
// transaction carrying its fence can succeed, whatever the deposed leader
// still believes.
//
// The zero Fence fences nothing (tests, and writes any coordinator may do).
type Fence struct {
	Key string
	Rev int64
}

// IsZero reports whether f fences nothing.
func (f Fence) IsZero() bool { return f.Key == "" }

// cmps returns the compares that guard a write with f.
func (f Fence) cmps() []clientv3.Cmp {
	if f.IsZero() {
		return nil
	}
	return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(f.Key), "=", f.Rev)}
}

// Holds reports whether the fence's key still exists at its revision,
// reading linearizably.
func (s *Store) Holds(ctx context.Context, f Fence) (bool, error) {
	if f.IsZero() {
		return true, nil
	}
	resp, err := s.kv.Get(ctx, f.Key)
	if err != nil {
		return false, etcdErr(err)
	}
	return len(resp.Kvs) == 1 && resp.Kvs[0].CreateRevision == f.Rev, nil
}

// fenced explains a failed transaction: dfs.ErrFenced if the fence no
// longer holds, nil if something else made it fail.
func (s *Store) fenced(ctx context.Context, f Fence, what string) error {
	if f.IsZero() {
		return nil
	}
	ok, err := s.Holds(ctx, f)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !ok {
		return fmt.Errorf("%s: %w: leader term %d has ended", what, dfs.ErrFenced, f.Rev)
	}
	return nil
}
