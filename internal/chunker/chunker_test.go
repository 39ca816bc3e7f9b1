package chunker

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"testing"
)

func split(t testing.TB, data []byte, o Options) ([]Chunk, [32]byte) {
	s, err := New(bytes.NewReader(data), o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []Chunk
	for {
		c, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		c.Data = append([]byte(nil), c.Data...)
		out = append(out, c)
	}
	return out, s.Sum()
}

func random(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func TestChunksCoverStreamAndHashesMatch(t *testing.T) {
	data := random(40<<20, 1)
	chunks, sum := split(t, data, Default)
	if sum != sha256.Sum256(data) {
		t.Fatal("whole-stream hash differs from sha256 of the data")
	}
	var off int64
	for i, c := range chunks {
		if c.Offset != off {
			t.Fatalf("chunk %d at offset %d, want %d", i, c.Offset, off)
		}
		if !bytes.Equal(c.Data, data[off:off+int64(len(c.Data))]) {
			t.Fatalf("chunk %d bytes differ from the stream", i)
		}
		if c.Hash != sha256.Sum256(c.Data) {
			t.Fatalf("chunk %d hash wrong", i)
		}
		if len(c.Data) > Default.Max || (i < len(chunks)-1 && len(c.Data) < Default.Min) {
			t.Fatalf("chunk %d has %d bytes, outside [%d,%d]", i, len(c.Data), Default.Min, Default.Max)
		}
		off += int64(len(c.Data))
	}
	if off != int64(len(data)) {
		t.Fatalf("chunks cover %d bytes of %d", off, len(data))
	}
	t.Logf("%d chunks, average %d KiB", len(chunks), len(data)/len(chunks)>>10)
	// 40 MiB at an average of 2 MiB: expect roughly 20 chunks.
	if len(chunks) < 8 || len(chunks) > 60 {
		t.Fatalf("%d chunks for 40 MiB, expected about 20", len(chunks))
	}
}

func TestEmptyAndTinyStreams(t *testing.T) {
	chunks, sum := split(t, nil, Default)
	if len(chunks) != 0 || sum != sha256.Sum256(nil) {
		t.Fatalf("empty stream: %d chunks, sum %x", len(chunks), sum)
	}
	chunks, sum = split(t, []byte("hello"), Default)
	if len(chunks) != 1 || string(chunks[0].Data) != "hello" || sum != sha256.Sum256([]byte("hello")) {
		t.Fatalf("tiny stream: %d chunks", len(chunks))
	}
}

// An insertion in the middle changes only the chunks around it.
func TestInsertionChangesFewChunks(t *testing.T) {
	data := random(64<<20, 2)
	edited := append(append(append([]byte(nil), data[:32<<20]...), random(1024, 3)...), data[32<<20:]...)
	a, _ := split(t, data, Default)
	b, _ := split(t, edited, Default)
	have := map[[32]byte]bool{}
	for _, c := range a {
		have[c.Hash] = true
	}
	var fresh int
	for _, c := range b {
		if !have[c.Hash] {
			fresh += len(c.Data)
		}
	}
	if fresh > len(edited)/10 {
		t.Fatalf("%d new bytes of %d after a 1 KiB insertion, want under 10%%", fresh, len(edited))
	}
}

// Streams around the minimum chunk size take the one-chunk path or the
// chunker's; either way the chunks cover the stream exactly.
func TestStreamsAroundMinimum(t *testing.T) {
	for _, n := range []int{Default.Min - 1, Default.Min, Default.Min + 1, Default.Min + 2, 2 * Default.Min} {
		data := random(n, int64(n))
		chunks, sum := split(t, data, Default)
		if sum != sha256.Sum256(data) {
			t.Fatalf("%d bytes: whole-stream hash wrong", n)
		}
		var joined []byte
		for _, c := range chunks {
			joined = append(joined, c.Data...)
		}
		if !bytes.Equal(joined, data) {
			t.Fatalf("%d bytes: chunks do not reassemble the stream", n)
		}
	}
}

func TestBadOptions(t *testing.T) {
	if _, err := New(bytes.NewReader(nil), Options{Min: 10, Avg: 5, Max: 20}); err == nil {
		t.Fatal("min > avg accepted")
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

func TestReadErrorSurfaces(t *testing.T) {
	s, err := New(&failingReader{n: 3 << 20}, Default)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for {
		_, err := s.Next()
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return
		}
		if err != nil {
			t.Fatalf("got %v, want the reader's error", err)
		}
	}
}

func BenchmarkSplit(b *testing.B) {
	data := random(64<<20, 4)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		s, _ := New(bytes.NewReader(data), Default)
		for {
			if _, err := s.Next(); err != nil {
				break
			}
		}
		s.Close()
	}
}

// BenchmarkHashPipeline measures SHA-256 alone, the bound under Split.
func BenchmarkHashPipeline(b *testing.B) {
	data := random(8<<20, 5)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		sha256.Sum256(data)
	}
}

// BenchmarkSplitUnhashed is the serial part of an upload: cutting and the
// whole-stream hash, with chunk hashes left to other cores.
func BenchmarkSplitUnhashed(b *testing.B) {
	data := random(64<<20, 4)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		s, _ := New(bytes.NewReader(data), Default)
		for {
			if _, err := s.NextUnhashed(); err != nil {
				break
			}
		}
		s.Close()
	}
}
