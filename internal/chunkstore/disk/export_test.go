package disk

import (
	"time"

	"github.com/dfs-store/dfs"
)

// SetModTime sets chunk h's modification time, wherever it is kept, as if
// it had been written or touched at t.
func (s *Store) SetModTime(h dfs.ChunkHash, t time.Time) error {
	e, ok := s.idx.get(h)
	if !ok {
		return dfs.ErrNotFound
	}
	if e.loc != 0 {
		return s.touchRecord(e, t)
	}
	return chtimes(s.path(h), t)
}

// InVolume reports whether chunk h is kept in a volume.
func (s *Store) InVolume(h dfs.ChunkHash) bool {
	e, ok := s.idx.get(h)
	return ok && e.loc != 0
}
