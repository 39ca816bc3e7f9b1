package disk_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// BenchmarkPutSmall stores distinct 64 KiB chunks from 32 writers at once,
// with fsync, as chunk files and in volumes: what a datanode does under
// many small uploads.
func BenchmarkPutSmall(b *testing.B) {
	for _, l := range []struct {
		name string
		opts disk.Options
	}{{"Files", disk.Options{SmallMax: -1}}, {"Volumes", disk.Options{}}} {
		b.Run(l.name, func(b *testing.B) {
			s, err := disk.Open(b.TempDir(), l.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const size = 64 << 10
			var seq atomic.Int64
			b.SetBytes(size)
			b.SetParallelism(16) // 32 writers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				data, _ := randomChunk(1, size)
				for pb.Next() {
					binary.LittleEndian.PutUint64(data, uint64(seq.Add(1)))
					h := dfs.Sum(data)
					if _, err := s.Put(context.Background(), h, struct{ io.Reader }{bytes.NewReader(data)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
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

// makeStore writes n chunks of 8 bytes straight into dir in the store's
// on-disk layout, as a store with n small chunks leaves it, faster than n
// Puts with their fsyncs.
func makeStore(b *testing.B, dir string, n int) {
	b.Helper()
	made := make(map[string]bool)
	for i := range n {
		var data [8]byte
		binary.LittleEndian.PutUint64(data[:], uint64(i))
		x := dfs.Sum(data[:]).String()
		leaf := filepath.Join(dir, "chunks", x[:3])
		if !made[leaf] {
			if err := os.MkdirAll(leaf, 0o700); err != nil {
				b.Fatal(err)
			}
			made[leaf] = true
		}
		if err := os.WriteFile(filepath.Join(leaf, x), data[:], 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen opens a store of 100k or 1M small chunks: by a walk (as
// after a crash, with the directories in the kernel's cache), and from the
// index the last clean Close saved. The 1M case writes a million files
// first: run it alone, -bench 'Open/chunks=1000000' -benchtime 3x.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("chunks=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			makeStore(b, dir, n)
			b.Run("walk", func(b *testing.B) {
				for b.Loop() {
					s, err := disk.Open(dir, disk.Options{NoSync: true})
					if err != nil {
						b.Fatal(err)
					}
					if st := s.OpenStats(); st.Loaded || st.Chunks != int64(n) {
						b.Fatalf("OpenStats %+v; want a walk finding %d chunks", st, n)
					}
					b.ReportMetric(float64(s.OpenStats().Statted), "statted/op")
				}
			})
			b.Run("index", func(b *testing.B) {
				s, err := disk.Open(dir, disk.Options{NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					b.StopTimer()
					if err := s.Close(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if s, err = disk.Open(dir, disk.Options{NoSync: true}); err != nil {
						b.Fatal(err)
					}
					if st := s.OpenStats(); !st.Loaded || st.Chunks != int64(n) {
						b.Fatalf("OpenStats %+v; want the saved index of %d chunks", st, n)
					}
				}
			})
			b.Run("walk-index", func(b *testing.B) {
				// What a registration costs the datanode: a Walk of every chunk.
				s, err := disk.Open(dir, disk.Options{NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					k := 0
					s.Walk(context.Background(), func(dfs.ChunkHash, int64) error { k++; return nil })
					if k != n {
						b.Fatalf("Walk yielded %d chunks, want %d", k, n)
					}
				}
			})
		})
	}
}

// BenchmarkVerify re-reads and checks one small chunk after another, as
// the scrubber does, and reports the CPU each costs the process (user and
// system), which is what a scrub chunk rate buys.
func BenchmarkVerify(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			s, err := disk.Open(b.TempDir(), disk.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			const n = 256
			hashes := make([]dfs.ChunkHash, n)
			for i := range hashes {
				data, h := randomChunk(uint64(i), size)
				if _, err := s.Put(context.Background(), h, bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
				hashes[i] = h
			}
			var r0, r1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
			i := 0
			for b.Loop() {
				if present, ok, err := s.Verify(context.Background(), hashes[i%n]); !present || !ok || err != nil {
					b.Fatalf("Verify = %v, %v, %v", present, ok, err)
				}
				i++
			}
			syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
			cpu := time.Duration(r1.Utime.Nano() - r0.Utime.Nano() + r1.Stime.Nano() - r0.Stime.Nano())
			b.ReportMetric(float64(cpu.Microseconds())/float64(i), "cpu-µs/op")
		})
	}
}

// BenchmarkPutCPU stores distinct 2 MiB chunks with fsync and their length
// given, as a datanode does, on three stores at once (the three copies of
// an upload on one machine), and reports the CPU it costs: all of it, and
// what is left once the SHA-256 each Put verifies is taken away (measured
// alone on the same bytes). The second is the CPU that storing copies
// durably adds to an upload's bound (docs/performance.md).
func BenchmarkPutCPU(b *testing.B) {
	stores := make([]*disk.Store, 3)
	for i := range stores {
		s, err := disk.Open(b.TempDir(), disk.Options{})
		if err != nil {
			b.Fatal(err)
		}
		stores[i] = s
	}
	base, _ := randomChunk(1, benchChunk)
	chunk := func(buf []byte, i int) ([]byte, dfs.ChunkHash) {
		copy(buf, base)
		binary.LittleEndian.PutUint64(buf, uint64(i)) // a new chunk each time
		return buf, dfs.Sum(buf)
	}
	cpu := func() time.Duration {
		var r syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &r)
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	// The chunks' hashes, computed before the clock starts: the CPU of
	// hashing them once is what each Put's verification costs.
	hashes := make([]dfs.ChunkHash, b.N)
	buf := make([]byte, benchChunk)
	c0 := cpu()
	for i := range hashes {
		_, hashes[i] = chunk(buf, i)
	}
	hashing := cpu() - c0
	b.SetBytes(benchChunk)
	b.ResetTimer()
	c0 = cpu()
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, benchChunk)
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				copy(buf, base)
				binary.LittleEndian.PutUint64(buf, uint64(i))
				if _, err := s.Put(context.Background(), hashes[i], bytes.NewReader(buf)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	all := cpu() - c0
	gib := float64(b.N) * benchChunk / (1 << 30)
	b.ReportMetric(all.Seconds()/gib, "cpu-s/GiB")
	b.ReportMetric((all-hashing).Seconds()/gib, "cpu-s/GiB-beyond-hashing")
}
