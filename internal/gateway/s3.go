package gateway

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/crc64nvme"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/contenttype"
	"github.com/dfs-store/dfs/internal/s3"
)

// The S3 API, over dfs's one namespace: a bucket is a path's first
// segment, an object key the rest of the path. Every request is signed
// (AWS Signature Version 4, internal/s3); the gateway then calls the
// cluster acting for the request's access key, so the key's grants decide
// what it may do, as on every other interface. Path-style addressing.

// DefaultRegion is the S3 region a gateway answers for unless told.
const DefaultRegion = "us-east-1"

// maxSinglePut is S3's largest single PUT.
const maxSinglePut = 5 << 30

// S3Options configure the S3 API.
type S3Options struct {
	// Region is the region requests are signed for (DefaultRegion if
	// empty).
	Region string
	// Domain, if set, serves virtual-hosted style requests: a request to
	// host BUCKET.Domain names the bucket in its host. Path style is
	// always served (a request to Domain itself, or to any other host).
	Domain string
}

// S3 returns the gateway's S3 API handler. Serve it on a port of its own.
func (s *Server) S3(o S3Options) http.Handler {
	if o.Region == "" {
		o.Region = DefaultRegion
	}
	return &s3Handler{s: s, region: o.Region, domain: strings.ToLower(strings.TrimSuffix(o.Domain, ".")), keys: map[string]signingKey{}}
}

type s3Handler struct {
	s      *Server
	region string
	domain string

	mu   sync.Mutex
	keys map[string]signingKey // by key id, day, region, service

	versioning sync.Map // bucket -> versioningEntry (s3versions.go)
}

type signingKey struct {
	key []byte
	at  time.Time
}

// signingKeyTTL is how long a derived signing key is used before it is
// asked for again: a deleted key stops working within it.
const signingKeyTTL = 10 * time.Second

func (h *s3Handler) signingKey(ctx context.Context, id, day, region, service string) ([]byte, error) {
	k := id + "/" + day + "/" + region + "/" + service
	now := time.Now()
	h.mu.Lock()
	sk, ok := h.keys[k]
	h.mu.Unlock()
	if ok && now.Sub(sk.at) < signingKeyTTL {
		return sk.key, nil
	}
	key, err := h.s.cl.SigningKey(ctx, id, day, region, service)
	if errors.Is(err, dfs.ErrNotFound) {
		return nil, s3.ErrUnknownKey
	}
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	if len(h.keys) > 10000 {
		h.keys = map[string]signingKey{}
	}
	h.keys[k] = signingKey{key: key, at: now}
	h.mu.Unlock()
	return key, nil
}

// s3Error is an S3 error answer.
type s3Error struct {
	status int
	code   string
	msg    string
}

func (e *s3Error) Error() string { return e.code + ": " + e.msg }

func s3Err(status int, code, format string, args ...any) *s3Error {
	return &s3Error{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// s3ErrorOf maps an error to its S3 answer. notFound is the code of a
// missing thing (NoSuchKey, NoSuchBucket).
func s3ErrorOf(err error, notFound string) *s3Error {
	var se *s3Error
	if errors.As(err, &se) {
		return se
	}
	// Signature errors carry their code before the colon.
	for _, sigErr := range []error{s3.ErrUnknownKey, s3.ErrSignature, s3.ErrSkewed, s3.ErrExpired, s3.ErrAuthHeader,
		s3.ErrAuthQuery, s3.ErrMissingAuth, s3.ErrUnsupportedAuth, s3.ErrContentSHA256, s3.ErrPayloadMismatch,
		s3.ErrChunkSignature, s3.ErrMalformedChunking} {
		if errors.Is(err, sigErr) {
			code, _, _ := strings.Cut(sigErr.Error(), ":")
			status := http.StatusForbidden
			switch code {
			case "AuthorizationHeaderMalformed", "AuthorizationQueryParametersError", "InvalidRequest", "XAmzContentSHA256Mismatch", "IncompleteBody":
				status = http.StatusBadRequest
			}
			return &s3Error{status: status, code: code, msg: err.Error()}
		}
	}
	switch {
	case errors.Is(err, dfs.ErrPrecondition):
		return s3Err(http.StatusPreconditionFailed, "PreconditionFailed", "%v", err)
	case errors.Is(err, dfs.ErrNotFound):
		return s3Err(http.StatusNotFound, notFound, "%v", err)
	case errors.Is(err, dfs.ErrDenied):
		return s3Err(http.StatusForbidden, "AccessDenied", "%v", err)
	case errors.Is(err, dfs.ErrInvalid) && strings.Contains(err.Error(), "is a delete marker"):
		return s3Err(http.StatusMethodNotAllowed, "MethodNotAllowed", "%v", err)
	case errors.Is(err, dfs.ErrBadPath), errors.Is(err, dfs.ErrInvalid), errors.Is(err, dfs.ErrBadHash):
		return s3Err(http.StatusBadRequest, "InvalidArgument", "%v", err)
	case errors.Is(err, dfs.ErrNoSpace):
		return s3Err(http.StatusInsufficientStorage, "InsufficientStorage", "%v", err)
	case errors.Is(err, dfs.ErrUnavailable):
		return s3Err(http.StatusServiceUnavailable, "ServiceUnavailable", "%v", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return s3Err(http.StatusBadRequest, "RequestTimeout", "%v", err)
	}
	return s3Err(http.StatusInternalServerError, "InternalError", "%v", err)
}

func (h *s3Handler) fail(w http.ResponseWriter, r *http.Request, err error, notFound string) {
	e := s3ErrorOf(err, notFound)
	if e.status >= 500 {
		h.s.log.Info("s3 error", "method", r.Method, "path", clip(r.URL.Path), "code", e.code, "err", e.msg)
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.status)
	if r.Method == http.MethodHead {
		return
	}
	xml.NewEncoder(w).Encode(struct {
		XMLName   xml.Name `xml:"Error"`
		Code      string
		Message   string
		Resource  string
		RequestId string
	}{Code: e.code, Message: e.msg, Resource: r.URL.Path, RequestId: w.Header().Get("X-Amz-Request-Id")})
}

func writeXML(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	io.WriteString(w, xml.Header)
	xml.NewEncoder(w).Encode(v)
}

func (h *s3Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var id [8]byte
	rand.Read(id[:])
	w.Header().Set("X-Amz-Request-Id", strings.ToUpper(hex.EncodeToString(id[:])))
	bucket, key := h.bucketAndKey(r)
	var a *s3.Auth
	var err error
	if s3.IsV2(r) {
		// V2 signs the bucket and key as sent, a bucket alone as
		// "/bucket/".
		resource := r.URL.EscapedPath()
		if vh, _ := h.virtualHost(r); vh != "" {
			resource = "/" + vh + resource
		}
		if strings.Count(resource, "/") == 1 && len(resource) > 1 {
			resource += "/"
		}
		a, err = s3.VerifyV2(r.Context(), r, h.signV2, resource, time.Now())
	} else {
		a, err = s3.Verify(r.Context(), r, h.signingKey, h.region, time.Now())
	}
	if err != nil {
		h.fail(w, r, err, "NoSuchKey")
		return
	}
	ctx := client.ActAs(r.Context(), a.KeyID)
	r = r.WithContext(ctx)
	q := r.URL.Query()
	for _, sub := range []string{"versioning", "lifecycle", "policy", "acl", "cors", "website", "tagging", "encryption",
		"object-lock", "retention", "legal-hold", "replication", "logging", "notification", "accelerate", "requestPayment",
		"restore", "select", "torrent", "ownershipControls", "publicAccessBlock", "analytics",
		"inventory", "metrics", "intelligent-tiering", "attributes"} {
		if !q.Has(sub) {
			continue
		}
		switch {
		case sub == "acl" && r.Method == http.MethodGet:
			h.getACL(w, r, bucket, key)
		case sub == "acl" && r.Method == http.MethodPut && cannedPrivate(r):
			h.putACL(w, r, bucket, key)
		case sub == "versioning" && r.Method == http.MethodGet && key == "":
			h.getVersioning(w, r, bucket)
		case sub == "versioning" && r.Method == http.MethodPut && key == "":
			h.putVersioning(w, r, bucket)
		default:
			h.fail(w, r, s3Err(http.StatusNotImplemented, "NotImplemented", "%s is not supported", sub), "")
		}
		return
	}
	if v := q.Get("versionId"); q.Has("versionId") && v != "null" && !dfs.ValidVersionID(v) {
		h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidArgument", "Invalid version id specified: %.40q", v), "")
		return
	}
	if !cannedPrivate(r) {
		h.fail(w, r, s3Err(http.StatusNotImplemented, "NotImplemented", "x-amz-acl %q: only private is supported; grant access with dfs bucket allow", r.Header.Get("X-Amz-Acl")), "")
		return
	}
	for _, g := range []string{"X-Amz-Grant-Read", "X-Amz-Grant-Write", "X-Amz-Grant-Read-Acp", "X-Amz-Grant-Write-Acp", "X-Amz-Grant-Full-Control"} {
		if r.Header.Get(g) != "" {
			h.fail(w, r, s3Err(http.StatusNotImplemented, "NotImplemented", "%s: ACL grants are not supported; grant access with dfs bucket allow", strings.ToLower(g)), "")
			return
		}
	}
	for _, hd := range []string{"X-Amz-Server-Side-Encryption", "X-Amz-Server-Side-Encryption-Customer-Algorithm", "X-Amz-Object-Lock-Mode",
		"X-Amz-Object-Lock-Legal-Hold", "X-Amz-Tagging", "X-Amz-Website-Redirect-Location"} {
		if r.Header.Get(hd) != "" && r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.fail(w, r, s3Err(http.StatusNotImplemented, "NotImplemented", "%s is not supported", strings.ToLower(hd)), "")
			return
		}
	}
	if v := r.Header.Get("X-Amz-Storage-Class"); v != "" && v != "STANDARD" {
		h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidStorageClass", "storage class %q: dfs has STANDARD", v), "")
		return
	}
	switch {
	case bucket == "":
		if r.Method != http.MethodGet {
			h.fail(w, r, s3Err(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s / is not allowed", r.Method), "")
			return
		}
		h.listBuckets(w, r, a)
	case key == "":
		h.bucket(w, r, bucket)
	default:
		h.object(w, r, a, bucket, key)
	}
}

// cannedPrivate reports whether a request's canned ACL, if any, is
// private: the only one dfs has (access is granted per key).
func cannedPrivate(r *http.Request) bool {
	v := r.Header.Get("X-Amz-Acl")
	return v == "" || v == "private"
}

// getACL answers GetBucketAcl and GetObjectAcl: the canned private ACL, its
// owner the bucket's. Rights other keys hold are dfs grants, not ACLs.
func (h *s3Handler) getACL(w http.ResponseWriter, r *http.Request, bucket, key string) {
	ctx := r.Context()
	if key != "" {
		if _, err := h.s.cl.Stat(ctx, bucket+"/"+key); err != nil {
			h.fail(w, r, err, "NoSuchKey")
			return
		}
	} else if !h.needBucket(w, r, bucket) {
		return
	}
	owner := h.bucketOwner(ctx, bucket)
	type grantee struct {
		XMLNS       string `xml:"xmlns:xsi,attr"`
		Type        string `xml:"xsi:type,attr"`
		ID          string
		DisplayName string
	}
	type grant struct {
		Grantee    grantee
		Permission string
	}
	writeXML(w, http.StatusOK, struct {
		XMLName           xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ AccessControlPolicy"`
		Owner             ownerXML
		AccessControlList []grant `xml:"AccessControlList>Grant"`
	}{Owner: owner, AccessControlList: []grant{{Grantee: grantee{XMLNS: "http://www.w3.org/2001/XMLSchema-instance", Type: "CanonicalUser",
		ID: owner.ID, DisplayName: owner.DisplayName}, Permission: "FULL_CONTROL"}}})
}

// putACL answers PutBucketAcl and PutObjectAcl with the canned private
// ACL, which every bucket and object has already: nothing to change.
func (h *s3Handler) putACL(w http.ResponseWriter, r *http.Request, bucket, key string) {
	ctx := r.Context()
	if r.ContentLength > 0 {
		h.fail(w, r, s3Err(http.StatusNotImplemented, "NotImplemented", "ACL documents are not supported; grant access with dfs bucket allow"), "")
		return
	}
	if key != "" {
		if _, err := h.s.cl.Stat(ctx, bucket+"/"+key); err != nil {
			h.fail(w, r, err, "NoSuchKey")
			return
		}
	} else if !h.needBucket(w, r, bucket) {
		return
	}
	w.WriteHeader(http.StatusOK)
}

// bucketAndKey finds the bucket and key a request names: in its host
// (virtual-hosted style, BUCKET.domain) when a domain is set and the host
// is under it, else in its path.
func (h *s3Handler) bucketAndKey(r *http.Request) (bucket, key string) {
	if b, ok := h.virtualHost(r); ok {
		return b, strings.TrimPrefix(r.URL.Path, "/")
	}
	bucket, key, _ = strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return bucket, key
}

// virtualHost returns the bucket a virtual-hosted style request names in
// its host.
func (h *s3Handler) virtualHost(r *http.Request) (string, bool) {
	if h.domain == "" {
		return "", false
	}
	host := strings.ToLower(r.Host)
	if hp, _, err := net.SplitHostPort(host); err == nil {
		host = hp
	}
	b, ok := strings.CutSuffix(host, "."+h.domain)
	return b, ok && b != ""
}

// signV2 has a coordinator make a V2 signature with a key's secret.
func (h *s3Handler) signV2(ctx context.Context, id, stringToSign string) ([]byte, error) {
	sig, err := h.s.cl.SignV2(ctx, id, stringToSign)
	if errors.Is(err, dfs.ErrNotFound) {
		return nil, s3.ErrUnknownKey
	}
	return sig, err
}

// ---------------------------------------------------------------- buckets

func (h *s3Handler) listBuckets(w http.ResponseWriter, r *http.Request, a *s3.Auth) {
	ctx := r.Context()
	recs, err := h.s.cl.ListBuckets(ctx)
	if err != nil {
		h.fail(w, r, err, "NoSuchBucket")
		return
	}
	created := map[string]time.Time{}
	for _, b := range recs {
		created[b.Name] = b.Created
	}
	// Buckets also are the top-level folders the key may read.
	l, err := h.s.cl.List(ctx, client.ListOptions{Delimiter: "/", Limit: 1000})
	if err != nil && !errors.Is(err, dfs.ErrDenied) {
		h.fail(w, r, err, "NoSuchBucket")
		return
	}
	for _, p := range l.Prefixes {
		name := strings.TrimSuffix(p, "/")
		if _, ok := created[name]; !ok {
			created[name] = time.Unix(0, 0)
		}
	}
	type bucketXML struct {
		Name         string
		CreationDate string
		BucketRegion string `xml:",omitempty"`
	}
	var out struct {
		XMLName           xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListAllMyBucketsResult"`
		Owner             ownerXML
		Buckets           []bucketXML `xml:"Buckets>Bucket"`
		ContinuationToken string      `xml:",omitempty"`
		Prefix            string      `xml:",omitempty"`
	}
	out.Owner = ownerXML{ID: a.KeyID, DisplayName: a.KeyID}
	// Paginated when asked (max-buckets, continuation-token, prefix).
	q := r.URL.Query()
	max := 10000
	if v := q.Get("max-buckets"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidArgument", "max-buckets %q: want 1 to 10000", v), "")
			return
		}
		max = n
	}
	after, prefix := q.Get("continuation-token"), q.Get("prefix")
	out.Prefix = prefix
	names := make([]string, 0, len(created))
	for name := range created {
		if strings.HasPrefix(name, prefix) && name > after {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) > max {
		names = names[:max]
		out.ContinuationToken = names[max-1]
	}
	for _, name := range names {
		out.Buckets = append(out.Buckets, bucketXML{Name: name, CreationDate: s3Time(created[name]), BucketRegion: h.region})
	}
	writeXML(w, http.StatusOK, out)
}

// needBucket reports whether bucket exists for the caller, and answers
// the request (NoSuchBucket, or the error of the check) when not.
func (h *s3Handler) needBucket(w http.ResponseWriter, r *http.Request, bucket string) bool {
	ok, err := h.bucketExists(r.Context(), bucket)
	if !ok {
		if err == nil {
			err = s3Err(http.StatusNotFound, "NoSuchBucket", "no bucket %s", bucket)
		}
		h.fail(w, r, err, "NoSuchBucket")
	}
	return ok
}

// bucketExists reports whether bucket, as far as the caller may know, was
// made on purpose or holds files. A bucket the caller may not read is
// answered as absent (404, where S3 says 403): that tells a stranger less.
func (h *s3Handler) bucketExists(ctx context.Context, bucket string) (bool, error) {
	// The cluster answers NotFound for a bucket that does not exist, and
	// denies one that does to a key with no right on it (403, as S3).
	l, err := h.s.cl.List(ctx, client.ListOptions{Prefix: bucket + "/", Limit: 1})
	switch {
	case err == nil && len(l.Files) > 0:
		return true, nil
	case errors.Is(err, dfs.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	recs, err := h.s.cl.ListBuckets(ctx)
	if err != nil {
		return false, err
	}
	for _, b := range recs {
		if b.Name == bucket {
			return true, nil
		}
	}
	return false, nil
}

func (h *s3Handler) bucket(w http.ResponseWriter, r *http.Request, bucket string) {
	ctx := r.Context()
	q := r.URL.Query()
	switch r.Method {
	case http.MethodPut:
		if err := access.CheckBucketName(bucket); err != nil {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidBucketName", "%v", err), "")
			return
		}
		io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10)) // CreateBucketConfiguration: one region
		if _, err := h.s.cl.CreateBucket(ctx, bucket); err != nil {
			if errors.Is(err, dfs.ErrConflict) {
				if k, werr := h.s.cl.WhoAmI(ctx); werr == nil && k.Rights(bucket)&client.RightOwner != 0 {
					if h.region == "us-east-1" {
						// S3 in us-east-1 answers its owner's CreateBucket
						// of a bucket it has with a success.
						w.Header().Set("Location", "/"+bucket)
						w.WriteHeader(http.StatusOK)
						return
					}
					h.fail(w, r, s3Err(http.StatusConflict, "BucketAlreadyOwnedByYou", "bucket %s is yours already", bucket), "")
					return
				}
				h.fail(w, r, s3Err(http.StatusConflict, "BucketAlreadyExists", "bucket %s exists", bucket), "")
				return
			}
			h.fail(w, r, err, "NoSuchBucket")
			return
		}
		w.Header().Set("Location", "/"+bucket)
		w.WriteHeader(http.StatusOK)
	case http.MethodHead:
		ok, err := h.bucketExists(ctx, bucket)
		switch {
		case ok:
			w.WriteHeader(http.StatusOK)
		case err != nil:
			h.fail(w, r, err, "NoSuchBucket")
		default:
			h.fail(w, r, s3Err(http.StatusNotFound, "NoSuchBucket", "no bucket %s", bucket), "")
		}
	case http.MethodDelete:
		err := h.s.cl.DeleteBucket(ctx, bucket)
		switch {
		case err == nil:
			w.WriteHeader(http.StatusNoContent)
		case errors.Is(err, dfs.ErrConflict):
			h.fail(w, r, s3Err(http.StatusConflict, "BucketNotEmpty", "bucket %s holds objects", bucket), "")
		default:
			h.fail(w, r, err, "NoSuchBucket")
		}
	case http.MethodPost:
		if !q.Has("delete") {
			h.fail(w, r, s3Err(http.StatusNotImplemented, "NotImplemented", "POST on a bucket is only DeleteObjects (?delete)"), "")
			return
		}
		h.deleteObjects(w, r, bucket)
	case http.MethodGet:
		switch {
		case q.Has("location"):
			if !h.needBucket(w, r, bucket) {
				return
			}
			loc := h.region
			if loc == "us-east-1" {
				loc = ""
			}
			writeXML(w, http.StatusOK, struct {
				XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ LocationConstraint"`
				Value   string   `xml:",chardata"`
			}{Value: loc})
		case q.Has("uploads"):
			h.listUploads(w, r, bucket)
		case q.Has("versions"):
			h.listVersions(w, r, bucket)
		default:
			h.listObjects(w, r, bucket)
		}
	default:
		h.fail(w, r, s3Err(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s on a bucket is not allowed", r.Method), "")
	}
}

type objectXML struct {
	Key          string
	LastModified string
	ETag         string
	Size         int64
	StorageClass string
	Owner        *ownerXML `xml:",omitempty"`
}

type prefixXML struct{ Prefix string }

// listArgs reads a listing's page size (parameter name, at most 1000)
// and encoding-type, and returns the key encoder it asks for.
func listArgs(q url.Values, sizeParam string) (max int, encode string, enc func(string) string, err error) {
	max = 1000
	if v := q.Get(sizeParam); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, "", nil, s3Err(http.StatusBadRequest, "InvalidArgument", "%s %q", sizeParam, v)
		}
		max = min(n, 1000)
	}
	encode = q.Get("encoding-type")
	if encode != "" && encode != "url" {
		return 0, "", nil, s3Err(http.StatusBadRequest, "InvalidArgument", "encoding-type %q: want url", encode)
	}
	enc = func(s string) string {
		if encode == "url" {
			return s3URLEncode(s)
		}
		return s
	}
	return max, encode, enc, nil
}

// listObjects answers ListObjects (v1) and ListObjectsV2.
func (h *s3Handler) listObjects(w http.ResponseWriter, r *http.Request, bucket string) {
	ctx := r.Context()
	q := r.URL.Query()
	v2 := q.Get("list-type") == "2"
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	maxKeys, encode, enc, err := listArgs(q, "max-keys")
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	after := q.Get("marker")
	if v2 {
		after = q.Get("start-after")
		if tok := q.Get("continuation-token"); tok != "" {
			b, err := base64.RawURLEncoding.DecodeString(tok)
			if err != nil {
				h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidArgument", "the continuation token is not valid"), "")
				return
			}
			after = string(b)
		}
	}
	if !h.needBucket(w, r, bucket) {
		return
	}
	page, err := h.listPage(ctx, bucket, prefix, delim, after, maxKeys)
	if err != nil {
		h.fail(w, r, err, "NoSuchBucket")
		return
	}
	var contents []objectXML
	var prefixes []prefixXML
	truncated, next := page.truncated, page.next
	// Listings name an owner (v1 always, v2 with fetch-owner): the
	// bucket's, as dfs records none per object.
	var owner *ownerXML
	if len(page.files) > 0 && (!v2 || q.Get("fetch-owner") == "true") {
		o := h.bucketOwner(ctx, bucket)
		owner = &o
	}
	for _, f := range page.files {
		contents = append(contents, objectXML{Key: enc(strings.TrimPrefix(f.Path, bucket+"/")), LastModified: s3Time(f.Modified),
			ETag: etagOf(f), Size: f.Size, StorageClass: "STANDARD", Owner: owner})
	}
	for _, p := range page.prefixes {
		prefixes = append(prefixes, prefixXML{Prefix: enc(strings.TrimPrefix(p, bucket+"/"))})
	}
	if v2 {
		out := struct {
			XMLName               xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
			Name                  string
			Prefix                string
			Delimiter             string `xml:",omitempty"`
			MaxKeys               int
			KeyCount              int
			IsTruncated           bool
			EncodingType          string  `xml:",omitempty"`
			ContinuationToken     *string `xml:",omitempty"`
			NextContinuationToken string  `xml:",omitempty"`
			StartAfter            string  `xml:",omitempty"`
			Contents              []objectXML
			CommonPrefixes        []prefixXML
		}{Name: bucket, Prefix: enc(prefix), Delimiter: enc(delim), MaxKeys: maxKeys, KeyCount: len(contents) + len(prefixes),
			IsTruncated: truncated, EncodingType: encode, StartAfter: enc(q.Get("start-after")),
			Contents: contents, CommonPrefixes: prefixes}
		if q.Has("continuation-token") {
			tok := q.Get("continuation-token")
			out.ContinuationToken = &tok
		}
		if truncated {
			out.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(next))
		}
		writeXML(w, http.StatusOK, out)
		return
	}
	out := struct {
		XMLName        xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
		Name           string
		Prefix         string
		Marker         string
		Delimiter      string `xml:",omitempty"`
		MaxKeys        int
		IsTruncated    bool
		EncodingType   string `xml:",omitempty"`
		NextMarker     string `xml:",omitempty"`
		Contents       []objectXML
		CommonPrefixes []prefixXML
	}{Name: bucket, Prefix: prefix, Marker: enc(q.Get("marker")), Delimiter: enc(delim), MaxKeys: maxKeys, IsTruncated: truncated,
		EncodingType: encode, Contents: contents, CommonPrefixes: prefixes}
	if truncated {
		out.NextMarker = enc(next)
	}
	writeXML(w, http.StatusOK, out)
}

// listed is a page of a listing of a bucket.
type listed struct {
	files     []dfs.FileInfo
	prefixes  []string // full paths, ending in the delimiter
	truncated bool
	next      string // the last key (or common prefix) of the page, without the bucket
}

// listPage lists up to maxKeys keys and common prefixes of bucket after
// key after, in key order.
func (h *s3Handler) listPage(ctx context.Context, bucket, prefix, delim, after string, maxKeys int) (listed, error) {
	var out listed
	if maxKeys <= 0 {
		return out, nil
	}
	opts := client.ListOptions{Prefix: bucket + "/" + prefix, Delimiter: delim, Limit: maxKeys}
	if after != "" {
		opts.StartAfter = bucket + "/" + after
	}
	for {
		l, err := h.s.cl.List(ctx, opts)
		if err != nil {
			return out, err
		}
		// Files and prefixes come each in order; the page is their merge.
		n := len(out.files) + len(out.prefixes)
		out.files = append(out.files, l.Files...)
		out.prefixes = append(out.prefixes, l.Prefixes...)
		for _, f := range l.Files {
			out.next = max(out.next, strings.TrimPrefix(f.Path, bucket+"/"))
		}
		for _, p := range l.Prefixes {
			out.next = max(out.next, strings.TrimPrefix(p, bucket+"/"))
		}
		out.truncated = l.Truncated
		if !l.Truncated || n+len(l.Files)+len(l.Prefixes) >= maxKeys {
			return out, nil
		}
		opts.StartAfter = l.Next
	}
}

// bucketOwner is the owner S3 listings show for a bucket's objects: the
// key that made the bucket (dfs records no owner per object).
func (h *s3Handler) bucketOwner(ctx context.Context, bucket string) ownerXML {
	bs, err := h.s.cl.ListBuckets(ctx)
	if err == nil {
		for _, b := range bs {
			if b.Name == bucket && b.Owner != "" {
				return ownerXML{ID: b.Owner, DisplayName: b.Owner}
			}
		}
	}
	return ownerXML{}
}

// s3URLEncode is the encoding of keys in listings with encoding-type=url.
func s3URLEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~/", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// etagOf is an object's ETag: the MD5 an S3 upload recorded, else (a file
// put by other means) its SHA-256.
func etagOf(f dfs.FileInfo) string {
	if e := f.Attrs["etag"]; e != "" {
		return `"` + e + `"`
	}
	return `"` + f.Content.String() + `"`
}

// ---------------------------------------------------------------- objects

// objectAttrs are the request headers an object keeps and returns.
var objectAttrs = []string{"content-encoding", "content-disposition", "content-language", "cache-control", "expires"}

// checksums S3 clients send, by header.
var checksums = map[string]func() hash.Hash{
	"x-amz-checksum-crc32":     func() hash.Hash { return crc32.NewIEEE() },
	"x-amz-checksum-crc32c":    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
	"x-amz-checksum-crc64nvme": func() hash.Hash { return crc64nvme.New() },
	"x-amz-checksum-sha1":      sha1.New,
	"x-amz-checksum-sha256":    sha256.New,
}

func (h *s3Handler) object(w http.ResponseWriter, r *http.Request, a *s3.Auth, bucket, key string) {
	p, err := dfs.CleanPath(bucket + "/" + key)
	if err != nil || p != bucket+"/"+key {
		h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidArgument", "key %q: dfs cannot store it (no empty, '.' or '..' segment, no trailing '/', at most 1024 bytes)", key), "")
		return
	}
	q := r.URL.Query()
	if q.Has("uploadId") {
		switch r.Method {
		case http.MethodPut:
			h.uploadPart(w, r, a, p)
		case http.MethodPost:
			h.completeUpload(w, r, bucket, key, p)
		case http.MethodDelete:
			h.abortUpload(w, r, p)
		case http.MethodGet:
			h.listParts(w, r, bucket, key, p)
		default:
			h.fail(w, r, s3Err(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s on an upload is not allowed", r.Method), "")
		}
		return
	}
	switch r.Method {
	case http.MethodPost:
		if !q.Has("uploads") {
			h.fail(w, r, s3Err(http.StatusNotImplemented, "NotImplemented", "POST on an object is only CreateMultipartUpload (?uploads)"), "")
			return
		}
		h.createUpload(w, r, bucket, key, p)
	case http.MethodPut:
		if q.Has("partNumber") {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidArgument", "partNumber without uploadId"), "")
			return
		}
		if r.Header.Get("X-Amz-Copy-Source") != "" {
			h.copyObject(w, r, p)
			return
		}
		h.putObject(w, r, a, p)
	case http.MethodGet, http.MethodHead:
		h.getObject(w, r, p)
	case http.MethodDelete:
		if q.Has("versionId") {
			h.deleteVersion(w, r, p, q.Get("versionId"))
			return
		}
		h.deleteObject(w, r, bucket, p)
	default:
		h.fail(w, r, s3Err(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s on an object is not allowed", r.Method), "")
	}
}

func (h *s3Handler) putObject(w http.ResponseWriter, r *http.Request, a *s3.Auth, path string) {
	up, ok := h.receive(w, r, a, path, maxSinglePut)
	if !ok {
		return
	}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-meta-") {
			up.attrs[lk] = strings.Join(vs, ",")
		}
	}
	for _, k := range objectAttrs {
		if v := r.Header.Get(k); v != "" {
			up.attrs[k] = v
		}
	}
	fixContentEncoding(up.attrs)
	up.st.SetAttrs(up.attrs)
	res, err := up.st.Commit(r.Context())
	if err != nil {
		h.fail(w, r, err, "NoSuchKey") // If-Match on no object
		return
	}
	h.setVersionHeader(w, r, res.File)
	up.answer(w)
}

// fixContentEncoding drops "aws-chunked" from a stored Content-Encoding:
// it is how the request's body was sent, not how the object is encoded.
func fixContentEncoding(attrs map[string]string) {
	v, ok := attrs["content-encoding"]
	if !ok {
		return
	}
	var keep []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" && !strings.EqualFold(e, "aws-chunked") {
			keep = append(keep, e)
		}
	}
	if len(keep) == 0 {
		delete(attrs, "content-encoding")
		return
	}
	attrs["content-encoding"] = strings.Join(keep, ", ")
}

// received is a request body staged and checked: its chunks are stored,
// nothing is committed yet.
type received struct {
	st    *client.Staged
	attrs map[string]string // etag (the MD5) and the checksums the request gave
	sums  []string          // their names
}

// answer sends the ETag and checksums of what was stored.
func (up *received) answer(w http.ResponseWriter) {
	w.Header().Set("ETag", `"`+up.attrs["etag"]+`"`)
	for _, name := range up.sums {
		w.Header().Set(name, up.attrs[name])
	}
	w.WriteHeader(http.StatusOK)
}

// receive stages the body of a PUT of at most limit bytes at path,
// checking every digest the request states (the payload's SHA-256,
// Content-MD5, x-amz-checksum-* in headers or trailers) and the length in
// the one pass that stores the bytes. On failure it has answered and
// staged nothing.
func (h *s3Handler) receive(w http.ResponseWriter, r *http.Request, a *s3.Auth, path string, limit int64) (*received, bool) {
	ctx := r.Context()
	var body io.Reader = r.Body
	var chunked *s3.ChunkedReader
	size := r.ContentLength
	switch a.Payload {
	case s3.StreamingPayload, s3.StreamingPayloadTrailer, s3.StreamingUnsignedTrailer:
		chunked = s3.NewChunkedReader(r.Body, a, r.Header.Get("X-Amz-Trailer"))
		body = chunked
		n, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
		if err != nil || n < 0 {
			h.fail(w, r, s3Err(http.StatusLengthRequired, "MissingContentLength", "x-amz-decoded-content-length is required"), "")
			return nil, false
		}
		size = n
	}
	if size < 0 || (chunked == nil && r.Header.Get("Content-Length") == "" && len(r.TransferEncoding) == 0 && r.ProtoAtLeast(1, 1)) {
		h.fail(w, r, s3Err(http.StatusLengthRequired, "MissingContentLength", "Content-Length is required"), "")
		return nil, false
	}
	if size > limit {
		h.fail(w, r, s3Err(http.StatusBadRequest, "EntityTooLarge", "%d bytes in one PUT, at most %d: use a multipart upload", size, limit), "")
		return nil, false
	}
	// Every digest the request states, and the MD5 for the ETag.
	md := md5.New()
	hashes := []io.Writer{md}
	var payloadSHA hash.Hash
	if a.Payload != s3.UnsignedPayload && chunked == nil {
		payloadSHA = sha256.New()
		hashes = append(hashes, payloadSHA)
	}
	sums := map[string]hash.Hash{}
	declared := strings.ToLower(r.Header.Get("X-Amz-Trailer"))
	for name, mk := range checksums {
		if r.Header.Get(name) != "" || (chunked != nil && strings.Contains(declared, name)) {
			sums[name] = mk()
			hashes = append(hashes, sums[name])
		}
	}
	o := client.PutOptions{ContentType: r.Header.Get("Content-Type"), Size: size}
	if o.ContentType == "" && r.URL.Query().Get("uploadId") == "" {
		// No type sent: found as the CLI and REST find it.
		o.ContentType, body = contenttype.Detect(path, body)
	}
	if r.URL.Query().Get("uploadId") == "" {
		cond, err := writeConditions(r)
		if err != nil {
			h.fail(w, r, err, "")
			return nil, false
		}
		o.IfAbsent, o.IfMatch, o.IfNoneMatch = cond.IfAbsent, cond.IfMatch, cond.IfNoneMatch
	}
	// The digests are computed as the body is read. (On a goroutine of
	// their own they gained nothing measurable on 2 cores, one stream or
	// eight: docs/performance.md.)
	counted := &countingReader{r: io.TeeReader(io.LimitReader(body, size+1), io.MultiWriter(hashes...))}
	st, err := h.s.cl.Stage(ctx, path, counted, o)
	if err != nil {
		if counted.err != nil {
			err = counted.err
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = s3Err(http.StatusBadRequest, "IncompleteBody", "the body ended after %d of %d bytes", counted.n, size)
		}
		h.fail(w, r, err, "NoSuchBucket")
		return nil, false
	}
	fail := func(e *s3Error) (*received, bool) {
		st.Abort()
		h.fail(w, r, e, "")
		return nil, false
	}
	if counted.n != size {
		return fail(s3Err(http.StatusBadRequest, "IncompleteBody", "%d bytes received, %d declared", counted.n, size))
	}
	if payloadSHA != nil && hex.EncodeToString(payloadSHA.Sum(nil)) != a.Payload {
		return fail(s3Err(http.StatusBadRequest, "XAmzContentSHA256Mismatch", "the body does not hash to x-amz-content-sha256"))
	}
	etag := md.Sum(nil)
	if vs, ok := r.Header["Content-Md5"]; ok {
		v := vs[0]
		want, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(want) != md5.Size {
			return fail(s3Err(http.StatusBadRequest, "InvalidDigest", "Content-MD5 %q is not a base64 MD5", v))
		}
		if string(want) != string(etag) {
			return fail(s3Err(http.StatusBadRequest, "BadDigest", "the body does not match Content-MD5"))
		}
	}
	up := &received{st: st, attrs: map[string]string{"etag": hex.EncodeToString(etag)}}
	for name, sum := range sums {
		want := r.Header.Get(name)
		if chunked != nil && want == "" {
			want = chunked.Trailer.Get(name)
		}
		got := base64.StdEncoding.EncodeToString(sum.Sum(nil))
		if want != got {
			return fail(s3Err(http.StatusBadRequest, "BadDigest", "the body does not match %s", name))
		}
		up.attrs[name] = got
		up.sums = append(up.sums, name)
	}
	return up, true
}

// countingReader counts what it reads and remembers a read error.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

func (h *s3Handler) getObject(w http.ResponseWriter, r *http.Request, path string) {
	vid := versionParam(r.URL.Query())
	loc, err := h.s.cl.LocateForRead(r.Context(), path, vid)
	if err != nil {
		notFound := "NoSuchKey"
		if vid != "" {
			notFound = "NoSuchVersion"
		} else if errors.Is(err, dfs.ErrNotFound) {
			h.markDeleted(w, r, path)
		}
		h.fail(w, r, err, notFound)
		return
	}
	f := loc.File
	hd := w.Header()
	h.setVersionHeader(w, r, f)
	if v := r.URL.Query().Get("partNumber"); v != "" {
		n, err := partNumber(v)
		if err == nil && r.Header.Get("Range") != "" {
			err = s3Err(http.StatusBadRequest, "InvalidRequest", "a Range header and partNumber cannot go together")
		}
		var off, length int64
		var count int
		if err == nil {
			off, length, count, err = partRange(loc, n)
		}
		if err != nil {
			h.fail(w, r, err, "")
			return
		}
		hd.Set("X-Amz-Mp-Parts-Count", strconv.Itoa(count))
		// The part is served as the range it spans.
		r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+length-1))
		if length == 0 {
			r.Header.Del("Range")
		}
	}
	hd.Set("ETag", etagOf(f))
	hd.Set("Content-Type", typeOf(f))
	hd.Set("Accept-Ranges", "bytes")
	for k, v := range f.Attrs {
		if strings.HasPrefix(k, "x-amz-meta-") || (strings.HasPrefix(k, "x-amz-checksum-") && r.Header.Get("X-Amz-Checksum-Mode") == "ENABLED") {
			// Sent in lower case, as S3 does: SDKs take a metadata
			// name from the header's name as it arrives.
			hd[k] = []string{v}
		}
	}
	for _, k := range objectAttrs {
		if v := f.Attrs[k]; v != "" {
			hd.Set(k, v)
		}
	}
	// The response-* parameters override headers of the answer (a
	// presigned URL's download name, say).
	q := r.URL.Query()
	for param, header := range map[string]string{"response-content-type": "Content-Type", "response-content-language": "Content-Language",
		"response-expires": "Expires", "response-cache-control": "Cache-Control", "response-content-disposition": "Content-Disposition",
		"response-content-encoding": "Content-Encoding"} {
		if v := q.Get(param); v != "" {
			hd.Set(header, v)
		}
	}
	mod := f.Modified.UTC().Truncate(time.Second)
	hd.Set("Last-Modified", mod.Format(http.TimeFormat))
	// Conditions and ranges are decided here, so that their failures are
	// S3's errors; what ServeContent is left with always succeeds.
	if status, code := checkReadConditions(r, etagOf(f), mod); status != 0 {
		if status == http.StatusNotModified {
			for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding", "Content-Disposition", "Content-Language"} {
				hd.Del(k)
			}
			w.WriteHeader(status)
			return
		}
		h.fail(w, r, s3Err(status, code, "the object does not meet the request's conditions"), "")
		return
	}
	for _, c := range []string{"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"} {
		r.Header.Del(c)
	}
	if rg := r.Header.Get("Range"); rg != "" {
		ok, satisfiable := parseRange(rg, f.Size)
		switch {
		case !ok:
			r.Header.Del("Range") // malformed: the whole object, as S3 answers
		case !satisfiable:
			hd.Set("Content-Range", fmt.Sprintf("bytes */%d", f.Size))
			h.fail(w, r, s3Err(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "range %q: the object has %d bytes", rg, f.Size), "")
			return
		}
	}
	rs := &contentReader{ctx: r.Context(), cl: h.s.cl, loc: loc}
	defer rs.Close()
	http.ServeContent(pooledCopy{w}, r, "", time.Time{}, rs)
	h.s.metrics.bytesOut.Add(float64(rs.read))
}

// checkReadConditions applies If-Match, If-Unmodified-Since, If-None-Match
// and If-Modified-Since to an object with etag and modification time mod,
// as RFC 9110 orders them: it returns 412 or 304 and the error code, or 0.
func checkReadConditions(r *http.Request, etag string, mod time.Time) (int, string) {
	im, inm := r.Header.Get("If-Match"), r.Header.Get("If-None-Match")
	if im != "" {
		if !etagListMatches(im, etag) {
			return http.StatusPreconditionFailed, "PreconditionFailed"
		}
	} else if t, err := http.ParseTime(r.Header.Get("If-Unmodified-Since")); err == nil && mod.After(t) {
		return http.StatusPreconditionFailed, "PreconditionFailed"
	}
	if inm != "" {
		if etagListMatches(inm, etag) {
			return http.StatusNotModified, "NotModified"
		}
	} else if t, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !mod.After(t) {
		return http.StatusNotModified, "NotModified"
	}
	return 0, ""
}

// parseRange reads a Range header for an object of size bytes: ok if it is
// one well-formed byte range, satisfiable if it selects a byte.
func parseRange(v string, size int64) (ok, satisfiable bool) {
	spec, found := strings.CutPrefix(v, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return false, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return false, false
	}
	if first == "" { // the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return false, false
		}
		return true, n > 0 && size > 0
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return false, false
	}
	if last != "" {
		b, err := strconv.ParseInt(last, 10, 64)
		if err != nil || b < a {
			return false, false
		}
	}
	return true, a < size
}

// copyObject answers CopyObject: a commit of the source's content under the
// new key, no byte read or sent.
func (h *s3Handler) copyObject(w http.ResponseWriter, r *http.Request, dst string) {
	src, version, err := copySource(r)
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	notFound := "NoSuchKey"
	if version != "" {
		notFound = "NoSuchVersion"
	}
	for _, c := range []string{"X-Amz-Copy-Source-If-Match", "X-Amz-Copy-Source-If-None-Match", "X-Amz-Copy-Source-If-Modified-Since", "X-Amz-Copy-Source-If-Unmodified-Since"} {
		if r.Header.Get(c) == "" {
			continue
		}
		loc, err := h.s.cl.LocateForRead(r.Context(), src, version)
		if err != nil {
			h.fail(w, r, err, notFound)
			return
		}
		f := loc.File
		if err := checkCopyConditions(r, f); err != nil {
			h.fail(w, r, err, "")
			return
		}
		break
	}
	directive := r.Header.Get("X-Amz-Metadata-Directive")
	o := client.CopyOptions{Version: version}
	switch directive {
	case "", "COPY":
		if src == dst && version == "" {
			h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidRequest", "copying an object onto itself needs x-amz-metadata-directive: REPLACE"), "")
			return
		}
	case "REPLACE":
		o.Replace, o.ContentType = true, r.Header.Get("Content-Type")
		loc, err := h.s.cl.LocateForRead(r.Context(), src, version)
		if err != nil {
			h.fail(w, r, err, notFound)
			return
		}
		o.Attrs = map[string]string{}
		for k, v := range loc.File.Attrs {
			if k == "etag" || strings.HasPrefix(k, "x-amz-checksum-") {
				o.Attrs[k] = v // the bytes', not the request's
			}
		}
		for k, vs := range r.Header {
			if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-amz-meta-") {
				o.Attrs[lk] = strings.Join(vs, ",")
			}
		}
		for _, k := range objectAttrs {
			if v := r.Header.Get(k); v != "" {
				o.Attrs[k] = v
			}
		}
	default:
		h.fail(w, r, s3Err(http.StatusBadRequest, "InvalidArgument", "x-amz-metadata-directive %q: want COPY or REPLACE", directive), "")
		return
	}
	f, err := h.s.cl.Copy(r.Context(), src, dst, o)
	if err != nil {
		h.fail(w, r, err, notFound)
		return
	}
	if version != "" {
		w.Header().Set("X-Amz-Copy-Source-Version-Id", version)
	}
	h.setVersionHeader(w, r, f)
	writeXML(w, http.StatusOK, struct {
		XMLName      xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CopyObjectResult"`
		LastModified string
		ETag         string
	}{LastModified: f.Modified.UTC().Format("2006-01-02T15:04:05.000Z"), ETag: etagOf(f)})
}

// maxDeleteObjects is S3's limit of keys in one DeleteObjects.
const maxDeleteObjects = 1000

// deleteObjects answers DeleteObjects: each key deleted or its error
// said, the deleted ones left out when Quiet.
func (h *s3Handler) deleteObjects(w http.ResponseWriter, r *http.Request, bucket string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 2<<20))
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	if v := r.Header.Get("Content-Md5"); v != "" {
		sum := md5.Sum(body)
		if v != base64.StdEncoding.EncodeToString(sum[:]) {
			h.fail(w, r, s3Err(http.StatusBadRequest, "BadDigest", "the body does not match Content-MD5"), "")
			return
		}
	}
	var req struct {
		Quiet   bool
		Objects []struct{ Key, VersionId string } `xml:"Object"`
	}
	if err := xml.Unmarshal(body, &req); err != nil {
		h.fail(w, r, s3Err(http.StatusBadRequest, "MalformedXML", "%v", err), "")
		return
	}
	if len(req.Objects) == 0 || len(req.Objects) > maxDeleteObjects {
		h.fail(w, r, s3Err(http.StatusBadRequest, "MalformedXML", "%d keys: want 1 to %d", len(req.Objects), maxDeleteObjects), "")
		return
	}
	type deleted struct {
		Key                   string
		VersionId             string `xml:",omitempty"`
		DeleteMarker          bool   `xml:",omitempty"`
		DeleteMarkerVersionId string `xml:",omitempty"`
	}
	type failed struct{ Key, Code, Message string }
	var out struct {
		XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ DeleteResult"`
		Deleted []deleted
		Error   []failed
	}
	for _, o := range req.Objects {
		vid := o.VersionId
		if vid == "null" {
			vid = ""
		}
		p, err := dfs.CleanPath(bucket + "/" + o.Key)
		var marker string
		if err == nil && vid != "" {
			var v dfs.Version
			if v, err = h.s.cl.DeleteVersion(r.Context(), p, vid); err == nil && v.DeleteMarker {
				marker = vid
			}
		} else if err == nil {
			marker, err = h.s.cl.DeleteMarked(r.Context(), p, true)
			if !h.versioned(r.Context(), bucket) {
				marker = ""
			}
		}
		if err != nil && !errors.Is(err, dfs.ErrNotFound) {
			e := s3ErrorOf(err, "NoSuchKey")
			out.Error = append(out.Error, failed{Key: o.Key, Code: e.code, Message: e.msg})
			continue
		}
		if !req.Quiet {
			out.Deleted = append(out.Deleted, deleted{Key: o.Key, VersionId: o.VersionId, DeleteMarker: marker != "", DeleteMarkerVersionId: marker})
		}
	}
	writeXML(w, http.StatusOK, out)
}
