package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
)

// countingKV counts the reads of each key.
type countingKV struct {
	clientv3.KV
	mu    sync.Mutex
	reads map[string]int
}

func (c *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.mu.Lock()
	c.reads[key]++
	c.mu.Unlock()
	return c.KV.Get(ctx, key, opts...)
}

func (c *countingKV) readsOf(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.reads[key]
	c.reads = map[string]int{}
	return n
}

// A lookup of a file of one chunk named by its content's hash (every small
// file) reads no content record once the coordinator knows the content: the
// chunk list follows from the file record. Other contents are read each
// time, as their chunk lists may be replaced.
func TestLookupOfOneChunkFileReadsNoContentRecord(t *testing.T) {
	kv := &countingKV{KV: etcd, reads: map[string]int{}}
	m := meta.New(etcd, meta.NewSchema(fmt.Sprintf("/test/%d/%s", roots.Add(1), t.Name()))).WithKV(kv)
	h := startOn(t, m, Config{})
	for i := range 3 {
		h.register(dfs.NodeID(fmt.Sprint("dn", i)), "", 100*gib)
	}
	small := newChunks(1, 1000)
	big := newChunks(2, 1<<20)
	for i := range 3 {
		h.added(dfs.NodeID(fmt.Sprint("dn", i)), hashOf(small[0]), hashOf(big[0]), hashOf(big[1]))
	}
	one := &api.CommitRequest{Path: "b/small", ContentHash: small[0].Hash, Size: small[0].Size, Chunks: small}
	if _, err := h.coord.Commit(h.ctx, one); err != nil {
		t.Fatal(err)
	}
	if _, err := h.coord.Commit(h.ctx, commitReq("b/big", big)); err != nil {
		t.Fatal(err)
	}
	smallKey := m.Schema().Content(dfs.Hash(small[0].Hash))
	bigKey := m.Schema().Content(dfs.Hash(sha256.Sum256(append(append([]byte(nil), big[0].Hash...), big[1].Hash...))))
	kv.readsOf("")

	lookup := func(h *harness, path string, want []*api.ChunkSpec) {
		t.Helper()
		resp, err := h.coord.Lookup(h.ctx, &api.LookupRequest{Path: path})
		if err != nil {
			t.Fatalf("lookup %s: %v", path, err)
		}
		if len(resp.Chunks) != len(want) {
			t.Fatalf("lookup %s: %d chunks, want %d", path, len(resp.Chunks), len(want))
		}
		var off int64
		for i, c := range resp.Chunks {
			if !bytes.Equal(c.Hash, want[i].Hash) || c.Size != want[i].Size || c.Offset != off || len(c.Nodes) != 3 {
				t.Fatalf("lookup %s: chunk %d is %x, %d bytes at %d on %v; want %x, %d bytes at %d on 3 nodes",
					path, i, c.Hash[:4], c.Size, c.Offset, c.Nodes, want[i].Hash[:4], want[i].Size, off)
			}
			off += c.Size
		}
		if resp.Size != off || resp.File.Size != off {
			t.Fatalf("lookup %s: size %d (file %d), want %d", path, resp.Size, resp.File.Size, off)
		}
	}
	for range 2 {
		lookup(h, "b/small", small)
		if n := kv.readsOf(smallKey); n != 0 {
			t.Errorf("lookup of a one-chunk file this coordinator committed: %d reads of its content record, want 0", n)
		}
		lookup(h, "b/big", big)
		if n := kv.readsOf(bigKey); n == 0 {
			t.Errorf("lookup of a two-chunk file: no read of its content record")
		}
	}

	// Another coordinator learns the content on its first lookup.
	h2 := startOn(t, m, Config{})
	for i := range 3 {
		h2.register(dfs.NodeID(fmt.Sprint("dn", i)), "", 100*gib)
		h2.added(dfs.NodeID(fmt.Sprint("dn", i)), hashOf(small[0]))
	}
	kv.readsOf("")
	lookup(h2, "b/small", small)
	if n := kv.readsOf(smallKey); n != 1 {
		t.Errorf("first lookup on a coordinator that did not commit it: %d reads of the content record, want 1", n)
	}
	lookup(h2, "b/small", small)
	if n := kv.readsOf(smallKey); n != 0 {
		t.Errorf("second lookup on that coordinator: %d reads of the content record, want 0", n)
	}
}

// The cache keeps what is looked up and drops what is not, within its
// bound.
func TestSelfCacheGenerations(t *testing.T) {
	var c selfCache
	hash := func(i int) dfs.ContentHash { return dfs.ContentHash(sha256.Sum256([]byte(fmt.Sprint(i)))) }
	c.add(hash(-1), 7)
	for i := range 3 * selfCacheMax {
		c.add(hash(i), int64(i))
		if i%1000 == 0 {
			if size, ok := c.get(hash(-1)); !ok || size != 7 {
				t.Fatalf("after %d adds, a hash looked up all along is gone (%d, %v)", i, size, ok)
			}
		}
	}
	if _, ok := c.get(hash(0)); ok {
		t.Error("a hash never looked up survived three generations")
	}
	if size, ok := c.get(hash(3*selfCacheMax - 1)); !ok || size != 3*selfCacheMax-1 {
		t.Errorf("the last hash added: %d, %v", size, ok)
	}
	if n := len(c.cur) + len(c.old); n > 2*selfCacheMax {
		t.Errorf("%d hashes held, bound %d", n, 2*selfCacheMax)
	}
}
