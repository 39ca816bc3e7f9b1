package client

import (
	"context"
	"fmt"
	"math/bits"
	"sync"

	"golang.org/x/sync/semaphore"
)

// buffers pools chunk buffers by size class (powers of two from 64 KiB), so
// a small file borrows a small buffer and a large one a large buffer, and
// neither allocates (and zeroes) a maximum-size buffer per chunk.
type buffers struct {
	classes [8]sync.Pool // 64 KiB << i
}

const minBufShift = 16

func class(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// get returns a buffer of length n.
func (b *buffers) get(n int) *[]byte {
	c := class(n)
	if c >= len(b.classes) {
		buf := make([]byte, n)
		return &buf
	}
	if v := b.classes[c].Get(); v != nil {
		buf := v.(*[]byte)
		*buf = (*buf)[:n]
		return buf
	}
	buf := make([]byte, n, 1<<(c+minBufShift))
	return &buf
}

// bufCap is the capacity of the buffer get(n) returns.
func bufCap(n int) int {
	if c := class(n); c < len(buffers{}.classes) {
		return 1 << (c + minBufShift)
	}
	return n
}

// put returns a buffer from get to its pool.
func (b *buffers) put(buf *[]byte) {
	c := class(cap(*buf))
	if c < len(b.classes) && cap(*buf) == 1<<(c+minBufShift) {
		b.classes[c].Put(buf)
	}
}

// memBudget is a number of bytes that uploads share: each takes what it
// holds and gives it back. A request larger than the whole budget takes
// all of it, so it waits for the others but is never refused.
type memBudget struct {
	sem   *semaphore.Weighted
	total int64
}

func newMemBudget(total int64) *memBudget {
	return &memBudget{sem: semaphore.NewWeighted(total), total: total}
}

func (m *memBudget) cost(n int64) int64 { return min(n, m.total) }

// take waits for n bytes of room, or until ctx ends.
func (m *memBudget) take(ctx context.Context, n int64) error {
	return m.sem.Acquire(ctx, m.cost(n))
}

// tryTake takes n bytes if they are free now.
func (m *memBudget) tryTake(n int64) bool { return m.sem.TryAcquire(m.cost(n)) }

// give returns n bytes taken before.
func (m *memBudget) give(n int64) { m.sem.Release(m.cost(n)) }

// scanBudget charges a splitter's scan buffer to a budget, waiting while
// ctx lasts (chunker.Budget).
type scanBudget struct {
	ctx context.Context
	m   *memBudget
}

func (b scanBudget) Acquire(n int64) error {
	if err := b.m.take(b.ctx, n); err != nil {
		return fmt.Errorf("wait for upload memory: %w", err)
	}
	return nil
}
func (b scanBudget) Release(n int64) { b.m.give(n) }
