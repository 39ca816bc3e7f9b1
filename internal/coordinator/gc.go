package coordinator

// Garbage collection from candidates.
//
// Nothing here walks what is stored. Contents whose reference count fell to
// 0 are candidates in etcd (meta/gc.go); a collection deletes those older
// than GCGrace and still at 0, and makes their chunks chunk candidates.
// Chunks written but never committed are found without a walk too: a
// datanode's report of a chunk just written that is new to the location
// map is noted (gcNoteNewLocked; not full reports, which a restart makes of
// every chunk), and once such a chunk is older than the grace period a
// collection checks whether a content references it, and makes it a
// candidate if none does.
//
// A chunk candidate is swept with the safety of the mark and sweep before:
// under s.mu it is left alone if an open upload session of this
// coordinator holds it, a commit in progress names it, or it was touched
// within the grace period; otherwise it is doomed (its copies no longer
// count for allocation or commit). Then etcd is asked, linearizably,
// whether a content references it (a commit that finished before the doom
// is seen there; one that began after it finds the chunk doomed and fails):
// if one does, it is undoomed and stops being a candidate; if none does,
// its holders delete it unless they wrote or touched it since the grace
// period began.

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/rpc"
)

// maxFresh bounds the notes of chunks new to the location map that wait
// for their grace period to end before being checked: 9 bytes each (the
// part of the hash that finds it in the map), 36 MiB at most. Notes beyond
// it are dropped, and so are all of them when this coordinator stops: a
// chunk written but never committed that no running coordinator noted —
// the cluster was restarted whole within its grace period, or the bound
// was reached — is found only by a full collection (CollectGarbageFull).
const maxFresh = 1 << 22

// freshBlock bounds the notes of one bucket, so that the queue grows a
// block at a time and an emptied bucket gives its memory back.
const freshBlock = 4096

// sweepPage is how many chunk candidates are swept at a time (one doom, one
// reference check, one round of deletes).
const sweepPage = 10000

// gcState is garbage collection's own memory.
type gcState struct {
	// fresh queues the chunks new to the location map, oldest first, in
	// buckets of up to freshBlock notes; notes counts them, dropped counts
	// notes lost to maxFresh. Guarded by Server.mu.
	fresh   []freshBucket
	notes   int
	dropped int64
	// The layout is at reference counts. Guarded by heal.gcMu.
	migrated bool
}

// freshBucket is a run of notes taken until last.
type freshBucket struct {
	last  time.Time
	notes []hashPrefix
}

// gcNoteNewLocked records that chunk h is new to the location map. s.mu is
// held.
func (s *Server) gcNoteNewLocked(h dfs.Hash, now time.Time) {
	if s.gc.notes >= maxFresh {
		s.gc.dropped++
		return
	}
	n := len(s.gc.fresh)
	if n == 0 || len(s.gc.fresh[n-1].notes) == freshBlock {
		s.gc.fresh = append(s.gc.fresh, freshBucket{})
		n++
	}
	b := &s.gc.fresh[n-1]
	b.notes = append(b.notes, prefixOf(h))
	if now.After(b.last) {
		b.last = now
	}
	s.gc.notes++
}

// takeFresh removes the buckets of notes all taken before cutoff and
// returns the chunks they name that are still in the location map, each
// once (a chunk that left the map and came back was noted twice). The
// lock is taken once per bucket.
func (s *Server) takeFresh(cutoff time.Time) []dfs.Hash {
	var out []dfs.Hash
	for {
		s.mu.Lock()
		if len(s.gc.fresh) == 0 || !s.gc.fresh[0].last.Before(cutoff) {
			s.mu.Unlock()
			slices.SortFunc(out, func(a, b dfs.Hash) int { return bytes.Compare(a[:], b[:]) })
			return slices.Compact(out)
		}
		b := s.gc.fresh[0]
		s.gc.fresh[0] = freshBucket{}
		s.gc.fresh = s.gc.fresh[1:]
		s.gc.notes -= len(b.notes)
		for _, p := range b.notes {
			s.locs.byPrefix(p, func(h dfs.Hash) { out = append(out, h) })
		}
		s.mu.Unlock()
	}
}

// gcLoop collects garbage every GCInterval while this coordinator leads.
// A new leader first waits a grace period: the touches other coordinators
// (or its own earlier life) remembered are not in its memory, and chunks
// reused within the grace period must not be collected meanwhile.
func (s *Server) gcLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(min(time.Second, s.cfg.GCInterval))
	defer tick.Stop()
	var ledSince, last time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		if !s.IsLeader() {
			ledSince = time.Time{}
			continue
		}
		now := time.Now()
		if ledSince.IsZero() {
			ledSince = now
		}
		if now.Sub(ledSince) < s.cfg.GCGrace || now.Sub(last) < s.cfg.GCInterval {
			continue
		}
		last = now
		if err := s.CollectGarbage(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("garbage collection", "err", err)
		}
	}
}

// GCStats says what one collection did.
type GCStats struct {
	Contents        int // content records deleted
	Candidates      int // chunk candidates swept
	GarbageChunks   int // chunks found unreferenced and old enough
	DeletedCopies   int // chunk copies the datanodes deleted
	KeptYoungChunks int // unreferenced chunks still within the grace period
}

// CollectGarbage runs one collection from the candidates. It reads the
// candidates and what they name, never everything stored.
func (s *Server) CollectGarbage(ctx context.Context) error {
	_, err := s.collect(ctx, false)
	return err
}

// CollectGarbageFull runs one collection that also checks every chunk in
// the location map: an admin operation, for the garbage no candidate names
// (chunks written but never committed that no running coordinator noted).
// It reads what every chunk's references are, in batches.
func (s *Server) CollectGarbageFull(ctx context.Context) error {
	_, err := s.collect(ctx, true)
	return err
}

// RunGC implements api.CoordinatorServer: one collection now, on the
// leader (a follower hands the request on).
func (s *Server) RunGC(ctx context.Context, req *api.RunGCRequest) (*api.RunGCResponse, error) {
	if !s.IsLeader() {
		// As every leader-only request: wait out an election in progress
		// (CI saw "no other leader is known" while this coordinator
		// campaigned again on a loaded machine), then hand it on.
		cc, err := s.leaderClient(ctx, "garbage collection", req.Term)
		if err != nil {
			return nil, err
		}
		if cc != nil {
			return cc.RunGC(ctx, &api.RunGCRequest{Full: req.Full, Term: s.KnownTerm()})
		}
	}
	st, err := s.collect(ctx, req.Full)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &api.RunGCResponse{Contents: int64(st.Contents), ChunkCandidates: int64(st.Candidates), GarbageChunks: int64(st.GarbageChunks),
		DeletedCopies: int64(st.DeletedCopies), YoungChunks: int64(st.KeptYoungChunks)}, nil
}

func (s *Server) collect(ctx context.Context, full bool) (GCStats, error) {
	s.heal.gcMu.Lock()
	defer s.heal.gcMu.Unlock()
	var st GCStats
	fence, err := s.confirmLeader(ctx)
	if err != nil {
		return st, fmt.Errorf("garbage collection: %w", err)
	}
	start := time.Now()
	cutoff := start.Add(-s.cfg.GCGrace)
	if !s.gc.migrated {
		ms, err := s.meta.Migrate(ctx, fence)
		if err != nil {
			return st, fmt.Errorf("garbage collection: %w", err)
		}
		if ms.Contents > 0 || ms.Files > 0 {
			s.log.Info("reference counts rebuilt", "files", ms.Files, "contents", ms.Contents,
				"chunk_refs", ms.ChunkRefs, "candidates", ms.Candidates, "took", time.Since(start).Round(time.Millisecond))
		}
		if ms.Results > 0 {
			s.log.Info("finished jobs moved into their contents' records", "jobs", ms.Results, "took", time.Since(start).Round(time.Millisecond))
		}
		if ms.Sampled > 0 {
			s.log.Info("listing sample keys written", "paths", ms.Sampled, "took", time.Since(start).Round(time.Millisecond))
		}
		s.gc.migrated = true
	}

	cs, err := s.meta.CollectContents(ctx, fence, s.cfg.GCGrace)
	if err != nil {
		return st, err
	}
	st.Contents = cs.Deleted

	// Chunks new to the map whose grace period is over: candidates unless
	// referenced.
	check := s.takeFresh(cutoff)
	s.mu.Lock()
	dropped := s.gc.dropped
	s.gc.dropped = 0
	s.mu.Unlock()
	if dropped > 0 {
		s.log.Warn("gc: chunks new to the location map not noted (too many at once); a full collection finds them if they are garbage", "chunks", dropped)
	}
	if err := s.noteCandidates(ctx, fence, check); err != nil {
		return st, err
	}
	if full {
		// Every chunk the map holds, a shard at a time: the lock is held
		// for one shard's walk, never for the checks in etcd.
		for k := range locShards {
			s.mu.Lock()
			check = check[:0]
			s.locs.eachInShard(k, func(h dfs.Hash) { check = append(check, h) })
			s.mu.Unlock()
			if err := s.noteCandidates(ctx, fence, check); err != nil {
				return st, err
			}
		}
	}

	if err := s.sweep(ctx, fence, cutoff, &st); err != nil {
		return st, err
	}
	s.log.Info("garbage collected", "contents", st.Contents, "chunk_candidates", st.Candidates, "garbage_chunks", st.GarbageChunks,
		"deleted_copies", st.DeletedCopies, "young_chunks_kept", st.KeptYoungChunks, "took", time.Since(start).Round(time.Millisecond))
	return st, nil
}

// noteCandidates makes candidates of the chunks no content references.
func (s *Server) noteCandidates(ctx context.Context, fence meta.Fence, chunks []dfs.Hash) error {
	const batch = 1024
	for i := 0; i < len(chunks); i += batch {
		part := chunks[i:min(i+batch, len(chunks))]
		refd, err := s.meta.Referenced(ctx, fence, part)
		if err != nil {
			return err
		}
		var garbage []dfs.Hash
		for _, h := range part {
			if !refd[h] {
				garbage = append(garbage, h)
			}
		}
		if err := s.meta.AddChunkCandidates(ctx, fence, garbage); err != nil {
			return err
		}
	}
	return nil
}

// sweep deletes the chunk candidates that are garbage, a page at a time.
func (s *Server) sweep(ctx context.Context, fence meta.Fence, cutoff time.Time, st *GCStats) error {
	var after dfs.Hash
	for {
		cands, err := s.meta.ChunkCandidates(ctx, after, sweepPage)
		if err != nil || len(cands) == 0 {
			return err
		}
		after = cands[len(cands)-1]
		st.Candidates += len(cands)
		if err := s.sweepPage(ctx, fence, cutoff, cands, st); err != nil {
			return err
		}
		if len(cands) < sweepPage {
			return nil
		}
	}
}

func (s *Server) sweepPage(ctx context.Context, fence meta.Fence, cutoff time.Time, cands []dfs.Hash, st *GCStats) error {
	// Doom what may be garbage, under the lock commits touch chunks with.
	var doomed []dfs.Hash
	deletedBefore := st.DeletedCopies
	s.mu.Lock()
	inSession := map[dfs.Hash]struct{}{}
	for _, ss := range s.sessions {
		for h := range ss.chunks {
			inSession[h] = struct{}{}
		}
	}
	for _, h := range cands {
		if _, ok := inSession[h]; ok {
			continue
		}
		if s.heal.committing[h] > 0 {
			continue
		}
		if t, ok := s.heal.touched[h]; ok && !t.Before(cutoff) {
			st.KeptYoungChunks++
			continue
		}
		s.doomLocked(h)
		doomed = append(doomed, h)
	}
	// Forget touches older than the grace period: they protect nothing.
	for h, t := range s.heal.touched {
		if t.Before(cutoff) {
			delete(s.heal.touched, h)
		}
	}
	s.mu.Unlock()

	defer func() {
		s.mu.Lock()
		for _, h := range doomed {
			s.undoomLocked(h)
		}
		s.notifyLocked() // kept copies count again
		s.heal.collected += int64(st.DeletedCopies - deletedBefore)
		s.heal.pendingGC = int64(st.KeptYoungChunks)
		s.mu.Unlock()
	}()

	// Referenced after all? A commit that finished before the doom is in
	// etcd now.
	refd, err := s.meta.Referenced(ctx, fence, doomed)
	if err != nil {
		return err
	}
	var drop []dfs.Hash // no longer candidates: referenced, or deleted everywhere
	byNode := map[dfs.NodeID][]dfs.Hash{}
	now := time.Now()
	s.mu.Lock()
	for _, h := range doomed {
		if refd[h] {
			s.undoomLocked(h)
			drop = append(drop, h)
			continue
		}
		st.GarbageChunks++
		for _, id := range s.holdersLocked(h) {
			// Only nodes that know this term, so that they would refuse a
			// deposed leader's deletes too.
			if n := s.nodes[id]; n != nil && s.stateLocked(n, now) != dfs.NodeDead && n.stats.LeaderTerm >= fence.Rev {
				byNode[id] = append(byNode[id], h)
			}
		}
	}
	s.mu.Unlock()

	// The checks took a while: make sure the term has not ended since.
	if _, err := s.confirmLeader(ctx); err != nil {
		return fmt.Errorf("garbage collection: %w", err)
	}
	for id, hashes := range byNode {
		if err := s.deleteCopies(ctx, fence, id, hashes, cutoff, st); err != nil {
			return err
		}
	}
	s.mu.Lock()
	for _, h := range doomed {
		if !refd[h] && len(s.holdersLocked(h)) == 0 {
			drop = append(drop, h) // gone from every node
		}
	}
	s.mu.Unlock()
	return s.meta.DropChunkCandidates(ctx, fence, drop)
}

// deleteCopies asks node id to delete its copies of hashes unless it wrote
// or touched them since cutoff.
func (s *Server) deleteCopies(ctx context.Context, fence meta.Fence, id dfs.NodeID, hashes []dfs.Hash, cutoff time.Time, st *GCStats) error {
	dn, err := s.control(id)
	if err != nil {
		s.log.Warn("gc: reach datanode", "node", id, "err", err)
		return nil
	}
	for i := 0; i < len(hashes); i += 1000 {
		batch := hashes[i:min(i+1000, len(hashes))]
		// The datanode compares against its own clock: allow for the
		// two clocks to differ.
		req := &api.DeleteChunksRequest{UnlessModifiedSinceUnixNano: cutoff.Add(-skewMargin(s.cfg.GCGrace)).UnixNano(), Term: fence.Rev}
		for _, h := range batch {
			req.Hashes = append(req.Hashes, h[:])
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		resp, err := dn.DeleteChunks(cctx, req)
		cancel()
		if fencedErr(err) && s.refusedAsStale(ctx, fence, id) {
			// The node knows a newer leader term: this one is over.
			return fmt.Errorf("garbage collection: node %s: %w", id, rpc.FromStatus(err))
		}
		if err != nil {
			// Some may be deleted: count none of the batch's copies on
			// this node until it reports again (repair errs on the
			// side of a copy too many).
			s.log.Warn("gc: delete chunks", "node", id, "err", err)
			s.mu.Lock()
			if n := s.nodes[id]; n != nil {
				for _, h := range batch {
					s.removeLocLocked(h, id, n)
				}
				s.wantFullReportLocked(n)
			}
			s.mu.Unlock()
			return nil
		}
		st.DeletedCopies += int(resp.Deleted)
		// Forget the deleted copies now, before the chunks stop being
		// doomed: the node's own report of them may come late.
		s.mu.Lock()
		if n := s.nodes[id]; n != nil {
			for _, b := range resp.DeletedHashes {
				if h, err := dfs.HashFromBytes(b); err == nil {
					s.removeLocLocked(h, id, n)
				}
			}
		}
		s.mu.Unlock()
	}
	return nil
}

// Fsck implements api.CoordinatorServer: one page of the files under the
// prefix, their chunks classed as healthy (Replicas good copies or more),
// under-replicated (and of those, the ones no node can take another copy
// of), missing (no good copy), or corrupt (a copy was found corrupt and is
// not yet replaced). The page's contents are read without
// the lock; the lock is taken once per page to class the chunks.
func (s *Server) Fsck(ctx context.Context, req *api.FsckRequest) (*api.FsckResponse, error) {
	s.fsckPages.Add(1)
	limit := int(req.Limit)
	switch {
	case limit < 0:
		return nil, rpc.ToStatus(fmt.Errorf("%w: fsck: limit %d is negative", dfs.ErrInvalid, limit))
	case limit == 0:
		limit = fsckPage
	case limit > maxFsckPage:
		limit = maxFsckPage
	}
	l, err := s.meta.List(ctx, req.Prefix, "", req.StartAfter, limit)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	contents := make([]dfs.Content, len(l.Files))
	for i, f := range l.Files {
		c, err := s.meta.GetContent(ctx, f.Content)
		if err != nil {
			return nil, rpc.ToStatus(fmt.Errorf("fsck %s: %w", f.Path, err))
		}
		contents[i] = c
	}
	resp := &api.FsckResponse{Files: int64(len(l.Files)), Truncated: l.Truncated}
	if n := len(l.Files); n > 0 {
		resp.NextStartAfter = l.Files[n-1].Path
	}
	now := time.Now()
	s.mu.Lock()
	targets := s.placeableLocked()
	for i, f := range l.Files {
		c := contents[i]
		ff := &api.FsckFile{Path: f.Path, ContentHash: f.Content[:], Chunks: int64(len(c.Chunks))}
		for _, ch := range c.Chunks {
			var class, total *int64
			switch good := len(s.goodReplicasLocked(ch.Hash, now)); {
			case len(s.heal.corrupt[ch.Hash]) > 0:
				class, total = &ff.Corrupt, &resp.Corrupt
			case good >= s.cfg.Replicas:
				class, total = &ff.Healthy, &resp.Healthy
			case good == 0:
				class, total = &ff.Missing, &resp.Missing
			default:
				class, total = &ff.UnderReplicated, &resp.UnderReplicated
				if good >= targets {
					// Every node that takes copies has one: repair cannot help.
					ff.Unplaceable++
					resp.Unplaceable++
				}
			}
			*class++
			*total++
			resp.Chunks++
		}
		if req.Files {
			resp.FileList = append(resp.FileList, ff)
		}
	}
	resp.Counters = s.countersAPILocked(now)
	s.mu.Unlock()
	resp.PendingRepair = resp.Counters.PendingRepair
	resp.PendingGc = resp.Counters.PendingGc
	resp.Repaired = resp.Counters.Repaired
	resp.GarbageCollected = resp.Counters.GarbageCollected
	return resp, nil
}

// FsckPages returns the number of Fsck pages this coordinator has served.
// Fsck reads every file it checks: status answers and pollers read the
// counters instead, and this shows that they do.
func (s *Server) FsckPages() int64 { return s.fsckPages.Load() }

// fsckPage is the default number of files in a page of Fsck; maxFsckPage
// the most.
const (
	fsckPage    = 1000
	maxFsckPage = 10000
)

// skewMargin is how far a datanode's clock may lag the coordinator's before
// a chunk written on it within the grace period could look older than the
// grace period there: a minute, or half the grace period if that is less.
func skewMargin(grace time.Duration) time.Duration {
	return min(time.Minute, grace/2)
}
