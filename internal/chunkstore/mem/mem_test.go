package mem_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/chunkstore/mem"
	"github.com/dfs-store/dfs/internal/chunkstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) dfs.ChunkStore { return mem.New(0) })
}

func TestConformanceLimited(t *testing.T) {
	storetest.Run(t, func(t *testing.T) dfs.ChunkStore { return mem.New(64 << 20) })
}

func TestCapacityFull(t *testing.T) {
	s := mem.New(100)
	a := bytes.Repeat([]byte("a"), 60)
	b := bytes.Repeat([]byte("b"), 60)
	ctx := context.Background()

	if _, err := s.Put(ctx, dfs.Sum(a), bytes.NewReader(a)); err != nil {
		t.Fatalf("Put 60 of 100 bytes: %v", err)
	}
	_, err := s.Put(ctx, dfs.Sum(b), bytes.NewReader(b))
	if !errors.Is(err, dfs.ErrNoSpace) {
		t.Fatalf("Put past capacity: err = %v, want ErrNoSpace", err)
	}
	if _, err := s.Stat(dfs.Sum(b)); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("chunk refused for space is stored: Stat err = %v", err)
	}
	// A chunk already stored needs no room.
	if _, err := s.Put(ctx, dfs.Sum(a), bytes.NewReader(a)); err != nil {
		t.Errorf("Put of a stored chunk into a full store: %v", err)
	}
	if chunks, n := s.Usage(); chunks != 1 || n != 60 {
		t.Errorf("Usage = %d, %d; want 1, 60", chunks, n)
	}
	if free, capacity, err := s.Free(); err != nil || free != 40 || capacity != 100 {
		t.Errorf("Free = %d, %d, %v; want 40, 100, nil", free, capacity, err)
	}

	// Exactly filling it is fine; deleting makes room.
	c := bytes.Repeat([]byte("c"), 40)
	if _, err := s.Put(ctx, dfs.Sum(c), bytes.NewReader(c)); err != nil {
		t.Fatalf("Put filling the store exactly: %v", err)
	}
	if err := s.Delete(dfs.Sum(a)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, dfs.Sum(b), bytes.NewReader(b)); err != nil {
		t.Errorf("Put after Delete made room: %v", err)
	}
}

func TestUnlimitedCapacity(t *testing.T) {
	free, capacity, err := mem.New(0).Free()
	if err != nil || free != mem.Unlimited || capacity != mem.Unlimited {
		t.Errorf("Free of New(0) = %d, %d, %v; want %d, %d, nil", free, capacity, err, int64(mem.Unlimited), int64(mem.Unlimited))
	}
}
