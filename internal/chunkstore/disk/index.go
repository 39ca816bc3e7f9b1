package disk

import (
	"bytes"
	"slices"
	"sync"

	"github.com/dfs-store/dfs"
)

// The index is what the store knows is on its disk: every chunk's hash and
// size, in memory, so that Walk, Usage and a lookup of a chunk that is not
// stored cost no disk access, and every registration with a coordinator
// (one per coordinator, again after each re-registration) reads memory, not
// a million files.
//
// It is sharded like the disk: one shard per fan-out directory (the first
// three hex digits of the hash, 4096 shards), each a slab of entries sorted
// by hash under its own lock. An entry is 48 bytes (the 32-byte hash, an
// int64 size and where the chunk is) and a slab carries no per-entry
// overhead beyond append's spare capacity: 55 B per chunk filled in random
// order, 55 MB for a million (BenchmarkIndexMemory), against 100 B per chunk measured for a Go
// map[[32]byte]int64 of the same chunks. Inserting or removing moves the entries after it in
// its slab: at ten million chunks a slab holds about 2,400 entries (96 KB),
// a few microseconds of memmove, small beside the fsyncs of a Put.

const indexShards = 1 << 12

// indexEntry is one stored chunk: where it is, 0 for a file of its own or
// a record in a volume (see loc).
type indexEntry struct {
	h    dfs.ChunkHash
	size int64
	loc  loc
}

type index struct {
	shards [indexShards]indexShard

	// Totals, under one lock so Usage never pairs a count with a sum
	// from another moment.
	mu     sync.Mutex
	chunks int64
	bytes  int64
}

type indexShard struct {
	mu sync.RWMutex
	es []indexEntry // sorted by hash
}

// shardOf returns the shard of h: its first 12 bits, as the fan-out
// directory.
func shardOf(h dfs.ChunkHash) int { return int(h[0])<<4 | int(h[1]>>4) }

func cmpEntry(e indexEntry, h dfs.ChunkHash) int { return bytes.Compare(e.h[:], h[:]) }

// get returns h's entry and whether it is indexed.
func (x *index) get(h dfs.ChunkHash) (indexEntry, bool) {
	sh := &x.shards[shardOf(h)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	i, ok := slices.BinarySearchFunc(sh.es, h, cmpEntry)
	if !ok {
		return indexEntry{}, false
	}
	return sh.es[i], true
}

// add indexes h, a chunk file of size bytes, and reports whether it was
// new; an entry already there stays as it is.
func (x *index) add(h dfs.ChunkHash, size int64) bool { return x.addAt(h, size, 0) }

// addAt indexes h, of size bytes, at l, and reports whether it was new; an
// entry already there stays as it is.
func (x *index) addAt(h dfs.ChunkHash, size int64, l loc) bool {
	sh := &x.shards[shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := slices.BinarySearchFunc(sh.es, h, cmpEntry)
	if ok {
		return false
	}
	sh.es = slices.Insert(sh.es, i, indexEntry{h, size, l})
	x.account(1, size)
	return true
}

// move points h, if it is at from, at to, and reports whether it did.
func (x *index) move(h dfs.ChunkHash, from, to loc) bool {
	sh := &x.shards[shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := slices.BinarySearchFunc(sh.es, h, cmpEntry)
	if !ok || sh.es[i].loc != from {
		return false
	}
	sh.es[i].loc = to
	return true
}

// remove drops h and reports whether it was indexed.
func (x *index) remove(h dfs.ChunkHash) bool {
	sh := &x.shards[shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := slices.BinarySearchFunc(sh.es, h, cmpEntry)
	if !ok {
		return false
	}
	size := sh.es[i].size
	sh.es = slices.Delete(sh.es, i, i+1)
	// Give memory back once a slab is mostly empty, as after a large GC.
	if cap(sh.es) > 64 && len(sh.es) < cap(sh.es)/4 {
		sh.es = slices.Clip(sh.es)
	}
	x.account(-1, -size)
	return true
}

func (x *index) account(chunks, bytes int64) {
	x.mu.Lock()
	x.chunks += chunks
	x.bytes += bytes
	x.mu.Unlock()
}

// usage returns the number of chunks indexed and their total size.
func (x *index) usage() (chunks, bytes int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.chunks, x.bytes
}

// setShard replaces shard i with es, which must be sorted and belong to it.
// Open uses it while nothing else can see the index.
func (x *index) setShard(i int, es []indexEntry) {
	sh := &x.shards[i]
	sh.mu.Lock()
	old := sh.es
	sh.es = es
	sh.mu.Unlock()
	var oldBytes, newBytes int64
	for _, e := range old {
		oldBytes += e.size
	}
	for _, e := range es {
		newBytes += e.size
	}
	x.account(int64(len(es)-len(old)), newBytes-oldBytes)
}

// snapshot appends shard i's entries to buf and returns it. The shard's
// lock is held only while copying, never while a caller's function runs.
func (x *index) snapshot(i int, buf []indexEntry) []indexEntry {
	sh := &x.shards[i]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return append(buf, sh.es...)
}

// sortShard sorts entries gathered from one fan-out directory.
func sortShard(es []indexEntry) {
	slices.SortFunc(es, func(a, b indexEntry) int { return bytes.Compare(a.h[:], b.h[:]) })
}
