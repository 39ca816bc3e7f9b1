package datanode

import (
	"io"
	"sync"
	"sync/atomic"
)

// A fanout copies one stream to several readers that consume it at their own
// pace, each through a bounded queue of shared blocks, so a write lands on
// the local disk and travels down the replication chain at the same time. A
// reader that gives up is drained in the background and never stalls the
// others.

const blockSize = 256 << 10

var blockPool = sync.Pool{New: func() any { b := make([]byte, blockSize); return &b }}

type block struct {
	buf  *[]byte
	n    int
	refs atomic.Int32
}

func (b *block) release() {
	if b.refs.Add(-1) == 0 {
		blockPool.Put(b.buf)
	}
}

type fanout struct {
	outs []*fanReader
}

// newFanout returns a fanout with n readers.
func newFanout(n int) *fanout {
	f := &fanout{}
	for range n {
		f.outs = append(f.outs, &fanReader{ch: make(chan *block, 8)})
	}
	return f
}

// copyFrom reads src to EOF, handing every block to each reader, then ends
// every reader with src's error (io.EOF when src ended cleanly).
func (f *fanout) copyFrom(src io.Reader) (int64, error) {
	var total int64
	for {
		buf := blockPool.Get().(*[]byte)
		n, err := readBlock(src, *buf)
		if n > 0 {
			b := &block{buf: buf, n: n}
			b.refs.Store(int32(len(f.outs)))
			for _, o := range f.outs {
				o.ch <- b
			}
			total += int64(n)
		} else {
			blockPool.Put(buf)
		}
		if err == io.EOF {
			f.end(io.EOF)
			return total, nil
		}
		if err != nil {
			f.end(err)
			return total, err
		}
	}
}

func (f *fanout) end(err error) {
	for _, o := range f.outs {
		o.err = err
		close(o.ch)
	}
}

// fanReader is one reader of a fanout.
type fanReader struct {
	ch   chan *block
	err  error // set before ch is closed
	cur  *block
	off  int
	done atomic.Bool
}

func (r *fanReader) Read(p []byte) (int, error) {
	for r.cur == nil {
		b, ok := <-r.ch
		if !ok {
			return 0, r.err
		}
		r.cur, r.off = b, 0
	}
	n := copy(p, (*r.cur.buf)[r.off:r.cur.n])
	r.off += n
	if r.off == r.cur.n {
		r.cur.release()
		r.cur = nil
	}
	return n, nil
}

// abandon drains what the reader has not consumed, so the fanout never
// blocks on it. Call it once the consumer is finished, whatever its outcome.
func (r *fanReader) abandon() {
	if r.done.Swap(true) {
		return
	}
	if r.cur != nil {
		r.cur.release()
		r.cur = nil
	}
	go func() {
		for b := range r.ch {
			b.release()
		}
	}()
}

// readBlock fills buf from src. It returns io.EOF only when src ended
// cleanly; any other error (a body cut off halfway) is returned as is.
func readBlock(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
