package disk

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dfs-store/dfs"
)

// The Store's operations on chunks kept in volumes (see volume.go).

// putSmall stores chunk h, whose n bytes are in buf after room for a
// record header, in the active volume.
func (s *Store) putSmall(h dfs.ChunkHash, buf []byte, n int64) (int64, error) {
	data := buf[recHeader : recHeader+n]
	if got := dfs.Hash(sha256.Sum256(data)); got != h {
		return 0, fmt.Errorf("put chunk %s: %w: %d bytes hash to %s", h.Short(), dfs.ErrHashMismatch, n, got.Short())
	}
	if e, ok := s.idx.get(h); ok {
		// Stored while the bytes arrived.
		return s.touchStored(h, e.size)
	}
	rl := recLen(n)
	if err := s.checkReserve(h, rl); err != nil {
		return 0, err
	}
	rec := buf[:rl]
	clear(rec[recHeader+n:])
	putHead(rec, recHead{h: h, size: n, mtime: time.Now().UnixNano()})
	l, v, err := s.vols.append(rec)
	if err != nil {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), err)
	}
	defer v.settled()
	if !s.opts.NoSync {
		if err := v.sync(); err != nil {
			v.markDead(l.off(), h, n, false)
			return 0, fmt.Errorf("put chunk %s: %w", h.Short(), err)
		}
	}

	lk := s.lock(h)
	lk.Lock()
	if s.closed.Load() {
		lk.Unlock()
		v.markDead(l.off(), h, n, false)
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), ErrClosed)
	}
	if e, ok := s.idx.get(h); ok {
		// A concurrent Put of the same chunk got there first: keep its
		// copy, touched, and let this record go.
		lk.Unlock()
		v.markDead(l.off(), h, n, false)
		return s.touchStored(h, e.size)
	}
	v.live.Add(rl)
	s.idx.addAt(h, n, l)
	if o := s.observer(); o != nil {
		o.ChunkAdded(h, n)
	}
	lk.Unlock()
	return n, nil
}

// touchStored touches chunk h, already stored with size bytes, and makes
// the touch durable.
func (s *Store) touchStored(h dfs.ChunkHash, size int64) (int64, error) {
	lk := s.lock(h)
	lk.Lock()
	e, err := s.touchLocked(h)
	lk.Unlock()
	if err != nil {
		return 0, err
	}
	if err := s.syncChunk(h, e); err != nil {
		return 0, err
	}
	return size, nil
}

// touchRecord sets the modification time of e's record to t. The caller
// holds the chunk's lock and syncs.
func (s *Store) touchRecord(e indexEntry, t time.Time) error {
	v := s.vols.get(e.loc.vol())
	if v == nil {
		return fmt.Errorf("volume %d: %w", e.loc.vol(), dfs.ErrNotFound)
	}
	defer v.release()
	return v.setMtime(e.loc.off(), t)
}

// openRecord opens chunk h, in a volume at e, for reading. The volume stays
// open for the reader even if compaction moves the chunk meanwhile.
func (s *Store) openRecord(h dfs.ChunkHash, e indexEntry) (dfs.ReadAtCloser, int64, error) {
	for range 3 {
		if v := s.vols.get(e.loc.vol()); v != nil {
			return &volChunk{v: v, off: e.loc.off() + recHeader, size: e.size}, e.size, nil
		}
		// Compacted between the lookup and now: look again.
		var ok bool
		if e, ok = s.idx.get(h); !ok {
			break
		}
		if e.loc == 0 {
			return s.Open(h)
		}
	}
	return nil, 0, fmt.Errorf("open chunk %s: %w", h.Short(), dfs.ErrNotFound)
}

// removeRecord deletes chunk h, in a volume at e, if cond (when not nil)
// approves its modification time. The caller holds h's lock.
func (s *Store) removeRecord(h dfs.ChunkHash, e indexEntry, cond func(time.Time) bool) (bool, error) {
	v := s.vols.get(e.loc.vol())
	if v == nil {
		return false, fmt.Errorf("delete chunk %s: volume %d: %w", h.Short(), e.loc.vol(), dfs.ErrNotFound)
	}
	defer v.release()
	if cond != nil {
		mt, err := v.mtime(e.loc.off())
		if err != nil {
			return false, fmt.Errorf("delete chunk %s: %w", h.Short(), err)
		}
		if !cond(mt) {
			return false, nil
		}
	}
	// The index forgets it whether or not the deletes file takes the
	// entry: at worst a crash brings the chunk back, to be collected again.
	err := v.markDead(e.loc.off(), h, e.size, true)
	s.indexRemoved(h)
	s.maybeCompact(v)
	if err != nil {
		return true, fmt.Errorf("delete chunk %s: %w", h.Short(), err)
	}
	return true, nil
}

// quarantineRecord copies chunk h's bytes, in a volume at e, to
// dir/quarantine and deletes the record. The caller holds h's lock.
func (s *Store) quarantineRecord(h dfs.ChunkHash, e indexEntry) error {
	v := s.vols.get(e.loc.vol())
	if v == nil {
		return fmt.Errorf("quarantine chunk %s: %w", h.Short(), dfs.ErrNotFound)
	}
	defer v.release()
	dst := filepath.Join(s.quarantine, fmt.Sprintf("%s.%d", h, time.Now().UnixNano()))
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("quarantine chunk %s: %w", h.Short(), err)
	}
	_, cerr := f.ReadFrom(newSection(v, e))
	if cerr == nil && !s.opts.NoSync {
		cerr = f.Sync()
	}
	if err := f.Close(); cerr == nil {
		cerr = err
	}
	if cerr != nil {
		// The copy for a post-mortem failed (the bytes may be
		// unreadable): the record goes all the same.
		os.Remove(dst)
	}
	err = v.markDead(e.loc.off(), h, e.size, true)
	s.indexRemoved(h)
	s.maybeCompact(v)
	if err != nil {
		return fmt.Errorf("quarantine chunk %s: %w", h.Short(), err)
	}
	if !s.opts.NoSync && cerr == nil {
		if err := syncDir(s.quarantine); err != nil {
			return fmt.Errorf("quarantine chunk %s: %w", h.Short(), err)
		}
	}
	return nil
}

// newSection returns a reader of e's bytes in v.
func newSection(v *volume, e indexEntry) *sectionReader {
	return &sectionReader{c: volChunk{v: v, off: e.loc.off() + recHeader, size: e.size}}
}

type sectionReader struct {
	c   volChunk
	pos int64
}

func (r *sectionReader) Read(p []byte) (int, error) {
	n, err := r.c.ReadAt(p, r.pos)
	r.pos += int64(n)
	return n, err
}

// verifyRecord hashes chunk h's bytes in a volume at e.
func (s *Store) verifyRecord(ctx context.Context, h dfs.ChunkHash, e indexEntry) (present, ok bool, err error) {
	v := s.vols.get(e.loc.vol())
	for range 3 {
		if v != nil {
			break
		}
		// Compacted between the lookup and now: look again.
		if e, ok = s.idx.get(h); !ok {
			return false, false, nil
		}
		if e.loc == 0 {
			return s.Verify(ctx, h)
		}
		v = s.vols.get(e.loc.vol())
	}
	if v == nil {
		return false, false, fmt.Errorf("verify chunk %s: its volume keeps moving", h.Short())
	}
	defer v.release()
	got, err := v.hashRange(ctx, e.loc.off()+recHeader, e.size)
	switch {
	case errors.Is(err, syscall.EIO):
		return true, false, nil
	case err != nil:
		return false, false, fmt.Errorf("verify chunk %s: %w", h.Short(), err)
	}
	return true, got == h, nil
}

// closeVolumes syncs and closes the volumes, if the store has any.
func (s *Store) closeVolumes() error {
	if s.vols == nil {
		return nil
	}
	return s.vols.close()
}

// maybeCompact wakes the compactor if v has become worth compacting.
func (s *Store) maybeCompact(v *volume) {
	if s.worthCompacting(v) {
		s.vols.wake()
	}
}

func (s *Store) worthCompacting(v *volume) bool {
	end := v.end.Load()
	dead := end - v.live.Load()
	return end > 0 && float64(dead) >= s.compactRatio()*float64(end)
}

func (s *Store) compactRatio() float64 {
	if s.opts.CompactRatio > 0 {
		return s.opts.CompactRatio
	}
	return DefaultCompactRatio
}

// compactLoop compacts volumes when woken, and every minute.
func (s *Store) compactLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.vols.kick:
		}
		s.compactDue(ctx)
	}
}

// compactDue compacts every sealed volume with enough dead bytes. It costs
// a look at each volume (a few hundred for a full disk), not at each chunk.
func (s *Store) compactDue(ctx context.Context) {
	// One compaction at a time: the loop's and Compact's.
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	for _, v := range s.vols.list() {
		// A volume that is not the active one now never will be again:
		// it takes no more appends, so once its pending count is zero
		// it stays so.
		s.vols.wmu.Lock()
		active := v == s.vols.active
		s.vols.wmu.Unlock()
		if !active && v.pending.Load() == 0 && ctx.Err() == nil && s.worthCompacting(v) {
			if err := s.compactVolume(ctx, v); err == nil {
				s.compacted.Add(1)
			}
		}
		v.release()
	}
}

// Compact compacts every sealed volume with enough dead bytes now, and
// returns how many volumes the store has compacted since it opened.
func (s *Store) Compact(ctx context.Context) int64 {
	if s.vols != nil {
		s.compactDue(ctx)
	}
	return s.compacted.Load()
}

// moving is a record copied by compaction, waiting to be synced and
// switched to.
type moving struct {
	h     dfs.ChunkHash
	size  int64
	mtime int64
	from  loc
	to    loc
	v     *volume // to's, held
}

// compactVolume copies v's live records to the active volume and removes
// v. Records are copied in batches: appended, synced together, then
// switched to one by one under each chunk's lock.
func (s *Store) compactVolume(ctx context.Context, v *volume) error {
	end := v.end.Load()
	var batch []moving
	var batchBytes int64
	var buf []byte
	flush := func() error {
		err := s.switchMoved(batch)
		batch, batchBytes = batch[:0], 0
		return err
	}
	for off := int64(0); off+recHeader <= end; {
		if err := ctx.Err(); err != nil {
			flush()
			return err
		}
		rh, err := v.readHead(off)
		if err != nil {
			off += recAlign // damaged: look for the next record
			continue
		}
		rl := recLen(rh.size)
		from := makeLoc(v.id, off)
		if e, ok := s.idx.get(rh.h); ok && e.loc == from && e.size == rh.size {
			if int64(cap(buf)) < rl {
				buf = alignedBuf(rl)
			}
			rec := buf[:rl]
			if _, err := v.f.ReadAt(rec, off); err != nil {
				flush()
				return fmt.Errorf("compact volume %s: %w", v.path, err)
			}
			if sha256.Sum256(rec[recHeader:recHeader+rh.size]) != rh.h {
				// Rotten: left for the scrubber to find, which keeps
				// this volume until it does.
				off += rl
				continue
			}
			to, nv, err := s.vols.append(rec)
			if err != nil {
				flush()
				return fmt.Errorf("compact volume %s: %w", v.path, err)
			}
			batch = append(batch, moving{h: rh.h, size: rh.size, mtime: rh.mtime, from: from, to: to, v: nv})
			batchBytes += rl
			if len(batch) >= 1024 || batchBytes >= 16<<20 {
				if err := flush(); err != nil {
					return fmt.Errorf("compact volume %s: %w", v.path, err)
				}
			}
		}
		off += rl
	}
	if err := flush(); err != nil {
		return fmt.Errorf("compact volume %s: %w", v.path, err)
	}
	if n := v.live.Load(); n != 0 {
		return fmt.Errorf("compact volume %s: %d live bytes left (unreadable or rotten records)", v.path, n)
	}
	return s.vols.retire(v)
}

// switchMoved syncs the copies in batch and points the index at each one
// whose chunk is still where it was copied from; the others are dead.
func (s *Store) switchMoved(batch []moving) error {
	defer func() {
		for _, m := range batch {
			m.v.settled()
		}
	}()
	if len(batch) == 0 {
		return nil
	}
	if !s.opts.NoSync {
		synced := map[*volume]bool{}
		for _, m := range batch {
			if !synced[m.v] {
				if err := m.v.sync(); err != nil {
					for _, m := range batch {
						m.v.markDead(m.to.off(), m.h, m.size, false)
					}
					return err
				}
				synced[m.v] = true
			}
		}
	}
	var retouched []*volume
	for _, m := range batch {
		lk := s.lock(m.h)
		lk.Lock()
		old := s.vols.get(m.from.vol())
		switched := false
		if old != nil {
			// A Touch since the copy was read changed the time in the
			// old record: carry it over.
			if mt, err := old.mtime(m.from.off()); err == nil && mt.UnixNano() != m.mtime {
				if m.v.setMtime(m.to.off(), mt) == nil {
					retouched = append(retouched, m.v)
				}
			}
			if s.idx.move(m.h, m.from, m.to) {
				rl := recLen(m.size)
				old.live.Add(-rl)
				m.v.live.Add(rl)
				switched = true
			}
			old.release()
		}
		if !switched {
			m.v.markDead(m.to.off(), m.h, m.size, false)
		}
		lk.Unlock()
	}
	if !s.opts.NoSync {
		for _, v := range retouched {
			if err := v.sync(); err != nil {
				return err
			}
		}
	}
	return nil
}
