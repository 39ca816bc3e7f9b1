package gateway

import (
	"fmt"
	"net/http"
	"time"

	"github.com/dfs-store/dfs"
)

// Version is a version of a path as the REST API and dfs versions --json
// show it.
type Version struct {
	Path         string     `json:"path"`
	VersionID    string     `json:"version_id"`
	SHA256       *dfs.Hash  `json:"sha256"` // null for a delete marker
	Size         int64      `json:"size"`
	Time         time.Time  `json:"time"`
	DeleteMarker bool       `json:"delete_marker"`
	Latest       bool       `json:"latest"`
	Expires      *time.Time `json:"expires,omitempty"`
}

// VersionOf is v as the API shows it.
func VersionOf(v dfs.Version) Version {
	out := Version{Path: v.Path, VersionID: v.VersionID, Size: v.Size, Time: v.Modified, DeleteMarker: v.DeleteMarker, Latest: v.Latest}
	if !v.DeleteMarker {
		h := dfs.Hash(v.Content)
		out.SHA256 = &h
	}
	if !v.Expires.IsZero() {
		e := v.Expires
		out.Expires = &e
	}
	return out
}

// serveVersions answers /api/v1/versions/{path}: GET lists the path's
// versions newest first; POST ?restore=ID makes one current again;
// DELETE ?version=ID drops one for good.
func (s *Server) serveVersions(w http.ResponseWriter, r *http.Request, escaped string) {
	p, err := ParsePath(escaped)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ctx := r.Context()
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet:
		vs, err := s.cl.Versions(ctx, p)
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		out := make([]Version, 0, len(vs))
		for _, v := range vs {
			out = append(out, VersionOf(v))
		}
		writeJSON(w, http.StatusOK, map[string]any{"path": p, "versions": out})
	case http.MethodPost:
		id := q.Get("restore")
		if !dfs.ValidVersionID(id) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("restore %.40q: want the version id to restore (20 hex digits)", id))
			return
		}
		f, err := s.cl.Restore(ctx, p, id)
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, File{FileInfo: f})
	case http.MethodDelete:
		id := q.Get("version")
		if !dfs.ValidVersionID(id) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("version %.40q: want the version id to drop (20 hex digits)", id))
			return
		}
		v, err := s.cl.DeleteVersion(ctx, p, id)
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, VersionOf(v))
	default:
		methods(w, r, nil, http.MethodGet, http.MethodPost, http.MethodDelete)
	}
}
