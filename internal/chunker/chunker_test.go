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
	return collect(t, s, true)
}

// collect reads every chunk of s and closes it; the chunks keep a copy of
// their bytes if keep, else only their offsets and hashes.
func collect(t testing.TB, s *Splitter, keep bool) ([]Chunk, [32]byte) {
	t.Helper()
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
		if keep {
			c.Data = append([]byte(nil), c.Data...)
		} else {
			c.Data = nil
		}
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

// A stream of known length is cut exactly as one of unknown length (dedup
// across the S3 API, which knows lengths, and the CLI reading a pipe, which
// does not), with a smaller scan buffer; a stream longer than its hint is
// still stored whole.
func TestKnownSizeCutsTheSame(t *testing.T) {
	o := Options{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}
	data := random(200<<10, 61)
	// Lengths around every bound, and stretches of zeros that reach the
	// maximum chunk size.
	copy(data[100<<10:], make([]byte, 80<<10))
	for _, n := range []int{1, o.Min, o.Min + 1, o.Avg - 1, o.Avg, o.Avg + 1, 2 * o.Avg, 2*o.Avg + 1, 40 << 10, o.Max - 1, o.Max, o.Max + 1, 2 * o.Max, 181 << 10, len(data)} {
		for _, off := range []int{0, 90 << 10} {
			if off+n > len(data) {
				continue
			}
			d := data[off : off+n]
			s1, err := New(bytes.NewReader(d), o)
			if err != nil {
				t.Fatal(err)
			}
			want, wantSum := collect(t, s1, false)
			s2, err := NewSized(bytes.NewReader(d), o, int64(n), nil)
			if err != nil {
				t.Fatal(err)
			}
			if n > o.Min && n < o.Max && s2.scanCap >= 2*o.Max {
				t.Fatalf("%d bytes of known length: a scan buffer of %d bytes, as for an unknown length", n, s2.scanCap)
			}
			got, gotSum := collect(t, s2, false)
			if len(got) != len(want) || gotSum != wantSum {
				t.Fatalf("%d bytes at %d: %d chunks with the size known, %d without", n, off, len(got), len(want))
			}
			for i := range got {
				if got[i].Offset != want[i].Offset || got[i].Hash != want[i].Hash {
					t.Fatalf("%d bytes at %d: chunk %d at %d with the size known, at %d without", n, off, i, got[i].Offset, want[i].Offset)
				}
			}
		}
	}
	// A hint too small: every byte is still cut into chunks.
	d := data[:150<<10]
	s, err := NewSized(bytes.NewReader(d), o, 20<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, sum := collect(t, s, false)
	if sum != sha256.Sum256(d) || len(got) == 0 {
		t.Fatalf("a stream longer than its hint: %d chunks, whole-stream hash %x, want %x", len(got), sum, sha256.Sum256(d))
	}
}
