package meta

import (
	"context"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ReadCounter is a clientv3.KV that adds up what etcd read for it: Counted
// sums every range's Count (the keys etcd visited to answer it), Returned
// the keys it returned, Ranges the range requests.
type ReadCounter struct {
	clientv3.KV
	Counted, Returned, Ranges atomic.Int64
}

func (c *ReadCounter) add(r *clientv3.GetResponse) {
	c.Counted.Add(r.Count)
	c.Returned.Add(int64(len(r.Kvs)))
	c.Ranges.Add(1)
}

func (c *ReadCounter) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	resp, err := c.KV.Get(ctx, key, opts...)
	if err == nil {
		c.add(resp)
	}
	return resp, err
}

func (c *ReadCounter) Txn(ctx context.Context) clientv3.Txn {
	return &countingTxn{Txn: c.KV.Txn(ctx), c: c}
}

type countingTxn struct {
	clientv3.Txn
	c *ReadCounter
}

func (t *countingTxn) If(cs ...clientv3.Cmp) clientv3.Txn { t.Txn = t.Txn.If(cs...); return t }
func (t *countingTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Then(ops...)
	return t
}
func (t *countingTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Else(ops...)
	return t
}
func (t *countingTxn) Commit() (*clientv3.TxnResponse, error) {
	resp, err := t.Txn.Commit()
	if err == nil {
		for _, r := range resp.Responses {
			if rr := r.GetResponseRange(); rr != nil {
				t.c.add((*clientv3.GetResponse)(rr))
			}
		}
	}
	return resp, err
}

// Counting returns a copy of s whose reads go through c.
func (s *Store) Counting(c *ReadCounter) *Store {
	cp := &Store{cli: s.cli, kv: c, schema: s.schema}
	cp.defRetention.Store(s.defRetention.Load())
	c.KV = s.kv
	return cp
}

// KV returns what the store reads and writes through.
func (s *Store) KV() clientv3.KV { return s.kv }

// BeforeWrite is a clientv3.KV that calls Hook before it sends each
// transaction with conditions: a write that checks what it read, which a
// test can race by writing first.
type BeforeWrite struct {
	clientv3.KV
	Hook func()
}

func (b *BeforeWrite) Txn(ctx context.Context) clientv3.Txn {
	return &hookedTxn{Txn: b.KV.Txn(ctx), hook: b.Hook}
}

type hookedTxn struct {
	clientv3.Txn
	hook        func()
	conditional bool
}

func (t *hookedTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	t.Txn, t.conditional = t.Txn.If(cs...), len(cs) > 0
	return t
}
func (t *hookedTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(ops...); return t }
func (t *hookedTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(ops...); return t }
func (t *hookedTxn) Commit() (*clientv3.TxnResponse, error) {
	if t.conditional && t.hook != nil {
		t.hook()
	}
	return t.Txn.Commit()
}

// Through returns a copy of s that reads and writes through kv.
func (s *Store) Through(kv clientv3.KV) *Store {
	cp := &Store{cli: s.cli, kv: kv, schema: s.schema}
	cp.defRetention.Store(s.defRetention.Load())
	return cp
}
