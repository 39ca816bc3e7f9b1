// Package memlimit keeps a process's memory near what it needs. Go's
// collector lets the heap grow to twice its live data between collections
// (GOGC=100), so a burst of short-lived buffers (many concurrent uploads)
// leaves a server holding twice its peak for minutes. A soft memory limit
// makes the collector run earlier instead; but a fixed limit below what a
// large cluster's live data needs would make it run without pause. So the
// limit follows the live heap: a floor while the live data is small, and
// room for twice the live data (GOGC's own growth) above it, so it never
// binds a process that needs more.
package memlimit

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// headroom is kept above twice the live heap for the memory Go counts
// besides it: stacks, runtime structures, buffers in flight.
const headroom = 64 << 20

// Limit is the soft memory limit for a process whose live heap is live
// bytes, floor the least it may be.
func Limit(floor, live int64) int64 {
	return max(floor, 2*live+headroom)
}

// Start keeps the process's soft memory limit at Limit(floor, live heap),
// rechecking every interval, until ctx ends. It does nothing if floor ≤ 0
// or the environment sets GOMEMLIMIT (the operator's choice stands). It
// returns at once.
func Start(ctx context.Context, floor int64, interval time.Duration, log *slog.Logger) {
	if floor <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	set := func() int64 {
		l := Limit(floor, liveHeap())
		debug.SetMemoryLimit(l)
		return l
	}
	cur := set()
	log.Debug("soft memory limit", "bytes", cur)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				debug.SetMemoryLimit(math.MaxInt64) // none
				return
			case <-t.C:
				if l := set(); l != cur {
					cur = l
					log.Debug("soft memory limit", "bytes", cur)
				}
			}
		}
	}()
}

// liveHeap is the heap's live data at the end of the last collection.
func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}
