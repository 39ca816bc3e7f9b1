// Package chunker cuts a stream into content-defined chunks with FastCDC and
// hashes every chunk and the whole stream in the same single pass. Because
// cut points depend on the bytes, an insertion or deletion changes only the
// chunks around it, which is what lets dfs store near-identical files once.
package chunker

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers "fastcdc-v1.0.0"

	"github.com/dfs-store/dfs"
)

// Options bound chunk sizes, in bytes.
type Options struct {
	Min, Avg, Max int
}

// Default sizes: min 512 KiB, average 2 MiB, max 8 MiB.
var Default = Options{Min: 512 << 10, Avg: 2 << 20, Max: 8 << 20}

// Validate checks that the sizes make sense.
func (o Options) Validate() error {
	if o.Min <= 0 || o.Min >= o.Avg || o.Avg >= o.Max {
		return fmt.Errorf("chunk sizes: want 0 < min < avg < max, got %d/%d/%d", o.Min, o.Avg, o.Max)
	}
	return nil
}

// Chunk is one cut of the stream.
type Chunk struct {
	// Data is valid only until the next call to Next.
	Data   []byte
	Hash   dfs.ChunkHash
	Offset int64
}

// Splitter reads a stream and returns its chunks in order.
type Splitter struct {
	c      *chunkers.Chunker
	file   hash.Hash
	offset int64
	done   bool

	head    *[]byte // the first bytes of the stream
	small   bool    // the whole stream fit in head: one chunk
	scan    *[]byte // the chunker's scan buffer, from a pool
	scanCap int
	budget  Budget // charged for scan, if set
}

// buffer pools by size: scan buffers (2 × max chunk) and head buffers
// (min chunk + 1), shared by every Splitter of the same options.
var (
	poolsMu sync.Mutex
	pools   = map[int]*sync.Pool{}
)

func pool(size int) *sync.Pool {
	poolsMu.Lock()
	defer poolsMu.Unlock()
	p := pools[size]
	if p == nil {
		p = &sync.Pool{New: func() any { b := make([]byte, size); return &b }}
		pools[size] = p
	}
	return p
}

// New returns a Splitter over r. Its memory is a scan buffer of twice the
// maximum chunk size, whatever the length of the stream, taken from a pool
// and returned by Close. A stream no longer than the minimum chunk size is
// one chunk and needs no scan buffer at all, so small files cost little.
func New(r io.Reader, o Options) (*Splitter, error) {
	return NewSized(r, o, -1, nil)
}

// Budget bounds the memory of many Splitters together: Acquire is charged
// a scan buffer's size before the Splitter takes it (and may wait for
// room), Release credited when Close returns it.
type Budget interface {
	Acquire(n int64) error
	Release(n int64)
}

// NewSized is New for a stream whose length is known: a stream shorter than
// the maximum chunk size needs a scan buffer only as large as itself (in a
// few size classes), not twice the maximum, and is cut at the same points.
// The size is a hint: a longer stream is still read whole, but its cuts
// past size may differ from New's. A size ≤ 0 is unknown. If b is not nil
// the scan buffer is charged to it.
func NewSized(r io.Reader, o Options, size int64, b Budget) (*Splitter, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	s := &Splitter{file: sha256.New(), head: pool(o.Min + 1).Get().(*[]byte)}
	n, err := io.ReadFull(r, *s.head)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		// The stream ended within the minimum chunk size.
		*s.head = (*s.head)[:n]
		s.small = true
		return s, nil
	case err != nil:
		s.Close()
		return nil, err
	}
	maxSize := o.Max
	s.scanCap = 2 * o.Max
	if size > 0 && size < int64(o.Max) {
		// FastCDC looks at most maxSize bytes ahead for a cut and never
		// past the end of the stream: with maxSize cut to the stream's
		// length (but above the average, which the library requires; a
		// chunk shorter than the average is cut the same either way) the
		// cuts are New's.
		maxSize = int(max(size, int64(o.Avg)+1))
		s.scanCap = o.Max
		if maxSize <= 2*o.Avg {
			s.scanCap = 2 * o.Avg
		}
	}
	if b != nil {
		if err := b.Acquire(int64(s.scanCap)); err != nil {
			s.Close()
			return nil, err
		}
		s.budget = b
	}
	s.scan = pool(s.scanCap).Get().(*[]byte)
	rd := io.MultiReader(bytes.NewReader(*s.head), r)
	s.c, err = chunkers.NewChunkerBuffer("fastcdc-v1.0.0", rd, &chunkers.ChunkerOpts{MinSize: o.Min, NormalSize: o.Avg, MaxSize: maxSize}, *s.scan)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("chunker: %w", err)
	}
	return s, nil
}

// Close returns the Splitter's buffers to their pools. The Data of the
// last chunk is invalid after Close.
func (s *Splitter) Close() {
	if s.head != nil {
		*s.head = (*s.head)[:cap(*s.head)]
		pool(cap(*s.head)).Put(s.head)
		s.head = nil
	}
	if s.scan != nil {
		pool(s.scanCap).Put(s.scan)
		s.scan = nil
		if s.budget != nil {
			s.budget.Release(int64(s.scanCap))
		}
	}
}

// Next returns the next chunk, or io.EOF after the last one. An empty stream
// has no chunks. A read error of the underlying stream is returned as is.
func (s *Splitter) Next() (Chunk, error) {
	c, err := s.NextUnhashed()
	if err == nil {
		c.Hash = sha256.Sum256(c.Data)
	}
	return c, err
}

// NextUnhashed is Next without the chunk's own hash (Hash is zero), for a
// caller that hashes chunks elsewhere, in parallel. The whole-stream hash
// is kept as with Next.
func (s *Splitter) NextUnhashed() (Chunk, error) {
	if s.small {
		if s.done || len(*s.head) == 0 {
			s.done = true
			return Chunk{}, io.EOF
		}
		s.done = true
		data := *s.head
		s.file.Write(data)
		s.offset = int64(len(data))
		return Chunk{Data: data}, nil
	}
	for !s.done {
		data, err := s.c.Next()
		if err != nil && !errors.Is(err, io.EOF) {
			return Chunk{}, err
		}
		if errors.Is(err, io.EOF) {
			s.done = true
		}
		if len(data) == 0 {
			continue
		}
		s.file.Write(data)
		ch := Chunk{Data: data, Offset: s.offset}
		s.offset += int64(len(data))
		return ch, nil
	}
	return Chunk{}, io.EOF
}

// Size is the number of bytes read so far.
func (s *Splitter) Size() int64 { return s.offset }

// Sum is the SHA-256 of the bytes read so far; after Next returned io.EOF it
// is the hash of the whole stream.
func (s *Splitter) Sum() dfs.ContentHash {
	var h dfs.Hash
	copy(h[:], s.file.Sum(nil))
	return h
}
