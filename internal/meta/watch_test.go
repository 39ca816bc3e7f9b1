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
	var content dfs.Content
	var first meta.Change
	for i := uint64(0); first.Kind == ""; i++ {
		content = dfs.Content{Hash: dfs.Sum([]byte{byte(i), byte(i >> 8)}), Size: 7, Chunks: chunks(1, 7, i)}
		if _, _, err := s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: "w/a"}, Content: content, QueueJob: true}); err != nil {
			t.Fatal(err)
		}
		select {
		case first = <-changes:
		case <-time.After(200 * time.Millisecond):
		}
	}
	seen := map[meta.ChangeKind]meta.Change{first.Kind: first}
	for len(seen) < 2 {
		c := next()
		seen[c.Kind] = c
	}
	if f := seen[meta.FileWritten]; f.File.Path != "w/a" || f.File.Content != content.Hash || f.File.Size != 7 || f.Revision == 0 {
		t.Fatalf("file change: %+v", f)
	}
	if j := seen[meta.JobChanged]; j.Content != content.Hash || j.Job == nil || j.Job.State != "queued" {
		t.Fatalf("job change: %+v", j)
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
