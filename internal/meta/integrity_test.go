package meta_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/meta"
)

// A content hash stored with one chunk list and committed with another is
// a conflict the caller must settle; DedupAny shares the stored list;
// ReplaceContent swaps a forged list for a verified one, keeps the paths'
// count, queues the job again, drops the forged list's references, and
// leaves the paths committed with the forged list pointing at a layout
// that is gone.
func TestLayoutConflictAndReplace(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	forged := content(chunks(2, 100, 7), "claimed")
	real := content(chunks(3, 100, 8), "claimed") // the same claimed hash
	real.Size, forged.Size = 300, 200

	fi, _ := commit(t, s, "evil/placeholder", forged)
	if fi.Layout == "" || fi.Layout != meta.LayoutOf(forged) {
		t.Fatalf("the forger's path has layout %q, want %q", fi.Layout, meta.LayoutOf(forged))
	}
	_, _, err := s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: "victim/real"}, Content: real, QueueJob: true})
	var lc *meta.LayoutConflict
	if !errors.As(err, &lc) || !errors.Is(err, dfs.ErrConflict) || lc.Stored.Layout != meta.LayoutOf(forged) || !slices.Equal(lc.Stored.Chunks, forged.Chunks) {
		t.Fatalf("a commit of the hash with another chunk list: %v, want a LayoutConflict naming the stored list", err)
	}
	if _, err := s.GetFile(ctx, "victim/real"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("a conflicting commit wrote its path: %v", err)
	}

	// The stored list was forged: replace it.
	if err := s.ReplaceContent(ctx, real, lc.Stored, lc.Revision); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceContent(ctx, real, lc.Stored, lc.Revision); !errors.Is(err, dfs.ErrConflict) {
		t.Fatalf("a second replace at the old revision: %v, want a conflict", err)
	}
	got, err := s.GetContentFresh(ctx, real.Hash)
	if err != nil || !slices.Equal(got.Chunks, real.Chunks) || got.Layout != meta.LayoutOf(real) {
		t.Fatalf("content after the replace: %+v, %v", got, err)
	}
	for _, ch := range forged.Chunks {
		if n := keyCount(t, s.Schema().ChunkRef(ch.Hash, real.Hash)); n != 0 {
			t.Errorf("the forged chunk %s keeps its reference", ch.Hash.Short())
		}
		if n := keyCount(t, s.Schema().ChunkCandidate(ch.Hash)); n != 1 {
			t.Errorf("the forged chunk %s is no garbage candidate", ch.Hash.Short())
		}
	}
	for _, ch := range real.Chunks {
		if n := keyCount(t, s.Schema().ChunkRef(ch.Hash, real.Hash)); n != 1 {
			t.Errorf("the real chunk %s has no reference", ch.Hash.Short())
		}
	}
	if n := keyCount(t, s.Schema().Job(real.Hash)); n != 1 {
		t.Errorf("no job queued for the replaced content")
	}
	fi, dup, err := s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: "victim/real"}, Content: real, QueueJob: true})
	if err != nil || !dup || fi.Layout != meta.LayoutOf(real) {
		t.Fatalf("the victim's commit after the replace: %+v dup %v, %v", fi, dup, err)
	}
	evil, err := s.GetFile(ctx, "evil/placeholder")
	if err != nil || evil.Layout == got.Layout {
		t.Fatalf("the forger's path: %+v, %v; want its own, gone layout", evil, err)
	}
	// Both paths count: deleting the forger's leaves the victim's content.
	if err := s.DeleteFile(ctx, "evil/placeholder"); err != nil {
		t.Fatal(err)
	}
	if n := keyCount(t, s.Schema().ContentCandidate(real.Hash)); n != 0 {
		t.Fatal("deleting the forger's path made the victim's content a garbage candidate")
	}

	// Another chunking of the same bytes: DedupAny shares the stored list.
	other := content(chunks(1, 300, 9), "claimed")
	fi, dup, err = s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: "victim/copy"}, Content: other, DedupAny: true})
	if err != nil || !dup || fi.Layout != meta.LayoutOf(real) {
		t.Fatalf("DedupAny: %+v dup %v, %v; want the stored layout", fi, dup, err)
	}
}
