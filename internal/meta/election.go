package meta

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Leader terms as people read them. A leader's fence is the create revision
// of its election key (Fence): strictly increasing, so right for fencing,
// but it grows with every etcd write and jumps from 3 to 1568 between two
// leaders. Each new leader also takes the next number of a counter kept in
// etcd, in a transaction that holds only while its election key does, and
// writes it beside its address in the election key's value, so every
// coordinator watching the election reads both: 1 for the first leader a
// cluster had, 2 for the next, and so on.

// TakeTerm counts a new leader term for the leader of fence f: it
// increments the term counter and labels the election key with addr and
// the new number, in one transaction that holds only while f does. lease
// is the lease of the leader's election session, which the key keeps. It
// returns the number, or an error wrapping dfs.ErrFenced if f no longer
// holds.
func (s *Store) TakeTerm(ctx context.Context, f Fence, lease clientv3.LeaseID, addr string) (int64, error) {
	key := s.schema.LeaderTerm()
	for {
		resp, err := s.kv.Get(ctx, key)
		if err != nil {
			return 0, fmt.Errorf("read leader term: %w", etcdErr(err))
		}
		var last, rev int64
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			if last, err = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64); err != nil {
				return 0, fmt.Errorf("leader term %q: %w", resp.Kvs[0].Value, err)
			}
		}
		next := last + 1
		tr, err := s.kv.Txn(ctx).
			If(append(f.cmps(), clientv3.Compare(clientv3.ModRevision(key), "=", rev))...).
			Then(clientv3.OpPut(key, strconv.FormatInt(next, 10)),
				clientv3.OpPut(f.Key, ElectionValue(addr, next), clientv3.WithLease(lease))).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("take leader term: %w", etcdErr(err))
		}
		if tr.Succeeded {
			return next, nil
		}
		if err := s.fenced(ctx, f, "take leader term"); err != nil {
			return 0, err
		}
		// The counter moved under us, which leaders taking turns do not
		// do: read it again rather than count on that.
	}
}

// ElectionValue is what a leader's election key holds: its address, and
// its term number once counted.
func ElectionValue(addr string, term int64) string {
	return addr + " " + strconv.FormatInt(term, 10)
}

// ParseElectionValue reads an election key's value: the leader's address,
// and its term number (0 while not counted yet).
func ParseElectionValue(v string) (addr string, term int64) {
	addr, n, ok := strings.Cut(v, " ")
	if ok {
		term, _ = strconv.ParseInt(n, 10, 64)
	}
	return addr, term
}
