// Package chunker cuts a stream into content-defined chunks with FastCDC and
// hashes every chunk and the whole stream in the same single pass. Because
// cut points depend on the bytes, an insertion or deletion changes only the
// chunks around it, which is what lets dfs store near-identical files once.
package chunker

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

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
}

// New returns a Splitter over r. Its memory is a scan buffer of twice the
// maximum chunk size, whatever the length of the stream.
func New(r io.Reader, o Options) (*Splitter, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c, err := chunkers.NewChunker("fastcdc-v1.0.0", r, &chunkers.ChunkerOpts{MinSize: o.Min, NormalSize: o.Avg, MaxSize: o.Max})
	if err != nil {
		return nil, fmt.Errorf("chunker: %w", err)
	}
	return &Splitter{c: c, file: sha256.New()}, nil
}

// Next returns the next chunk, or io.EOF after the last one. An empty stream
// has no chunks. A read error of the underlying stream is returned as is.
func (s *Splitter) Next() (Chunk, error) {
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
		ch := Chunk{Data: data, Hash: sha256.Sum256(data), Offset: s.offset}
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
