// Package mem is a dfs.ChunkStore held in memory, for tests of the code that
// uses chunk stores. It keeps the same promises as the on-disk store: bytes
// are verified against their hash before a chunk becomes visible, a failed
// Put stores nothing, Put is idempotent, and an observer hears of each actual
// change exactly once. Its capacity is fixed at New, so tests can fill it.
// Nothing survives the process.
package mem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/dfs-store/dfs"
)

// Unlimited is the capacity a Store made with New(0) reports and enforces.
const Unlimited = 1 << 40

// Store is an in-memory dfs.ChunkStore. It is safe for concurrent use.
type Store struct {
	capacity int64
	obs      atomic.Pointer[observerBox]

	// locks serialise the moment a chunk appears or vanishes, per shard of
	// the hash space, so the observer hears of changes to one chunk in order.
	locks [256]sync.Mutex

	mu          sync.RWMutex
	chunks      map[dfs.ChunkHash][]byte
	nBytes      int64
	quarantined map[dfs.ChunkHash][][]byte
}

type observerBox struct{ o dfs.ChunkObserver }

var _ dfs.ChunkStore = (*Store)(nil)

// New returns an empty store that holds at most capacity bytes of chunks;
// capacity 0 means Unlimited. A Put that would exceed the capacity fails with
// an error wrapping dfs.ErrNoSpace.
func New(capacity int64) *Store {
	if capacity <= 0 {
		capacity = Unlimited
	}
	return &Store{capacity: capacity, chunks: make(map[dfs.ChunkHash][]byte)}
}

// SetObserver sets the observer told of chunks added and removed, replacing
// any earlier one; nil removes it. The observer is called synchronously once
// a change is visible, exactly once per actual change, in order for any one
// chunk. It may read the store but must not Put or Delete.
func (s *Store) SetObserver(o dfs.ChunkObserver) {
	if o == nil {
		s.obs.Store(nil)
		return
	}
	s.obs.Store(&observerBox{o})
}

func (s *Store) observer() dfs.ChunkObserver {
	if b := s.obs.Load(); b != nil {
		return b.o
	}
	return nil
}

func (s *Store) get(h dfs.ChunkHash) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.chunks[h]
	return b, ok
}

// Put stores chunk h read from r; see dfs.ChunkStore.
func (s *Store) Put(ctx context.Context, h dfs.ChunkHash, r io.Reader) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), err)
	}
	cr := &ctxReader{ctx: ctx, r: r}
	hw := sha256.New()

	if b, ok := s.get(h); ok {
		n, err := io.Copy(hw, cr)
		if err != nil {
			return 0, fmt.Errorf("put chunk %s: %w", h.Short(), err)
		}
		if err := checkSum(h, hw.Sum(nil), n); err != nil {
			return 0, err
		}
		return int64(len(b)), nil
	}

	s.mu.RLock()
	room := s.capacity - s.nBytes
	s.mu.RUnlock()
	var buf bytes.Buffer
	// Reading one byte past the room left is enough to know it won't fit,
	// and keeps memory bounded whatever r holds.
	n, err := io.Copy(io.MultiWriter(&buf, hw), io.LimitReader(cr, room+1))
	if err != nil {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), err)
	}
	if n > room {
		return 0, fmt.Errorf("put chunk %s: %w: more than the %d bytes free of %d",
			h.Short(), dfs.ErrNoSpace, room, s.capacity)
	}
	if err := checkSum(h, hw.Sum(nil), n); err != nil {
		return 0, err
	}
	return s.commit(h, buf.Bytes())
}

func (s *Store) commit(h dfs.ChunkHash, b []byte) (int64, error) {
	l := &s.locks[h[0]]
	l.Lock()
	defer l.Unlock()

	s.mu.Lock()
	if old, ok := s.chunks[h]; ok {
		s.mu.Unlock()
		return int64(len(old)), nil
	}
	size := int64(len(b))
	if s.nBytes+size > s.capacity {
		free := s.capacity - s.nBytes
		s.mu.Unlock()
		return 0, fmt.Errorf("put chunk %s: %w: %d bytes, %d of %d free",
			h.Short(), dfs.ErrNoSpace, size, free, s.capacity)
	}
	s.chunks[h] = b
	s.nBytes += size
	s.mu.Unlock()

	if o := s.observer(); o != nil {
		o.ChunkAdded(h, size)
	}
	return size, nil
}

func checkSum(h dfs.ChunkHash, sum []byte, n int64) error {
	got, _ := dfs.HashFromBytes(sum)
	if got != h {
		return fmt.Errorf("put chunk %s: %w: %d bytes hash to %s", h.Short(), dfs.ErrHashMismatch, n, got.Short())
	}
	return nil
}

// ctxReader stops a copy once ctx is done, checked before every read.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("read: %w", err)
	}
	return n, err
}

// Open returns chunk h for reading, and its size.
func (s *Store) Open(h dfs.ChunkHash) (dfs.ReadAtCloser, int64, error) {
	b, ok := s.get(h)
	if !ok {
		return nil, 0, fmt.Errorf("open chunk %s: %w", h.Short(), dfs.ErrNotFound)
	}
	return nopCloser{bytes.NewReader(b)}, int64(len(b)), nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// Stat returns the size of chunk h, or an error wrapping dfs.ErrNotFound.
func (s *Store) Stat(h dfs.ChunkHash) (int64, error) {
	b, ok := s.get(h)
	if !ok {
		return 0, fmt.Errorf("stat chunk %s: %w", h.Short(), dfs.ErrNotFound)
	}
	return int64(len(b)), nil
}

// Delete removes chunk h. Deleting a chunk that is not stored succeeds.
func (s *Store) Delete(h dfs.ChunkHash) error {
	l := &s.locks[h[0]]
	l.Lock()
	defer l.Unlock()

	s.mu.Lock()
	b, ok := s.chunks[h]
	if ok {
		delete(s.chunks, h)
		s.nBytes -= int64(len(b))
	}
	s.mu.Unlock()

	if ok {
		if o := s.observer(); o != nil {
			o.ChunkRemoved(h)
		}
	}
	return nil
}

// Quarantine removes chunk h from the store and keeps its bytes aside
// (Quarantined), as the disk store moves a corrupt copy to its quarantine
// directory. The observer hears of it as a removal. It fails with an error
// wrapping dfs.ErrNotFound if the chunk is not stored.
func (s *Store) Quarantine(h dfs.ChunkHash) error {
	l := &s.locks[h[0]]
	l.Lock()
	defer l.Unlock()

	s.mu.Lock()
	b, ok := s.chunks[h]
	if ok {
		delete(s.chunks, h)
		s.nBytes -= int64(len(b))
		if s.quarantined == nil {
			s.quarantined = make(map[dfs.ChunkHash][][]byte)
		}
		s.quarantined[h] = append(s.quarantined[h], b)
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("quarantine chunk %s: %w", h.Short(), dfs.ErrNotFound)
	}
	if o := s.observer(); o != nil {
		o.ChunkRemoved(h)
	}
	return nil
}

// Quarantined returns the copies of chunk h moved aside by Quarantine,
// oldest first.
func (s *Store) Quarantined(h dfs.ChunkHash) [][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([][]byte(nil), s.quarantined[h]...)
}

// Walk calls fn for every chunk stored when Walk began, until fn returns an
// error, which Walk returns. fn may call any method of the store.
func (s *Store) Walk(ctx context.Context, fn func(h dfs.ChunkHash, size int64) error) error {
	type entry struct {
		h    dfs.ChunkHash
		size int64
	}
	s.mu.RLock()
	all := make([]entry, 0, len(s.chunks))
	for h, b := range s.chunks {
		all = append(all, entry{h, int64(len(b))})
	}
	s.mu.RUnlock()
	for _, e := range all {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("walk chunks: %w", err)
		}
		if err := fn(e.h, e.size); err != nil {
			return err
		}
	}
	return nil
}

// Usage returns the number of chunks stored and their total size.
func (s *Store) Usage() (chunks, bytes int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int64(len(s.chunks)), s.nBytes
}

// Free returns the capacity not yet used, and the capacity.
func (s *Store) Free() (free, capacity int64, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.capacity - s.nBytes, s.capacity, nil
}
