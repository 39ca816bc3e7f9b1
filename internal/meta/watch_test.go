package meta_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/meta"
)

// WatchChanges reports writes and deletes of paths and the job a new
// content queues, in order, skipping keys below the job prefix that are
// not jobs; it ends with its context.
func TestWatchChanges(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	changes := make(chan meta.Change, 16)
	errc := make(chan error, 1)
	wctx, stop := context.WithCancel(ctx)
	go func() {
		errc <- s.WatchChanges(wctx, func(c meta.Change) error { changes <- c; return nil })
	}()
	next := func() meta.Change {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case err := <-errc:
			t.Fatalf("watch ended: %v", err)
		case <-ctx.Done():
			t.Fatal("no change within 30s")
		}
		return meta.Change{}
	}

	// Commit new contents until the watch has seen one: it may start
	// after the first commit.
	var first meta.Change
	for i := uint64(0); first.Kind == ""; i++ {
		content := dfs.Content{Hash: dfs.Sum([]byte{byte(i), byte(i >> 8)}), Size: 7, Chunks: chunks(1, 7, i)}
		if _, _, err := s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: "w/a"}, Content: content, QueueJob: true}); err != nil {
			t.Fatal(err)
		}
		select {
		case first = <-changes:
		case <-time.After(200 * time.Millisecond):
		}
	}
	// The file and the job of one commit come together (one transaction).
	files, jobs := map[dfs.Hash]meta.Change{}, map[dfs.Hash]meta.Change{}
	for c := first; ; c = next() {
		switch c.Kind {
		case meta.FileWritten:
			files[c.File.Content] = c
		case meta.JobChanged:
			jobs[c.Content] = c
		default:
			t.Fatalf("unexpected change %+v", c)
		}
		h := c.Content
		if c.Kind == meta.FileWritten {
			h = c.File.Content
		}
		f, okf := files[h]
		j, okj := jobs[h]
		if !okf || !okj {
			continue
		}
		if f.File.Path != "w/a" || f.File.Size != 7 || f.Revision == 0 || f.Revision != j.Revision {
			t.Fatalf("file change: %+v (job at revision %d)", f, j.Revision)
		}
		if j.Job == nil || j.Job.State != "queued" {
			t.Fatalf("job change: %+v", j)
		}
		break
	}
	for len(changes) > 0 {
		<-changes // later commits of the same path
	}

	// A key below the jobs prefix that is not a job is skipped.
	if _, err := s.Client().Put(ctx, s.Schema().JobsPrefix()+"not-a-hash", "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFile(ctx, "w/a"); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.Kind != meta.FileDeleted || c.File.Path != "w/a" {
		t.Fatalf("after the delete: %+v, want file_deleted w/a", c)
	}
	stop()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch ended with %v, want context.Canceled", err)
	}
}
