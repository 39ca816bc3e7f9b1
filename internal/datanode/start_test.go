package datanode_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/chunkstore/disk"
	"github.com/dfs-store/dfs/internal/datanode"
)

func openStats(t *testing.T, n *datanode.Node) disk.OpenStats {
	t.Helper()
	s, ok := n.Store().(*disk.Store)
	if !ok {
		t.Fatalf("store is a %T, want *disk.Store", n.Store())
	}
	return s.OpenStats()
}

// A node that was stopped cleanly starts from its saved chunk index, with
// no file statted, and every coordinator still gets the full list; one
// that was not walks its directories once, however many coordinators it
// registers with.
func TestRestartUsesSavedIndex(t *testing.T) {
	dir := t.TempDir()
	var chunks [][]byte
	var hashes []dfs.ChunkHash
	for i := range 20 {
		c, h := randomChunk(uint64(100+i), 100+i)
		chunks = append(chunks, c)
		hashes = append(hashes, h)
	}
	preload(t, dir, chunks...)

	start := func(what string) (*datanode.Node, disk.OpenStats) {
		t.Helper()
		fcs := []*fakeCoordinator{startFakeCoordinator(t), startFakeCoordinator(t)}
		n := startNode(t, dir, fcs[0], func(c *datanode.Config) { c.Coordinators = []string{fcs[0].Addr(), fcs[1].Addr()} })
		for i, fc := range fcs {
			waitFor(t, 10*time.Second, what+": registration", fc.registered)
			for _, h := range hashes {
				if !fc.holds(h) {
					t.Errorf("%s: coordinator %d was not told of chunk %s", what, i, h.Short())
				}
			}
		}
		return n, openStats(t, n)
	}

	n, st := start("first start")
	if st.Loaded || st.Chunks != int64(len(hashes)) || st.Statted != int64(len(hashes)) {
		t.Errorf("first start: %+v; want a walk statting each of %d chunk files once", st, len(hashes))
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, st = start("after a clean stop")
	if !st.Loaded || st.Statted != 0 || st.Chunks != int64(len(hashes)) {
		t.Errorf("after a clean stop: %+v; want the saved index loaded, no file statted", st)
	}
	// That node is not closed before the next starts: as after a crash.
	_, st = start("after a crash")
	if st.Loaded || st.Statted != int64(len(hashes)) {
		t.Errorf("after a crash: %+v; want a walk", st)
	}
}

// Small chunks cost the byte budget their size, not a 4 KiB floor: 300
// chunks of 16 bytes are scrubbed in one pass at about 1 KiB/s (the burst
// covers them), where a 4 KiB floor would have taken minutes.
func TestScrubNoPerChunkFloor(t *testing.T) {
	fc := startFakeCoordinator(t)
	dir := t.TempDir()
	var chunks [][]byte
	for i := range 300 {
		c, _ := randomChunk(uint64(1000+i), 16)
		chunks = append(chunks, c)
	}
	preload(t, dir, chunks...)
	n := startNode(t, dir, fc, func(c *datanode.Config) {
		c.ScrubRate = 0.001
		c.ScrubChunks = 1000
		c.ScrubInterval = time.Millisecond
	})
	dn := control(t, n)
	waitFor(t, 30*time.Second, "a scrub pass over 300 small chunks", func() bool {
		info, err := dn.Info(context.Background(), &api.InfoRequest{})
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		return info.Stats.ScrubPassUnixNano != 0 && info.Stats.ScrubbedChunks >= 300
	})
}

// The chunk budget holds small chunks back: at 10 chunks a second, no more
// than 10 a second (and one of burst) are checked, however fast the byte
// budget would let them through.
func TestScrubChunkRate(t *testing.T) {
	fc := startFakeCoordinator(t)
	dir := t.TempDir()
	var chunks [][]byte
	for i := range 40 {
		c, _ := randomChunk(uint64(2000+i), 16)
		chunks = append(chunks, c)
	}
	preload(t, dir, chunks...)
	start := time.Now()
	n := startNode(t, dir, fc, func(c *datanode.Config) { c.ScrubRate = 100; c.ScrubChunks = 10; c.ScrubInterval = time.Millisecond })
	dn := control(t, n)
	scrubbed := func() int64 {
		info, err := dn.Info(context.Background(), &api.InfoRequest{})
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		return info.Stats.ScrubbedChunks
	}
	waitFor(t, 30*time.Second, "the scrubber to check 5 chunks", func() bool { return scrubbed() >= 5 })
	got := scrubbed()
	elapsed := time.Since(start) // taken after the count, so the bound below only loosens
	if limit := int64(10*elapsed.Seconds()) + 1; got > limit {
		t.Errorf("%d chunks scrubbed within %v at 10 chunks/s; want at most %d", got, elapsed, limit)
	}
}

func TestBadScrubChunks(t *testing.T) {
	for _, r := range []float64{-1, math.NaN()} {
		_, err := datanode.Start(datanode.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", ScrubRate: 1, ScrubChunks: r, Logger: quietLogger()})
		if err == nil || !strings.Contains(err.Error(), "scrub chunk rate") {
			t.Errorf("Start with scrub chunk rate %v: err = %v, want one naming the scrub chunk rate", r, err)
		}
	}
}

// writeLayout writes n chunks of 8 bytes straight into dir in the chunk
// store's on-disk layout, faster than n Puts.
func writeLayout(b *testing.B, dir string, n int) {
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

// BenchmarkStart times a datanode of 100k (or 1M) small chunks from Start
// to registered, its full list received, with two coordinators: after a
// crash (a walk of the disk) and after a clean stop (the saved index).
// The 1M case writes a million files first: run it alone,
// -bench 'Start/chunks=1000000' -benchtime 2x.
func BenchmarkStart(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("chunks=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			writeLayout(b, dir, n)
			for _, clean := range []bool{false, true} {
				name := "crash"
				if clean {
					name = "clean"
				}
				b.Run(name, func(b *testing.B) {
					os.Remove(filepath.Join(dir, "chunk-index"))
					if clean {
						s, err := disk.Open(dir, disk.Options{NoSync: true})
						if err != nil {
							b.Fatal(err)
						}
						s.Close()
					}
					for b.Loop() {
						fcs := []*fakeCoordinator{startFakeCoordinator(b), startFakeCoordinator(b)}
						cfg := datanode.Config{Dir: dir, Listen: "127.0.0.1:0", NoSync: true, Logger: quietLogger(),
							Coordinators: []string{fcs[0].Addr(), fcs[1].Addr()}}
						n0, err := datanode.Start(cfg)
						if err != nil {
							b.Fatal(err)
						}
						for _, fc := range fcs {
							for !fc.registered() {
								time.Sleep(time.Millisecond) // poll interval
							}
						}
						b.StopTimer()
						if clean {
							n0.Close()
						} else {
							// As a crash: nothing saved. Stop serving all
							// the same, and drop what Close would save.
							n0.Close()
							os.Remove(filepath.Join(dir, "chunk-index"))
						}
						b.StartTimer()
					}
				})
			}
		})
	}
}
