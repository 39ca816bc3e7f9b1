package coordinator

import "github.com/dfs-store/dfs"

// holdersLocked returns the nodes holding h. s.mu is held.
func (s *Server) holdersLocked(h dfs.Hash) []dfs.NodeID { return s.locs[h] }

// forEachChunkLocked calls fn for every chunk in the location map. s.mu is
// held.
func (s *Server) forEachChunkLocked(fn func(h dfs.Hash)) {
	for h := range s.locs {
		fn(h)
	}
}
