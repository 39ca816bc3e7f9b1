package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/contenttype"
)

// ParsePath decodes the escaped path of a URL (what follows
// /api/v1/files/) and validates it as a dfs path. It fails, wrapping
// dfs.ErrBadPath, on bad escapes and on every path dfs.CleanPath refuses:
// "." and ".." segments, NUL and control bytes, invalid UTF-8, empty
// segments, more than dfs.MaxPathLen bytes.
func ParsePath(escaped string) (string, error) {
	if len(escaped) > 3*dfs.MaxPathLen+3 {
		return "", fmt.Errorf("%w: longer than %d bytes", dfs.ErrBadPath, dfs.MaxPathLen)
	}
	p, err := url.PathUnescape(escaped)
	if err != nil {
		return "", fmt.Errorf("%w: %v", dfs.ErrBadPath, err)
	}
	return dfs.CleanPath(p)
}

// File is a file as the API shows it.
type File struct {
	dfs.FileInfo
	Processing *Processing `json:"processing,omitempty"`
}

// Processing is a content's post-upload processing state.
type Processing struct {
	State    string            `json:"state"` // queued, processing, done, error, duplicate
	Worker   string            `json:"worker,omitempty"`
	Attempts int               `json:"attempts,omitempty"`
	Error    string            `json:"error,omitempty"`
	Results  map[string]string `json:"results,omitempty"`
	Queued   time.Time         `json:"queued,omitzero"`
	Started  time.Time         `json:"started,omitzero"`
	Updated  time.Time         `json:"updated,omitzero"`
}

func processingOf(p *dfs.Processing) *Processing {
	if p == nil {
		return nil
	}
	return &Processing{State: string(p.State), Worker: p.Worker, Attempts: p.Attempts, Error: p.Error, Results: p.Results,
		Queued: p.Queued, Started: p.Started, Updated: p.Updated}
}

// UploadResult is the answer to an upload.
type UploadResult struct {
	dfs.FileInfo
	// Status is "queued" for new content (its processing job is queued) or
	// "duplicate" when the cluster already held these bytes.
	Status    string `json:"status"`
	Chunks    int    `json:"chunks"`
	NewChunks int    `json:"new_chunks"`
	SentBytes int64  `json:"sent_bytes"`
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, escaped string) {
	p, err := ParsePath(escaped)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	switch r.Method {
	case http.MethodPut:
		s.putFile(w, r, p)
	case http.MethodGet, http.MethodHead:
		s.getFile(w, r, p)
	case http.MethodDelete:
		if err := s.cl.Delete(r.Context(), p); err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"deleted": p})
	default:
		methods(w, r, nil, http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete)
	}
}

// bodyReader remembers the error of the request body, to tell a client
// that sent too little (its fault: 400) from a cluster that failed (5xx).
type bodyReader struct {
	r   io.Reader
	n   int64
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// put stores r at p and says what the upload did. A body that fails
// before its end commits nothing: the SDK commits only after reading to
// EOF.
func (s *Server) put(ctx context.Context, p string, r io.Reader, contentType string, size int64) (UploadResult, int, error) {
	st, code, err := s.stage(ctx, p, r, contentType, size)
	if err != nil {
		return UploadResult{}, code, err
	}
	res, err := st.Commit(ctx)
	if err != nil {
		return UploadResult{}, statusOf(err), err
	}
	return s.uploaded(res), http.StatusCreated, nil
}

// stage streams one upload's bytes to the datanodes without committing;
// size is their length if known, else -1.
func (s *Server) stage(ctx context.Context, p string, r io.Reader, contentType string, size int64) (*client.Staged, int, error) {
	br := &bodyReader{r: r}
	st, err := s.cl.Stage(ctx, p, br, client.PutOptions{ContentType: contentType, Size: size})
	s.metrics.bytesIn.Add(float64(br.n))
	if err != nil {
		if br.err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("upload %s: request body ended early after %d bytes (%v); nothing was stored", p, br.n, br.err)
		}
		return nil, statusOf(err), err
	}
	return st, http.StatusCreated, nil
}

// uploaded is the answer for a committed upload.
func (s *Server) uploaded(res client.PutResult) UploadResult {
	s.metrics.chunksIn.Add(float64(res.NewChunks))
	out := UploadResult{FileInfo: res.File, Status: "queued", Chunks: res.Chunks, NewChunks: res.NewChunks, SentBytes: res.SentBytes}
	if res.Duplicate {
		out.Status = "duplicate"
	}
	return out
}

func (s *Server) putFile(w http.ResponseWriter, r *http.Request, p string) {
	ct, err := contentType(r.Header.Get("Content-Type"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var body io.Reader = r.Body
	if ct == "" {
		// curl -T sends none: the type is found as the CLI finds it.
		ct, body = contenttype.Detect(p, body)
	}
	res, code, err := s.put(r.Context(), p, body, ct, r.ContentLength)
	if err != nil {
		writeError(w, code, err)
		return
	}
	writeJSON(w, code, res)
}

// contentType checks a client's Content-Type; empty and the generic
// octet-stream give "", leaving the type to contenttype.Detect.
func contentType(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if len(v) > 255 {
		return "", fmt.Errorf("%w: Content-Type longer than 255 bytes", dfs.ErrInvalid)
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return "", fmt.Errorf("%w: Content-Type %q: %v", dfs.ErrInvalid, clip(v), err)
	}
	switch {
	case mt == "application/octet-stream", mt == "application/x-www-form-urlencoded", strings.HasPrefix(mt, "multipart/"):
		// Generic, or what a tool sends by default (curl --data): not
		// a type of the file's bytes.
		return "", nil
	}
	return mime.FormatMediaType(mt, params), nil
}

// typeOf is the Content-Type a file is served with.
func typeOf(f dfs.FileInfo) string {
	if f.ContentType != "" {
		return f.ContentType
	}
	if t := contenttype.ByName(f.Path); t != "" {
		return t
	}
	return "application/octet-stream"
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request, p string) {
	v := r.URL.Query().Get("version")
	if v != "" && !dfs.ValidVersionID(v) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("version %.40q: want 20 hex digits", v))
		return
	}
	loc, err := s.cl.LocateForRead(r.Context(), p, v)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	s.serveBytes(w, r, loc, loc.File, path.Base(p))
}

// serveBytes answers GET and HEAD for a located content, with Range,
// conditional requests and the SHA-256 as ETag. Only the chunks a range
// covers are fetched.
func (s *Server) serveBytes(w http.ResponseWriter, r *http.Request, loc client.Location, f dfs.FileInfo, name string) {
	h := w.Header()
	h.Set("ETag", `"`+loc.Content.String()+`"`)
	h.Set("Content-Type", typeOf(f))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	disp := "attachment"
	if r.URL.Query().Get("inline") != "" {
		disp = "inline"
		// An uploaded HTML or SVG shown inline must not run scripts with
		// the gateway's origin.
		h.Set("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'")
	}
	h.Set("Content-Disposition", mime.FormatMediaType(disp, map[string]string{"filename": name}))
	rs := &contentReader{ctx: r.Context(), cl: s.cl, loc: loc}
	defer rs.Close()
	var mod time.Time
	if !f.Modified.IsZero() && f.Modified.Unix() > 0 {
		mod = f.Modified
	}
	http.ServeContent(pooledCopy{&jsonErrors{ResponseWriter: w, size: loc.Size}}, r, "", mod, rs)
	s.metrics.bytesOut.Add(float64(rs.read))
}

// copyBufs are the buffers pooledCopy copies content through.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// pooledCopy is a ResponseWriter whose ReadFrom copies through a pooled
// buffer. http.ServeContent copies a content with io.CopyN, which, from a
// source that is not a file, made a 32 KiB buffer for every response: a
// third of the gateway's allocations under many small GETs.
type pooledCopy struct{ http.ResponseWriter }

func (p pooledCopy) ReadFrom(r io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	// The writer is hidden behind one that only writes, so that the copy
	// uses buf rather than the connection's own ReadFrom.
	return io.CopyBuffer(struct{ io.Writer }{p.ResponseWriter}, r, *buf)
}

// Unwrap lets http.ResponseController reach the connection.
func (p pooledCopy) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// jsonErrors turns the errors http.ServeContent answers in plain text (a
// range that is not satisfiable, a failed precondition, a failed read)
// into the API's JSON error, as every other error is.
type jsonErrors struct {
	http.ResponseWriter
	size   int64
	failed bool // the JSON error is written; ServeContent's text is dropped
}

func (j *jsonErrors) WriteHeader(code int) {
	if code < 400 || j.failed {
		j.ResponseWriter.WriteHeader(code)
		return
	}
	j.failed = true
	var err error
	switch code {
	case http.StatusRequestedRangeNotSatisfiable:
		err = fmt.Errorf("range not satisfiable: the content holds %d bytes", j.size)
	case http.StatusPreconditionFailed:
		err = errors.New("precondition failed: the content's ETag or time does not match If-Match or If-Unmodified-Since")
	default:
		err = fmt.Errorf("download failed (%s)", http.StatusText(code))
	}
	writeError(j.ResponseWriter, code, err)
}

func (j *jsonErrors) Write(b []byte) (int, error) {
	if j.failed {
		return len(b), nil
	}
	return j.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (j *jsonErrors) Unwrap() http.ResponseWriter { return j.ResponseWriter }

// contentReader is a content as an io.ReadSeeker for http.ServeContent:
// each read from a new position starts a streaming download from there,
// so a range fetches only the chunks it covers and memory stays bounded.
type contentReader struct {
	ctx  context.Context
	cl   *client.Client
	loc  client.Location
	pos  int64
	read int64

	pr     *io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
}

func (c *contentReader) Seek(off int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = off
	case io.SeekCurrent:
		abs = c.pos + off
	case io.SeekEnd:
		abs = c.loc.Size + off
	}
	if abs < 0 || abs > c.loc.Size {
		return c.pos, fmt.Errorf("seek to %d outside %d bytes", abs, c.loc.Size)
	}
	if abs != c.pos {
		c.stop()
		c.pos = abs
	}
	return abs, nil
}

func (c *contentReader) Read(p []byte) (int, error) {
	if c.pos >= c.loc.Size {
		return 0, io.EOF
	}
	if c.pr == nil {
		ctx, cancel := context.WithCancel(c.ctx)
		pr, pw := io.Pipe()
		c.pr, c.cancel, c.done = pr, cancel, make(chan struct{})
		go func(off int64) {
			defer close(c.done)
			err := c.cl.Read(ctx, c.loc, pw, client.GetOptions{Offset: off})
			pw.CloseWithError(err)
		}(c.pos)
	}
	n, err := c.pr.Read(p)
	c.pos += int64(n)
	c.read += int64(n)
	if err == io.EOF && c.pos < c.loc.Size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// stop ends the download in flight, if any, and waits for it.
func (c *contentReader) stop() {
	if c.pr == nil {
		return
	}
	c.cancel()
	c.pr.CloseWithError(errors.New("download stopped"))
	<-c.done
	c.pr = nil
}

func (c *contentReader) Close() error {
	c.stop()
	return nil
}

// Listing is one page of a listing.
type Listing struct {
	Files    []File   `json:"files"`
	Prefixes []string `json:"prefixes"`
	// Truncated: more follow; ask again with start_after=Next.
	Truncated bool   `json:"truncated"`
	Next      string `json:"next,omitempty"`
	// Scanned is, for a search, how many paths this request read.
	Scanned int `json:"scanned,omitempty"`
}

const (
	defaultPageSize = 1000
	maxPageSize     = 1000
	// defaultSearchScan bounds how many paths one search request reads.
	defaultSearchScan = 10000
)

func (s *Server) serveList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	o := client.ListOptions{Prefix: q.Get("prefix"), Delimiter: q.Get("delimiter"), StartAfter: q.Get("start_after"), Limit: defaultPageSize}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxPageSize {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a number from 1 to %d", clip(v), maxPageSize))
			return
		}
		o.Limit = n
	}
	for name, v := range map[string]string{"prefix": o.Prefix, "start_after": o.StartAfter, "delimiter": o.Delimiter} {
		if len(v) > dfs.MaxPathLen || strings.IndexByte(v, 0) >= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: %s: longer than %d bytes or holds a NUL byte", dfs.ErrBadPath, name, dfs.MaxPathLen))
			return
		}
	}
	var out Listing
	if search := q.Get("q"); search != "" {
		var err error
		if out, err = s.search(r.Context(), o, search); err != nil {
			writeError(w, statusOf(err), err)
			return
		}
	} else {
		l, err := s.cl.List(r.Context(), o)
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		out.Prefixes, out.Truncated, out.Next = l.Prefixes, l.Truncated, l.Next
		for _, f := range l.Files {
			out.Files = append(out.Files, File{FileInfo: f})
		}
	}
	if out.Files == nil {
		out.Files = []File{}
	}
	if out.Prefixes == nil {
		out.Prefixes = []string{}
	}
	if q.Get("processing") != "" {
		s.addProcessing(r.Context(), out.Files)
	}
	writeJSON(w, http.StatusOK, out)
}

// search finds the files under o.Prefix after o.StartAfter whose name
// (last segment) contains q, ignoring case: at most o.Limit of them, from at
// most SearchScan paths read, so that a request costs a bounded page of
// reads however many paths there are and however rare the matches. When
// it stops early the answer is truncated and Next is where the search goes
// on: after the last match returned, or after the last path read.
func (s *Server) search(ctx context.Context, o client.ListOptions, q string) (Listing, error) {
	q = strings.ToLower(q)
	limit := o.Limit
	o.Delimiter = ""
	out := Listing{Files: []File{}}
	for {
		o.Limit = min(maxPageSize, s.cfg.SearchScan-out.Scanned)
		l, err := s.cl.List(ctx, o)
		if err != nil {
			return out, err
		}
		for _, f := range l.Files {
			if strings.Contains(strings.ToLower(path.Base(f.Path)), q) {
				if len(out.Files) == limit {
					out.Truncated, out.Next = true, out.Files[len(out.Files)-1].Path
					return out, nil
				}
				out.Files = append(out.Files, File{FileInfo: f})
			}
			out.Scanned++
		}
		if !l.Truncated {
			return out, nil
		}
		if out.Scanned >= s.cfg.SearchScan {
			out.Truncated, out.Next = true, l.Next
			return out, nil
		}
		o.StartAfter = l.Next
	}
}

// addProcessing fills in the processing state of each file, a few lookups
// at a time. A file whose lookup fails is shown without one.
func (s *Server) addProcessing(ctx context.Context, files []File) {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, p, err := s.cl.StatProcessing(ctx, files[i].Path); err == nil {
				files[i].Processing = processingOf(p)
			}
		}()
	}
	wg.Wait()
}

func (s *Server) serveStat(w http.ResponseWriter, r *http.Request, escaped string) {
	p, err := ParsePath(escaped)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	f, proc, err := s.cl.StatProcessing(r.Context(), p)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, File{FileInfo: f, Processing: processingOf(proc)})
}

// serveUpload takes a multipart/form-data body of one or more files, as a
// browser's form or FormData sends it, and stores each under the prefix
// given by the "prefix" query parameter (or a "prefix" field before the
// files) with the file's own name. Each file is streamed to the datanodes
// as it arrives, but none is committed until the whole body has arrived:
// a body cut off halfway, or with a bad part anywhere, commits nothing and
// leaves every path's previous version intact.
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("upload: want a multipart/form-data body: %v", err))
		return
	}
	prefix := r.URL.Query().Get("prefix")
	var staged []*client.Staged
	fail := func(code int, err error) {
		for _, st := range staged {
			st.Abort()
		}
		if len(staged) > 0 {
			err = fmt.Errorf("%w; none of the %d files before it was committed", err, len(staged))
		}
		writeError(w, code, err)
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail(http.StatusBadRequest, fmt.Errorf("upload: malformed multipart body: %v", err))
			return
		}
		if part.FileName() == "" {
			if part.FormName() == "prefix" {
				b, err := io.ReadAll(io.LimitReader(part, dfs.MaxPathLen+1))
				if err != nil {
					fail(http.StatusBadRequest, fmt.Errorf("upload: read prefix field: %v", err))
					return
				}
				prefix = string(b)
			}
			part.Close()
			continue
		}
		// The name as sent, not part.FileName(), which keeps only its
		// last element: "../x" must be refused, not quietly become "x",
		// and "dir/x" (a folder upload) keeps its folder.
		_, params, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		name := params["filename"]
		p, err := dfs.CleanPath(prefix + name)
		if err != nil {
			fail(http.StatusBadRequest, fmt.Errorf("upload %q: %w", clip(name), err))
			return
		}
		ct, err := contentType(part.Header.Get("Content-Type"))
		if err != nil {
			fail(http.StatusBadRequest, err)
			return
		}
		var body io.Reader = part
		if ct == "" {
			ct, body = contenttype.Detect(p, body)
		}
		st, code, err := s.stage(r.Context(), p, body, ct, -1)
		part.Close()
		if err != nil {
			fail(code, err)
			return
		}
		staged = append(staged, st)
	}
	if len(staged) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("upload: the body holds no file"))
		return
	}
	// The whole body is here: commit every file even if the client goes
	// away now, so that the batch is not left half committed.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	var stored []UploadResult
	for i, st := range staged {
		res, err := st.Commit(cctx)
		if err != nil {
			for _, rest := range staged[i+1:] {
				rest.Abort()
			}
			code := statusOf(err)
			writeJSON(w, code, map[string]any{"error": err.Error(), "code": errorCode(code, err), "stored": stored})
			return
		}
		stored = append(stored, s.uploaded(res))
	}
	writeJSON(w, http.StatusCreated, map[string]any{"files": stored})
}
