package disk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/chunkstore/disk"
	"github.com/dfs-store/dfs/internal/chunkstore/storetest"
)

// The layouts a store can keep its chunks in: every chunk a file; small
// chunks in volumes (the default); and volumes so small that the
// conformance cases start many of them and compact them as they go.
var layouts = []struct {
	name string
	opts disk.Options
}{
	{"Files", disk.Options{SmallMax: -1}},
	{"Volumes", disk.Options{}},
	{"TinyVolumes", disk.Options{VolumeSize: 16 << 10, CompactRatio: 0.3}},
}

// files is the layout that keeps every chunk in a file of its own.
var files = disk.Options{SmallMax: -1}

func withLayouts(t *testing.T, mod func(*disk.Options), fn func(t *testing.T, opts disk.Options)) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			opts := l.opts
			if mod != nil {
				mod(&opts)
			}
			fn(t, opts)
		})
	}
}

func TestConformance(t *testing.T) {
	withLayouts(t, nil, func(t *testing.T, opts disk.Options) {
		storetest.Run(t, func(t *testing.T) dfs.ChunkStore { return open(t, t.TempDir(), opts) })
	})
}

func TestConformanceNoSync(t *testing.T) {
	withLayouts(t, func(o *disk.Options) { o.NoSync = true }, func(t *testing.T, opts disk.Options) {
		storetest.Run(t, func(t *testing.T) dfs.ChunkStore { return open(t, t.TempDir(), opts) })
	})
}

// With a small reserve every Put takes the free-space checks.
func TestConformanceReserve(t *testing.T) {
	withLayouts(t, func(o *disk.Options) { o.Reserve = 1 << 20 }, func(t *testing.T, opts disk.Options) {
		storetest.Run(t, func(t *testing.T) dfs.ChunkStore { return open(t, t.TempDir(), opts) })
	})
}

func TestConformanceDurable(t *testing.T) {
	for _, nosync := range []bool{false, true} {
		withLayouts(t, func(o *disk.Options) { o.NoSync = nosync }, func(t *testing.T, opts disk.Options) {
			d := storetest.Durable{
				Open: func(t *testing.T, dir string) dfs.ChunkStore {
					return open(t, dir, opts)
				},
				Close:  func(s dfs.ChunkStore) error { return s.(*disk.Store).Close() },
				Crash:  func(s dfs.ChunkStore) { s.(*disk.Store).Crash() },
				Loaded: func(s dfs.ChunkStore) bool { return s.(*disk.Store).OpenStats().Loaded },
			}
			if opts.SmallMax < 0 {
				// A file an operator removes by hand; a record in a
				// volume cannot be.
				d.RemoveBehind = func(t *testing.T, dir string, h dfs.ChunkHash) {
					if err := os.Remove(chunkPath(dir, h)); err != nil {
						t.Fatal(err)
					}
				}
			}
			t.Run(fmt.Sprintf("NoSync=%v", nosync), func(t *testing.T) {
				storetest.RunDurable(t, d, func(t *testing.T) string { return t.TempDir() })
			})
		})
	}
}

func open(t *testing.T, dir string, opts disk.Options) *disk.Store {
	t.Helper()
	s, err := disk.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() }) // before dir is removed: compaction may be at work
	return s
}

func randomChunk(seed uint64, size int) ([]byte, dfs.ChunkHash) {
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b, dfs.Sum(b)
}

func put(t *testing.T, s *disk.Store, b []byte) dfs.ChunkHash {
	t.Helper()
	h := dfs.Sum(b)
	if _, err := s.Put(context.Background(), h, bytes.NewReader(b)); err != nil {
		t.Fatalf("Put %s: %v", h.Short(), err)
	}
	return h
}

func readAll(t *testing.T, s *disk.Store, h dfs.ChunkHash) []byte {
	t.Helper()
	r, size, err := s.Open(h)
	if err != nil {
		t.Fatalf("Open %s: %v", h.Short(), err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.NewSectionReader(r, 0, size))
	if err != nil {
		t.Fatalf("read %s: %v", h.Short(), err)
	}
	return b
}

// tmpEntries lists what is in tmp/ and every temporary (".tmp-…") file
// beside the chunks.
func tmpEntries(t *testing.T, dir string) []string {
	t.Helper()
	temps, err := filepath.Glob(filepath.Join(dir, "chunks", "*", ".tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	names := temps
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, files)
	if s.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
	}
	data, _ := randomChunk(1, 1000)
	h := put(t, s, data)
	x := h.String()
	got, err := os.ReadFile(filepath.Join(dir, "chunks", x[:3], x))
	if err != nil {
		t.Fatalf("chunk file not where documented: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("chunk file holds different bytes")
	}
}

func TestPersistsAcrossOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, disk.Options{})
	want := make(map[dfs.ChunkHash][]byte)
	var total int64
	for i := range 10 {
		data, _ := randomChunk(uint64(i), 1000*i+1)
		want[put(t, s, data)] = data
		total += int64(len(data))
	}
	gone := put(t, s, []byte("deleted before reopening"))
	if err := s.Delete(gone); err != nil {
		t.Fatal(err)
	}

	s2 := open(t, dir, disk.Options{})
	if chunks, n := s2.Usage(); chunks != int64(len(want)) || n != total {
		t.Errorf("Usage after reopen = %d, %d; want %d, %d", chunks, n, len(want), total)
	}
	for h, data := range want {
		if !bytes.Equal(readAll(t, s2, h), data) {
			t.Errorf("chunk %s reads back different after reopen", h.Short())
		}
	}
	if _, err := s2.Stat(gone); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("deleted chunk after reopen: Stat err = %v, want ErrNotFound", err)
	}
}

func TestTmpClearedAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, files)
	h := put(t, s, []byte("kept"))

	// What a crash mid-Put leaves behind.
	tmp := filepath.Join(dir, "tmp")
	if err := os.WriteFile(filepath.Join(tmp, h.String()+".123"), []byte("half a chu"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tmp, "stray", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	x := h.String()
	if err := os.WriteFile(filepath.Join(dir, "chunks", x[:3], ".tmp-"+x+".123"), []byte("half a chu"), 0o644); err != nil {
		t.Fatal(err)
	}

	s2 := open(t, dir, files)
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("tmp/ after Open holds %v, want nothing", left)
	}
	if got := readAll(t, s2, h); string(got) != "kept" {
		t.Errorf("stored chunk reads %q after Open, want %q", got, "kept")
	}
}

func TestWalkSkipsStrangers(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, disk.Options{})
	data, _ := randomChunk(1, 500)
	h := put(t, s, data)
	x := h.String()
	chunks := filepath.Join(dir, "chunks")
	leaf := filepath.Join(chunks, x[:3])

	other := dfs.Sum([]byte("other")).String()
	strangers := map[string]string{
		filepath.Join(leaf, "notahash"):                   "junk",
		filepath.Join(leaf, x+".bak"):                     "junk",
		filepath.Join(leaf, other):                        "a hash in the wrong directory",
		filepath.Join(chunks, "zzz", other):               "non-hex fan-out",
		filepath.Join(chunks, x[:2], x[2:4], other):       "the old two-level layout",
		filepath.Join(chunks, "README"):                   "junk",
		filepath.Join(leaf, x[:4]+strings.ToUpper(x[4:])): "upper case",
		filepath.Join(chunks, other[:3], "x.tmp"):         "junk",
	}
	for p, content := range strangers {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A directory named like a chunk is not one either.
	if err := os.MkdirAll(filepath.Join(leaf, dfs.Sum([]byte("dir")).String()), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, st := range []*disk.Store{s, open(t, dir, disk.Options{})} {
		var seen []dfs.ChunkHash
		err := st.Walk(context.Background(), func(got dfs.ChunkHash, size int64) error {
			seen = append(seen, got)
			if got != h || size != int64(len(data)) {
				t.Errorf("Walk yielded %s (%d bytes), want only %s (%d bytes)", got.Short(), size, h.Short(), len(data))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Walk: %v", err)
		}
		if len(seen) != 1 {
			t.Errorf("Walk yielded %d chunks, want 1", len(seen))
		}
	}
	if chunks, n := open(t, dir, disk.Options{}).Usage(); chunks != 1 || n != int64(len(data)) {
		t.Errorf("Usage after reopen counts strangers: %d chunks, %d bytes; want 1, %d", chunks, n, len(data))
	}
}

func TestReserve(t *testing.T) {
	dir := t.TempDir()
	free, _, err := open(t, dir, disk.Options{}).Free()
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, disk.Options{Reserve: free + 1<<30})
	data, h := randomChunk(1, 64<<10)

	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"known size", bytes.NewReader(data)},
		{"unknown size", iotest.HalfReader(bytes.NewReader(data))},
	} {
		_, err := s.Put(context.Background(), h, tc.r)
		if !errors.Is(err, dfs.ErrNoSpace) {
			t.Errorf("%s: Put with the reserve beyond free space: err = %v, want ErrNoSpace", tc.name, err)
		}
	}
	if _, err := s.Stat(h); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("Stat after refused Put: err = %v, want ErrNotFound", err)
	}
	if chunks, n := s.Usage(); chunks != 0 || n != 0 {
		t.Errorf("Usage after refused Put = %d, %d; want 0, 0", chunks, n)
	}
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("refused Put left %v in tmp/", left)
	}
	if f, _, err := s.Free(); err != nil || f != 0 {
		t.Errorf("Free with the reserve beyond free space = %d, %v; want 0, nil", f, err)
	}
}

// Failed Puts of every kind leave no temporary behind.
func TestFailedPutsLeaveNoTemp(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, disk.Options{})
	data, h := randomChunk(1, 3<<20)
	ctx := context.Background()

	s.Put(ctx, dfs.Sum([]byte("x")), bytes.NewReader(data))
	s.Put(ctx, h, io.MultiReader(bytes.NewReader(data[:1<<20]), iotest.ErrReader(io.ErrUnexpectedEOF)))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	s.Put(cctx, h, bytes.NewReader(data))

	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("failed Puts left %v in tmp/", left)
	}
}

type countingObserver struct {
	mu             sync.Mutex
	added, removed int
}

func (o *countingObserver) ChunkAdded(dfs.ChunkHash, int64) {
	o.mu.Lock()
	o.added++
	o.mu.Unlock()
}

func (o *countingObserver) ChunkRemoved(dfs.ChunkHash) {
	o.mu.Lock()
	o.removed++
	o.mu.Unlock()
}

func TestObserverOption(t *testing.T) {
	obs := &countingObserver{}
	s := open(t, t.TempDir(), disk.Options{Observer: obs})
	h := put(t, s, []byte("seen"))
	if err := s.Delete(h); err != nil {
		t.Fatal(err)
	}
	if obs.added != 1 || obs.removed != 1 {
		t.Errorf("observer from Options heard %d adds, %d removes; want 1, 1", obs.added, obs.removed)
	}
}

func chunkPath(dir string, h dfs.ChunkHash) string {
	x := h.String()
	return filepath.Join(dir, "chunks", x[:3], x)
}

// age sets a chunk's modification time d into the past.
func age(t *testing.T, s *disk.Store, h dfs.ChunkHash, d time.Duration) time.Time {
	t.Helper()
	old := time.Now().Add(-d)
	if err := s.SetModTime(h, old); err != nil {
		t.Fatal(err)
	}
	return old
}

func modTime(t *testing.T, s *disk.Store, h dfs.ChunkHash) time.Time {
	t.Helper()
	mt, err := s.ModTime(h)
	if err != nil {
		t.Fatalf("ModTime %s: %v", h.Short(), err)
	}
	return mt
}

func TestPutTouchesStoredChunk(t *testing.T) {
	for _, nosync := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSync=%v", nosync), func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, disk.Options{NoSync: nosync})
			before := time.Now()
			data, h := randomChunk(1, 5000)
			put(t, s, data)
			if mt := modTime(t, s, h); mt.Before(before) {
				t.Errorf("fresh chunk's ModTime %v is before the Put began (%v)", mt, before)
			}
			if _, err := s.ModTime(dfs.Sum([]byte("never"))); !errors.Is(err, dfs.ErrNotFound) {
				t.Errorf("ModTime of a chunk never stored: err = %v, want ErrNotFound", err)
			}

			old := age(t, s, h, time.Hour)
			bad, _ := randomChunk(2, 5000)
			if _, err := s.Put(context.Background(), h, bytes.NewReader(bad)); !errors.Is(err, dfs.ErrHashMismatch) {
				t.Fatalf("Put of wrong bytes over a stored chunk: err = %v, want ErrHashMismatch", err)
			}
			if mt := modTime(t, s, h); !mt.Equal(old) {
				t.Errorf("a Put of wrong bytes touched the stored chunk: ModTime %v, want %v", mt, old)
			}

			touch := time.Now()
			put(t, s, data)
			if mt := modTime(t, s, h); mt.Before(touch) {
				t.Errorf("ModTime after a Put of the stored chunk = %v; want at or after %v", mt, touch)
			}
			if chunks, n := s.Usage(); chunks != 1 || n != int64(len(data)) {
				t.Errorf("Usage after the touching Put = %d, %d; want 1, %d", chunks, n, len(data))
			}
		})
	}
}

func TestDeleteIfUnmodifiedSince(t *testing.T) {
	dir := t.TempDir()
	obs := &countingObserver{}
	s := open(t, dir, disk.Options{Observer: obs})
	idle, hIdle := randomChunk(1, 3000)
	reused, hReused := randomChunk(2, 4000)
	put(t, s, idle)
	put(t, s, reused)
	age(t, s, hIdle, time.Hour)
	age(t, s, hReused, time.Hour)

	// Garbage collection decides at since; an upload then comes back to one
	// chunk, and a new chunk is written.
	since := time.Now()
	put(t, s, reused)
	fresh, hFresh := randomChunk(3, 2000)
	put(t, s, fresh)

	for _, tc := range []struct {
		name string
		h    dfs.ChunkHash
		want bool
	}{
		{"untouched since", hIdle, true},
		{"touched since", hReused, false},
		{"written since", hFresh, false},
		{"already deleted", hIdle, false},
		{"never stored", dfs.Sum([]byte("never")), false},
	} {
		deleted, err := s.DeleteIfUnmodifiedSince(tc.h, since)
		if err != nil || deleted != tc.want {
			t.Errorf("%s: DeleteIfUnmodifiedSince = %v, %v; want %v, nil", tc.name, deleted, err, tc.want)
		}
	}
	if _, err := s.Stat(hIdle); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("deleted chunk: Stat err = %v, want ErrNotFound", err)
	}
	if !bytes.Equal(readAll(t, s, hReused), reused) || !bytes.Equal(readAll(t, s, hFresh), fresh) {
		t.Errorf("kept chunks read back different")
	}
	if chunks, n := s.Usage(); chunks != 2 || n != int64(len(reused)+len(fresh)) {
		t.Errorf("Usage = %d, %d; want 2, %d", chunks, n, len(reused)+len(fresh))
	}
	if obs.removed != 1 {
		t.Errorf("observer heard %d removals, want 1", obs.removed)
	}
	// The boundary: a chunk modified exactly at t is kept.
	at := age(t, s, hFresh, time.Minute)
	if deleted, err := s.DeleteIfUnmodifiedSince(hFresh, at); err != nil || deleted {
		t.Errorf("chunk modified exactly at t: DeleteIfUnmodifiedSince = %v, %v; want false, nil", deleted, err)
	}
	if deleted, err := s.DeleteIfUnmodifiedSince(hFresh, at.Add(time.Nanosecond)); err != nil || !deleted {
		t.Errorf("chunk modified just before t: DeleteIfUnmodifiedSince = %v, %v; want true, nil", deleted, err)
	}
}

func TestQuarantine(t *testing.T) {
	dir := t.TempDir()
	obs := &countingObserver{}
	s := open(t, dir, disk.Options{Observer: obs})
	bad, hBad := randomChunk(1, 7000)
	good, hGood := randomChunk(2, 3000)
	put(t, s, bad)
	put(t, s, good)

	if err := s.Quarantine(hBad); err != nil {
		t.Fatalf("Quarantine: %v", err)
	}
	if err := s.Quarantine(hBad); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("Quarantine of a chunk no longer stored: err = %v, want ErrNotFound", err)
	}
	check := func(s *disk.Store, when string) {
		t.Helper()
		if _, err := s.Stat(hBad); !errors.Is(err, dfs.ErrNotFound) {
			t.Errorf("%s: Stat of the quarantined chunk: err = %v, want ErrNotFound", when, err)
		}
		if _, _, err := s.Open(hBad); !errors.Is(err, dfs.ErrNotFound) {
			t.Errorf("%s: Open of the quarantined chunk: err = %v, want ErrNotFound", when, err)
		}
		var seen []dfs.ChunkHash
		s.Walk(context.Background(), func(h dfs.ChunkHash, _ int64) error {
			seen = append(seen, h)
			return nil
		})
		if len(seen) != 1 || seen[0] != hGood {
			t.Errorf("%s: Walk yields %v, want only %s", when, seen, hGood.Short())
		}
		if chunks, n := s.Usage(); chunks != 1 || n != int64(len(good)) {
			t.Errorf("%s: Usage = %d, %d; want 1, %d", when, chunks, n, len(good))
		}
	}
	check(s, "after Quarantine")
	check(open(t, dir, disk.Options{}), "after reopening")
	if obs.removed != 1 {
		t.Errorf("observer heard %d removals, want 1", obs.removed)
	}

	files, err := filepath.Glob(filepath.Join(dir, "quarantine", hBad.String()+".*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("quarantine/ holds %v (%v), want one file for %s", files, err, hBad.Short())
	}
	if b, err := os.ReadFile(files[0]); err != nil || !bytes.Equal(b, bad) {
		t.Errorf("quarantined file does not hold the chunk's bytes (%v)", err)
	}

	// The chunk may be stored again, and quarantined again beside the first.
	put(t, s, bad)
	if err := s.Quarantine(hBad); err != nil {
		t.Fatalf("second Quarantine: %v", err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "quarantine", hBad.String()+".*")); len(files) != 2 {
		t.Errorf("quarantine/ holds %v after two quarantines, want two files", files)
	}
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, disk.Options{})
	ctx := context.Background()
	// Sizes around the read buffer and the direct I/O block.
	var hashes []dfs.ChunkHash
	for i, size := range []int{0, 1, 4095, 4096, 4097, 1 << 20, 1<<20 + 1, 3<<20 + 12345} {
		data, h := randomChunk(uint64(i), size)
		put(t, s, data)
		hashes = append(hashes, h)
		if present, ok, err := s.Verify(ctx, h); !present || !ok || err != nil {
			t.Errorf("Verify of a good %d-byte chunk = %v, %v, %v; want true, true, nil", size, present, ok, err)
		}
	}
	if present, ok, err := s.Verify(ctx, dfs.Sum([]byte("never"))); present || ok || err != nil {
		t.Errorf("Verify of a chunk never stored = %v, %v, %v; want false, false, nil", present, ok, err)
	}

	h := hashes[len(hashes)-1]
	f, err := os.OpenFile(chunkPath(dir, h), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	const at = 2<<20 + 7
	f.ReadAt(b[:], at)
	b[0] ^= 0x01
	if _, err := f.WriteAt(b[:], at); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if present, ok, err := s.Verify(ctx, h); !present || ok || err != nil {
		t.Errorf("Verify of a chunk with a flipped bit = %v, %v, %v; want true, false, nil", present, ok, err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.Verify(cctx, hashes[1]); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with a cancelled context: err = %v, want context.Canceled", err)
	}
}

// chunkFiles counts the files in the fan-out directories.
func chunkFiles(t *testing.T, dir string) (files, dirs int) {
	t.Helper()
	leaves, err := filepath.Glob(filepath.Join(dir, "chunks", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves {
		ents, err := os.ReadDir(l)
		if err != nil {
			t.Fatal(err)
		}
		files += len(ents)
		dirs++
	}
	return files, dirs
}

// Open after a clean Close reads no chunk file; after a crash it stats each
// file once, and nothing else.
func TestOpenWork(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, disk.Options{NoSync: true})
	if st := s.OpenStats(); st.Loaded || st.Statted != 0 || st.Chunks != 0 {
		t.Errorf("Open of a new store: %+v; want a walk of nothing", st)
	}
	const n = 200
	for i := range n {
		data, _ := randomChunk(uint64(i), 10+i)
		put(t, s, data)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files, dirs := chunkFiles(t, dir)

	s = open(t, dir, disk.Options{NoSync: true})
	if st := s.OpenStats(); !st.Loaded || st.Statted != 0 || st.Dirs != 0 || st.Chunks != n || st.IndexErr != "" {
		t.Errorf("Open after a clean Close: %+v; want the saved index loaded, %d chunks, no file statted", st, n)
	}
	// A crash now: the next Open walks, one stat per file.
	s = open(t, dir, disk.Options{NoSync: true})
	if st := s.OpenStats(); st.Loaded || st.Statted != int64(files) || st.Dirs != dirs || st.Chunks != n {
		t.Errorf("Open after a crash: %+v; want a walk statting %d files in %d directories, finding %d chunks", st, files, dirs, n)
	}
}

// The saved index is gone once Open returns, so a crash from then on makes
// the next Open walk rather than trust a stale list.
func TestSavedIndexDroppedAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, disk.Options{})
	put(t, s, []byte("a"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	saved := filepath.Join(dir, "chunk-index")
	if _, err := os.Stat(saved); err != nil {
		t.Fatalf("Close saved no index: %v", err)
	}
	open(t, dir, disk.Options{})
	if _, err := os.Stat(saved); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("saved index still there after Open: err = %v, want it gone", err)
	}
}

// A damaged saved index is not used: Open walks, says why, and finds what
// is on the disk.
func TestDamagedIndex(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		want   string
	}{
		{"flipped bit", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }, "checksum mismatch"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-50] }, "bytes for"},
		{"trailing junk", func(b []byte) []byte { return append(b, "junk"...) }, "bytes for"},
		{"empty", func([]byte) []byte { return nil }, "header"},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, "bad magic"},
		{"count too large", func(b []byte) []byte { b[len("dfs chunk index 1\n")+7] = 0x7f; return b }, "bytes for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, disk.Options{NoSync: true})
			want := make(map[dfs.ChunkHash]int)
			for i := range 20 {
				data, _ := randomChunk(uint64(i), 100+i)
				want[put(t, s, data)] = len(data)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			saved := filepath.Join(dir, "chunk-index")
			b, err := os.ReadFile(saved)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(saved, tc.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			s = open(t, dir, disk.Options{NoSync: true})
			st := s.OpenStats()
			if st.Loaded || !strings.Contains(st.IndexErr, tc.want) || st.Chunks != int64(len(want)) {
				t.Errorf("Open with a damaged index: %+v; want a walk finding %d chunks, IndexErr naming %q", st, len(want), tc.want)
			}
			for h, size := range want {
				if got, err := s.Stat(h); err != nil || got != int64(size) {
					t.Errorf("Stat %s = %d, %v; want %d", h.Short(), got, err, size)
				}
			}
			if _, err := os.Stat(saved); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("damaged index left in place: %v", err)
			}
		})
	}
}

// Walk, Usage and lookups of absent chunks read the index, not the disk:
// they answer the same with the chunk directory out of reach.
func TestWalkReadsIndex(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, disk.Options{NoSync: true})
	want := make(map[dfs.ChunkHash]bool)
	for i := range 30 {
		data, _ := randomChunk(uint64(i), 100+i)
		want[put(t, s, data)] = true
	}
	chunks := filepath.Join(dir, "chunks")
	if err := os.Rename(chunks, chunks+".away"); err != nil {
		t.Fatal(err)
	}
	defer os.Rename(chunks+".away", chunks)
	seen := 0
	err := s.Walk(context.Background(), func(h dfs.ChunkHash, _ int64) error {
		if !want[h] {
			t.Errorf("Walk yields %s, never stored", h.Short())
		}
		seen++
		return nil
	})
	if err != nil || seen != len(want) {
		t.Errorf("Walk with the chunk directory away: %d chunks, %v; want %d, nil", seen, err, len(want))
	}
	if c, _ := s.Usage(); c != int64(len(want)) {
		t.Errorf("Usage = %d chunks, want %d", c, len(want))
	}
	if _, err := s.Stat(dfs.Sum([]byte("never"))); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("Stat of a chunk never stored: %v, want ErrNotFound", err)
	}
}

func TestFileModes(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, files)
	h := put(t, s, []byte("private"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		chunkPath(dir, h):                 0o600,
		filepath.Dir(chunkPath(dir, h)):   0o700 | os.ModeDir,
		filepath.Join(dir, "chunks"):      0o700 | os.ModeDir,
		filepath.Join(dir, "quarantine"):  0o700 | os.ModeDir,
		filepath.Join(dir, "tmp"):         0o700 | os.ModeDir,
		filepath.Join(dir, "chunk-index"): 0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

// blockingReader gives half its bytes, then waits for release.
type blockingReader struct {
	data    []byte
	started chan struct{}
	release chan struct{}
	off     int
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if r.off == len(r.data)/2 {
		close(r.started)
		<-r.release
	}
	if r.off == len(r.data) {
		return 0, io.EOF
	}
	end := len(r.data)
	if r.off < len(r.data)/2 {
		end = len(r.data) / 2
	}
	n := copy(p, r.data[r.off:end])
	r.off += n
	return n, nil
}

// A Put still receiving its bytes at Close fails, and Close saves no index,
// so the next Open walks and removes the temporary the Put left.
func TestCloseDuringPut(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, disk.Options{NoSync: true})
	kept := put(t, s, []byte("kept"))
	data, h := randomChunk(1, 3<<20)
	r := &blockingReader{data: data, started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := s.Put(context.Background(), h, r)
		done <- err
	}()
	<-r.started
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "chunk-index")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close with a Put in flight saved an index (%v)", err)
	}
	close(r.release)
	if err := <-done; !errors.Is(err, disk.ErrClosed) {
		t.Errorf("Put across Close: err = %v, want ErrClosed", err)
	}
	s = open(t, dir, disk.Options{NoSync: true})
	if st := s.OpenStats(); st.Loaded || st.Chunks != 1 {
		t.Errorf("Open after Close with a Put in flight: %+v; want a walk finding 1 chunk", st)
	}
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("temporaries left: %v", left)
	}
	if _, err := s.Stat(kept); err != nil {
		t.Errorf("Stat of the kept chunk: %v", err)
	}
}

// A fan-out directory removed by hand while the store was stopped: its
// chunks are reported missing, and new chunks go into it again.
func TestFanoutRemovedWhileClosed(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, files)
	data, h := randomChunk(1, 1000)
	put(t, s, data)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Dir(chunkPath(dir, h))); err != nil {
		t.Fatal(err)
	}
	obs := &countingObserver{}
	s = open(t, dir, disk.Options{SmallMax: -1, Observer: obs})
	if !s.OpenStats().Loaded {
		t.Fatalf("saved index not loaded: %+v", s.OpenStats())
	}
	if _, _, err := s.Open(h); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("Open of a chunk whose directory was removed: err = %v, want ErrNotFound", err)
	}
	if obs.removed != 1 {
		t.Errorf("observer heard %d removals, want 1", obs.removed)
	}
	put(t, s, data)
	if got := readAll(t, s, h); !bytes.Equal(got, data) {
		t.Errorf("chunk put again reads back different bytes")
	}
}
