package disk

import (
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/dfs-store/dfs"
)

// BenchmarkIndexMemory reports the heap the index takes per chunk, filled
// in random order as Puts fill it.
func BenchmarkIndexMemory(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := new(index)
		for i := range n {
			var seed [8]byte
			binary.LittleEndian.PutUint64(seed[:], uint64(i))
			x.add(dfs.Sum(seed[:]), 4096)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/chunk")
		runtime.KeepAlive(x)
	}
}

// The index keeps its entries sorted and its totals exact through adds and
// removes in any order.
func TestIndex(t *testing.T) {
	x := new(index)
	want := make(map[dfs.ChunkHash]int64)
	for i := range 5000 {
		var seed [8]byte
		binary.LittleEndian.PutUint64(seed[:], uint64(i%1700))
		h := dfs.Sum(seed[:])
		size := int64(i % 1700)
		if i%3 == 2 {
			_, had := want[h]
			if got := x.remove(h); got != had {
				t.Fatalf("remove %s = %v, want %v", h.Short(), got, had)
			}
			delete(want, h)
			continue
		}
		_, had := want[h]
		if got := x.add(h, size); got == had {
			t.Fatalf("add %s = %v, want %v", h.Short(), got, !had)
		}
		want[h] = size
	}
	var total int64
	for h, size := range want {
		total += size
		if got, ok := x.get(h); !ok || got.size != size {
			t.Errorf("get %s = %d, %v; want %d, true", h.Short(), got.size, ok, size)
		}
	}
	if c, b := x.usage(); c != int64(len(want)) || b != total {
		t.Errorf("usage = %d, %d; want %d, %d", c, b, len(want), total)
	}
	var prev []byte
	n := 0
	for i := range indexShards {
		for _, e := range x.snapshot(i, nil) {
			if shardOf(e.h) != i {
				t.Fatalf("chunk %s in shard %d, want %d", e.h.Short(), i, shardOf(e.h))
			}
			if prev != nil && string(prev) >= string(e.h[:]) {
				t.Fatalf("shard %d out of order at %s", i, e.h.Short())
			}
			prev = append(prev[:0], e.h[:]...)
			n++
		}
	}
	if n != len(want) {
		t.Errorf("snapshots hold %d entries, want %d", n, len(want))
	}
}
