// Package storetest is the conformance suite for dfs.ChunkStore
// implementations. Every backend's tests call Run, so all backends keep the
// same promises: bytes read back as written, a chunk whose bytes do not match
// its name is never stored, a failed or cancelled Put leaves nothing behind,
// Put is idempotent, Usage stays exact under concurrent Puts and Deletes, and
// an observer hears of each actual change exactly once.
//
// Stores that keep their chunks across a close (on disk) also run
// RunDurable: what Walk, Usage, Stat and Open say survives a clean close
// and a crash alike, and a chunk whose bytes vanish behind the store's back
// is reported missing, never served.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/dfs-store/dfs"
)

// Observable is implemented by stores that accept a dfs.ChunkObserver. Run
// checks observer behaviour only for stores that implement it.
type Observable interface {
	SetObserver(dfs.ChunkObserver)
}

// Quarantiner is implemented by stores that can move a corrupt copy aside.
// Run checks it only for stores that implement it.
type Quarantiner interface {
	Quarantine(h dfs.ChunkHash) error
}

// Verifier is implemented by stores that can re-read a chunk and check it.
type Verifier interface {
	Verify(ctx context.Context, h dfs.ChunkHash) (present, ok bool, err error)
}

// Run runs the conformance suite. newStore must return a new, empty store
// each time it is called; it is called once per subtest, and subtests run in
// parallel.
func Run(t *testing.T, newStore func(t *testing.T) dfs.ChunkStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s dfs.ChunkStore)
	}{
		{"PutOpenReadAt", testPutOpenReadAt},
		{"Stat", testStat},
		{"HashMismatch", testHashMismatch},
		{"HashMismatchStored", testHashMismatchStored},
		{"DuplicatePut", testDuplicatePut},
		{"Delete", testDelete},
		{"Walk", testWalk},
		{"EmptyChunk", testEmptyChunk},
		{"ReaderError", testReaderError},
		{"ConcurrentSameHash", testConcurrentSameHash},
		{"ConcurrentDifferentHashes", testConcurrentDifferentHashes},
		{"ConcurrentPutDelete", testConcurrentPutDelete},
		{"CancelledBeforePut", testCancelledBeforePut},
		{"CancelledDuringPut", testCancelledDuringPut},
		{"Observer", testObserver},
		{"Free", testFree},
		{"WalkWhileChanging", testWalkWhileChanging},
		{"Quarantine", testQuarantine},
		{"RandomChanges", testRandomChanges},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// chunk returns size pseudo-random bytes determined by seed, and their hash.
func chunk(seed uint64, size int) ([]byte, dfs.ChunkHash) {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, size)
	rand.NewChaCha8(key).Read(b)
	return b, dfs.Sum(b)
}

// opaque hides every method of r but Read, so stores cannot take shortcuts
// (Len, WriterTo) that a network body would not offer.
type opaque struct{ r io.Reader }

func (o opaque) Read(p []byte) (int, error) { return o.r.Read(p) }

func mustPut(t *testing.T, s dfs.ChunkStore, h dfs.ChunkHash, b []byte) {
	t.Helper()
	n, err := s.Put(context.Background(), h, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Put %s (%d bytes): %v", h.Short(), len(b), err)
	}
	if n != int64(len(b)) {
		t.Fatalf("Put %s returned size %d, want %d", h.Short(), n, len(b))
	}
}

func walkAll(t *testing.T, s dfs.ChunkStore) map[dfs.ChunkHash]int64 {
	t.Helper()
	m := make(map[dfs.ChunkHash]int64)
	err := s.Walk(context.Background(), func(h dfs.ChunkHash, size int64) error {
		if _, dup := m[h]; dup {
			return fmt.Errorf("chunk %s walked twice", h.Short())
		}
		m[h] = size
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return m
}

// checkUsage asserts that Usage reports want and agrees with Walk.
func checkUsage(t *testing.T, s dfs.ChunkStore, wantChunks, wantBytes int64) {
	t.Helper()
	chunks, bytes := s.Usage()
	if chunks != wantChunks || bytes != wantBytes {
		t.Errorf("Usage = %d chunks, %d bytes; want %d, %d", chunks, bytes, wantChunks, wantBytes)
	}
	var wc, wb int64
	for _, size := range walkAll(t, s) {
		wc++
		wb += size
	}
	if wc != wantChunks || wb != wantBytes {
		t.Errorf("Walk found %d chunks, %d bytes; want %d, %d", wc, wb, wantChunks, wantBytes)
	}
}

// checkAbsent asserts that h is not stored, by every means of looking.
func checkAbsent(t *testing.T, s dfs.ChunkStore, h dfs.ChunkHash) {
	t.Helper()
	if _, err := s.Stat(h); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("Stat %s: err = %v, want ErrNotFound", h.Short(), err)
	}
	if r, _, err := s.Open(h); !errors.Is(err, dfs.ErrNotFound) {
		if err == nil {
			r.Close()
		}
		t.Errorf("Open %s: err = %v, want ErrNotFound", h.Short(), err)
	}
	if _, ok := walkAll(t, s)[h]; ok {
		t.Errorf("Walk lists %s", h.Short())
	}
}

// checkContent asserts that h is stored holding exactly want.
func checkContent(t *testing.T, s dfs.ChunkStore, h dfs.ChunkHash, want []byte) {
	t.Helper()
	r, size, err := s.Open(h)
	if err != nil {
		t.Fatalf("Open %s: %v", h.Short(), err)
	}
	defer r.Close()
	if size != int64(len(want)) {
		t.Fatalf("Open %s: size %d, want %d", h.Short(), size, len(want))
	}
	got := make([]byte, len(want))
	n, err := r.ReadAt(got, 0)
	if n != len(want) || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt whole %s: n=%d err=%v, want n=%d", h.Short(), n, err, len(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("chunk %s reads back different bytes", h.Short())
	}
}

func testPutOpenReadAt(t *testing.T, s dfs.ChunkStore) {
	sizes := []int{1, 4097, 1<<20 + 7, 2<<20 + 1}
	for i, size := range sizes {
		data, h := chunk(uint64(i), size)
		// Half-size reads through an opaque reader, as a network body gives.
		n, err := s.Put(context.Background(), h, opaque{iotest.HalfReader(bytes.NewReader(data))})
		if err != nil {
			t.Fatalf("Put %d bytes: %v", size, err)
		}
		if n != int64(size) {
			t.Fatalf("Put %d bytes returned size %d", size, n)
		}
		checkContent(t, s, h, data)

		r, _, err := s.Open(h)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		for _, off := range []int{0, size / 3, size / 2, size - 1} {
			want := data[off:min(off+100, size)]
			got := make([]byte, len(want))
			n, err := r.ReadAt(got, int64(off))
			if n != len(want) || (err != nil && err != io.EOF) || !bytes.Equal(got, want) {
				t.Errorf("size %d: ReadAt(%d bytes, off %d) = %d, %v; want %d matching bytes", size, len(want), off, n, err, len(want))
			}
		}
		// Spanning the end: the bytes that exist, then io.EOF.
		off := max(size-10, 0)
		got := make([]byte, 20)
		n2, err := r.ReadAt(got, int64(off))
		if n2 != size-off || err != io.EOF || !bytes.Equal(got[:n2], data[off:]) {
			t.Errorf("size %d: ReadAt across end at %d = %d, %v; want %d, io.EOF", size, off, n2, err, size-off)
		}
		// At and past the end: nothing, io.EOF.
		for _, off := range []int64{int64(size), int64(size) + 1000} {
			if n, err := r.ReadAt(make([]byte, 1), off); n != 0 || err != io.EOF {
				t.Errorf("size %d: ReadAt at %d = %d, %v; want 0, io.EOF", size, off, n, err)
			}
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func testStat(t *testing.T, s dfs.ChunkStore) {
	data, h := chunk(1, 12345)
	mustPut(t, s, h, data)
	size, err := s.Stat(h)
	if err != nil || size != int64(len(data)) {
		t.Errorf("Stat = %d, %v; want %d, nil", size, err, len(data))
	}
	_, missing := chunk(2, 10)
	checkAbsent(t, s, missing)
}

func testHashMismatch(t *testing.T, s dfs.ChunkStore) {
	kept, kh := chunk(1, 5000)
	mustPut(t, s, kh, kept)
	c0, b0 := s.Usage()

	data, actual := chunk(2, 70000)
	_, claimed := chunk(3, 70000)
	_, err := s.Put(context.Background(), claimed, opaque{bytes.NewReader(data)})
	if !errors.Is(err, dfs.ErrHashMismatch) {
		t.Fatalf("Put under the wrong hash: err = %v, want ErrHashMismatch", err)
	}
	for _, want := range []string{claimed.Short(), actual.Short()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name hash %s", err, want)
		}
	}
	checkAbsent(t, s, claimed)
	checkAbsent(t, s, actual)
	checkUsage(t, s, c0, b0)
}

// A bad Put of a chunk already stored fails and leaves the good copy.
func testHashMismatchStored(t *testing.T, s dfs.ChunkStore) {
	good, h := chunk(1, 3000)
	mustPut(t, s, h, good)
	bad, _ := chunk(2, 3000)
	if _, err := s.Put(context.Background(), h, bytes.NewReader(bad)); !errors.Is(err, dfs.ErrHashMismatch) {
		t.Fatalf("Put of wrong bytes over a stored chunk: err = %v, want ErrHashMismatch", err)
	}
	checkContent(t, s, h, good)
	checkUsage(t, s, 1, int64(len(good)))
}

func testDuplicatePut(t *testing.T, s dfs.ChunkStore) {
	data, h := chunk(1, 100000)
	for range 3 {
		mustPut(t, s, h, data)
	}
	checkContent(t, s, h, data)
	checkUsage(t, s, 1, int64(len(data)))
}

func testDelete(t *testing.T, s dfs.ChunkStore) {
	a, ha := chunk(1, 1000)
	b, hb := chunk(2, 2000)
	mustPut(t, s, ha, a)
	mustPut(t, s, hb, b)
	if err := s.Delete(ha); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	checkAbsent(t, s, ha)
	checkContent(t, s, hb, b)
	checkUsage(t, s, 1, int64(len(b)))
	if err := s.Delete(ha); err != nil {
		t.Errorf("Delete of a deleted chunk: %v", err)
	}
	_, never := chunk(3, 10)
	if err := s.Delete(never); err != nil {
		t.Errorf("Delete of a chunk never stored: %v", err)
	}
	checkUsage(t, s, 1, int64(len(b)))
	// Deleted chunks can come back.
	mustPut(t, s, ha, a)
	checkContent(t, s, ha, a)
	checkUsage(t, s, 2, int64(len(a)+len(b)))
}

func testWalk(t *testing.T, s dfs.ChunkStore) {
	if got := walkAll(t, s); len(got) != 0 {
		t.Fatalf("Walk of a new store found %d chunks", len(got))
	}
	want := make(map[dfs.ChunkHash]int64)
	var total int64
	for i := range 40 {
		data, h := chunk(uint64(i), 100+i*997)
		mustPut(t, s, h, data)
		want[h] = int64(len(data))
		total += int64(len(data))
	}
	got := walkAll(t, s)
	if len(got) != len(want) {
		t.Errorf("Walk found %d chunks, want %d", len(got), len(want))
	}
	for h, size := range want {
		if g, ok := got[h]; !ok || g != size {
			t.Errorf("Walk: chunk %s size %d (found %v), want %d", h.Short(), g, ok, size)
		}
	}
	checkUsage(t, s, int64(len(want)), total)

	stop := errors.New("stop")
	calls := 0
	err := s.Walk(context.Background(), func(dfs.ChunkHash, int64) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk with fn failing: err = %v after %d calls; want fn's error after 1", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = s.Walk(ctx, func(dfs.ChunkHash, int64) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Walk with a cancelled context: err = %v, want context.Canceled", err)
	}
}

func testEmptyChunk(t *testing.T, s dfs.ChunkStore) {
	h := dfs.Sum(nil)
	n, err := s.Put(context.Background(), h, opaque{strings.NewReader("")})
	if err != nil || n != 0 {
		t.Fatalf("Put empty chunk = %d, %v; want 0, nil", n, err)
	}
	if size, err := s.Stat(h); err != nil || size != 0 {
		t.Errorf("Stat empty chunk = %d, %v; want 0, nil", size, err)
	}
	r, size, err := s.Open(h)
	if err != nil || size != 0 {
		t.Fatalf("Open empty chunk = %d, %v; want 0, nil", size, err)
	}
	if n, err := r.ReadAt(make([]byte, 1), 0); n != 0 || err != io.EOF {
		t.Errorf("ReadAt empty chunk = %d, %v; want 0, io.EOF", n, err)
	}
	r.Close()
	if got := walkAll(t, s); len(got) != 1 || got[h] != 0 {
		t.Errorf("Walk = %v, want just the empty chunk", got)
	}
	checkUsage(t, s, 1, 0)
	if err := s.Delete(h); err != nil {
		t.Fatalf("Delete empty chunk: %v", err)
	}
	checkAbsent(t, s, h)
	checkUsage(t, s, 0, 0)
}

func testReaderError(t *testing.T, s dfs.ChunkStore) {
	data, h := chunk(1, 3<<20)
	r := io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotest.ErrReader(io.ErrUnexpectedEOF))
	_, err := s.Put(context.Background(), h, r)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Put from a failing reader: err = %v, want io.ErrUnexpectedEOF", err)
	}
	checkAbsent(t, s, h)
	checkUsage(t, s, 0, 0)
}

func testConcurrentSameHash(t *testing.T, s dfs.ChunkStore) {
	data, h := chunk(1, 1<<20+3)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			n, err := s.Put(context.Background(), h, opaque{bytes.NewReader(data)})
			if err == nil && n != int64(len(data)) {
				err = fmt.Errorf("size %d, want %d", n, len(data))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Put of one chunk: %v", err)
		}
	}
	checkContent(t, s, h, data)
	checkUsage(t, s, 1, int64(len(data)))
}

func testConcurrentDifferentHashes(t *testing.T, s dfs.ChunkStore) {
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	var total int64
	for i := range n {
		data, h := chunk(uint64(i), 64<<10+i)
		total += int64(len(data))
		// Two Puts of each chunk, so same-hash and different-hash races mix.
		for range 2 {
			wg.Go(func() {
				_, err := s.Put(context.Background(), h, opaque{bytes.NewReader(data)})
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Put: %v", err)
		}
	}
	checkUsage(t, s, n, total)
}

// testConcurrentPutDelete races Puts and Deletes of a few chunks, then checks
// that Usage matches what is stored and, for observable stores, that the
// observer heard of every change once, in order.
func testConcurrentPutDelete(t *testing.T, s dfs.ChunkStore) {
	rec := &recorder{}
	if o, ok := s.(Observable); ok {
		o.SetObserver(rec)
	} else {
		rec = nil
	}
	type item struct {
		data []byte
		h    dfs.ChunkHash
	}
	var items []item
	for i := range 4 {
		data, h := chunk(uint64(i), 10000+i)
		items = append(items, item{data, h})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*50)
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			for range 50 {
				it := items[rng.IntN(len(items))]
				var err error
				if rng.IntN(2) == 0 {
					_, err = s.Put(context.Background(), it.h, bytes.NewReader(it.data))
				} else {
					err = s.Delete(it.h)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Put/Delete: %v", err)
	}

	var wantChunks, wantBytes int64
	for _, it := range items {
		size, err := s.Stat(it.h)
		switch {
		case err == nil:
			wantChunks++
			wantBytes += size
			checkContent(t, s, it.h, it.data)
		case !errors.Is(err, dfs.ErrNotFound):
			t.Fatalf("Stat: %v", err)
		}
		if rec != nil {
			evs := rec.of(it.h)
			for i, e := range evs {
				if e.added != (i%2 == 0) {
					t.Fatalf("chunk %s: observer heard %v; want alternating add, remove from add", it.h.Short(), evs)
				}
				if e.added && e.size != int64(len(it.data)) {
					t.Errorf("chunk %s: observer heard size %d, want %d", it.h.Short(), e.size, len(it.data))
				}
			}
			if stored, heard := err == nil, len(evs)%2 == 1; stored != heard {
				t.Errorf("chunk %s: stored %v, but observer's last word says %v", it.h.Short(), stored, heard)
			}
		}
	}
	checkUsage(t, s, wantChunks, wantBytes)
}

func testCancelledBeforePut(t *testing.T, s dfs.ChunkStore) {
	data, h := chunk(1, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, h, bytes.NewReader(data)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: err = %v, want context.Canceled", err)
	}
	checkAbsent(t, s, h)
	checkUsage(t, s, 0, 0)
}

// cancelReader cancels its context on the first Read, as if the client went
// away while the body was still arriving.
type cancelReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	c.cancel()
	return c.r.Read(p)
}

func testCancelledDuringPut(t *testing.T, s dfs.ChunkStore) {
	data, h := chunk(1, 4<<20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &cancelReader{r: iotest.HalfReader(bytes.NewReader(data)), cancel: cancel}
	if _, err := s.Put(ctx, h, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put cancelled mid-stream: err = %v, want context.Canceled", err)
	}
	checkAbsent(t, s, h)
	checkUsage(t, s, 0, 0)
}

type event struct {
	added bool
	h     dfs.ChunkHash
	size  int64
}

func (e event) String() string {
	if e.added {
		return fmt.Sprintf("+%s(%d)", e.h.Short(), e.size)
	}
	return "-" + e.h.Short()
}

// recorder is a dfs.ChunkObserver that remembers what it heard.
type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) ChunkAdded(h dfs.ChunkHash, size int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{true, h, size})
}

func (r *recorder) ChunkRemoved(h dfs.ChunkHash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{false, h, 0})
}

func (r *recorder) all() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

func (r *recorder) of(h dfs.ChunkHash) []event {
	var evs []event
	for _, e := range r.all() {
		if e.h == h {
			evs = append(evs, e)
		}
	}
	return evs
}

func testObserver(t *testing.T, s dfs.ChunkStore) {
	o, ok := s.(Observable)
	if !ok {
		t.Skip("store does not take an observer")
	}
	rec := &recorder{}
	o.SetObserver(rec)
	expect := func(step string, want ...event) {
		t.Helper()
		got := rec.all()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after %s: observer heard %v, want %v", step, got, want)
		}
	}

	a, ha := chunk(1, 4000)
	b, hb := chunk(2, 0)
	mustPut(t, s, ha, a)
	expect("Put a", event{true, ha, 4000})
	mustPut(t, s, ha, a)
	expect("Put a again", event{true, ha, 4000})
	s.Put(context.Background(), hb, bytes.NewReader(a)) // wrong bytes
	expect("bad Put", event{true, ha, 4000})
	mustPut(t, s, hb, b)
	expect("Put b", event{true, ha, 4000}, event{true, hb, 0})
	if err := s.Delete(ha); err != nil {
		t.Fatal(err)
	}
	expect("Delete a", event{true, ha, 4000}, event{true, hb, 0}, event{false, ha, 0})
	if err := s.Delete(ha); err != nil {
		t.Fatal(err)
	}
	expect("Delete a again", event{true, ha, 4000}, event{true, hb, 0}, event{false, ha, 0})

	// Many Puts of one new chunk at once: one addition.
	c, hc := chunk(3, 300000)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { s.Put(context.Background(), hc, bytes.NewReader(c)) })
	}
	wg.Wait()
	if evs := rec.of(hc); len(evs) != 1 || !evs[0].added || evs[0].size != int64(len(c)) {
		t.Errorf("8 concurrent Puts of one chunk: observer heard %v, want one addition of %d bytes", evs, len(c))
	}

	o.SetObserver(nil)
	if err := s.Delete(hc); err != nil {
		t.Fatal(err)
	}
	if evs := rec.of(hc); len(evs) != 1 {
		t.Errorf("observer removed, yet it heard %v", evs)
	}
}

func testFree(t *testing.T, s dfs.ChunkStore) {
	free, capacity, err := s.Free()
	if err != nil {
		t.Fatalf("Free: %v", err)
	}
	if capacity <= 0 || free < 0 || free > capacity {
		t.Errorf("Free = %d free of %d; want 0 <= free <= capacity, capacity > 0", free, capacity)
	}
}

func testQuarantine(t *testing.T, s dfs.ChunkStore) {
	q, ok := s.(Quarantiner)
	if !ok {
		t.Skip("store does not quarantine")
	}
	rec := &recorder{}
	if o, ok := s.(Observable); ok {
		o.SetObserver(rec)
	} else {
		rec = nil
	}
	bad, hBad := chunk(1, 7000)
	good, hGood := chunk(2, 3000)
	mustPut(t, s, hBad, bad)
	mustPut(t, s, hGood, good)
	if err := q.Quarantine(hBad); err != nil {
		t.Fatalf("Quarantine: %v", err)
	}
	checkAbsent(t, s, hBad)
	checkContent(t, s, hGood, good)
	checkUsage(t, s, 1, int64(len(good)))
	if err := q.Quarantine(hBad); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("Quarantine of a chunk no longer stored: err = %v, want ErrNotFound", err)
	}
	if rec != nil {
		if evs := rec.of(hBad); len(evs) != 2 || evs[1].added {
			t.Errorf("observer heard %v for the quarantined chunk, want its addition then one removal", evs)
		}
	}
	// It may be stored again.
	mustPut(t, s, hBad, bad)
	checkContent(t, s, hBad, bad)
	checkUsage(t, s, 2, int64(len(good)+len(bad)))
}

// testRandomChanges applies a random sequence of Puts, Deletes and (where
// the store has it) Quarantines, and checks after every few steps that
// Walk, Usage, Stat and Open agree with what was done.
func testRandomChanges(t *testing.T, s dfs.ChunkStore) {
	q, _ := s.(Quarantiner)
	rng := rand.New(rand.NewPCG(7, 11))
	type item struct {
		data []byte
		h    dfs.ChunkHash
	}
	var items []item
	for i := range 30 {
		data, h := chunk(uint64(100+i), 1+rng.IntN(20000))
		items = append(items, item{data, h})
	}
	want := make(map[dfs.ChunkHash]int64)
	for step := range 300 {
		it := items[rng.IntN(len(items))]
		switch op := rng.IntN(5); {
		case op < 3:
			mustPut(t, s, it.h, it.data)
			want[it.h] = int64(len(it.data))
		case op == 3:
			if err := s.Delete(it.h); err != nil {
				t.Fatalf("step %d: Delete: %v", step, err)
			}
			delete(want, it.h)
		case q != nil:
			_, stored := want[it.h]
			err := q.Quarantine(it.h)
			if stored && err != nil || !stored && !errors.Is(err, dfs.ErrNotFound) {
				t.Fatalf("step %d: Quarantine of a chunk stored=%v: %v", step, stored, err)
			}
			delete(want, it.h)
		}
		if step%25 == 24 {
			checkState(t, s, want)
		}
	}
	checkState(t, s, want)
	for _, it := range items {
		if _, ok := want[it.h]; ok {
			checkContent(t, s, it.h, it.data)
		} else {
			checkAbsent(t, s, it.h)
		}
	}
}

// checkState asserts that s holds exactly the chunks in want, by Walk,
// Usage and Stat.
func checkState(t *testing.T, s dfs.ChunkStore, want map[dfs.ChunkHash]int64) {
	t.Helper()
	var total int64
	for _, size := range want {
		total += size
	}
	got := walkAll(t, s)
	if len(got) != len(want) {
		t.Errorf("Walk found %d chunks, want %d", len(got), len(want))
	}
	for h, size := range want {
		if g, ok := got[h]; !ok || g != size {
			t.Errorf("Walk: chunk %s size %d (listed %v), want %d", h.Short(), g, ok, size)
		}
		if st, err := s.Stat(h); err != nil || st != size {
			t.Errorf("Stat %s = %d, %v; want %d, nil", h.Short(), st, err, size)
		}
	}
	if chunks, bytes := s.Usage(); chunks != int64(len(want)) || bytes != total {
		t.Errorf("Usage = %d chunks, %d bytes; want %d, %d", chunks, bytes, len(want), total)
	}
}

// Durable describes a store that keeps its chunks in a place (a directory)
// across a close.
type Durable struct {
	// Open opens the store kept in place, creating it if need be.
	Open func(t *testing.T, place string) dfs.ChunkStore
	// Close closes a store cleanly.
	Close func(dfs.ChunkStore) error
	// RemoveBehind, if not nil, removes chunk h's bytes from place without the store
	// knowing, as an operator's rm would.
	RemoveBehind func(t *testing.T, place string, h dfs.ChunkHash)
	// Crash, if not nil, stops a store as a crash of its process would:
	// its background work ends and nothing is saved. Without it a store
	// is merely dropped.
	Crash func(dfs.ChunkStore)
	// Loaded, if not nil, reports whether a freshly opened store learnt its
	// chunks from what its last clean close saved rather than by looking
	// at every chunk.
	Loaded func(dfs.ChunkStore) bool
}

// RunDurable runs the conformance cases for stores that keep their chunks
// across a close. Each subtest gets its own place from newPlace.
func RunDurable(t *testing.T, d Durable, newPlace func(t *testing.T) string) {
	tests := []struct {
		name string
		fn   func(t *testing.T, d Durable, place string)
	}{
		{"CleanReopen", testCleanReopen},
		{"UncleanReopen", testUncleanReopen},
		{"RemovedBehind", testRemovedBehind},
		{"RemovedWhileClosed", testRemovedWhileClosed},
		{"ClosedRefusesChanges", testClosedRefusesChanges},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d.RemoveBehind == nil && strings.HasPrefix(tt.name, "Removed") {
				t.Skip("the store keeps no chunk an operator could remove by hand")
			}
			t.Parallel()
			tt.fn(t, d, newPlace(t))
		})
	}
}

// fill puts n chunks into s, and deletes every third, quarantining every
// fifth where the store can; it returns what is left stored.
func fill(t *testing.T, s dfs.ChunkStore, seed uint64, n int) map[dfs.ChunkHash][]byte {
	t.Helper()
	q, _ := s.(Quarantiner)
	left := make(map[dfs.ChunkHash][]byte)
	for i := range n {
		data, h := chunk(seed*1000+uint64(i), 100+i*37)
		mustPut(t, s, h, data)
		switch {
		case i%3 == 0:
			if err := s.Delete(h); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		case i%5 == 0 && q != nil:
			if err := q.Quarantine(h); err != nil {
				t.Fatalf("Quarantine: %v", err)
			}
		default:
			left[h] = data
		}
	}
	return left
}

func sizes(m map[dfs.ChunkHash][]byte) map[dfs.ChunkHash]int64 {
	out := make(map[dfs.ChunkHash]int64, len(m))
	for h, b := range m {
		out[h] = int64(len(b))
	}
	return out
}

func mustClose(t *testing.T, d Durable, s dfs.ChunkStore) {
	t.Helper()
	if err := d.Close(s); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func checkLoaded(t *testing.T, d Durable, s dfs.ChunkStore, want bool, when string) {
	t.Helper()
	if d.Loaded != nil && d.Loaded(s) != want {
		t.Errorf("%s: store learnt its chunks from what a clean close saved: %v, want %v", when, d.Loaded(s), want)
	}
}

func testCleanReopen(t *testing.T, d Durable, place string) {
	s := d.Open(t, place)
	want := fill(t, s, 1, 40)
	mustClose(t, d, s)

	s = d.Open(t, place)
	checkLoaded(t, d, s, true, "after a clean close")
	checkState(t, s, sizes(want))
	for h, data := range want {
		checkContent(t, s, h, data)
	}
	// It keeps working, and a second clean close saves the changes.
	more := fill(t, s, 2, 10)
	for h, b := range more {
		want[h] = b
	}
	mustClose(t, d, s)
	s = d.Open(t, place)
	checkLoaded(t, d, s, true, "after a second clean close")
	checkState(t, s, sizes(want))
}

// After a crash (no Close) the store is rebuilt from what it holds, even if
// it had been opened from a saved state that the crash made stale.
func testUncleanReopen(t *testing.T, d Durable, place string) {
	s := d.Open(t, place)
	want := fill(t, s, 1, 30)
	mustClose(t, d, s)

	s = d.Open(t, place)
	checkLoaded(t, d, s, true, "after a clean close")
	for h := range want {
		if err := s.Delete(h); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		delete(want, h)
		break
	}
	for h, b := range fill(t, s, 3, 9) {
		want[h] = b
	}
	// A crash: s is dropped without Close.
	if d.Crash != nil {
		d.Crash(s)
	}

	s = d.Open(t, place)
	checkLoaded(t, d, s, false, "after a crash")
	checkState(t, s, sizes(want))
	for h, data := range want {
		checkContent(t, s, h, data)
	}
}

func testRemovedBehind(t *testing.T, d Durable, place string) {
	s := d.Open(t, place)
	rec := &recorder{}
	if o, ok := s.(Observable); ok {
		o.SetObserver(rec)
	} else {
		rec = nil
	}
	a, ha := chunk(1, 5000)
	b, hb := chunk(2, 6000)
	c, hc := chunk(3, 7000)
	mustPut(t, s, ha, a)
	mustPut(t, s, hb, b)
	mustPut(t, s, hc, c)
	for _, h := range []dfs.ChunkHash{ha, hb, hc} {
		d.RemoveBehind(t, place, h)
	}

	// Each way of looking finds the chunk missing, once the store has
	// looked at the disk.
	if _, err := s.Stat(ha); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("Stat of a chunk removed behind the store's back: err = %v, want ErrNotFound", err)
	}
	if r, _, err := s.Open(hb); !errors.Is(err, dfs.ErrNotFound) {
		if err == nil {
			r.Close()
		}
		t.Errorf("Open of a chunk removed behind the store's back: err = %v, want ErrNotFound", err)
	}
	if v, ok := s.(Verifier); ok {
		if present, _, err := v.Verify(context.Background(), hc); present || err != nil {
			t.Errorf("Verify of a chunk removed behind the store's back = present %v, %v; want absent, nil", present, err)
		}
	} else if _, err := s.Stat(hc); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("Stat of a chunk removed behind the store's back: err = %v, want ErrNotFound", err)
	}
	for _, h := range []dfs.ChunkHash{ha, hb, hc} {
		checkAbsent(t, s, h)
		if rec != nil {
			if evs := rec.of(h); len(evs) != 2 || evs[1].added {
				t.Errorf("chunk %s: observer heard %v, want its addition then one removal", h.Short(), evs)
			}
		}
	}
	checkUsage(t, s, 0, 0)

	// Deleting it is no error and no news; storing it again is news.
	if err := s.Delete(ha); err != nil {
		t.Errorf("Delete of a chunk found missing: %v", err)
	}
	mustPut(t, s, ha, a)
	checkContent(t, s, ha, a)
	checkUsage(t, s, 1, int64(len(a)))
	if rec != nil {
		if evs := rec.of(ha); len(evs) != 3 || !evs[2].added {
			t.Errorf("chunk %s: observer heard %v, want addition, removal, addition", ha.Short(), evs)
		}
	}
}

// A chunk removed while the store was closed cleanly is not served by the
// store opened next, whatever its saved state says.
func testRemovedWhileClosed(t *testing.T, d Durable, place string) {
	s := d.Open(t, place)
	a, ha := chunk(1, 5000)
	b, hb := chunk(2, 6000)
	mustPut(t, s, ha, a)
	mustPut(t, s, hb, b)
	mustClose(t, d, s)
	d.RemoveBehind(t, place, ha)

	s = d.Open(t, place)
	rec := &recorder{}
	if o, ok := s.(Observable); ok {
		o.SetObserver(rec)
	} else {
		rec = nil
	}
	if r, _, err := s.Open(ha); !errors.Is(err, dfs.ErrNotFound) {
		if err == nil {
			r.Close()
		}
		t.Fatalf("Open of a chunk removed while the store was closed: err = %v, want ErrNotFound", err)
	}
	checkAbsent(t, s, ha)
	checkContent(t, s, hb, b)
	checkUsage(t, s, 1, int64(len(b)))
	if rec != nil {
		if evs := rec.of(ha); len(evs) != 1 || evs[0].added {
			t.Errorf("observer heard %v for the removed chunk, want one removal", evs)
		}
	}
}

// A closed store takes no changes, so what it saved stays true.
func testClosedRefusesChanges(t *testing.T, d Durable, place string) {
	s := d.Open(t, place)
	a, ha := chunk(1, 5000)
	b, hb := chunk(2, 6000)
	mustPut(t, s, ha, a)
	mustClose(t, d, s)
	if _, err := s.Put(context.Background(), hb, bytes.NewReader(b)); err == nil {
		t.Errorf("Put into a closed store succeeded")
	}
	if err := s.Delete(ha); err == nil {
		t.Errorf("Delete from a closed store succeeded")
	}
	if err := d.Close(s); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s = d.Open(t, place)
	checkLoaded(t, d, s, true, "after a clean close")
	checkState(t, s, map[dfs.ChunkHash]int64{ha: int64(len(a))})
	checkAbsent(t, s, hb)
}

// fn may change the store while Walk runs: Walk holds no lock across fn.
// Every chunk stored throughout the Walk is seen once.
func testWalkWhileChanging(t *testing.T, s dfs.ChunkStore) {
	want := make(map[dfs.ChunkHash][]byte)
	var before []dfs.ChunkHash
	for i := range 50 {
		data, h := chunk(uint64(300+i), 200+i)
		mustPut(t, s, h, data)
		want[h] = data
		before = append(before, h)
	}
	seen := make(map[dfs.ChunkHash]bool)
	i := 0
	err := s.Walk(context.Background(), func(h dfs.ChunkHash, size int64) error {
		if seen[h] {
			return fmt.Errorf("chunk %s walked twice", h.Short())
		}
		seen[h] = true
		if _, err := s.Stat(h); err != nil && !errors.Is(err, dfs.ErrNotFound) {
			return err
		}
		// Delete every other chunk as it is walked, and add new ones.
		i++
		if i%2 == 0 {
			if err := s.Delete(h); err != nil {
				return err
			}
			delete(want, h)
		}
		data, nh := chunk(uint64(1000+i), 100)
		if _, err := s.Put(context.Background(), nh, bytes.NewReader(data)); err != nil {
			return err
		}
		want[nh] = data
		return nil
	})
	if err != nil {
		t.Fatalf("Walk calling the store: %v", err)
	}
	// Each was stored until the Walk had seen it.
	for _, h := range before {
		if !seen[h] {
			t.Errorf("Walk missed chunk %s, stored throughout", h.Short())
		}
	}
	checkState(t, s, sizes(want))
}
