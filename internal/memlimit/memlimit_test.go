package memlimit

import (
	"context"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestLimitFollowsTheLiveHeap(t *testing.T) {
	const mib = 1 << 20
	if got := Limit(384*mib, 10*mib); got != 384*mib {
		t.Fatalf("small live heap: limit %d, want the floor", got)
	}
	if got := Limit(384*mib, 1000*mib); got != 2000*mib+headroom {
		t.Fatalf("large live heap: limit %d, want twice it and headroom", got)
	}
}

func TestStartRaisesTheLimitAsLiveDataGrows(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetMemoryLimit(math.MaxInt64)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const floor = 96 << 20
	Start(ctx, floor, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	if got := debug.SetMemoryLimit(-1); got < floor {
		t.Fatalf("limit %d after Start, want at least the floor %d", got, floor)
	}
	live := make([]byte, 128<<20)
	for i := range live {
		live[i] = byte(i)
	}
	deadline := time.Now().Add(10 * time.Second)
	for debug.SetMemoryLimit(-1) < 2*int64(len(live)) {
		if time.Now().After(deadline) {
			t.Fatalf("limit %d with %d bytes live: it did not make room for them", debug.SetMemoryLimit(-1), len(live))
		}
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	runtime.KeepAlive(live)
}

func TestOperatorsLimitStands(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "1GiB")
	before := debug.SetMemoryLimit(-1)
	Start(context.Background(), 64<<20, time.Millisecond, slog.New(slog.DiscardHandler))
	time.Sleep(20 * time.Millisecond)
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("limit changed from %d to %d although GOMEMLIMIT is set", before, got)
	}
}
