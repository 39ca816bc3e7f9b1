package coordinator

import (
	"encoding/binary"
	"math/bits"

	"github.com/dfs-store/dfs"
)

// The location map: which datanodes hold each chunk. It is the largest
// thing a coordinator keeps (one entry per distinct chunk in the cluster),
// so it is laid out for size: a node is a 16-bit index into a table of node
// ids, not a string; an entry is the 32-byte hash and three inline holders
// (38 bytes), kept in open-addressing tables with no pointer per chunk.
// Chunks with more than three holders (for a while during repair, a drain or
// before a trim) keep the others in a small overflow map.
//
// The entries are spread over locShards tables by the hash's first byte, so
// that a long walk (a node's death, the replacement of a node's old report)
// can release the coordinator's lock between shards, and so that growing
// one table copies 1/256 of the map at a time. Each table is a Robin Hood
// hash with linear probing and backward-shift deletion (no tombstones),
// filled up to 7/8 and grown by a quarter: between 43 and 55 bytes per
// chunk, whatever the number of chunks.

// locShards is the number of tables of the location map.
const locShards = 256

// locMark flags a holder seen by the full report being merged (see
// locMap.mark and sweep). Node indices use the other 15 bits.
const locMark = 1 << 15

// maxNodes bounds the node indices the location map can give out.
const maxNodes = locMark - 2

type locEntry struct {
	h dfs.Hash
	s [3]uint16 // holders, as index+1 (0: empty slot), filled from the front; s[0] == 0: free entry
}

type locShard struct {
	e []locEntry
	n int
}

// locMap is the location map. It is not safe for concurrent use: the
// coordinator guards it with Server.mu.
type locMap struct {
	shards [locShards]locShard
	over   map[dfs.Hash][]uint16 // holders beyond the inline three, as in locEntry.s
	ids    []dfs.NodeID          // index -> node id
	index  map[dfs.NodeID]uint16 // node id -> index
	count  int                   // distinct chunks
}

func newLocMap() *locMap {
	return &locMap{over: map[dfs.Hash][]uint16{}, index: map[dfs.NodeID]uint16{}}
}

// nodeIndex returns id's index, giving it one if it has none. An index is
// never given to another node: a coordinator knows its nodes for its whole
// life. ok is false when every index is taken.
func (m *locMap) nodeIndex(id dfs.NodeID) (uint16, bool) {
	if i, ok := m.index[id]; ok {
		return i, true
	}
	if len(m.ids) >= maxNodes {
		return 0, false
	}
	i := uint16(len(m.ids))
	m.ids = append(m.ids, id)
	m.index[id] = i
	return i, true
}

// lookupIndex returns id's index, if it has one.
func (m *locMap) lookupIndex(id dfs.NodeID) (uint16, bool) {
	i, ok := m.index[id]
	return i, ok
}

// nodeID returns the node of an index.
func (m *locMap) nodeID(i uint16) dfs.NodeID { return m.ids[i] }

func shardOf(h dfs.Hash) int { return int(h[0]) }

// home is h's first slot in a table of c entries.
func home(h dfs.Hash, c int) int {
	hi, _ := bits.Mul64(binary.LittleEndian.Uint64(h[1:9]), uint64(c))
	return int(hi)
}

// find returns h's position in sh, or -1.
func (sh *locShard) find(h dfs.Hash) int {
	c := len(sh.e)
	if c == 0 {
		return -1
	}
	p := home(h, c)
	for d := 0; ; d++ {
		e := &sh.e[p]
		if e.s[0] == 0 {
			return -1
		}
		if e.h == h {
			return p
		}
		// Robin Hood order: an entry nearer its home than we are to ours
		// means h is not here.
		if dist(e.h, p, c) < d {
			return -1
		}
		if p++; p == c {
			p = 0
		}
	}
}

func dist(h dfs.Hash, p, c int) int {
	d := p - home(h, c)
	if d < 0 {
		d += c
	}
	return d
}

// insert places a new entry, which must not be in sh.
func (sh *locShard) insert(e locEntry) {
	if (sh.n+1)*8 > len(sh.e)*7 {
		sh.grow()
	}
	sh.place(e)
	sh.n++
}

func (sh *locShard) place(e locEntry) {
	c := len(sh.e)
	p := home(e.h, c)
	d := 0
	for {
		cur := &sh.e[p]
		if cur.s[0] == 0 {
			*cur = e
			return
		}
		if cd := dist(cur.h, p, c); cd < d {
			e, *cur = *cur, e
			d = cd
		}
		if p++; p == c {
			p = 0
		}
		d++
	}
}

func (sh *locShard) grow() {
	old := sh.e
	c := len(old) + len(old)/4
	if c < 8 {
		c = 8
	}
	sh.e = make([]locEntry, c)
	for i := range old {
		if old[i].s[0] != 0 {
			sh.place(old[i])
		}
	}
}

// del removes the entry at p, shifting the entries after it back.
func (sh *locShard) del(p int) {
	c := len(sh.e)
	for {
		q := p + 1
		if q == c {
			q = 0
		}
		next := &sh.e[q]
		if next.s[0] == 0 || dist(next.h, q, c) == 0 {
			break
		}
		sh.e[p] = *next
		p = q
	}
	sh.e[p] = locEntry{}
	sh.n--
	if sh.n == 0 {
		sh.e = nil // a table emptied (by a node's removal) gives its memory back
	}
}

// add records that node i holds h. added is false if it was known; isNew
// is true if h had no holder before.
func (m *locMap) add(h dfs.Hash, i uint16) (added, isNew bool) {
	return m.addFlag(h, i+1)
}

// mark is add, flagging the holder as seen by the report being merged.
func (m *locMap) mark(h dfs.Hash, i uint16) (added, isNew bool) {
	return m.addFlag(h, (i+1)|locMark)
}

func (m *locMap) addFlag(h dfs.Hash, v uint16) (added, isNew bool) {
	sh := &m.shards[shardOf(h)]
	p := sh.find(h)
	if p < 0 {
		sh.insert(locEntry{h: h, s: [3]uint16{v}})
		m.count++
		return true, true
	}
	e := &sh.e[p]
	for k := range e.s {
		switch {
		case e.s[k] == 0:
			e.s[k] = v
			return true, false
		case e.s[k]&^locMark == v&^locMark:
			e.s[k] |= v & locMark
			return false, false
		}
	}
	ov := m.over[h]
	for k, x := range ov {
		if x&^locMark == v&^locMark {
			ov[k] |= v & locMark
			return false, false
		}
	}
	m.over[h] = append(ov, v)
	return true, false
}

// remove records that node i no longer holds h. It reports whether it
// did, and whether h has no holder left (and so left the map).
func (m *locMap) remove(h dfs.Hash, i uint16) (removed, gone bool) {
	sh := &m.shards[shardOf(h)]
	p := sh.find(h)
	if p < 0 {
		return false, false
	}
	return m.removeAt(sh, p, i+1)
}

func (m *locMap) removeAt(sh *locShard, p int, v uint16) (removed, gone bool) {
	e := &sh.e[p]
	h := e.h
	ov := m.over[h]
	for k, x := range ov {
		if x&^locMark == v {
			ov[k] = ov[len(ov)-1]
			if ov = ov[:len(ov)-1]; len(ov) == 0 {
				delete(m.over, h)
			} else {
				m.over[h] = ov
			}
			return true, false
		}
	}
	for k := range e.s {
		if e.s[k]&^locMark != v {
			continue
		}
		// Keep the inline slots filled from the front: the last holder,
		// from the overflow if any, takes this one's place.
		if n := len(ov); n > 0 {
			e.s[k] = ov[n-1]
			if n == 1 {
				delete(m.over, h)
			} else {
				m.over[h] = ov[:n-1]
			}
			return true, false
		}
		last := k
		for last+1 < len(e.s) && e.s[last+1] != 0 {
			last++
		}
		e.s[k], e.s[last] = e.s[last], 0
		if e.s[0] == 0 {
			sh.del(p)
			m.count--
			return true, true
		}
		return true, false
	}
	return false, false
}

// holds reports whether node i holds h.
func (m *locMap) holds(h dfs.Hash, i uint16) bool {
	found := false
	m.eachHolder(h, func(x uint16) {
		found = found || x == i
	})
	return found
}

// eachHolder calls fn with the index of every node holding h.
func (m *locMap) eachHolder(h dfs.Hash, fn func(i uint16)) {
	sh := &m.shards[shardOf(h)]
	p := sh.find(h)
	if p < 0 {
		return
	}
	e := &sh.e[p]
	for _, v := range e.s {
		if v == 0 {
			return
		}
		fn(v&^locMark - 1)
	}
	for _, v := range m.over[h] {
		fn(v&^locMark - 1)
	}
}

// holders returns the nodes holding h.
func (m *locMap) holders(h dfs.Hash) []dfs.NodeID {
	var out []dfs.NodeID
	m.eachHolder(h, func(i uint16) { out = append(out, m.ids[i]) })
	return out
}

// has reports whether h has a holder.
func (m *locMap) has(h dfs.Hash) bool {
	return m.shards[shardOf(h)].find(h) >= 0
}

// hashPrefix is the part of a hash that places it in the map: its shard
// (byte 0) and its home slot (bytes 1-8). A note of a chunk keeps only this
// much, and finds the whole hash again with byPrefix.
type hashPrefix [9]byte

func prefixOf(h dfs.Hash) (p hashPrefix) {
	copy(p[:], h[:len(p)])
	return p
}

// byPrefix calls fn with every chunk in the map whose hash begins with p
// (almost always one or none: 72 bits tell hashes apart).
func (m *locMap) byPrefix(p hashPrefix, fn func(h dfs.Hash)) {
	var h dfs.Hash
	copy(h[:], p[:])
	sh := &m.shards[shardOf(h)]
	c := len(sh.e)
	if c == 0 {
		return
	}
	start := home(h, c)
	q := start
	for d := 0; d < c; d++ {
		e := &sh.e[q]
		if e.s[0] == 0 || dist(e.h, q, c) < d {
			return
		}
		if hashPrefix(e.h[:len(p)]) == p {
			fn(e.h)
		}
		if q++; q == c {
			q = 0
		}
	}
}

// len returns the number of distinct chunks.
func (m *locMap) len() int { return m.count }

// eachInShard calls fn with every chunk of shard k and one of its holders'
// inline slots; fn must not change the map.
func (m *locMap) eachInShard(k int, fn func(h dfs.Hash)) {
	sh := &m.shards[k]
	for p := range sh.e {
		if sh.e[p].s[0] != 0 {
			fn(sh.e[p].h)
		}
	}
}

// heldInShard appends to buf the chunks of shard k that node i holds.
func (m *locMap) heldInShard(k int, i uint16, buf []dfs.Hash) []dfs.Hash {
	sh := &m.shards[k]
	v := i + 1
	for p := range sh.e {
		e := &sh.e[p]
		if e.s[0] == 0 {
			continue
		}
		if e.s[0]&^locMark == v || e.s[1]&^locMark == v || e.s[2]&^locMark == v {
			buf = append(buf, e.h)
			continue
		}
		if e.s[2] != 0 {
			for _, x := range m.over[e.h] {
				if x&^locMark == v {
					buf = append(buf, e.h)
					break
				}
			}
		}
	}
	return buf
}

// sweepShard ends the merge of node i's full report in shard k: its
// holdings the report marked lose the mark, the others are returned in buf
// for the caller to remove.
func (m *locMap) sweepShard(k int, i uint16, buf []dfs.Hash) []dfs.Hash {
	sh := &m.shards[k]
	v := i + 1
	for p := range sh.e {
		e := &sh.e[p]
		if e.s[0] == 0 {
			continue
		}
		found := false
		for j := range e.s {
			if e.s[j]&^locMark == v {
				found = true
				if e.s[j]&locMark == 0 {
					buf = append(buf, e.h)
				}
				e.s[j] &^= locMark
			}
		}
		if !found && e.s[2] != 0 {
			ov := m.over[e.h]
			for j := range ov {
				if ov[j]&^locMark == v {
					if ov[j]&locMark == 0 {
						buf = append(buf, e.h)
					}
					ov[j] &^= locMark
				}
			}
		}
	}
	return buf
}
