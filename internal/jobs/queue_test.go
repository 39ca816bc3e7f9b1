package jobs

import (
	"context"
	"testing"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/meta"
)

func TestQueueHeldUntilFreed(t *testing.T) {
	q := newQueue(nil, meta.NewSchema(""))
	h := dfs.Sum([]byte("a"))
	q.pending[h] = &entry{}
	ctx := context.Background()
	got, ok := q.next(ctx)
	if !ok || got != h {
		t.Fatal("the only job was not handed out")
	}
	if q.pending[h].available() {
		t.Fatal("a job in a worker's hands is available to another")
	}
	// Another worker holds its lock, seen at revision 10.
	q.release(h, false, 10)
	if q.pending[h].available() {
		t.Fatal("a job held elsewhere is available")
	}
	q.pending[h].freedRev = 9 // a lock key deleted before the look: no news
	if q.pending[h].available() {
		t.Fatal("a lock key deleted before the holder was seen frees the job")
	}
	q.pending[h].freedRev = 11
	if !q.pending[h].available() {
		t.Fatal("a lock key deleted after the holder was seen does not free the job")
	}
	q.release(h, true, 0)
	if _, ok := q.pending[h]; ok {
		t.Fatal("a finished job stays in the queue")
	}
}

func TestQueueStoppedHandsOutNothing(t *testing.T) {
	q := newQueue(nil, meta.NewSchema(""))
	q.pending[dfs.Sum([]byte("a"))] = &entry{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := q.next(ctx); ok {
		t.Fatal("a stopped pool handed out a job")
	}
}
