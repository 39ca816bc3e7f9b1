package client

import (
	"math/bits"
	"sync"
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

// put returns a buffer from get to its pool.
func (b *buffers) put(buf *[]byte) {
	c := class(cap(*buf))
	if c < len(b.classes) && cap(*buf) == 1<<(c+minBufShift) {
		b.classes[c].Put(buf)
	}
}
