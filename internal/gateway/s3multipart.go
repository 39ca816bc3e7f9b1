package gateway

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/s3"
)

// Multipart uploads. Each part is cut into chunks by content and stored as
// it arrives, exactly as a PUT is (so a part that repeats stored bytes
// sends none), and committed into its upload in the cluster, which keeps
// it safe from garbage collection for as long as the upload is open.
// Completing puts the parts' chunk lists together: no byte is read again.
// The whole object's SHA-256 is computed after, by its post-upload job.

// minPartSize is the smallest part but the last (S3's).
const minPartSize = 5 << 20

// maxPartSize is the largest part (S3's).
const maxPartSize = 5 << 30

const s3NS = "http://s3.amazonaws.com/doc/2006-03-01/"

type ownerXML struct {
	ID          string
	DisplayName string
}

// partNumber parses a partNumber parameter.
func partNumber(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10000 {
		return 0, s3Err(http.StatusBadRequest, "InvalidArgument", "partNumber %q: want 1 to 10000", v)
	}
	return n, nil
}

// uploadErr maps a missing upload to NoSuchUpload.
func (h *s3Handler) failUpload(w http.ResponseWriter, r *http.Request, err error) {
	h.fail(w, r, err, "NoSuchUpload")
}

// createUpload answers CreateMultipartUpload.
func (h *s3Handler) createUpload(w http.ResponseWriter, r *http.Request, bucket, key, path string) {
	attrs := map[string]string{}
	for k, vs := range r.Header {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-amz-meta-") {
			attrs[lk] = strings.Join(vs, ",")
		}
	}
	for _, k := range objectAttrs {
		if v := r.Header.Get(k); v != "" {
			attrs[k] = v
		}
	}
	up, err := h.s.cl.CreateUpload(r.Context(), path, r.Header.Get("Content-Type"), attrs)
	if err != nil {
		h.fail(w, r, err, "NoSuchBucket")
		return
	}
	writeXML(w, http.StatusOK, struct {
		XMLName  xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ InitiateMultipartUploadResult"`
		Bucket   string
		Key      string
		UploadId string
	}{Bucket: bucket, Key: key, UploadId: up.ID})
}

// uploadPart answers UploadPart and UploadPartCopy.
func (h *s3Handler) uploadPart(w http.ResponseWriter, r *http.Request, a *s3.Auth, path string) {
	q := r.URL.Query()
	n, err := partNumber(q.Get("partNumber"))
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	id := q.Get("uploadId")
	if r.Header.Get("X-Amz-Copy-Source") != "" {
		h.uploadPartCopy(w, r, path, id, n)
		return
	}
	up, ok := h.receive(w, r, a, path, maxPartSize)
	if !ok {
		return
	}
	up.st.SetAttrs(up.attrs)
	if _, err := up.st.CommitPart(r.Context(), id, n); err != nil {
		h.failUpload(w, r, err)
		return
	}
	up.answer(w)
}

// uploadPartCopy answers UploadPartCopy: the source's bytes (or the range
// x-amz-copy-source-range names) read from the cluster and stored as the
// part, where chunks already stored are not sent again.
func (h *s3Handler) uploadPartCopy(w http.ResponseWriter, r *http.Request, path, id string, n int) {
	ctx := r.Context()
	src, version, err := copySource(r)
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	if version != "" {
		h.fail(w, r, s3Err(http.StatusNotImplemented, "NotImplemented", "UploadPartCopy from an earlier version is not supported; CopyObject is"), "")
		return
	}
	f, err := h.s.cl.Stat(ctx, src)
	if err != nil {
		h.fail(w, r, err, "NoSuchKey")
		return
	}
	if err := checkCopyConditions(r, f); err != nil {
		h.fail(w, r, err, "")
		return
	}
	off, length := int64(0), f.Size
	if rg := r.Header.Get("X-Amz-Copy-Source-Range"); rg != "" {
		first, last, ok := parseCopyRange(rg)
		if !ok {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidArgument", "x-amz-copy-source-range %q: want bytes=first-last", rg), "")
			return
		}
		if last >= f.Size {
			h.fail(w, r, s3Err(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "x-amz-copy-source-range %q: the source has %d bytes", rg, f.Size), "")
			return
		}
		off, length = first, last-first+1
	}
	if length > maxPartSize {
		h.fail(w, r, s3Err(http.StatusBadRequest, "EntityTooLarge", "a part of %d bytes, at most %d", length, int64(maxPartSize)), "")
		return
	}
	pr, pw := io.Pipe()
	go func() {
		var err error
		if length > 0 {
			_, err = h.s.cl.Get(ctx, src, pw, client.GetOptions{Offset: off, Length: length})
		}
		pw.CloseWithError(err)
	}()
	md := md5.New()
	counted := &countingReader{r: io.TeeReader(pr, md)}
	st, err := h.s.cl.Stage(ctx, path, counted, client.PutOptions{Size: length})
	pr.CloseWithError(io.ErrClosedPipe) // stops the reader if staging failed first
	if err != nil {
		h.fail(w, r, err, "NoSuchKey")
		return
	}
	if counted.n != length {
		st.Abort()
		h.fail(w, r, s3Err(http.StatusConflict, "OperationAborted", "the source changed while it was copied (%d of %d bytes)", counted.n, length), "")
		return
	}
	etag := hex.EncodeToString(md.Sum(nil))
	st.SetAttrs(map[string]string{"etag": etag})
	res, err := st.CommitPart(ctx, id, n)
	if err != nil {
		h.failUpload(w, r, err)
		return
	}
	writeXML(w, http.StatusOK, struct {
		XMLName      xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CopyPartResult"`
		ETag         string
		LastModified string
	}{ETag: `"` + etag + `"`, LastModified: s3Time(res.File.Modified)})
}

// parseCopyRange parses x-amz-copy-source-range: exactly bytes=first-last.
func parseCopyRange(v string) (first, last int64, ok bool) {
	spec, found := strings.CutPrefix(v, "bytes=")
	a, b, dash := strings.Cut(spec, "-")
	if !found || !dash {
		return 0, 0, false
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first < 0 || last < first {
		return 0, 0, false
	}
	return first, last, true
}

// copySource parses x-amz-copy-source: bucket/key, URL-encoded, no version.
func copySource(r *http.Request) (src, version string, err error) {
	raw := r.Header.Get("X-Amz-Copy-Source")
	src = raw
	if i := strings.IndexByte(src, '?'); i >= 0 {
		q, err := url.ParseQuery(src[i+1:])
		if err != nil || len(q) != 1 || !q.Has("versionId") {
			return "", "", s3Err(http.StatusBadRequest, "InvalidArgument", "x-amz-copy-source %.200q: want bucket/key, then at most ?versionId=", raw)
		}
		if version = q.Get("versionId"); version == "null" {
			version = ""
		} else if !dfs.ValidVersionID(version) {
			return "", "", s3Err(http.StatusBadRequest, "InvalidArgument", "Invalid version id specified: %.40q", version)
		}
		src = src[:i]
	}
	src, err = url.PathUnescape(strings.TrimPrefix(src, "/"))
	if err != nil || !strings.Contains(src, "/") {
		return "", "", s3Err(http.StatusBadRequest, "InvalidArgument", "x-amz-copy-source %.200q: want bucket/key", raw)
	}
	return src, version, nil
}

// checkCopyConditions applies x-amz-copy-source-if-* to the source f.
func checkCopyConditions(r *http.Request, f dfs.FileInfo) error {
	etag := etagOf(f)
	mod := f.Modified.UTC().Truncate(time.Second)
	failed := s3Err(http.StatusPreconditionFailed, "PreconditionFailed", "a copy-source condition failed")
	if v := r.Header.Get("X-Amz-Copy-Source-If-Match"); v != "" && !etagListMatches(v, etag) {
		return failed
	}
	if v := r.Header.Get("X-Amz-Copy-Source-If-None-Match"); v != "" && etagListMatches(v, etag) {
		return failed
	}
	if t, err := http.ParseTime(r.Header.Get("X-Amz-Copy-Source-If-Unmodified-Since")); err == nil && mod.After(t) {
		return failed
	}
	if t, err := http.ParseTime(r.Header.Get("X-Amz-Copy-Source-If-Modified-Since")); err == nil && !mod.After(t) {
		return failed
	}
	return nil
}

// etagListMatches reports whether an If-Match style list names etag (or
// is "*").
func etagListMatches(list, etag string) bool {
	for _, v := range strings.Split(list, ",") {
		v = strings.TrimSpace(v)
		if v == "*" || strings.Trim(v, `"`) == strings.Trim(etag, `"`) {
			return true
		}
	}
	return false
}

func s3Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// writeConditions reads the conditions of a write: If-None-Match: * (only
// if no object is there) and If-Match (only if the object there has this
// ETag), which the cluster checks in the commit's transaction.
func writeConditions(r *http.Request) (client.PutOptions, error) {
	var o client.PutOptions
	if v := strings.TrimSpace(r.Header.Get("If-None-Match")); v != "" {
		if v == "*" {
			o.IfAbsent = true
		} else if o.IfNoneMatch = strings.Trim(v, `"`); o.IfNoneMatch == "" || strings.Contains(v, ",") {
			return o, s3Err(http.StatusNotImplemented, "NotImplemented", "If-None-Match on a write takes * or one ETag")
		}
	}
	if v := strings.TrimSpace(r.Header.Get("If-Match")); v != "" {
		o.IfMatch = strings.Trim(v, `"`)
		if o.IfMatch == "" || strings.Contains(v, ",") {
			return o, s3Err(http.StatusNotImplemented, "NotImplemented", "If-Match on a write takes * or one ETag")
		}
	}
	return o, nil
}

// completeUpload answers CompleteMultipartUpload: the parts named must
// exist with the ETags given, in rising order, each but the last at least
// minPartSize. The object's ETag is the MD5 of the parts' MD5s, then "-"
// and the number of parts.
func (h *s3Handler) completeUpload(w http.ResponseWriter, r *http.Request, bucket, key, path string) {
	ctx := r.Context()
	id := r.URL.Query().Get("uploadId")
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	var req struct {
		Parts []struct {
			PartNumber int
			ETag       string
		} `xml:"Part"`
	}
	if err := xml.Unmarshal(body, &req); err != nil {
		h.fail(w, r, s3Err(http.StatusBadRequest, "MalformedXML", "%v", err), "")
		return
	}
	if len(req.Parts) == 0 || len(req.Parts) > 10000 {
		h.fail(w, r, s3Err(http.StatusBadRequest, "MalformedXML", "%d parts: want 1 to 10000", len(req.Parts)), "")
		return
	}
	for i, p := range req.Parts {
		if p.PartNumber < 1 || p.PartNumber > 10000 {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidPart", "part number %d: want 1 to 10000", p.PartNumber), "")
			return
		}
		if i > 0 && p.PartNumber <= req.Parts[i-1].PartNumber {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidPartOrder", "part %d follows part %d: the list must rise", p.PartNumber, req.Parts[i-1].PartNumber), "")
			return
		}
	}
	// The parts as committed, a page at a time.
	stored := map[int]client.Part{}
	after := 0
	for {
		_, parts, more, err := h.s.cl.ListParts(ctx, path, id, after, 1000)
		if errors.Is(err, dfs.ErrNotFound) && after == 0 {
			// Completed already? The cluster answers a completion sent
			// again as it answered the first.
			h.completed(w, r, bucket, key, path, id)
			return
		}
		if err != nil {
			h.failUpload(w, r, err)
			return
		}
		for _, p := range parts {
			stored[p.Number] = p
			after = p.Number
		}
		if !more {
			break
		}
	}
	md := md5.New()
	numbers := make([]int, len(req.Parts))
	for i, p := range req.Parts {
		sp, ok := stored[p.PartNumber]
		if !ok {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidPart", "part %d was not uploaded", p.PartNumber), "")
			return
		}
		if !strings.EqualFold(strings.Trim(strings.TrimSpace(p.ETag), `"`), sp.Attrs["etag"]) {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidPart", "part %d: ETag %s, the part stored has \"%s\"", p.PartNumber, p.ETag, sp.Attrs["etag"]), "")
			return
		}
		sum, err := hex.DecodeString(sp.Attrs["etag"])
		if err != nil {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidPart", "part %d has no ETag", p.PartNumber), "")
			return
		}
		md.Write(sum)
		numbers[i] = p.PartNumber
	}
	// Sizes once every part is known to be there.
	for _, p := range req.Parts[:len(req.Parts)-1] {
		if sp := stored[p.PartNumber]; sp.Size < minPartSize {
			h.fail(w, r, s3Err(http.StatusBadRequest, "EntityTooSmall", "part %d is %d bytes: every part but the last must have at least %d", p.PartNumber, sp.Size, minPartSize), "")
			return
		}
	}
	etag := fmt.Sprintf("%s-%d", hex.EncodeToString(md.Sum(nil)), len(numbers))
	cond, err := writeConditions(r)
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	res, err := h.s.cl.CompleteUpload(ctx, path, id, numbers, client.CompleteOptions{
		Attrs: map[string]string{"etag": etag}, IfAbsent: cond.IfAbsent, IfMatch: cond.IfMatch, IfNoneMatch: cond.IfNoneMatch})
	if err != nil {
		if errors.Is(err, dfs.ErrNotFound) && cond.IfMatch != "" {
			h.fail(w, r, err, "NoSuchKey") // the upload was there: the object is not
			return
		}
		h.failUpload(w, r, err)
		return
	}
	h.setVersionHeader(w, r, res.File)
	writeCompleted(w, r, bucket, key, res.File)
}

// completed answers a completion of an upload that completed before.
func (h *s3Handler) completed(w http.ResponseWriter, r *http.Request, bucket, key, path, id string) {
	res, err := h.s.cl.CompleteUpload(r.Context(), path, id, []int{1}, client.CompleteOptions{})
	if err != nil {
		h.failUpload(w, r, err)
		return
	}
	h.setVersionHeader(w, r, res.File)
	writeCompleted(w, r, bucket, key, res.File)
}

func writeCompleted(w http.ResponseWriter, r *http.Request, bucket, key string, f dfs.FileInfo) {
	loc := url.URL{Scheme: "http", Host: r.Host, Path: "/" + bucket + "/" + key}
	if r.TLS != nil {
		loc.Scheme = "https"
	}
	writeXML(w, http.StatusOK, struct {
		XMLName  xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CompleteMultipartUploadResult"`
		Location string
		Bucket   string
		Key      string
		ETag     string
	}{Location: loc.String(), Bucket: bucket, Key: key, ETag: etagOf(f)})
}

// abortUpload answers AbortMultipartUpload.
func (h *s3Handler) abortUpload(w http.ResponseWriter, r *http.Request, path string) {
	if err := h.s.cl.AbortUpload(r.Context(), path, r.URL.Query().Get("uploadId")); err != nil {
		h.failUpload(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listParts answers ListParts.
func (h *s3Handler) listParts(w http.ResponseWriter, r *http.Request, bucket, key, path string) {
	q := r.URL.Query()
	maxParts, marker := 1000, 0
	if v := q.Get("max-parts"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidArgument", "max-parts %q", v), "")
			return
		}
		maxParts = min(n, 1000)
	}
	if v := q.Get("part-number-marker"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidArgument", "part-number-marker %q", v), "")
			return
		}
		marker = n
	}
	type partXML struct {
		PartNumber   int
		LastModified string
		ETag         string
		Size         int64
	}
	out := struct {
		XMLName              xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListPartsResult"`
		Bucket               string
		Key                  string
		UploadId             string
		Initiator            ownerXML
		Owner                ownerXML
		StorageClass         string
		PartNumberMarker     int
		NextPartNumberMarker int
		MaxParts             int
		IsTruncated          bool
		Parts                []partXML `xml:"Part"`
	}{Bucket: bucket, Key: key, UploadId: q.Get("uploadId"), StorageClass: "STANDARD", PartNumberMarker: marker, MaxParts: maxParts}
	up, parts, more, err := h.s.cl.ListParts(r.Context(), path, out.UploadId, marker, max(1, maxParts))
	if err != nil {
		h.failUpload(w, r, err)
		return
	}
	out.Initiator = ownerXML{ID: up.Owner, DisplayName: up.Owner}
	out.Owner = out.Initiator
	if maxParts == 0 {
		out.IsTruncated = len(parts) > 0
		parts = nil
	} else {
		out.IsTruncated = more
	}
	for _, p := range parts {
		out.Parts = append(out.Parts, partXML{PartNumber: p.Number, LastModified: s3Time(p.Modified), ETag: `"` + p.Attrs["etag"] + `"`, Size: p.Size})
		out.NextPartNumberMarker = p.Number
	}
	writeXML(w, http.StatusOK, out)
}

// listUploads answers ListMultipartUploads.
func (h *s3Handler) listUploads(w http.ResponseWriter, r *http.Request, bucket string) {
	ctx := r.Context()
	q := r.URL.Query()
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	keyMarker, idMarker := q.Get("key-marker"), q.Get("upload-id-marker")
	maxUploads, encode, enc, err := listArgs(q, "max-uploads")
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	if !h.needBucket(w, r, bucket) {
		return
	}
	type uploadXML struct {
		Key          string
		UploadId     string
		Initiator    ownerXML
		Owner        ownerXML
		StorageClass string
		Initiated    string
	}
	out := struct {
		XMLName            xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListMultipartUploadsResult"`
		Bucket             string
		KeyMarker          string
		UploadIdMarker     string
		NextKeyMarker      string
		NextUploadIdMarker string
		Delimiter          string `xml:",omitempty"`
		Prefix             string
		EncodingType       string `xml:",omitempty"`
		MaxUploads         int
		IsTruncated        bool
		Uploads            []uploadXML `xml:"Upload"`
		CommonPrefixes     []prefixXML
	}{Bucket: bucket, KeyMarker: enc(keyMarker), UploadIdMarker: idMarker, Delimiter: enc(delim), Prefix: enc(prefix), EncodingType: encode, MaxUploads: maxUploads}

	base := bucket + "/"
	o := client.ListUploadsOptions{Prefix: base + prefix, Limit: 1000}
	if keyMarker != "" {
		o.AfterPath, o.AfterID = base+keyMarker, idMarker
	}
	n := 0
	lastPrefix := ""
scan:
	for {
		ups, more, err := h.s.cl.ListUploads(ctx, o)
		if err != nil {
			h.fail(w, r, err, "NoSuchBucket")
			return
		}
		for _, u := range ups {
			key := strings.TrimPrefix(u.Path, base)
			o.AfterPath, o.AfterID, o.AfterPrefix = u.Path, u.ID, false
			if delim != "" {
				if i := strings.Index(key[len(prefix):], delim); i >= 0 {
					cp := key[:len(prefix)+i+len(delim)]
					if cp == lastPrefix {
						continue
					}
					if n == maxUploads {
						out.IsTruncated = true
						break scan
					}
					lastPrefix = cp
					out.CommonPrefixes = append(out.CommonPrefixes, prefixXML{Prefix: enc(cp)})
					out.NextKeyMarker, out.NextUploadIdMarker = enc(cp), ""
					n++
					// Skip the rest of the prefix.
					o.AfterPath, o.AfterID, o.AfterPrefix = base+cp, "", true
					continue scan
				}
			}
			if n == maxUploads {
				out.IsTruncated = true
				break scan
			}
			who := ownerXML{ID: u.Owner, DisplayName: u.Owner}
			out.Uploads = append(out.Uploads, uploadXML{Key: enc(key), UploadId: u.ID, Initiator: who, Owner: who,
				StorageClass: "STANDARD", Initiated: s3Time(u.Initiated)})
			out.NextKeyMarker, out.NextUploadIdMarker = enc(key), u.ID
			n++
		}
		if !more {
			break
		}
	}
	writeXML(w, http.StatusOK, out)
}

// partRange returns the byte range of part n of an object, and how many
// parts it has: an object not uploaded in parts is one part.
func partRange(loc client.Location, n int) (off, length int64, count int, err error) {
	if len(loc.Parts) == 0 {
		if n != 1 {
			return 0, 0, 1, s3Err(http.StatusRequestedRangeNotSatisfiable, "InvalidPartNumber", "the object has 1 part, not %d", n)
		}
		return 0, loc.Size, 1, nil
	}
	if n > len(loc.Parts) {
		return 0, 0, len(loc.Parts), s3Err(http.StatusRequestedRangeNotSatisfiable, "InvalidPartNumber", "the object has %d parts, not %d", len(loc.Parts), n)
	}
	for _, p := range loc.Parts[:n-1] {
		off += p.Size
	}
	return off, loc.Parts[n-1].Size, len(loc.Parts), nil
}
