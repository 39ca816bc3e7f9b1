package coordinator

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/dfs-store/dfs"
)

func testHash(i int) dfs.Hash {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

func sortedIDs(ids []dfs.NodeID) []dfs.NodeID {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func TestLocMapAddRemoveHolders(t *testing.T) {
	m := newLocMap()
	a, _ := m.nodeIndex("a")
	b, _ := m.nodeIndex("b")
	if again, _ := m.nodeIndex("a"); again != a {
		t.Fatalf("index of a: %d then %d, want the same", a, again)
	}
	h := testHash(1)
	if added, isNew := m.add(h, a); !added || !isNew {
		t.Fatalf("first add: added %v new %v, want true true", added, isNew)
	}
	if added, isNew := m.add(h, a); added || isNew {
		t.Fatalf("add again: added %v new %v, want false false", added, isNew)
	}
	if added, isNew := m.add(h, b); !added || isNew {
		t.Fatalf("second holder: added %v new %v, want true false", added, isNew)
	}
	if got := sortedIDs(m.holders(h)); !slices.Equal(got, []dfs.NodeID{"a", "b"}) {
		t.Fatalf("holders %v, want [a b]", got)
	}
	if removed, gone := m.remove(h, a); !removed || gone {
		t.Fatalf("remove a: removed %v gone %v, want true false", removed, gone)
	}
	if removed, _ := m.remove(h, a); removed {
		t.Fatal("removing a holder twice reports a removal")
	}
	if removed, gone := m.remove(h, b); !removed || !gone {
		t.Fatalf("remove last holder: removed %v gone %v, want true true", removed, gone)
	}
	if m.has(h) || m.len() != 0 || m.holders(h) != nil {
		t.Fatalf("after removing every holder: has %v len %d holders %v", m.has(h), m.len(), m.holders(h))
	}
	if removed, gone := m.remove(testHash(2), a); removed || gone {
		t.Fatal("removing from an unknown chunk reports a removal")
	}
}

func TestLocMapOverflow(t *testing.T) {
	m := newLocMap()
	h := testHash(7)
	var want []dfs.NodeID
	for i := range 6 {
		id := dfs.NodeID(rune('a' + i))
		x, _ := m.nodeIndex(id)
		m.add(h, x)
		want = append(want, id)
	}
	if got := sortedIDs(m.holders(h)); !slices.Equal(got, want) {
		t.Fatalf("six holders: %v, want %v", got, want)
	}
	// Removing inline holders pulls overflow ones in.
	for _, id := range []dfs.NodeID{"a", "b", "c", "d", "e"} {
		x, _ := m.lookupIndex(id)
		if removed, gone := m.remove(h, x); !removed || gone {
			t.Fatalf("remove %s: removed %v gone %v", id, removed, gone)
		}
	}
	if got := m.holders(h); !slices.Equal(got, []dfs.NodeID{"f"}) {
		t.Fatalf("after removing five: %v, want [f]", got)
	}
	if len(m.over) != 0 {
		t.Fatalf("overflow left over: %v", m.over)
	}
}

func TestLocMapNodeIndexLimit(t *testing.T) {
	m := newLocMap()
	for i := range maxNodes {
		if _, ok := m.nodeIndex(dfs.NodeID(rune(i + 1))); !ok {
			t.Fatalf("node %d refused an index below the limit", i)
		}
	}
	if _, ok := m.nodeIndex("one-too-many"); ok {
		t.Fatal("an index was given beyond the limit")
	}
}

// TestLocMapRandomAgainstReference runs random operations on the map and on
// a plain Go map and compares them after each step.
func TestLocMapRandomAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := newLocMap()
	ref := map[dfs.Hash]map[uint16]bool{}
	nodes := 6
	for i := range nodes {
		m.nodeIndex(dfs.NodeID(rune('a' + i)))
	}
	steps := 200000
	if testing.Short() {
		steps = 20000
	}
	keys := 3000
	for step := range steps {
		h := testHash(rng.IntN(keys))
		x := uint16(rng.IntN(nodes))
		if rng.IntN(2) == 0 {
			added, isNew := m.add(h, x)
			wantNew := len(ref[h]) == 0
			wantAdded := !ref[h][x]
			if ref[h] == nil {
				ref[h] = map[uint16]bool{}
			}
			ref[h][x] = true
			if added != wantAdded || isNew != wantNew {
				t.Fatalf("step %d add: got %v %v, want %v %v", step, added, isNew, wantAdded, wantNew)
			}
		} else {
			removed, gone := m.remove(h, x)
			wantRemoved := ref[h][x]
			delete(ref[h], x)
			wantGone := wantRemoved && len(ref[h]) == 0
			if wantGone {
				delete(ref, h)
			}
			if removed != wantRemoved || gone != wantGone {
				t.Fatalf("step %d remove: got %v %v, want %v %v", step, removed, gone, wantRemoved, wantGone)
			}
		}
		if step%1000 == 0 || step == steps-1 {
			checkLocMap(t, m, ref)
		}
	}
}

func checkLocMap(t *testing.T, m *locMap, ref map[dfs.Hash]map[uint16]bool) {
	t.Helper()
	if m.len() != len(ref) {
		t.Fatalf("len %d, want %d", m.len(), len(ref))
	}
	seen := 0
	for k := range locShards {
		m.eachInShard(k, func(h dfs.Hash) {
			seen++
			if shardOf(h) != k {
				t.Fatalf("chunk %s walked in shard %d", h.Short(), k)
			}
			if len(ref[h]) == 0 {
				t.Fatalf("chunk %s in the map, not in the reference", h.Short())
			}
		})
	}
	if seen != len(ref) {
		t.Fatalf("walk saw %d chunks, want %d", seen, len(ref))
	}
	for h, want := range ref {
		var got []uint16
		m.eachHolder(h, func(i uint16) { got = append(got, i) })
		slices.Sort(got)
		var w []uint16
		for x := range want {
			w = append(w, x)
		}
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Fatalf("holders of %s: %v, want %v", h.Short(), got, w)
		}
	}
}

func TestLocMapMarkAndSweep(t *testing.T) {
	m := newLocMap()
	a, _ := m.nodeIndex("a")
	b, _ := m.nodeIndex("b")
	var held []dfs.Hash
	for i := range 1000 {
		h := testHash(i)
		m.add(h, a)
		m.add(h, b)
		held = append(held, h)
	}
	// A new report from a names every other chunk, and one new one.
	for i := 0; i < 1000; i += 2 {
		m.mark(held[i], a)
	}
	fresh := testHash(5000)
	m.mark(fresh, a)
	var stale []dfs.Hash
	for k := range locShards {
		stale = m.sweepShard(k, a, stale)
	}
	if len(stale) != 500 {
		t.Fatalf("sweep found %d chunks a no longer reports, want 500", len(stale))
	}
	for _, h := range stale {
		if i := slices.Index(held, h); i%2 == 0 {
			t.Fatalf("sweep returned chunk %d, which the report named", i)
		}
	}
	// Marks are gone: a second sweep finds everything unmarked.
	var again []dfs.Hash
	for k := range locShards {
		again = m.sweepShard(k, a, again)
	}
	if len(again) != 1001 {
		t.Fatalf("second sweep found %d, want every holding of a (1001)", len(again))
	}
	var hb []dfs.Hash
	for k := range locShards {
		hb = m.heldInShard(k, b, hb)
	}
	if len(hb) != 1000 {
		t.Fatalf("b holds %d chunks, want 1000", len(hb))
	}
}

// TestLocMapBytesPerChunk measures the heap the map takes per chunk with
// three holders each. The target is at most 64 bytes at a million chunks
// and more.
func TestLocMapBytesPerChunk(t *testing.T) {
	n := 1 << 20
	if testing.Short() {
		n = 1 << 16
	}
	per := locMapBytesPerChunk(n)
	t.Logf("%d chunks x 3 holders: %.1f bytes of heap per chunk", n, per)
	if !testing.Short() && per > 64 {
		t.Errorf("%.1f bytes per chunk, want at most 64", per)
	}
}

func locMapBytesPerChunk(n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := newLocMap()
	var x [3]uint16
	for i := range x {
		x[i], _ = m.nodeIndex(dfs.NodeID(rune('a' + i)))
	}
	var b [8]byte
	for i := range n {
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		h := dfs.Hash(sha256.Sum256(b[:]))
		for _, id := range x {
			m.add(h, id)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(m)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

func BenchmarkLocMapBytesPerChunk(b *testing.B) {
	for range b.N {
		b.ReportMetric(locMapBytesPerChunk(1<<20), "B/chunk")
	}
}

// A note of a chunk keeps 9 bytes of its hash; byPrefix finds the whole
// hash again while the chunk is in the map, and nothing once it is gone,
// including when two hashes share the prefix.
func TestLocMapByPrefix(t *testing.T) {
	m := newLocMap()
	a, _ := m.nodeIndex("a")
	const n = 20000
	for i := range n {
		m.add(testHash(i), a)
	}
	twin := testHash(7)
	twin[31] ^= 0xff // same prefix, another hash
	m.add(twin, a)
	for i := 0; i < n; i += 2 {
		m.remove(testHash(i), a)
	}
	for i := range n {
		h := testHash(i)
		var got []dfs.Hash
		m.byPrefix(prefixOf(h), func(x dfs.Hash) { got = append(got, x) })
		switch {
		case i == 7:
			if len(got) != 2 || !(got[0] == h && got[1] == twin || got[0] == twin && got[1] == h) {
				t.Fatalf("prefix of chunk 7 and its twin: found %v", got)
			}
		case i%2 == 0:
			if len(got) != 0 {
				t.Fatalf("chunk %d was removed; its prefix found %v", i, got)
			}
		default:
			if len(got) != 1 || got[0] != h {
				t.Fatalf("chunk %d: its prefix found %v", i, got)
			}
		}
	}
}
