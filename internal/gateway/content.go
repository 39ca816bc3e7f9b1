package gateway

import (
	"net/http"
	"strings"

	"github.com/dfs-store/dfs"
)

// ContentInfo is a content by its hash: its size, its chunks with the live
// nodes holding each, and its processing.
type ContentInfo struct {
	Hash       dfs.ContentHash     `json:"sha256"`
	Size       int64               `json:"size"`
	Chunks     []dfs.ChunkLocation `json:"chunks"`
	Processing *Processing         `json:"processing,omitempty"`
}

// serveContent answers /api/v1/content/{sha256} (details) and
// /api/v1/content/{sha256}/data (the bytes).
func (s *Server) serveContent(w http.ResponseWriter, r *http.Request, rest string) {
	hs, sub, _ := strings.Cut(rest, "/")
	if sub != "" && sub != "data" {
		writeError(w, http.StatusNotFound, errorf("no such endpoint: /api/v1/content/{sha256}/%s", clip(sub)))
		return
	}
	h, err := dfs.ParseHash(hs)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if sub == "data" {
		methods(w, r, func(w http.ResponseWriter, r *http.Request) {
			loc, err := s.cl.LocateContent(r.Context(), h)
			if err != nil {
				writeError(w, statusOf(err), err)
				return
			}
			s.serveBytes(w, r, loc, loc.File, h.String())
		}, http.MethodGet, http.MethodHead)
		return
	}
	methods(w, r, func(w http.ResponseWriter, r *http.Request) {
		loc, err := s.cl.LocateContent(r.Context(), h)
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		out := ContentInfo{Hash: loc.Content, Size: loc.Size, Chunks: loc.Chunks, Processing: processingOf(loc.Processing)}
		if out.Chunks == nil {
			out.Chunks = []dfs.ChunkLocation{}
		}
		writeJSON(w, http.StatusOK, out)
	}, http.MethodGet)
}
