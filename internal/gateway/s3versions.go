package gateway

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

// S3 versioning over dfs's versions (docs/versions.md). A bucket whose
// versioning was never set keeps earlier versions for the cluster's
// default retention: GetBucketVersioning shows it unversioned (an empty
// configuration), and ListObjectVersions still lists what it keeps.
// "Enabled" keeps them until deleted by version id; "Suspended" keeps
// none. The version id "null" names the current object.

// versionParam is a request's versionId, "" for none or "null".
func versionParam(q url.Values) string {
	if v := q.Get("versionId"); v != "null" {
		return v
	}
	return ""
}

// versioningTTL is how long a gateway trusts what it read of a bucket's
// versioning: another gateway's change shows within it.
const versioningTTL = 5 * time.Second

type versioningEntry struct {
	enabled bool
	at      time.Time
}

// versioned reports whether bucket enabled versioning: S3 answers then
// show version ids; a bucket in dfs's default mode (which keeps earlier
// versions for the cluster's retention) answers as an unversioned one.
func (h *s3Handler) versioned(ctx context.Context, bucket string) bool {
	if e, ok := h.versioning.Load(bucket); ok && time.Since(e.(versioningEntry).at) < versioningTTL {
		return e.(versioningEntry).enabled
	}
	v, err := h.s.cl.GetVersioning(ctx, bucket)
	if err != nil {
		return false
	}
	h.versioning.Store(bucket, versioningEntry{enabled: v.Mode == "enabled", at: time.Now()})
	return v.Mode == "enabled"
}

// setVersionHeader names the version an answer is about, where the
// bucket enabled versioning or the request named a version.
func (h *s3Handler) setVersionHeader(w http.ResponseWriter, r *http.Request, f dfs.FileInfo) {
	bucket, _, _ := strings.Cut(f.Path, "/")
	if f.VersionID != "" && (versionParam(r.URL.Query()) != "" || h.versioned(r.Context(), bucket)) {
		w.Header().Set("X-Amz-Version-Id", f.VersionID)
	}
}

// markDeleted says, on a read of a key that is not there, whether its
// newest version is a delete marker.
func (h *s3Handler) markDeleted(w http.ResponseWriter, r *http.Request, path string) {
	if bucket, _, _ := strings.Cut(path, "/"); !h.versioned(r.Context(), bucket) {
		w.Header().Set("X-Amz-Delete-Marker", "false")
		return
	}
	l, err := h.s.cl.ListVersions(r.Context(), client.VersionListOptions{Prefix: path, Exact: true, Limit: 1})
	if err != nil {
		return
	}
	if len(l.Versions) > 0 && l.Versions[0].DeleteMarker {
		w.Header().Set("X-Amz-Delete-Marker", "true")
		w.Header().Set("X-Amz-Version-Id", l.Versions[0].VersionID)
		return
	}
	w.Header().Set("X-Amz-Delete-Marker", "false")
}

// deleteObject answers DeleteObject without a versionId. Where the bucket
// enabled versioning, the delete leaves a marker even if the key is not
// there, as S3's does, and the answer names it.
func (h *s3Handler) deleteObject(w http.ResponseWriter, r *http.Request, bucket, path string) {
	marker, err := h.s.cl.DeleteMarked(r.Context(), path, true)
	if err != nil && !errors.Is(err, dfs.ErrNotFound) {
		h.fail(w, r, err, "NoSuchKey")
		return
	}
	if marker != "" && h.versioned(r.Context(), bucket) {
		w.Header().Set("X-Amz-Delete-Marker", "true")
		w.Header().Set("X-Amz-Version-Id", marker)
	}
	w.WriteHeader(http.StatusNoContent)
}

// getVersioning answers GetBucketVersioning.
func (h *s3Handler) getVersioning(w http.ResponseWriter, r *http.Request, bucket string) {
	if !h.needBucket(w, r, bucket) {
		return
	}
	v, err := h.s.cl.GetVersioning(r.Context(), bucket)
	if err != nil {
		h.fail(w, r, err, "NoSuchBucket")
		return
	}
	out := struct {
		XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ VersioningConfiguration"`
		Status  string   `xml:",omitempty"`
	}{}
	switch v.Mode {
	case "enabled":
		out.Status = "Enabled"
	case "suspended":
		out.Status = "Suspended"
	}
	writeXML(w, http.StatusOK, out)
}

// putVersioning answers PutBucketVersioning: Enabled keeps earlier
// versions until they are deleted by id, Suspended keeps none.
func (h *s3Handler) putVersioning(w http.ResponseWriter, r *http.Request, bucket string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	var req struct {
		Status    string
		MfaDelete string
	}
	if err := xml.Unmarshal(body, &req); err != nil {
		h.fail(w, r, s3Err(http.StatusBadRequest, "MalformedXML", "%v", err), "")
		return
	}
	if req.MfaDelete == "Enabled" {
		h.fail(w, r, s3Err(http.StatusNotImplemented, "NotImplemented", "MFA delete is not supported"), "")
		return
	}
	var mode string
	switch req.Status {
	case "Enabled":
		mode = "enabled"
	case "Suspended":
		mode = "suspended"
	default:
		h.fail(w, r, s3Err(http.StatusBadRequest, "MalformedXML", "versioning status %.20q: want Enabled or Suspended", req.Status), "")
		return
	}
	if !h.needBucket(w, r, bucket) {
		return
	}
	if _, err := h.s.cl.SetVersioning(r.Context(), bucket, client.Versioning{Mode: mode}); err != nil {
		h.fail(w, r, err, "NoSuchBucket")
		return
	}
	h.versioning.Delete(bucket)
	w.WriteHeader(http.StatusOK)
}

// deleteVersion answers DeleteObject with a versionId: that version goes
// for good.
func (h *s3Handler) deleteVersion(w http.ResponseWriter, r *http.Request, path, vid string) {
	if vid == "null" {
		// The object written before versioning: the current file, if it
		// is not a version the client already knows by id.
		f, err := h.s.cl.Stat(r.Context(), path)
		if errors.Is(err, dfs.ErrNotFound) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if err != nil {
			h.fail(w, r, err, "NoSuchVersion")
			return
		}
		vid = f.VersionID
	}
	v, err := h.s.cl.DeleteVersion(r.Context(), path, vid)
	if err != nil && !errors.Is(err, dfs.ErrNotFound) {
		h.fail(w, r, err, "NoSuchVersion")
		return
	}
	w.Header().Set("X-Amz-Version-Id", vid)
	if err == nil && v.DeleteMarker {
		w.Header().Set("X-Amz-Delete-Marker", "true")
	}
	w.WriteHeader(http.StatusNoContent)
}

// listVersionPages bounds the pages one ListObjectVersions reads when a
// delimiter folds them into few common prefixes.
const listVersionPages = 8

// listVersions answers ListObjectVersions.
func (h *s3Handler) listVersions(w http.ResponseWriter, r *http.Request, bucket string) {
	ctx := r.Context()
	q := r.URL.Query()
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	maxKeys, encode, enc, err := listArgs(q, "max-keys")
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	keyMarker, vidMarker := q.Get("key-marker"), q.Get("version-id-marker")
	if vidMarker == "null" {
		vidMarker = ""
	}
	if vidMarker != "" && !dfs.ValidVersionID(vidMarker) {
		h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidArgument", "Invalid version id specified: %.40q", vidMarker), "")
		return
	}
	if !h.needBucket(w, r, bucket) {
		return
	}
	owner := h.bucketOwner(ctx, bucket)
	type versionXML struct {
		XMLName      xml.Name
		Key          string
		VersionId    string
		IsLatest     bool
		LastModified string
		ETag         string `xml:",omitempty"`
		Size         *int64 `xml:",omitempty"`
		Owner        ownerXML
		StorageClass string `xml:",omitempty"`
	}
	out := struct {
		XMLName             xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListVersionsResult"`
		Name                string
		Prefix              string
		KeyMarker           string
		VersionIdMarker     string
		NextKeyMarker       string `xml:",omitempty"`
		NextVersionIdMarker string `xml:",omitempty"`
		Delimiter           string `xml:",omitempty"`
		MaxKeys             int
		EncodingType        string `xml:",omitempty"`
		IsTruncated         bool
		Entries             []versionXML
		CommonPrefixes      []prefixXML
	}{Name: bucket, Prefix: enc(prefix), KeyMarker: enc(keyMarker), VersionIdMarker: q.Get("version-id-marker"), Delimiter: enc(delim),
		MaxKeys: maxKeys, EncodingType: encode}
	o := client.VersionListOptions{Prefix: bucket + "/" + prefix, Limit: maxKeys}
	if keyMarker != "" {
		o.KeyMarker, o.VersionMarker = bucket+"/"+keyMarker, vidMarker
	}
	lastPrefix := ""
	n := 0
	for page := 0; ; page++ {
		if page == listVersionPages || n >= maxKeys {
			out.IsTruncated = true
			break
		}
		o.Limit = maxKeys - n
		l, err := h.s.cl.ListVersions(ctx, o)
		if err != nil {
			h.fail(w, r, err, "NoSuchBucket")
			return
		}
		for _, v := range l.Versions {
			key := strings.TrimPrefix(v.Path, bucket+"/")
			if delim != "" {
				if i := strings.Index(key[len(prefix):], delim); i >= 0 {
					cp := key[:len(prefix)+i+len(delim)]
					if cp != lastPrefix {
						out.CommonPrefixes = append(out.CommonPrefixes, prefixXML{Prefix: enc(cp)})
						lastPrefix = cp
						n++
					}
					out.NextKeyMarker, out.NextVersionIdMarker = enc(key), v.VersionID
					continue
				}
			}
			e := versionXML{Key: enc(key), VersionId: v.VersionID, IsLatest: v.Latest, LastModified: s3Time(v.Modified), Owner: owner}
			if v.DeleteMarker {
				e.XMLName = xml.Name{Local: "DeleteMarker"}
			} else {
				size := v.Size
				e.XMLName, e.ETag, e.Size, e.StorageClass = xml.Name{Local: "Version"}, etagOf(v.FileInfo), &size, "STANDARD"
			}
			out.Entries = append(out.Entries, e)
			out.NextKeyMarker, out.NextVersionIdMarker = enc(key), v.VersionID
			n++
		}
		if !l.Truncated {
			break
		}
		o.KeyMarker, o.VersionMarker = l.NextKeyMarker, l.NextVersionMark
	}
	if !out.IsTruncated {
		out.NextKeyMarker, out.NextVersionIdMarker = "", ""
	}
	writeXML(w, http.StatusOK, out)
}
