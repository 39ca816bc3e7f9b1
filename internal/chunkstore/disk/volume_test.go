package disk_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/chunkstore/disk"
)

// volumeFiles lists the volume files under dir.
func volumeFiles(t *testing.T, dir string) []string {
	t.Helper()
	vs, err := filepath.Glob(filepath.Join(dir, "volumes", "*.vol"))
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// copyDir copies the store in src to a new directory, as a crash would
// leave it: the store is open, so no index is saved there.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	return dst
}

func checkChunks(t *testing.T, s *disk.Store, want map[dfs.ChunkHash][]byte, when string) {
	t.Helper()
	for h, b := range want {
		if got := readAll(t, s, h); !bytes.Equal(got, b) {
			t.Errorf("%s: chunk %s reads back different", when, h.Short())
		}
		if present, ok, err := s.Verify(context.Background(), h); !present || !ok || err != nil {
			t.Errorf("%s: Verify %s = %v, %v, %v", when, h.Short(), present, ok, err)
		}
	}
	if n, _ := s.Usage(); n != int64(len(want)) {
		t.Errorf("%s: %d chunks stored, want %d", when, n, len(want))
	}
}

// Small chunks go to volumes, large ones to files, and Locate finds the
// bytes of both.
func TestVolumeLayout(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, disk.Options{SmallMax: 64 << 10})
	small, hs := randomChunk(1, 64<<10)
	large, hl := randomChunk(2, 64<<10+1)
	put(t, s, small)
	put(t, s, large)
	if !s.InVolume(hs) || s.InVolume(hl) {
		t.Fatalf("in a volume: %v for 64 KiB, %v for 64 KiB + 1; want true, false", s.InVolume(hs), s.InVolume(hl))
	}
	if vs := volumeFiles(t, dir); len(vs) != 1 {
		t.Fatalf("volume files %v, want one", vs)
	}
	for h, want := range map[dfs.ChunkHash][]byte{hs: small, hl: large} {
		p, off, err := disk.Locate(dir, h)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.ReadAt(got, off)
		f.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("Locate %s = %s at %d: bytes there differ (%v)", h.Short(), p, off, err)
		}
	}
	if err := s.Delete(hs); err != nil {
		t.Fatal(err)
	}
	if _, _, err := disk.Locate(dir, hs); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("Locate of a deleted chunk: %v, want ErrNotFound", err)
	}
}

// A crash mid-append leaves a torn record at the end of the newest volume:
// Open drops it, keeps every record before it, and the store takes new
// chunks after it.
func TestVolumeTornTail(t *testing.T) {
	for _, tear := range []struct {
		name string
		tail func(good []byte) []byte // what the crash left after the last good record
	}{
		{"header only", func(good []byte) []byte { return good[:64] }},
		{"half the bytes", func(good []byte) []byte { return good[:64+len(good[64:])/2] }},
		{"zeros", func(good []byte) []byte { return make([]byte, 8192) }},
		{"bytes hashing wrong", func(good []byte) []byte {
			b := bytes.Clone(good)
			b[100] ^= 1
			return b
		}},
	} {
		t.Run(tear.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, disk.Options{})
			want := map[dfs.ChunkHash][]byte{}
			for i := range 20 {
				b, h := randomChunk(uint64(i), 1000+i*997)
				put(t, s, b)
				want[h] = b
			}
			crashed := copyDir(t, dir)
			s.Close()

			// The record a crash tore: a copy of the last good one,
			// cut or damaged.
			vs := volumeFiles(t, crashed)
			vol := vs[len(vs)-1]
			all, err := os.ReadFile(vol)
			if err != nil {
				t.Fatal(err)
			}
			lastSize := 1000 + 19*997
			last := all[len(all)-((64+lastSize+7)&^7):]
			f, err := os.OpenFile(vol, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tear.tail(last))
			f.Close()

			s2 := open(t, crashed, disk.Options{})
			st := s2.OpenStats()
			if st.Loaded || st.TornBytes == 0 {
				t.Errorf("open after the crash: %+v; want a scan that cut a torn tail", st)
			}
			checkChunks(t, s2, want, "after the crash")
			if fi, _ := os.Stat(vol); fi.Size() != int64(len(all)) {
				t.Errorf("volume is %d bytes after the open, want %d (the torn tail cut)", fi.Size(), len(all))
			}
			b, h := randomChunk(99, 5000)
			put(t, s2, b)
			want[h] = b
			s2.Close()
			s3 := open(t, crashed, disk.Options{})
			checkChunks(t, s3, want, "after a clean close")
		})
	}
}

// Rot in the middle of a sealed volume costs the record it hits, not the
// ones after it.
func TestVolumeRotInHeader(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, disk.Options{VolumeSize: 1 << 20})
	type chunk struct {
		h dfs.ChunkHash
		b []byte
	}
	var all []chunk
	for i := range 40 {
		b, h := randomChunk(uint64(i), 50_000)
		put(t, s, b)
		all = append(all, chunk{h, b})
	}
	crashed := copyDir(t, dir)
	s.Close()
	if vs := volumeFiles(t, crashed); len(vs) < 2 {
		t.Fatalf("%d volumes, want at least two", len(vs))
	}
	victim := all[3]
	p, off, err := disk.Locate(crashed, victim.h)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	f.ReadAt(b[:], off-64+20) // inside the hash in the header
	b[0] ^= 0x10
	f.WriteAt(b[:], off-64+20)
	f.Close()

	s2 := open(t, crashed, disk.Options{VolumeSize: 1 << 20})
	if st := s2.OpenStats(); st.DamagedBytes == 0 {
		t.Errorf("open stats %+v; want damaged bytes counted", st)
	}
	want := map[dfs.ChunkHash][]byte{}
	for _, c := range all {
		if c.h != victim.h {
			want[c.h] = c.b
		}
	}
	checkChunks(t, s2, want, "after rot in a header")
	if _, err := s2.Stat(victim.h); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("the chunk whose header rotted: Stat err = %v, want ErrNotFound", err)
	}
}

// Compaction gives back the space of deleted chunks, keeps every other
// chunk readable (one opened before it moved, too) with its modification
// time, and what it leaves survives a clean and an unclean reopen.
func TestVolumeCompaction(t *testing.T) {
	dir := t.TempDir()
	opts := disk.Options{VolumeSize: 256 << 10, CompactRatio: 0.5}
	s := open(t, dir, opts)
	want := map[dfs.ChunkHash][]byte{}
	var order []dfs.ChunkHash
	for i := range 100 {
		b, h := randomChunk(uint64(i), 20_000)
		put(t, s, b)
		want[h] = b
		order = append(order, h)
	}
	before := volumeFiles(t, dir)
	keepOpen := order[1]
	r, _, err := s.Open(keepOpen)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	aged := age(t, s, order[2], time.Hour)
	for i, h := range order {
		if i%5 != 1 && i%5 != 2 {
			if err := s.Delete(h); err != nil {
				t.Fatal(err)
			}
			delete(want, h)
		}
	}
	if n := s.Compact(context.Background()); n == 0 {
		t.Fatal("no volume compacted")
	}
	after := volumeFiles(t, dir)
	if len(after) >= len(before) {
		t.Errorf("%d volume files after compaction, %d before; want fewer", len(after), len(before))
	}
	checkChunks(t, s, want, "after compaction")
	got := make([]byte, 20_000)
	if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, want[keepOpen]) {
		t.Errorf("a chunk opened before compaction reads back different (%v)", err)
	}
	if mt := modTime(t, s, order[2]); !mt.Equal(aged) {
		t.Errorf("modification time after compaction %v, want %v", mt, aged)
	}

	crashed := copyDir(t, dir)
	s.Close()
	s2 := open(t, dir, opts)
	if !s2.OpenStats().Loaded {
		t.Errorf("reopen after a clean close did not load the saved index")
	}
	checkChunks(t, s2, want, "after a clean reopen")
	s3 := open(t, crashed, opts)
	checkChunks(t, s3, want, "after an unclean reopen")
	if mt := modTime(t, s3, order[2]); !mt.Equal(aged) {
		t.Errorf("modification time after an unclean reopen %v, want %v", mt, aged)
	}
}

// A delete whose entry a crash lost brings the chunk back; if it was put
// again since, the copy touched last is the one kept, so garbage
// collection sees its latest use.
func TestVolumeLostDeleteKeepsNewestCopy(t *testing.T) {
	dir := t.TempDir()
	opts := disk.Options{VolumeSize: 64 << 10}
	s := open(t, dir, opts)
	b, h := randomChunk(1, 40_000)
	put(t, s, b)
	age(t, s, h, time.Hour)
	if err := s.Delete(h); err != nil {
		t.Fatal(err)
	}
	filler, _ := randomChunk(2, 40_000)
	put(t, s, filler) // into the next volume
	put(t, s, b)
	newer := modTime(t, s, h)
	crashed := copyDir(t, dir)
	s.Close()
	dels, _ := filepath.Glob(filepath.Join(crashed, "volumes", "*.del"))
	for _, d := range dels {
		os.Remove(d)
	}
	s2 := open(t, crashed, opts)
	if n, _ := s2.Usage(); n != 2 {
		t.Errorf("%d chunks after the reopen, want 2", n)
	}
	if mt := modTime(t, s2, h); !mt.Equal(newer) {
		t.Errorf("kept the copy modified %v, want the newer one, %v", mt, newer)
	}
}

// Concurrent Puts of small chunks share fsyncs and each reads back.
func TestVolumeConcurrentPuts(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, disk.Options{VolumeSize: 1 << 20})
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := map[dfs.ChunkHash][]byte{}
	for w := range 16 {
		wg.Go(func() {
			for i := range 30 {
				b, h := randomChunk(uint64(w*1000+i), 4000+i*100)
				if _, err := s.Put(context.Background(), h, bytes.NewReader(b)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[h] = b
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	checkChunks(t, s, want, "after concurrent puts")
}

// The kill -9 test's child: it opens the store in DFS_CRASH_DIR and puts
// (and, with compaction, deletes) chunks until killed, printing the hash
// of each chunk as soon as Put acknowledged it, and "del HASH" once a
// Delete returned.
func TestMain(m *testing.M) {
	if dir := os.Getenv("DFS_CRASH_DIR"); dir != "" {
		crashChild(dir, os.Getenv("DFS_CRASH_MODE"))
		return
	}
	os.Exit(m.Run())
}

func crashChild(dir, mode string) {
	opts := disk.Options{VolumeSize: 1 << 20, CompactRatio: 0.3}
	s, err := disk.Open(dir, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	say := func(line string) {
		mu.Lock()
		w.WriteString(line + "\n")
		w.Flush()
		mu.Unlock()
	}
	say("ready")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				b, h := randomChunk(uint64(time.Now().UnixNano())+uint64(g), 1000+(i*7919)%60000)
				if _, err := s.Put(context.Background(), h, bytes.NewReader(b)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				say(h.String())
				if mode == "compact" && i%3 != 0 {
					// Said before the Delete: from here the chunk may
					// be gone.
					say("del " + h.String())
					if err := s.Delete(h); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(1)
					}
				}
			}
		})
	}
	wg.Wait()
}

// kill -9 of a process putting chunks, during appends and during
// compaction, loses no chunk whose Put returned.
func TestVolumeKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process several times")
	}
	for _, mode := range []string{"append", "compact"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			acked := map[dfs.ChunkHash]bool{}
			for round := range 4 {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), "DFS_CRASH_DIR="+dir, "DFS_CRASH_MODE="+mode)
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(out)
				if !sc.Scan() || sc.Text() != "ready" {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("round %d: the child did not start: %s", round, stderr.String())
				}
				killAt := time.Now().Add(time.Duration(300+round*250) * time.Millisecond)
				killed := false
				for sc.Scan() {
					line := sc.Text()
					if h, ok := strings.CutPrefix(line, "del "); ok {
						delete(acked, mustHash(t, h))
					} else {
						acked[mustHash(t, line)] = true
					}
					if !killed && time.Now().After(killAt) {
						cmd.Process.Signal(syscall.SIGKILL)
						killed = true
					}
				}
				cmd.Wait()
				if !killed {
					t.Fatalf("round %d: the child stopped by itself: %s", round, stderr.String())
				}

				s, err := disk.Open(dir, disk.Options{VolumeSize: 1 << 20, CompactRatio: 0.3})
				if err != nil {
					t.Fatalf("round %d: open after kill -9: %v", round, err)
				}
				lost := 0
				for h := range acked {
					if present, ok, err := s.Verify(context.Background(), h); !present || !ok || err != nil {
						lost++
					}
				}
				st := s.OpenStats()
				t.Logf("round %d: %d chunks acknowledged and kept, %d volumes, %d torn bytes cut", round, len(acked), st.Volumes, st.TornBytes)
				if lost > 0 {
					t.Fatalf("round %d: %d of %d acknowledged chunks lost after kill -9", round, lost, len(acked))
				}
				if mode == "compact" {
					s.Compact(context.Background())
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				// The next round starts from a clean close once in two,
				// from the crash's state otherwise.
				if round%2 == 1 {
					os.Remove(filepath.Join(dir, "chunk-index"))
				}
			}
		})
	}
}

func mustHash(t *testing.T, s string) dfs.ChunkHash {
	t.Helper()
	h, err := dfs.ParseHash(s)
	if err != nil {
		t.Fatalf("child said %q: %v", s, err)
	}
	return h
}
