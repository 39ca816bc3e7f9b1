package datanode

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/dfs-store/dfs"
)

// Scrubbing: a datanode re-reads every chunk it holds, pass after pass, and
// checks its bytes against its name, so a copy rotting on the disk is found
// before a reader needs it, and repair copies a good one while good copies
// still exist. A pass goes through the store's index (no walk of the disk)
// and is paced to end within nine tenths of Config.ScrubInterval: at the
// start of a pass the scrubber sets its budgets to what the store holds
// over that time, in chunks and in bytes a second, so its cost is spread
// evenly instead of spent in a burst. Two limits cap the pace, both
// averaged: Config.ScrubRate bytes a second, which bounds the disk reads
// of large chunks, and Config.ScrubChunks chunks a second, which bounds the
// per-file cost (an open, a direct read, a close) that dominates for small
// chunks. A chunk costs the byte budget its size and nothing more, so small
// chunks are limited by the chunk budget alone. The next pass starts
// Config.ScrubInterval after one began, or at once if it took longer.
//
// A small store is the exception: one whose pass the slowest pace (minPace
// chunks a second) ends well within the interval. Waiting out the rest of
// the interval would leave every chunk written meanwhile unchecked for up
// to a week (a new dfs server scrubbed nothing it stored for that long);
// instead its passes follow one another, at least floorEvery apart, at
// that slowest pace: about one chunk a minute, a cost too small to
// matter, and a chunk is checked within minutes of being written.
//
// A corrupt copy is moved to the store's quarantine (the coordinators hear
// of it as removed and as corrupt in the next heartbeat, sent at once) and
// never served again.

// scrubBurst is the most the scrubber reads ahead of its rate: one read
// buffer of the chunk store.
const scrubBurst = 1 << 20

// scrubber is the Node's background verifier.
type scrubber struct {
	n        *Node
	bytesLim *rate.Limiter // bytes a second
	chunkLim *rate.Limiter // chunks a second
	interval time.Duration
	// The limits: the most bytes and chunks a second, whatever the pace.
	maxBytes, maxChunks float64

	chunks  atomic.Int64 // chunks verified since start
	bytes   atomic.Int64 // their bytes
	passEnd atomic.Int64 // unix nanos when the last full pass ended; 0: none yet
}

func newScrubber(n *Node, mibPerSec, chunksPerSec float64, interval time.Duration) *scrubber {
	return &scrubber{
		n:        n,
		bytesLim: rate.NewLimiter(rate.Limit(mibPerSec*(1<<20)), scrubBurst),
		chunkLim: rate.NewLimiter(rate.Limit(chunksPerSec), 1),
		interval: interval,
		maxBytes: mibPerSec * (1 << 20), maxChunks: chunksPerSec,
	}
}

// minPace is the slowest a pass goes, in chunks a second: a store of a few
// chunks is checked in minutes. floorEvery is the least time between the
// starts of two passes of a store that small (one chunk at minPace).
const (
	minPace    = 1.0 / 60
	floorEvery = time.Minute
)

// small reports whether a store of chunks chunks is scrubbed at minPace,
// its pass ending well within the interval: its passes then follow one
// another instead of waiting for the interval's end.
func (s *scrubber) small(chunks int64) bool {
	return float64(chunks)/(0.9*s.interval.Seconds()) < minPace
}

// pace sets the budgets of a pass over chunks chunks of bytes bytes: what
// reads them all in nine tenths of the interval, within the limits.
func (s *scrubber) pace(chunks, bytes int64) (chunksPerSec, bytesPerSec float64) {
	secs := 0.9 * s.interval.Seconds()
	chunksPerSec = min(s.maxChunks, max(float64(chunks)/secs, minPace))
	bytesPerSec = min(s.maxBytes, max(float64(bytes)/secs, minPace*scrubBurst))
	s.chunkLim.SetLimit(rate.Limit(chunksPerSec))
	s.bytesLim.SetLimit(rate.Limit(bytesPerSec))
	return chunksPerSec, bytesPerSec
}

// run scrubs until ctx ends.
func (s *scrubber) run(ctx context.Context) {
	for {
		start := time.Now()
		stored, size := s.n.store.Usage()
		s.pace(stored, size)
		next := s.interval
		if s.small(stored) {
			next = min(s.interval, floorEvery)
		}
		chunks, bytes, err := s.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.n.log.Warn("scrub pass failed", "err", err, "chunks", chunks, "bytes", bytes, "duration", time.Since(start))
		} else {
			s.passEnd.Store(time.Now().UnixNano())
			lvl := slog.LevelInfo
			if next < s.interval {
				lvl = slog.LevelDebug // a small store's passes come every few minutes
			}
			s.n.log.Log(ctx, lvl, "scrub pass finished", "chunks", chunks, "bytes", bytes, "duration", time.Since(start).Round(time.Millisecond))
		}
		if wait := next - time.Since(start); wait > 0 {
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
		if err := s.chunkLim.Wait(ctx); err != nil {
			return err
		}
		if err := s.wait(ctx, size); err != nil {
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

// wait takes cost tokens from the byte limiter, a burst at a time.
func (s *scrubber) wait(ctx context.Context, cost int64) error {
	for cost > 0 {
		k := min(cost, int64(s.bytesLim.Burst()))
		if err := s.bytesLim.WaitN(ctx, int(k)); err != nil {
			return err
		}
		cost -= k
	}
	return nil
}
