// Package bufpool pools byte buffers by size class (powers of two from 64
// KiB to 8 MiB), so a small chunk borrows a small buffer and a large one a
// large buffer, and neither allocates (and zeroes) a maximum-size buffer
// each time.
package bufpool

import (
	"math/bits"
	"sync"
)

// Pool is a set of buffer pools by size class. Its zero value is ready.
type Pool struct {
	classes [8]sync.Pool // 64 KiB << i
}

const minShift = 16

func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minShift
}

// Get returns a buffer of length n. One larger than the largest class is
// allocated, and not kept by Put.
func (p *Pool) Get(n int) *[]byte {
	c := class(n)
	if c >= len(p.classes) {
		buf := make([]byte, n)
		return &buf
	}
	if v := p.classes[c].Get(); v != nil {
		buf := v.(*[]byte)
		*buf = (*buf)[:n]
		return buf
	}
	buf := make([]byte, n, 1<<(c+minShift))
	return &buf
}

// Cap is the capacity of the buffer Get(n) returns.
func Cap(n int) int {
	if c := class(n); c < len(Pool{}.classes) {
		return 1 << (c + minShift)
	}
	return n
}

// Put returns a buffer from Get to its pool.
func (p *Pool) Put(buf *[]byte) {
	c := class(cap(*buf))
	if c < len(p.classes) && cap(*buf) == 1<<(c+minShift) {
		p.classes[c].Put(buf)
	}
}
