package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/gateway"
	"github.com/dfs-store/dfs/internal/jobs"
)

func quiet() *slog.Logger {
	if os.Getenv("DFS_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is an in-process cluster with a gateway in front of it, served by
// httptest.
type env struct {
	cl  *cluster.Cluster
	c   *client.Client
	gw  *gateway.Server
	srv *httptest.Server
}

func startEnv(t *testing.T, token string) *env {
	t.Helper()
	cl, err := cluster.Start(context.Background(), cluster.Config{Dir: t.TempDir(), GRPC: "127.0.0.1:0", Jobs: jobs.Config{Workers: 2}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return gatewayOn(t, cl, token)
}

// gatewayOn starts one more gateway on a running cluster.
func gatewayOn(t *testing.T, cl *cluster.Cluster, token string) *env {
	t.Helper()
	c, err := cl.Client(client.Config{Logger: quiet(), MinChunk: 64 << 10, AvgChunk: 128 << 10, MaxChunk: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Client: c, Token: token, Logger: quiet(), NodePoll: 100 * time.Millisecond, CounterPoll: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		gw.Close() // ends event streams, which srv.Close would wait for
		srv.Close()
		c.Close()
	})
	return &env{cl: cl, c: c, gw: gw, srv: srv}
}

type answer struct {
	code   int
	header http.Header
	body   []byte
}

// errMsg returns the answer's JSON error, failing the test if the answer
// is not one.
func (a answer) errMsg(t *testing.T) string {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error answer %d has Content-Type %q, want application/json: %s", a.code, ct, a.body)
	}
	var e struct{ Error string }
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == "" {
		t.Fatalf("answer %d is not {\"error\": ...}: %s", a.code, a.body)
	}
	return e.Error
}

func (e *env) do(t *testing.T, method, path string, body io.Reader, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

func decode[T any](t *testing.T, a answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, a.body, err)
	}
	return v
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// mustGet fetches a file and fails unless it holds want.
func (e *env) mustHold(t *testing.T, path string, want []byte) {
	t.Helper()
	a := e.do(t, "GET", "/api/v1/files/"+path, nil)
	if a.code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, a.code, a.body)
	}
	if !bytes.Equal(a.body, want) {
		t.Fatalf("GET %s: %d bytes (sha256 %s), want %d (%s)", path, len(a.body), sum(a.body)[:12], len(want), sum(want)[:12])
	}
}

func (e *env) mustBeAbsent(t *testing.T, path string) {
	t.Helper()
	if a := e.do(t, "GET", "/api/v1/files/"+path, nil); a.code != http.StatusNotFound {
		t.Fatalf("GET %s: %d, want 404 (nothing committed): %.200s", path, a.code, a.body)
	}
}

func TestFiles(t *testing.T) {
	e := startEnv(t, "")
	data := randomBytes(1<<20+12345, 1)

	t.Run("put and get", func(t *testing.T) {
		a := e.do(t, "PUT", "/api/v1/files/docs/report.pdf", bytes.NewReader(data), "Content-Type", "application/pdf")
		if a.code != http.StatusCreated {
			t.Fatalf("PUT: %d %s", a.code, a.body)
		}
		res := decode[gateway.UploadResult](t, a)
		if res.Status != "queued" || res.Content.String() != sum(data) || res.Size != int64(len(data)) || res.Path != "docs/report.pdf" {
			t.Fatalf("PUT answered %+v, want status queued, sha256 %s, %d bytes", res, sum(data), len(data))
		}
		if res.Chunks < 2 {
			t.Fatalf("PUT stored %d chunks; the test wants a file of several", res.Chunks)
		}
		g := e.do(t, "GET", "/api/v1/files/docs/report.pdf", nil)
		if g.code != http.StatusOK || !bytes.Equal(g.body, data) {
			t.Fatalf("GET: %d, %d bytes, want 200 and the bytes put", g.code, len(g.body))
		}
		for k, want := range map[string]string{
			"ETag":                `"` + sum(data) + `"`,
			"Content-Type":        "application/pdf",
			"Content-Disposition": "attachment; filename=report.pdf",
			"Content-Length":      fmt.Sprint(len(data)),
			"Accept-Ranges":       "bytes",
		} {
			if got := g.header.Get(k); got != want {
				t.Errorf("GET %s: %q, want %q", k, got, want)
			}
		}
		if got := e.do(t, "GET", "/api/v1/files/docs/report.pdf?inline=1", nil).header.Get("Content-Disposition"); got != "inline; filename=report.pdf" {
			t.Errorf("GET ?inline=1: Content-Disposition %q", got)
		}
	})

	t.Run("duplicate", func(t *testing.T) {
		a := e.do(t, "PUT", "/api/v1/files/copy.bin", bytes.NewReader(data))
		res := decode[gateway.UploadResult](t, a)
		if a.code != http.StatusCreated || res.Status != "duplicate" || res.NewChunks != 0 {
			t.Fatalf("PUT of stored content: %d %+v, want 201, status duplicate, no new chunk", a.code, res)
		}
		if ct := e.do(t, "HEAD", "/api/v1/files/copy.bin", nil).header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("file without a type is served as %q, want application/octet-stream", ct)
		}
	})

	t.Run("head", func(t *testing.T) {
		a := e.do(t, "HEAD", "/api/v1/files/docs/report.pdf", nil)
		if a.code != http.StatusOK || len(a.body) != 0 || a.header.Get("Content-Length") != fmt.Sprint(len(data)) || a.header.Get("ETag") == "" {
			t.Fatalf("HEAD: %d, %d body bytes, headers %v", a.code, len(a.body), a.header)
		}
		if a := e.do(t, "HEAD", "/api/v1/files/nope", nil); a.code != http.StatusNotFound {
			t.Fatalf("HEAD of a missing file: %d", a.code)
		}
	})

	t.Run("range", func(t *testing.T) {
		// A range across a chunk boundary, a suffix, an open end.
		for _, tc := range []struct {
			rng    string
			lo, hi int
		}{{"bytes=10-19", 10, 20}, {"bytes=200000-900000", 200000, 900001}, {"bytes=-100", len(data) - 100, len(data)}, {fmt.Sprintf("bytes=%d-", len(data)-5), len(data) - 5, len(data)}} {
			a := e.do(t, "GET", "/api/v1/files/docs/report.pdf", nil, "Range", tc.rng)
			if a.code != http.StatusPartialContent || !bytes.Equal(a.body, data[tc.lo:tc.hi]) {
				t.Errorf("Range %s: %d, %d bytes, want 206 and bytes [%d, %d)", tc.rng, a.code, len(a.body), tc.lo, tc.hi)
			}
		}
		if a := e.do(t, "GET", "/api/v1/files/docs/report.pdf", nil, "Range", fmt.Sprintf("bytes=%d-", len(data)+10)); a.code != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("unsatisfiable range: %d, want 416", a.code)
		}
		a := e.do(t, "GET", "/api/v1/files/docs/report.pdf", nil, "Range", "bytes=0-0,-1")
		if a.code != http.StatusPartialContent || !strings.HasPrefix(a.header.Get("Content-Type"), "multipart/byteranges") {
			t.Errorf("two ranges: %d %q, want 206 multipart/byteranges", a.code, a.header.Get("Content-Type"))
		}
	})

	t.Run("conditional", func(t *testing.T) {
		a := e.do(t, "GET", "/api/v1/files/docs/report.pdf", nil, "If-None-Match", `"`+sum(data)+`"`)
		if a.code != http.StatusNotModified || len(a.body) != 0 {
			t.Fatalf("If-None-Match with the ETag: %d, %d bytes, want 304", a.code, len(a.body))
		}
	})

	t.Run("stat", func(t *testing.T) {
		f := decode[gateway.File](t, e.do(t, "GET", "/api/v1/stat/docs/report.pdf", nil))
		if f.Content.String() != sum(data) || f.Size != int64(len(data)) || f.ContentType != "application/pdf" {
			t.Fatalf("stat: %+v", f)
		}
		// The workers process the new content: its job ends done, with
		// the verifier's results.
		for deadline := time.Now().Add(30 * time.Second); f.Processing == nil || f.Processing.State != "done"; {
			if f.Processing != nil && f.Processing.State == "error" {
				t.Fatalf("processing failed: %+v", f.Processing)
			}
			if time.Now().After(deadline) {
				t.Fatalf("processing not done within 30s: %+v", f.Processing)
			}
			time.Sleep(50 * time.Millisecond)
			f = decode[gateway.File](t, e.do(t, "GET", "/api/v1/stat/docs/report.pdf", nil))
		}
		if f.Processing.Worker == "" || f.Processing.Results["verify.sha256"] != sum(data) {
			t.Fatalf("done processing without its worker or verify result: %+v", f.Processing)
		}
		if a := e.do(t, "GET", "/api/v1/stat/nope", nil); a.code != http.StatusNotFound || a.errMsg(t) == "" {
			t.Fatalf("stat of a missing file: %d", a.code)
		}
	})

	t.Run("content", func(t *testing.T) {
		ci := decode[gateway.ContentInfo](t, e.do(t, "GET", "/api/v1/content/"+sum(data), nil))
		if ci.Hash.String() != sum(data) || ci.Size != int64(len(data)) || len(ci.Chunks) < 2 || ci.Processing == nil || ci.Processing.State != "done" {
			t.Fatalf("content: %+v", ci)
		}
		var off int64
		for i, ch := range ci.Chunks {
			if ch.Offset != off || len(ch.Replicas) != 3 {
				t.Fatalf("chunk %d: offset %d (want %d), %d replicas (want 3)", i, ch.Offset, off, len(ch.Replicas))
			}
			off += ch.Size
		}
		if off != int64(len(data)) {
			t.Fatalf("chunks cover %d bytes, want %d", off, len(data))
		}
		a := e.do(t, "GET", "/api/v1/content/"+strings.ToUpper(sum(data))+"/data", nil, "Range", "bytes=5-9")
		if a.code != http.StatusPartialContent || !bytes.Equal(a.body, data[5:10]) {
			t.Fatalf("content data range: %d %q", a.code, a.body)
		}
		if a := e.do(t, "GET", "/api/v1/content/"+sum(data)+"/data", nil); !bytes.Equal(a.body, data) || a.header.Get("ETag") != `"`+sum(data)+`"` {
			t.Fatalf("content data: %d, %d bytes", a.code, len(a.body))
		}
		for _, bad := range []string{"xyz", sum(data)[:63], sum(data) + "0", strings.Repeat("g", 64), "%00"} {
			a := e.do(t, "GET", "/api/v1/content/"+bad, nil)
			if a.code != http.StatusBadRequest || !strings.Contains(a.errMsg(t), "malformed hash") {
				t.Errorf("content %q: %d %s, want 400 malformed hash", bad, a.code, a.body)
			}
		}
		if a := e.do(t, "GET", "/api/v1/content/"+sum([]byte("never stored")), nil); a.code != http.StatusNotFound {
			t.Errorf("unknown content: %d %s, want 404", a.code, a.body)
		}
		if a := e.do(t, "GET", "/api/v1/content/"+sum(data)+"/other", nil); a.code != http.StatusNotFound {
			t.Errorf("unknown content endpoint: %d, want 404", a.code)
		}
	})

	t.Run("list", func(t *testing.T) {
		for _, p := range []string{"photos/2024/a.jpg", "photos/2024/b.jpg", "photos/c.jpg", "photos/Beach.png"} {
			if a := e.do(t, "PUT", "/api/v1/files/"+p, strings.NewReader(p)); a.code != http.StatusCreated {
				t.Fatalf("PUT %s: %d %s", p, a.code, a.body)
			}
		}
		l := decode[gateway.Listing](t, e.do(t, "GET", "/api/v1/files?prefix=photos/&delimiter=/&processing=1", nil))
		if fmt.Sprint(l.Prefixes) != "[photos/2024/]" || len(l.Files) != 2 || l.Files[0].Path != "photos/Beach.png" || l.Files[1].Path != "photos/c.jpg" {
			t.Fatalf("listing photos/: %+v", l)
		}
		for _, f := range l.Files {
			if f.Processing == nil || f.Processing.State == "" {
				t.Errorf("%s listed without its processing state", f.Path)
			}
		}
		root := decode[gateway.Listing](t, e.do(t, "GET", "/api/v1/files?delimiter=/", nil))
		if fmt.Sprint(root.Prefixes) != "[docs/ photos/]" || len(root.Files) != 1 {
			t.Fatalf("listing the root: %+v", root)
		}
		// Pages of one.
		var seen []string
		next := ""
		for range 10 {
			l := decode[gateway.Listing](t, e.do(t, "GET", "/api/v1/files?prefix=photos/&limit=1&start_after="+url.QueryEscape(next), nil))
			for _, f := range l.Files {
				seen = append(seen, f.Path)
			}
			if !l.Truncated {
				break
			}
			next = l.Next
		}
		if fmt.Sprint(seen) != "[photos/2024/a.jpg photos/2024/b.jpg photos/Beach.png photos/c.jpg]" {
			t.Fatalf("paged listing: %v", seen)
		}
		// Search is by name, case-insensitive, under the prefix.
		s := decode[gateway.Listing](t, e.do(t, "GET", "/api/v1/files?prefix=photos/&q=BEACH", nil))
		if len(s.Files) != 1 || s.Files[0].Path != "photos/Beach.png" {
			t.Fatalf("search beach: %+v", s)
		}
		if s := decode[gateway.Listing](t, e.do(t, "GET", "/api/v1/files?q=jpg&limit=2", nil)); len(s.Files) != 2 || !s.Truncated {
			t.Fatalf("search jpg, limit 2: %+v", s)
		}
		for _, bad := range []string{"limit=0", "limit=x", "limit=100000", "prefix=%00", "prefix=" + strings.Repeat("a", 1100)} {
			if a := e.do(t, "GET", "/api/v1/files?"+bad, nil); a.code != http.StatusBadRequest || a.errMsg(t) == "" {
				t.Errorf("list ?%.40s: %d, want 400", bad, a.code)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		e.do(t, "PUT", "/api/v1/files/tmp/gone.txt", strings.NewReader("bye"))
		if a := e.do(t, "DELETE", "/api/v1/files/tmp/gone.txt", nil); a.code != http.StatusOK {
			t.Fatalf("DELETE: %d %s", a.code, a.body)
		}
		e.mustBeAbsent(t, "tmp/gone.txt")
		if a := e.do(t, "DELETE", "/api/v1/files/tmp/gone.txt", nil); a.code != http.StatusNotFound || a.errMsg(t) == "" {
			t.Fatalf("DELETE of a missing file: %d, want 404", a.code)
		}
	})

	t.Run("bad paths", func(t *testing.T) {
		long := strings.Repeat("a", 1025)
		for _, p := range []string{"a/../b", "a/%2e%2e/b", "..", "a/./b", "a%00b", "a//b", "dir/", "%ff", long, "x/" + long, "a%0Ab"} {
			for _, m := range []string{"PUT", "GET", "DELETE"} {
				var body io.Reader
				if m == "PUT" {
					body = strings.NewReader("data")
				}
				// Go's client sends "a/../b" as it is, without cleaning.
				req, err := http.NewRequest(m, e.srv.URL+"/api/v1/files/"+p, body)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					t.Fatalf("%s %.40s: %v", m, p, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				a := answer{resp.StatusCode, resp.Header, b}
				if a.code != http.StatusBadRequest || !strings.Contains(a.errMsg(t), "invalid path") {
					t.Errorf("%s %.40s: %d %s, want 400 invalid path", m, p, a.code, b)
				}
			}
		}
		l := decode[gateway.Listing](t, e.do(t, "GET", "/api/v1/files?prefix=a", nil))
		if len(l.Files) != 0 {
			t.Fatalf("bad paths committed files: %+v", l.Files)
		}
		// A path of exactly the limit is fine.
		ok := strings.Repeat("b", 1024)
		if a := e.do(t, "PUT", "/api/v1/files/"+ok, strings.NewReader("x")); a.code != http.StatusCreated {
			t.Fatalf("PUT of a 1024-byte path: %d %s", a.code, a.body)
		}
	})

	t.Run("body cut off", func(t *testing.T) {
		v1 := []byte("version one")
		e.do(t, "PUT", "/api/v1/files/cut/file.bin", bytes.NewReader(v1))
		// Announce 4 MiB, send 1.5 MiB (more than one chunk), then stop.
		conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "PUT /api/v1/files/cut/file.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n", 4<<20)
		conn.Write(randomBytes(3<<19, 7))
		conn.(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to a cut-off body: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		a := answer{resp.StatusCode, resp.Header, b}
		if a.code != http.StatusBadRequest || !strings.Contains(a.errMsg(t), "nothing was stored") {
			t.Fatalf("cut-off PUT: %d %s, want 400", a.code, b)
		}
		e.mustHold(t, "cut/file.bin", v1)
	})

	t.Run("multipart", func(t *testing.T) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		mw.WriteField("prefix", "up/")
		one, two := randomBytes(300<<10, 3), []byte("second file")
		w, _ := mw.CreateFormFile("file", "one.bin")
		w.Write(one)
		w, _ = mw.CreateFormFile("file", "two.txt")
		w.Write(two)
		mw.Close()
		a := e.do(t, "POST", "/api/v1/upload", bytes.NewReader(body.Bytes()), "Content-Type", mw.FormDataContentType())
		if a.code != http.StatusCreated {
			t.Fatalf("multipart upload: %d %s", a.code, a.body)
		}
		res := decode[struct{ Files []gateway.UploadResult }](t, a)
		if len(res.Files) != 2 || res.Files[0].Path != "up/one.bin" || res.Files[0].Content.String() != sum(one) || res.Files[1].Path != "up/two.txt" || res.Files[0].Status != "queued" {
			t.Fatalf("multipart answer: %+v", res)
		}
		e.mustHold(t, "up/one.bin", one)
		e.mustHold(t, "up/two.txt", two)
		if ct := e.do(t, "HEAD", "/api/v1/files/up/two.txt", nil).header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("two.txt is served as %q", ct)
		}

		// The prefix from the query, a file that overwrites one.
		multi := func(name string, data []byte) (*bytes.Buffer, string) {
			var b bytes.Buffer
			mw := multipart.NewWriter(&b)
			w, _ := mw.CreateFormFile("file", name)
			w.Write(data)
			mw.Close()
			return &b, mw.FormDataContentType()
		}
		v2 := randomBytes(600<<10, 4)
		b, ct := multi("one.bin", v2)
		full := b.Bytes()
		// Cut off halfway: the closing boundary never comes.
		cut := full[:len(full)/2]
		a = e.do(t, "POST", "/api/v1/upload?prefix=up/", bytes.NewReader(cut), "Content-Type", ct)
		if a.code != http.StatusBadRequest || a.errMsg(t) == "" {
			t.Fatalf("cut-off multipart: %d %s, want 400", a.code, a.body)
		}
		e.mustHold(t, "up/one.bin", one)
		// Two files, the second cut off: the first, complete, is not
		// committed either — neither the new path nor the overwrite.
		{
			var b bytes.Buffer
			mw := multipart.NewWriter(&b)
			w, _ := mw.CreateFormFile("file", "batch-new.bin")
			w.Write(randomBytes(300<<10, 5))
			w, _ = mw.CreateFormFile("file", "one.bin")
			w.Write(randomBytes(900<<10, 6))
			mw.Close()
			body := b.Bytes()
			a := e.do(t, "POST", "/api/v1/upload?prefix=up/", bytes.NewReader(body[:len(body)-200<<10]), "Content-Type", mw.FormDataContentType())
			if a.code != http.StatusBadRequest || !strings.Contains(a.errMsg(t), "none of the 1 files before it was committed") {
				t.Fatalf("multipart of two files cut off in the second: %d %s, want 400 saying nothing was committed", a.code, a.body)
			}
			if a := e.do(t, "GET", "/api/v1/files/up/batch-new.bin", nil); a.code != http.StatusNotFound {
				t.Fatalf("the complete first file of a cut-off body: GET %d, want 404", a.code)
			}
			e.mustHold(t, "up/one.bin", one)
		}
		// Whole, it replaces the file.
		if a := e.do(t, "POST", "/api/v1/upload?prefix=up/", bytes.NewReader(full), "Content-Type", ct); a.code != http.StatusCreated {
			t.Fatalf("multipart overwrite: %d %s", a.code, a.body)
		}
		e.mustHold(t, "up/one.bin", v2)

		for name, tc := range map[string]struct {
			path, ct string
			body     io.Reader
		}{
			"not multipart":   {"/api/v1/upload", "text/plain", strings.NewReader("x")},
			"no file":         {"/api/v1/upload", mw.FormDataContentType(), strings.NewReader("--" + mw.Boundary() + "--\r\n")},
			"dot-dot name":    {"/api/v1/upload", "", nil},
			"dot-dot prefix":  {"/api/v1/upload?prefix=../", "", nil},
			"garbage":         {"/api/v1/upload", mw.FormDataContentType(), strings.NewReader("garbage")},
			"NUL in the name": {"/api/v1/upload", "", nil},
		} {
			if tc.body == nil {
				fname := "x.txt"
				switch name {
				case "dot-dot name":
					fname = "../x.txt"
				case "NUL in the name":
					fname = "a\x00b"
				}
				b, c := multi(fname, []byte("x"))
				tc.body, tc.ct = b, c
			}
			a := e.do(t, "POST", tc.path, tc.body, "Content-Type", tc.ct)
			if a.code != http.StatusBadRequest || a.errMsg(t) == "" {
				t.Errorf("upload, %s: %d %s, want 400", name, a.code, a.body)
			}
		}
		e.mustBeAbsent(t, "x.txt")
		if a := e.do(t, "GET", "/api/v1/upload", nil); a.code != http.StatusMethodNotAllowed || a.errMsg(t) == "" {
			t.Errorf("GET /upload: %d, want 405", a.code)
		}
	})

	t.Run("other endpoints", func(t *testing.T) {
		if a := e.do(t, "GET", "/api/v1/nope", nil); a.code != http.StatusNotFound || a.errMsg(t) == "" {
			t.Errorf("unknown endpoint: %d", a.code)
		}
		if a := e.do(t, "POST", "/api/v1/files/x", nil); a.code != http.StatusMethodNotAllowed || a.errMsg(t) == "" {
			t.Errorf("POST to a file: %d, want 405", a.code)
		}
		if a := e.do(t, "GET", "/healthz", nil); a.code != http.StatusOK {
			t.Errorf("healthz: %d", a.code)
		}
		if a := e.do(t, "GET", "/readyz", nil); a.code != http.StatusOK || !strings.Contains(string(a.body), `"nodes_alive":3`) {
			t.Errorf("readyz: %d %s", a.code, a.body)
		}
		info := decode[map[string]any](t, e.do(t, "GET", "/api/v1/info", nil))
		if info["auth_required"] != false {
			t.Errorf("info: %v", info)
		}
		ui := e.do(t, "GET", "/", nil)
		if ui.code != http.StatusOK || !strings.Contains(string(ui.body), `<script src="app.js"`) {
			t.Errorf("web UI: %d %.100s", ui.code, ui.body)
		}
		for _, f := range []string{"/app.js", "/style.css", "/favicon.svg"} {
			if a := e.do(t, "GET", f, nil); a.code != http.StatusOK || len(a.body) == 0 {
				t.Errorf("GET %s: %d", f, a.code)
			}
		}
	})

	t.Run("nodes and cluster", func(t *testing.T) {
		n := decode[struct {
			Nodes []struct {
				ID            string
				Alive         bool
				Chunks        int64
				CapacityBytes int64 `json:"capacity_bytes"`
			}
		}](t, e.do(t, "GET", "/api/v1/nodes", nil))
		if len(n.Nodes) != 3 {
			t.Fatalf("nodes: %+v", n)
		}
		for _, x := range n.Nodes {
			if !x.Alive || x.Chunks == 0 || x.CapacityBytes == 0 {
				t.Errorf("node %+v: want alive, with chunks and a capacity", x)
			}
		}
		ci := decode[gateway.ClusterInfo](t, e.do(t, "GET", "/api/v1/cluster", nil))
		if ci.NodesAlive != 3 || ci.NodesTotal != 3 || ci.ChunksStored == 0 || ci.Files == 0 || ci.CountersError != "" {
			t.Fatalf("cluster: %+v", ci)
		}
		if ci.Leader != e.cl.Addr() || ci.LeaderError != "" || len(ci.Coordinators) != 1 || !ci.Coordinators[0].Leader {
			t.Fatalf("cluster: leader %q (error %q), coordinators %+v; want the one coordinator %s as leader", ci.Leader, ci.LeaderError, ci.Coordinators, e.cl.Addr())
		}
		// Copies reach the coordinator with the datanodes' heartbeats (and
		// repair tops up a chunk an aborted upload left short): the
		// counters settle within seconds.
		healthy := func(ci gateway.ClusterInfo) bool {
			return ci.Healthy == ci.Chunks && ci.Chunks != 0 && ci.Copies == 3*ci.Chunks && ci.Missing == 0 && ci.CountersFrom == e.cl.Addr()
		}
		for deadline := time.Now().Add(20 * time.Second); !healthy(ci) && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			ci = decode[gateway.ClusterInfo](t, e.do(t, "GET", "/api/v1/cluster", nil))
		}
		if !healthy(ci) {
			t.Fatalf("cluster counters: %+v; want every chunk healthy with 3 copies, counted by %s", ci, e.cl.Addr())
		}
		// The counters come from the coordinator's memory: neither this
		// answer nor the gateway's poll (every 200ms here) checks files.
		if n := e.cl.Coordinator.Server.FsckPages(); n != 0 {
			t.Fatalf("the coordinator served %d fsck pages to the gateway, want none", n)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		a := e.do(t, "GET", "/metrics", nil)
		for _, m := range []string{
			`dfs_gateway_requests_total{code="201",method="PUT",route="files/{path}"}`,
			`dfs_gateway_request_duration_seconds_bucket{method="GET",route="files/{path}"`,
			"dfs_gateway_upload_bytes_total", "dfs_gateway_download_bytes_total", "dfs_gateway_chunks_uploaded_total",
			"dfs_cluster_chunks_stored", "dfs_cluster_replication_backlog", "dfs_cluster_under_replicated_chunks",
		} {
			if !strings.Contains(string(a.body), m) {
				t.Errorf("metrics lack %s", m)
			}
		}
		for _, line := range strings.Split(string(a.body), "\n") {
			if f := strings.Fields(line); len(f) == 2 && (f[0] == "dfs_gateway_upload_bytes_total" || f[0] == "dfs_gateway_download_bytes_total") && f[1] == "0" {
				t.Errorf("%s is 0 after uploads and downloads", f[0])
			}
		}
	})
}

// sse reads server-sent events into a channel, and keeps every event read
// so far: a wait matches any event of the stream, whatever its order.
type sse struct {
	ch   <-chan event
	seen []event
}

type event struct {
	kind string
	data []byte
}

func (e *env) events(t *testing.T, hdr ...string) *sse {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events: Content-Type %q", ct)
	}
	ch := make(chan event, 1024)
	done := make(chan struct{})
	t.Cleanup(func() { resp.Body.Close(); <-done })
	go func() {
		defer close(done)
		defer close(ch)
		r := bufio.NewReader(resp.Body)
		var ev event
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.kind = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = []byte(line[6:])
			case line == "" && ev.kind != "":
				ch <- ev
				ev = event{}
			}
		}
	}()
	s := &sse{ch: ch}
	s.waitFor(t, "hello", func(kind string, _ []byte) bool { return kind == "hello" })
	return s
}

// within reads events until match accepts one and reports whether one did
// before d passed.
func (s *sse) within(t *testing.T, d time.Duration, match func(kind string, data []byte) bool) bool {
	t.Helper()
	for _, ev := range s.seen {
		if match(ev.kind, ev.data) {
			return true
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-s.ch:
			if !ok {
				t.Fatal("event stream ended")
			}
			s.seen = append(s.seen, ev)
			if match(ev.kind, ev.data) {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

// waitCount reads events until n of the stream's events are of kind,
// failing after a deadline.
func (s *sse) waitCount(t *testing.T, kind string, n int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		got := 0
		for _, ev := range s.seen {
			if ev.kind == kind {
				got++
			}
		}
		if got >= n {
			return
		}
		select {
		case ev, ok := <-s.ch:
			if !ok {
				t.Fatal("event stream ended")
			}
			s.seen = append(s.seen, ev)
		case <-deadline:
			t.Fatalf("%d %s events within a minute, want %d", got, kind, n)
		}
	}
}

// waitFor reads events until match accepts one, failing after a deadline.
func (s *sse) waitFor(t *testing.T, what string, match func(kind string, data []byte) bool) {
	t.Helper()
	if !s.within(t, time.Minute, match) {
		t.Fatalf("no %s event within a minute", what)
	}
}

func TestEvents(t *testing.T) {
	e := startEnv(t, "")
	s := e.events(t)
	data := []byte("watched bytes")
	e.do(t, "PUT", "/api/v1/files/w/one.txt", bytes.NewReader(data))
	sawFile, sawJob := false, false
	s.waitFor(t, "file and job events", func(kind string, b []byte) bool {
		var ev struct {
			Path       string
			SHA256     string `json:"sha256"`
			Size       int64
			Processing *gateway.Processing
		}
		json.Unmarshal(b, &ev)
		switch {
		case kind == "file" && ev.Path == "w/one.txt" && ev.SHA256 == sum(data) && ev.Size == int64(len(data)):
			sawFile = true
		case kind == "job" && ev.SHA256 == sum(data) && ev.Processing != nil && ev.Processing.State == "done":
			sawJob = true
		}
		return sawFile && sawJob
	})
	e.do(t, "DELETE", "/api/v1/files/w/one.txt", nil)
	s.waitFor(t, "file_deleted", func(kind string, b []byte) bool {
		return kind == "file_deleted" && strings.Contains(string(b), `"path":"w/one.txt"`)
	})
	// Node rows come from polling the node table.
	s.waitFor(t, "node", func(kind string, b []byte) bool {
		return kind == "node" && strings.Contains(string(b), `"alive":true`)
	})
	s.waitFor(t, "cluster", func(kind string, b []byte) bool {
		return kind == "cluster" && strings.Contains(string(b), `"nodes_alive":3`)
	})
}

// TestEventsReconnect restarts the coordinator under a gateway: the event
// stream comes back on its own, says "resync", and carries new events.
func TestEventsReconnect(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cl, err := cluster.Start(context.Background(), cluster.Config{Dir: dir, GRPC: addr, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	e := gatewayOn(t, cl, "")
	s := e.events(t)
	// The gateway's first coordinator stream is open once a write shows.
	// (Its first resync may have gone out before this subscriber came.)
	writeSeen := func(prefix string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for i := 0; ; i++ {
			p := fmt.Sprintf("%s-%d.txt", prefix, i)
			if a := e.do(t, "PUT", "/api/v1/files/"+p, strings.NewReader(prefix)); a.code != http.StatusCreated {
				t.Fatalf("PUT %s: %d %s", p, a.code, a.body)
			}
			if s.within(t, time.Second, func(kind string, b []byte) bool {
				return kind == "file" && strings.Contains(string(b), `"path":"`+p+`"`)
			}) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no file event for %s within a minute", prefix)
			}
		}
	}
	writeSeen("before")
	resyncs := 0
	for _, ev := range s.seen {
		if ev.kind == "resync" {
			resyncs++
		}
	}

	// Stop the coordinator (and its etcd) and start it again on the same
	// address and data; the datanodes find it again.
	cl.Coordinator.Close()
	cl.Coordinator, err = cluster.StartCoordinator(context.Background(), cluster.CoordinatorConfig{Listen: addr, Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	// It says resync once it has reopened a stream.
	s.waitCount(t, "resync", resyncs+1)
	if err := cl.WaitNodes(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	writeSeen("after")
}

// A web page on another site cannot use the gateway through the browser:
// a cross-site form post is refused, and without a token a request naming
// a host other than loopback (DNS rebinding) is too. Nothing is stored.
func TestCrossSite(t *testing.T) {
	e := startEnv(t, "")
	form := "--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"evil.txt\"\r\n\r\nowned\r\n--x--\r\n"
	for name, hdr := range map[string][]string{
		"cross-site fetch": {"Sec-Fetch-Site", "cross-site"},
		"foreign origin":   {"Origin", "http://evil.example"},
	} {
		a := e.do(t, "POST", "/api/v1/upload?prefix=x/", strings.NewReader(form), append(hdr, "Content-Type", "multipart/form-data; boundary=x")...)
		if a.code != http.StatusForbidden || !strings.Contains(a.errMsg(t), "cross-origin") {
			t.Errorf("%s: %d %s, want 403 cross-origin", name, a.code, a.body)
		}
	}
	if a := e.do(t, "DELETE", "/api/v1/files/x/evil.txt", nil, "Host", "rebound.example:8080"); a.code != http.StatusMisdirectedRequest {
		t.Errorf("request naming a foreign host: %d %s, want 421", a.code, a.body)
	}
	if a := e.do(t, "GET", "/api/v1/files/x/evil.txt", nil); a.code != http.StatusNotFound {
		t.Fatalf("a refused cross-site upload was stored: GET %d", a.code)
	}
	// The web UI's own requests (same origin) and other clients still work.
	if a := e.do(t, "PUT", "/api/v1/files/x/ok.txt", strings.NewReader("ok"), "Sec-Fetch-Site", "same-origin", "Host", "localhost"); a.code != http.StatusCreated {
		t.Fatalf("same-origin PUT: %d %s", a.code, a.body)
	}
}

func TestAuth(t *testing.T) {
	open := startEnv(t, "")
	e := gatewayOn(t, open.cl, "s3cret-token")
	if a := e.do(t, "PUT", "/api/v1/files/auth/a.txt", strings.NewReader("v1"), "Authorization", "Bearer s3cret-token"); a.code != http.StatusCreated {
		t.Fatalf("PUT with the token: %d %s", a.code, a.body)
	}
	for name, hdr := range map[string][]string{
		"no token":     nil,
		"wrong token":  {"Authorization", "Bearer s3cret-tokeN"},
		"prefix only":  {"Authorization", "Bearer s3cret"},
		"not bearer":   {"Authorization", "Basic s3cret-token"},
		"empty bearer": {"Authorization", "Bearer "},
	} {
		for _, req := range []struct{ method, path, ct string }{
			{"PUT", "/api/v1/files/auth/a.txt", ""},
			{"DELETE", "/api/v1/files/auth/a.txt", ""},
			{"POST", "/api/v1/upload?prefix=auth/", "multipart/form-data; boundary=x"},
		} {
			h := append([]string{}, hdr...)
			if req.ct != "" {
				h = append(h, "Content-Type", req.ct)
			}
			a := e.do(t, req.method, req.path, strings.NewReader("--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nv2\r\n--x--\r\n"), h...)
			if a.code != http.StatusUnauthorized || !strings.Contains(a.errMsg(t), "token") || a.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s, %s %s: %d %s, want 401", name, req.method, req.path, a.code, a.body)
			}
		}
	}
	e.mustHold(t, "auth/a.txt", []byte("v1"))
	// Reads need no token.
	if a := e.do(t, "GET", "/api/v1/files?prefix=auth/", nil); a.code != http.StatusOK {
		t.Fatalf("list without a token: %d", a.code)
	}
	if info := decode[map[string]any](t, e.do(t, "GET", "/api/v1/info", nil)); info["auth_required"] != true {
		t.Fatalf("info: %v", info)
	}
	if a := e.do(t, "DELETE", "/api/v1/files/auth/a.txt", nil, "Authorization", "Bearer s3cret-token"); a.code != http.StatusOK {
		t.Fatalf("DELETE with the token: %d %s", a.code, a.body)
	}
}

func TestListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:0": true, "localhost:0": true, "[::1]:0": true, "127.9.9.9:80": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:80": false, "10.1.2.3:80": false, "example.com:80": false, "junk": false,
	} {
		if got := gateway.IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
	if _, err := gateway.Listen("0.0.0.0:0", "", false); err == nil || !strings.Contains(err.Error(), "--api-token") {
		t.Fatalf("listening on every interface without a token: %v, want a refusal naming --api-token", err)
	}
	for _, tc := range []struct {
		token  string
		public bool
	}{{"t", false}, {"", true}} {
		ln, err := gateway.Listen("0.0.0.0:0", tc.token, tc.public)
		if err != nil {
			t.Fatalf("Listen with token %q, public %v: %v", tc.token, tc.public, err)
		}
		ln.Close()
	}
	ln, err := gateway.Listen("127.0.0.1:0", "", false)
	if err != nil {
		t.Fatalf("loopback without a token: %v", err)
	}
	ln.Close()
}

// A client that trickles an upload (a byte every 50 ms, against a window of
// 300 ms) is cut and nothing is committed; an idle event stream, which
// sends nothing for longer than the window, stays open.
func TestSlowClientsAreCut(t *testing.T) {
	base := startEnv(t, "")
	gw, err := gateway.New(gateway.Config{Client: base.c, Logger: quiet(), SlowWindow: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { gw.Close(); srv.Close() })
	e := &env{cl: base.cl, c: base.c, gw: gw, srv: srv}
	events := e.events(t)

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /api/v1/files/slow.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n")
	start, cut := time.Now(), false
	for time.Since(start) < 20*time.Second {
		if _, err := conn.Write([]byte("x")); err != nil {
			cut = true
			break
		}
		time.Sleep(50 * time.Millisecond)
		conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := conn.Read(make([]byte, 1)); err != nil && !os.IsTimeout(err) {
			cut = true
			break
		}
	}
	if !cut {
		t.Fatal("a trickling upload was still open after 20s")
	}
	if a := e.do(t, http.MethodGet, "/api/v1/files/slow.bin", nil); a.code != http.StatusNotFound {
		t.Fatalf("after a cut upload the file answers %d, want 404", a.code)
	}
	// The event stream, idle all this time, still delivers.
	put := e.do(t, http.MethodPut, "/api/v1/files/after.txt", strings.NewReader("after"))
	if put.code != http.StatusCreated && put.code != http.StatusOK {
		t.Fatalf("put after: %d %s", put.code, put.body)
	}
	if !events.within(t, 10*time.Second, func(kind string, data []byte) bool {
		return kind == "file" && strings.Contains(string(data), "after.txt")
	}) {
		t.Fatal("the idle event stream was cut")
	}
}
