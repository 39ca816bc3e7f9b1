package client

import (
	"context"
	"fmt"

	"golang.org/x/sync/semaphore"
)

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
