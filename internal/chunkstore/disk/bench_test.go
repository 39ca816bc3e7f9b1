package disk_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"testing"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/chunkstore/disk"
)

const benchChunk = 2 << 20 // the chunker's average chunk

// BenchmarkPut stores distinct 2 MiB chunks, with and without fsync. The
// reader hides its length, as a network body would.
func BenchmarkPut(b *testing.B) {
	for _, nosync := range []bool{false, true} {
		b.Run(fmt.Sprintf("NoSync=%v", nosync), func(b *testing.B) {
			s, err := disk.Open(b.TempDir(), disk.Options{NoSync: nosync})
			if err != nil {
				b.Fatal(err)
			}
			data, _ := randomChunk(1, benchChunk)
			b.SetBytes(benchChunk)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				binary.LittleEndian.PutUint64(data, uint64(i)) // a new chunk each time
				h := dfs.Sum(data)
				r := struct{ io.Reader }{bytes.NewReader(data)}
				b.StartTimer()
				if _, err := s.Put(context.Background(), h, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenRead opens a stored 2 MiB chunk and reads it whole, or reads
// 64 KiB from its middle, as a ranged GET does.
func BenchmarkOpenRead(b *testing.B) {
	s, err := disk.Open(b.TempDir(), disk.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	const n = 16
	hashes := make([]dfs.ChunkHash, n)
	for i := range hashes {
		data, h := randomChunk(uint64(i), benchChunk)
		if _, err := s.Put(context.Background(), h, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		hashes[i] = h
	}
	for _, bc := range []struct {
		name     string
		off, len int64
	}{
		{"whole", 0, benchChunk},
		{"64KiB", benchChunk / 2, 64 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, bc.len)
			b.SetBytes(bc.len)
			b.ResetTimer()
			for i := range b.N {
				r, _, err := s.Open(hashes[i%n])
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.ReadAt(buf, bc.off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}
