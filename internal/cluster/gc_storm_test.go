package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dfs-store/dfs/client"
)

// Many small files committed, deduplicated, overwritten and deleted while
// collections run back to back with no grace period: every file that is
// committed at the end reads back intact, and garbage was collected on the
// way. DFS_GC_STORM_FILES sets how many puts (a million for the full
// variant; the default is quick).
func TestGCStormOfSmallFilesNeverLosesCommittedData(t *testing.T) {
	slow(t, "a storm of small files against garbage collection")
	files := 200
	if v := os.Getenv("DFS_GC_STORM_FILES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("DFS_GC_STORM_FILES=%q: want a positive number of files", v)
		}
		files = n
	}
	cl, c := gc(t, time.Nanosecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A small pool of blobs, so that commits keep deduplicating onto
	// contents that are garbage a moment earlier.
	blobs := make([][]byte, 64)
	for i := range blobs {
		blobs[i] = randomBytes(4096, int64(500+i))
	}
	const writers = 4
	var (
		mu      sync.Mutex
		live    = map[string][]byte{} // committed and not deleted
		next    atomic.Int64
		failed  atomic.Int64
		wg      sync.WaitGroup
		sweeps  atomic.Int64
		gcErr   error
		writing = make(chan struct{})
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= files {
					return
				}
				data := blobs[(i*7+w)%len(blobs)]
				// Paths repeat: a put may overwrite a file of another blob.
				path := fmt.Sprintf("storm/%d", i%(files/4+1))
				if _, err := c.Put(ctx, path, bytes.NewReader(data), client.PutOptions{}); err != nil {
					failed.Add(1) // a doomed chunk: nothing committed
					continue
				}
				mu.Lock()
				live[path] = data
				mu.Unlock()
				if i%3 == 0 {
					mu.Lock()
					if err := c.Delete(ctx, path); err == nil {
						delete(live, path)
					}
					mu.Unlock()
				}
			}
		}()
	}
	go func() {
		defer close(writing)
		wg.Wait()
	}()
	for done := false; !done; {
		select {
		case <-writing:
			done = true
		default:
		}
		if err := cl.Coordinator.Server.CollectGarbage(ctx); err != nil {
			gcErr = err
			break
		}
		sweeps.Add(1)
	}
	if gcErr != nil {
		t.Fatal(gcErr)
	}
	// Once more with nothing going on.
	if err := cl.Coordinator.Server.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := c.Fsck(context.Background(), "", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d puts (%d failed on a doomed chunk), %d sweeps deleted %d copies; %d files live",
		files, failed.Load(), sweeps.Load(), f.GarbageCollected, len(live))
	if f.GarbageCollected == 0 {
		t.Fatal("no sweep deleted anything: the race was not exercised")
	}
	for path, want := range live {
		mustRead(t, c, path, want)
	}
	if f.Files != int64(len(live)) || f.Missing != 0 {
		t.Fatalf("fsck: %d files, %d missing chunks; want %d files, none missing", f.Files, f.Missing, len(live))
	}
}

// A chunk written to a datanode and never committed is garbage once its
// grace period is over, found from the datanode's report of it, without a
// walk of every chunk.
func TestGCFindsChunksNeverCommitted(t *testing.T) {
	slow(t, "waits out a garbage-collection grace period")
	cl, c := gc(t, 200*time.Millisecond)
	kept := randomBytes(4096, 600)
	put(t, c, "kept", kept)
	orphan := randomBytes(4096, 601)
	h := sha256.Sum256(orphan)
	n := cl.Nodes[0]
	if _, err := n.Store().Put(context.Background(), h, bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if err := statChunk(n, h); err != nil {
			return err
		}
		return nil
	})
	time.Sleep(600 * time.Millisecond) // let the grace period (and the clock-skew margin) pass: the condition under test
	// The first collection after the grace period makes it a candidate and
	// sweeps it (the report may take a heartbeat to arrive: try a few).
	eventually(t, 10*time.Second, func() error {
		if err := cl.Coordinator.Server.CollectGarbage(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := statChunk(n, h); err == nil {
			return fmt.Errorf("the chunk never committed is still on disk")
		}
		return nil
	})
	mustRead(t, c, "kept", kept)
	// A full collection, asked for by a client, finds nothing more and
	// deletes nothing the kept file needs.
	r, err := c.RunGC(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if r.GarbageChunks != 0 {
		t.Fatalf("a full collection found %d garbage chunks, want none", r.GarbageChunks)
	}
	mustRead(t, c, "kept", kept)
}
