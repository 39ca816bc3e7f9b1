package datanode

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/dfs-store/dfs"
)

// Scrubbing: a datanode re-reads every chunk it holds, pass after pass, and
// checks its bytes against its name, so a copy rotting on the disk is found
// before a reader needs it, and repair copies a good one while good copies
// still exist. Reads are limited to Config.ScrubRate, averaged, so
// scrubbing never crowds out clients; a pass starts as soon as the previous
// one ends, but no sooner than Config.ScrubInterval after it began, so a
// store with few chunks is not re-read in a tight loop.
//
// A corrupt copy is moved to the store's quarantine (the coordinators hear
// of it as removed and as corrupt in the next heartbeat, sent at once) and
// never served again.

// scrubBurst is the most the scrubber reads ahead of its rate: one read
// buffer of the chunk store.
const scrubBurst = 1 << 20

// scrubMinCost is what a chunk costs the rate limit at least, however small:
// opening and reading any file costs a disk access.
const scrubMinCost = 4096

// scrubber is the Node's background verifier.
type scrubber struct {
	n        *Node
	lim      *rate.Limiter
	interval time.Duration

	chunks  atomic.Int64 // chunks verified since start
	bytes   atomic.Int64 // their bytes
	passEnd atomic.Int64 // unix nanos when the last full pass ended; 0: none yet
}

func newScrubber(n *Node, mibPerSec float64, interval time.Duration) *scrubber {
	return &scrubber{
		n:        n,
		lim:      rate.NewLimiter(rate.Limit(mibPerSec*(1<<20)), scrubBurst),
		interval: interval,
	}
}

// run scrubs until ctx ends.
func (s *scrubber) run(ctx context.Context) {
	for {
		start := time.Now()
		chunks, bytes, err := s.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.n.log.Warn("scrub pass failed", "err", err, "chunks", chunks, "bytes", bytes, "duration", time.Since(start))
		} else {
			s.passEnd.Store(time.Now().UnixNano())
			s.n.log.Info("scrub pass finished", "chunks", chunks, "bytes", bytes, "duration", time.Since(start).Round(time.Millisecond))
		}
		if wait := s.interval - time.Since(start); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// pass verifies every chunk stored once, and returns how many it verified.
func (s *scrubber) pass(ctx context.Context) (chunks, bytes int64, err error) {
	err = s.n.store.Walk(ctx, func(h dfs.ChunkHash, size int64) error {
		if err := s.wait(ctx, max(size, scrubMinCost)); err != nil {
			return err
		}
		present, ok, err := s.n.store.Verify(ctx, h)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// One unreadable file must not stop the pass.
			s.n.log.Warn("scrub: cannot verify chunk", "chunk", h.String(), "err", err)
			return nil
		}
		if !present {
			return nil // deleted since the walk listed it
		}
		chunks++
		bytes += size
		s.chunks.Add(1)
		s.bytes.Add(size)
		if !ok {
			s.n.quarantineCorrupt(h, "scrub")
			s.n.poke()
		}
		return nil
	})
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = ctx.Err()
	}
	return chunks, bytes, err
}

// wait takes cost tokens from the limiter, a burst at a time.
func (s *scrubber) wait(ctx context.Context, cost int64) error {
	for cost > 0 {
		k := min(cost, int64(s.lim.Burst()))
		if err := s.lim.WaitN(ctx, int(k)); err != nil {
			return err
		}
		cost -= k
	}
	return nil
}
