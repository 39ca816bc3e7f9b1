package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/rpc"
)

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
	GarbageChunks   int // chunks found unreferenced and old enough
	DeletedCopies   int // chunk copies the datanodes deleted
	KeptYoungChunks int // unreferenced chunks still within the grace period
}

// CollectGarbage runs one mark and sweep (see heal.go for the protocol).
func (s *Server) CollectGarbage(ctx context.Context) error {
	_, err := s.collect(ctx)
	return err
}

func (s *Server) collect(ctx context.Context) (GCStats, error) {
	s.heal.gcMu.Lock()
	defer s.heal.gcMu.Unlock()
	var st GCStats
	fence, err := s.confirmLeader(ctx)
	if err != nil {
		return st, fmt.Errorf("garbage collection: %w", err)
	}
	start := time.Now()
	cutoff := start.Add(-s.cfg.GCGrace)

	// Mark. Contents first, then files: see meta/gc.go.
	contents, orphans, err := s.meta.Contents(ctx)
	if err != nil {
		return st, err
	}
	s.collectPages(ctx, fence, orphans, start)
	referenced, err := s.meta.ReferencedContents(ctx)
	if err != nil {
		return st, err
	}
	live := map[dfs.Hash]struct{}{}
	for _, e := range contents {
		if referenced[e.Content.Hash] == 0 && e.Content.Created.Before(cutoff) {
			ok, err := s.meta.DeleteContent(ctx, fence, e)
			if err != nil {
				return st, err
			}
			if ok {
				st.Contents++
				continue
			}
		}
		for _, c := range e.Content.Chunks {
			live[c.Hash] = struct{}{}
		}
	}

	// Sweep: doom what is garbage, under the lock commits touch chunks with.
	byNode := map[dfs.NodeID][]dfs.Hash{}
	var doomed []dfs.Hash
	now := time.Now()
	s.mu.Lock()
	inSession := map[dfs.Hash]struct{}{}
	for _, ss := range s.sessions {
		for h := range ss.chunks {
			inSession[h] = struct{}{}
		}
	}
	for k := range locShards {
		s.locs.eachInShard(k, func(h dfs.Hash) {
			if _, ok := live[h]; ok {
				return
			}
			if _, ok := inSession[h]; ok {
				return
			}
			if s.heal.committing[h] > 0 {
				return
			}
			if t, ok := s.heal.touched[h]; ok && !t.Before(cutoff) {
				st.KeptYoungChunks++
				return
			}
			st.GarbageChunks++
			s.doomLocked(h)
			doomed = append(doomed, h)
			for _, id := range s.holdersLocked(h) {
				// Only nodes that know this term, so that they would refuse a
				// deposed leader's deletes too.
				if n := s.nodes[id]; n != nil && s.stateLocked(n, now) != dfs.NodeDead && n.stats.LeaderTerm >= fence.Rev {
					byNode[id] = append(byNode[id], h)
				}
			}
		})
	}
	// Forget touches older than the grace period: they protect nothing.
	for h, t := range s.heal.touched {
		if t.Before(cutoff) {
			delete(s.heal.touched, h)
		}
	}
	s.heal.pendingGC = int64(st.GarbageChunks + st.KeptYoungChunks)
	s.mu.Unlock()

	defer func() {
		s.mu.Lock()
		for _, h := range doomed {
			s.undoomLocked(h)
		}
		s.notifyLocked() // kept copies count again
		s.heal.collected += int64(st.DeletedCopies)
		s.heal.pendingGC = int64(st.KeptYoungChunks)
		s.mu.Unlock()
	}()
	// The mark took a while: make sure the term has not ended since.
	if _, err := s.confirmLeader(ctx); err != nil {
		return st, fmt.Errorf("garbage collection: %w", err)
	}
	for id, hashes := range byNode {
		dn, err := s.control(id)
		if err != nil {
			s.log.Warn("gc: reach datanode", "node", id, "err", err)
			continue
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
			if fencedErr(err) {
				// The node knows a newer leader term: this one is over.
				s.stepDown(fence.Rev)
				return st, fmt.Errorf("garbage collection: node %s: %w", id, rpc.FromStatus(err))
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
				break
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
	}
	s.log.Info("garbage collected", "contents", st.Contents, "garbage_chunks", st.GarbageChunks,
		"deleted_copies", st.DeletedCopies, "young_chunks_kept", st.KeptYoungChunks, "took", time.Since(start).Round(time.Millisecond))
	return st, nil
}

// collectPages deletes chunk pages no content record has named for a
// whole grace period. Page keys carry no time, so the first collection that
// sees an orphan starts its clock.
func (s *Server) collectPages(ctx context.Context, fence meta.Fence, orphans []string, now time.Time) {
	seen := map[string]time.Time{}
	for _, p := range orphans {
		first, ok := s.heal.orphanPages[p]
		if !ok {
			first = now
		}
		if now.Sub(first) < s.cfg.GCGrace {
			seen[p] = first
			continue
		}
		if ok, err := s.meta.DeletePages(ctx, fence, p); err != nil {
			s.log.Warn("gc: delete orphan chunk pages", "prefix", p, "err", err)
			seen[p] = first
		} else if ok {
			s.log.Info("gc: deleted orphan chunk pages", "prefix", p)
		}
	}
	s.heal.orphanPages = seen
}

// Fsck implements api.CoordinatorServer: one page of the files under the
// prefix, their chunks classed as healthy (Replicas good copies or more),
// under-replicated, missing (no good copy), or corrupt (a copy was found
// corrupt and is not yet replaced). The page's contents are read without
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
