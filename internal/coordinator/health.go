package coordinator

import (
	"sync"
	"time"

	"github.com/dfs-store/dfs"
)

// Chunk health, kept as it changes. Every change to the location map, to
// the doomed set, and to how a node's copies count goes through one place
// (applyLocked), which takes the chunk's view before and after the change
// and moves the chunk between the counters and sets. So the counters, the
// under-replicated set (bucketed by good copies, most endangered first),
// the over-replicated set and the per-draining-node counts always equal a
// recount from scratch, and nothing walks the map on a timer.
//
// A node's class (good, draining, drained, dead) changes with time, from
// heartbeat silence, as well as from registrations and drains. Once a
// second an O(nodes) check finds the nodes whose class changed and re-classes
// only their chunks, walking the map a shard at a time and releasing the
// lock between shards: a node's death costs one walk, and heartbeats and
// lookups go on meanwhile. While a walk is under way the node has two
// classes: the new one for the shards walked, the old one for the rest.

// nodeClass is how a node's copies count.
type nodeClass uint8

const (
	classDead     nodeClass = iota // no copy counts; none can be read
	classGood                      // alive or suspect: copies count
	classDraining                  // copies can be read, do not count, and must be moved
	classDrained                   // copies can be read and do not count
)

func classOfState(st dfs.NodeState) nodeClass {
	switch st {
	case dfs.NodeAlive, dfs.NodeSuspect:
		return classGood
	case dfs.NodeDraining:
		return classDraining
	case dfs.NodeDrained:
		return classDrained
	}
	return classDead
}

// nodeHealth is a node's class as the counters see it.
type nodeHealth struct {
	cur, prev nodeClass
	walked    int // shards below it use cur, the others prev; locShards: none in transition
}

// healthState is the incremental record of chunk health. Guarded by
// Server.mu, except walkMu.
type healthState struct {
	nodes []nodeHealth // by node index

	// byGood counts the counted chunks by good copies (capped at
	// Replicas+1) and by whether another copy can be read.
	byGood [][2]int64
	chunks int64 // distinct chunks counted (in the map and not doomed)
	copies int64 // their copies, on any node

	under     []map[dfs.Hash]struct{} // by good copies, 0..Replicas-1; with a copy to repair from
	over      map[dfs.Hash]struct{}   // more than Replicas good copies
	drainNeed map[uint16]int64        // draining node -> chunks below Replicas it holds

	walkMu sync.Mutex    // one re-classing at a time
	kick   chan struct{} // runs the node check at once
}

func (hs *healthState) init(replicas int) {
	hs.byGood = make([][2]int64, replicas+2)
	hs.under = make([]map[dfs.Hash]struct{}, replicas)
	for i := range hs.under {
		hs.under[i] = map[dfs.Hash]struct{}{}
	}
	hs.over = map[dfs.Hash]struct{}{}
	hs.drainNeed = map[uint16]int64{}
	hs.kick = make(chan struct{}, 1)
}

// healthLoop runs the node check every second, and at once when kicked (a
// registration, a drain).
func (s *Server) healthLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		case <-s.hl.kick:
		}
		s.reclassNodes(time.Now())
	}
}

// kickHealth runs the node check without waiting for the second.
func (s *Server) kickHealth() {
	select {
	case s.hl.kick <- struct{}{}:
	default:
	}
}

// reclassQuickLocked brings n's class up to date at once if that costs
// nothing (n holds no chunk: a node registering with a coordinator that
// has just started), and otherwise leaves it to the node check, which it
// kicks. s.mu is held.
func (s *Server) reclassQuickLocked(n *node, now time.Time) {
	nh := &s.hl.nodes[n.idx]
	c := classOfState(s.stateLocked(n, now))
	if c == nh.cur {
		return
	}
	if n.chunks == 0 && nh.walked == locShards {
		nh.prev, nh.cur = c, c
		return
	}
	s.kickHealth()
}

// addNode gives index i a record; a new node is dead until it registers.
func (hs *healthState) addNode(i uint16) {
	for len(hs.nodes) <= int(i) {
		hs.nodes = append(hs.nodes, nodeHealth{cur: classDead, prev: classDead, walked: locShards})
	}
}

func (hs *healthState) classOf(i uint16, shard int) nodeClass {
	nh := &hs.nodes[i]
	if shard < nh.walked {
		return nh.cur
	}
	return nh.prev
}

// chunkView is what the counters know of one chunk.
type chunkView struct {
	in           bool // counted: in the map and not doomed
	good, usable int  // copies that count; other copies that can be read
	copies       int
	nd           int
	draining     [4]uint16 // the first draining holders
	moreDraining []uint16  // the rest, rarely any
}

// viewLocked returns what the counters make of h now. s.mu is held.
func (s *Server) viewLocked(h dfs.Hash) chunkView {
	var v chunkView
	if _, doomed := s.heal.doomed[h]; doomed {
		return v
	}
	shard := shardOf(h)
	s.locs.eachHolder(h, func(i uint16) {
		v.in = true
		v.copies++
		switch s.hl.classOf(i, shard) {
		case classGood:
			v.good++
		case classDraining:
			v.usable++
			if v.nd < len(v.draining) {
				v.draining[v.nd] = i
			} else {
				v.moreDraining = append(v.moreDraining, i)
			}
			v.nd++
		case classDrained:
			v.usable++
		}
	})
	return v
}

// underBucket returns the under-replicated bucket of a view, or -1.
func (s *Server) underBucket(v chunkView) int {
	if !v.in || v.good >= s.cfg.Replicas || v.good+v.usable == 0 {
		return -1
	}
	return v.good
}

func (s *Server) isOver(v chunkView) bool { return v.in && v.good > s.cfg.Replicas }

// applyLocked moves h from the counters and sets of view b to those of
// view a. s.mu is held.
func (s *Server) applyLocked(h dfs.Hash, b, a chunkView) {
	s.countLocked(b, -1)
	s.countLocked(a, +1)
	if ub, ua := s.underBucket(b), s.underBucket(a); ub != ua {
		if ub >= 0 {
			delete(s.hl.under[ub], h)
			if len(s.hl.under[ub]) == 0 {
				// Go maps do not shrink: a set emptied after a node's
				// death (or a coordinator's start, when chunks are short
				// until every report is in) gives its memory back.
				s.hl.under[ub] = map[dfs.Hash]struct{}{}
			}
		}
		if ua >= 0 {
			s.hl.under[ua][h] = struct{}{}
		}
	}
	if ob, oa := s.isOver(b), s.isOver(a); ob != oa {
		if oa {
			s.hl.over[h] = struct{}{}
		} else if delete(s.hl.over, h); len(s.hl.over) == 0 {
			s.hl.over = map[dfs.Hash]struct{}{}
		}
	}
}

func (s *Server) countLocked(v chunkView, d int64) {
	if !v.in {
		return
	}
	usable := 0
	if v.usable > 0 {
		usable = 1
	}
	s.hl.byGood[min(v.good, s.cfg.Replicas+1)][usable] += d
	s.hl.chunks += d
	s.hl.copies += d * int64(v.copies)
	if v.good < s.cfg.Replicas {
		for k := 0; k < v.nd; k++ {
			var i uint16
			if k < len(v.draining) {
				i = v.draining[k]
			} else {
				i = v.moreDraining[k-len(v.draining)]
			}
			if s.hl.drainNeed[i] += d; s.hl.drainNeed[i] == 0 {
				delete(s.hl.drainNeed, i)
			}
		}
	}
}

// doomLocked marks h as being deleted by garbage collection: it no longer
// counts anywhere. s.mu is held.
func (s *Server) doomLocked(h dfs.Hash) {
	if _, ok := s.heal.doomed[h]; ok {
		return
	}
	b := s.viewLocked(h)
	s.heal.doomed[h] = struct{}{}
	s.applyLocked(h, b, chunkView{})
}

// undoomLocked ends doomLocked: what copies are left count again. s.mu
// is held.
func (s *Server) undoomLocked(h dfs.Hash) {
	if _, ok := s.heal.doomed[h]; !ok {
		return
	}
	delete(s.heal.doomed, h)
	s.applyLocked(h, chunkView{}, s.viewLocked(h))
}

// reclassNodes finds the nodes whose copies count differently at now than
// the counters assume, and re-classes their chunks. It is O(nodes) when
// nothing changed.
func (s *Server) reclassNodes(now time.Time) {
	s.hl.walkMu.Lock()
	defer s.hl.walkMu.Unlock()
	type change struct {
		i  uint16
		to nodeClass
	}
	var changes []change
	s.mu.Lock()
	for _, n := range s.nodes {
		if to := classOfState(s.stateLocked(n, now)); to != s.hl.nodes[n.idx].cur {
			changes = append(changes, change{n.idx, to})
		}
	}
	s.mu.Unlock()
	for _, c := range changes {
		s.reclassNode(c.i, c.to)
	}
}

// reclassNode changes node i's class to c, moving its chunks between the
// counters one shard at a time. Walking the whole map for one node is
// acceptable here: it happens when a node dies, revives, or starts or ends
// a drain, not on a timer, and the lock is released between shards.
func (s *Server) reclassNode(i uint16, c nodeClass) {
	s.mu.Lock()
	nh := &s.hl.nodes[i]
	if s.nodes[s.locs.nodeID(i)].chunks == 0 {
		// Nothing to move: switch at once.
		nh.prev, nh.cur, nh.walked = c, c, locShards
		s.mu.Unlock()
		return
	}
	nh.prev, nh.cur, nh.walked = nh.cur, c, 0
	s.mu.Unlock()
	var (
		buf    []dfs.Hash
		before []chunkView
	)
	for k := range locShards {
		s.mu.Lock()
		buf = s.locs.heldInShard(k, i, buf[:0])
		before = before[:0]
		for _, h := range buf {
			before = append(before, s.viewLocked(h))
		}
		s.hl.nodes[i].walked = k + 1
		for j, h := range buf {
			s.applyLocked(h, before[j], s.viewLocked(h))
		}
		s.mu.Unlock()
	}
}

// Counters is chunk health and the work pending, as one coordinator knows
// it. Every field is read in O(1).
type Counters struct {
	Chunks            int64 // distinct chunks (doomed ones aside)
	Copies            int64 // their copies, on any node
	Healthy           int64 // at least Replicas good copies
	UnderReplicated   int64 // some good copies, fewer than Replicas
	MissingRepairable int64 // no good copy, one that can still be read (a draining node)
	MissingLost       int64 // no copy that can be read
	OverReplicated    int64 // more than Replicas good copies
	Corrupt           int64 // chunks with a copy found corrupt and not yet replaced
	PendingRepair     int64 // chunks below Replicas with a copy to repair from and a node to copy to
	Unplaceable       int64 // chunks below Replicas with no node to place another copy on
	PendingGC         int64
	Repaired          int64
	GarbageCollected  int64
	Cold              bool // not every datanode has reported since this coordinator started
}

// countersLocked reads the counters. s.mu is held.
func (s *Server) countersLocked(now time.Time) Counters {
	c := Counters{
		Chunks:           s.hl.chunks,
		Copies:           s.hl.copies,
		Corrupt:          int64(len(s.heal.corrupt)),
		PendingGC:        s.heal.pendingGC,
		Repaired:         s.heal.repaired,
		GarbageCollected: s.heal.collected,
		Cold:             s.coldLocked(now),
	}
	r := s.cfg.Replicas
	for g, n := range s.hl.byGood {
		t := n[0] + n[1]
		switch {
		case g == 0:
			c.MissingLost, c.MissingRepairable = n[0], n[1]
		case g < r:
			c.UnderReplicated += t
		default:
			c.Healthy += t
		}
		if g > r {
			c.OverReplicated += t
		}
	}
	targets := s.placeableLocked()
	for good, u := range s.hl.under {
		if good < targets {
			c.PendingRepair += int64(len(u))
		} else {
			c.Unplaceable += int64(len(u))
		}
	}
	return c
}

// placeableLocked returns how many nodes' copies count (alive or suspect,
// not draining): the most good copies any chunk can have. A chunk with at
// least that many good copies and still fewer than Replicas has no node
// to place another copy on (a dead or drained fourth node held one, and
// three remain): repair cannot help it, so it is not pending repair but
// waits for a node to join or come back. Free space is not considered: a
// full node still counts here. O(nodes). s.mu is held.
func (s *Server) placeableLocked() int {
	n := 0
	for _, nd := range s.nodes {
		if s.hl.nodes[nd.idx].cur == classGood {
			n++
		}
	}
	return n
}
