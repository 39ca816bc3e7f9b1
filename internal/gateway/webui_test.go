package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/gateway"
	"github.com/dfs-store/dfs/internal/pki"
)

// errCode returns the answer's JSON error code, failing the test if the
// answer is not an API error.
func (a answer) errCode(t *testing.T) string {
	t.Helper()
	a.errMsg(t)
	var e struct{ Code string }
	json.Unmarshal(a.body, &e)
	return e.Code
}

// A range past the end answers the API's JSON error, as docs/api.md says
// every error does, with the size in Content-Range.
func TestRangeNotSatisfiableIsJSON(t *testing.T) {
	e := startEnv(t, "")
	e.do(t, "PUT", "/api/v1/files/r/ten.bin", strings.NewReader("0123456789"))
	a := e.do(t, "GET", "/api/v1/files/r/ten.bin", nil, "Range", "bytes=100-200")
	if a.code != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("GET past the end: %d %s, want 416", a.code, a.body)
	}
	if msg := a.errMsg(t); !strings.Contains(msg, "range not satisfiable") || !strings.Contains(msg, "10 bytes") {
		t.Errorf("416 message %q, want it to say the range is not satisfiable and the size", msg)
	}
	if code := a.errCode(t); code != "range_not_satisfiable" {
		t.Errorf("416 code %q, want range_not_satisfiable", code)
	}
	if cr := a.header.Get("Content-Range"); cr != "bytes */10" {
		t.Errorf("416 Content-Range %q, want bytes */10", cr)
	}
	// A range inside still answers the bytes.
	if a := e.do(t, "GET", "/api/v1/files/r/ten.bin", nil, "Range", "bytes=2-4"); a.code != http.StatusPartialContent || string(a.body) != "234" {
		t.Fatalf("GET bytes=2-4: %d %q", a.code, a.body)
	}
}

// An upload without a Content-Type (curl -T sends none) gets the type the
// CLI would give it: by the name's extension, else by the bytes. A type
// the client names is kept.
func TestUploadDetectsContentType(t *testing.T) {
	e := startEnv(t, "")
	mp4 := append([]byte("\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"), randomBytes(2000, 7)...)
	for _, tc := range []struct {
		path, sent string
		body       []byte
		want       string
	}{
		{"ct/clip.mp4", "", []byte("whatever the bytes"), "video/mp4"},
		{"ct/clip", "", mp4, "video/mp4"},
		{"ct/notes", "", []byte("plain words\n"), "text/plain; charset=utf-8"},
		{"ct/blob", "application/octet-stream", []byte{0, 1, 2, 0xff}, ""},
		{"ct/named.mp4", "image/png", mp4, "image/png"},
	} {
		var hdr []string
		if tc.sent != "" {
			hdr = []string{"Content-Type", tc.sent}
		}
		if a := e.do(t, "PUT", "/api/v1/files/"+tc.path, bytes.NewReader(tc.body), hdr...); a.code != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", tc.path, a.code, a.body)
		}
		e.mustHold(t, tc.path, tc.body)
		st := decode[struct {
			ContentType string `json:"content_type"`
		}](t, e.do(t, "GET", "/api/v1/stat/"+tc.path, nil))
		if st.ContentType != tc.want {
			t.Errorf("PUT %s with Content-Type %q: stored type %q, want %q", tc.path, tc.sent, st.ContentType, tc.want)
		}
	}

	// A browser's form sends application/octet-stream for a name it does
	// not know: the bytes decide.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreatePart(map[string][]string{
		"Content-Disposition": {`form-data; name="file"; filename="movie"`},
		"Content-Type":        {"application/octet-stream"},
	})
	part.Write(mp4)
	mw.Close()
	if a := e.do(t, "POST", "/api/v1/upload?prefix=form/", &body, "Content-Type", mw.FormDataContentType()); a.code != http.StatusCreated {
		t.Fatalf("form upload: %d %s", a.code, a.body)
	}
	e.mustHold(t, "form/movie", mp4)
	a := e.do(t, "GET", "/api/v1/files/form/movie", nil)
	if ct := a.header.Get("Content-Type"); ct != "video/mp4" {
		t.Errorf("form upload of an MP4 named movie is served as %q, want video/mp4", ct)
	}
}

// A gateway serving HTTPS speaks HTTP/2 to clients that offer it, so a
// browser's tabs share one connection: eight event streams at once (more
// than the six HTTP/1.1 connections a browser opens to a host) all carry
// a new file's event, and the gateway counts them and lets them go.
func TestHTTP2OverTLS(t *testing.T) {
	cl, admin, node := secureCluster(t)
	// Off loopback the gateway serves HTTPS (on loopback, plain HTTP).
	gw, err := cluster.StartGateway(cluster.GatewayConfig{Listen: "0.0.0.0:0", Coordinators: []string{cl.Coordinator.Addr()},
		TLS: node("gw", pki.RoleGateway), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	_, port, _ := net.SplitHostPort(gw.Addr())
	base := "https://127.0.0.1:" + port
	key, err := admin.CreateKey(context.Background(), "web", true)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: node("ca-only").CAs}}}
	t.Cleanup(hc.CloseIdleConnections)
	get := func(ctx context.Context, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		req.SetBasicAuth(key.ID, key.Secret)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp
	}
	streams := func() string {
		t.Helper()
		resp := get(context.Background(), "/metrics")
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "dfs_gateway_event_streams "); ok {
				return v
			}
		}
		return "none"
	}
	waitStreams := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for got := streams(); got != want; got = streams() {
			if time.Now().After(deadline) {
				t.Fatalf("dfs_gateway_event_streams %s, want %s", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type line struct {
		i    int
		text string
	}
	lines := make(chan line, 1024)
	const tabs = 8
	for i := range tabs {
		resp := get(ctx, "/api/v1/events")
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
			t.Fatalf("event stream %d: %d over %s (ALPN %v), want 200 over HTTP/2 (h2)", i, resp.StatusCode, resp.Proto, resp.TLS)
		}
		go func() {
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				lines <- line{i, sc.Text()}
			}
		}()
	}
	waitStreams(fmt.Sprint(tabs))
	req, _ := http.NewRequest(http.MethodPut, base+"/api/v1/files/h2/seen.txt", strings.NewReader("seen"))
	req.SetBasicAuth(key.ID, key.Secret)
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT over h2: %v %v", resp, err)
	}
	resp.Body.Close()
	got := map[int]bool{}
	timeout := time.After(time.Minute)
	for len(got) < tabs {
		select {
		case l := <-lines:
			if strings.HasPrefix(l.text, "data: ") && strings.Contains(l.text, `"path":"h2/seen.txt"`) {
				got[l.i] = true
			}
		case <-timeout:
			t.Fatalf("%d of %d streams carried the file event within a minute", len(got), tabs)
		}
	}
	cancel()
	waitStreams("0")
}

// With no coordinator answering, the gateway says so: readyz, API calls
// and the event stream's status all answer "unavailable" in the API's
// JSON error, and the status turns back when the coordinator returns.
func TestClusterUnreachable(t *testing.T) {
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
	status := func(reachable bool) func(kind string, data []byte) bool {
		return func(kind string, data []byte) bool {
			var st gateway.Status
			json.Unmarshal(data, &st)
			return kind == "status" && st.Reachable == reachable && (reachable || st.Code == "unavailable" && !st.LastOK.IsZero())
		}
	}
	s := e.events(t)
	s.waitFor(t, "status reachable", status(true))

	cl.Coordinator.Close()
	s.waitFor(t, "status unreachable", status(false))
	// A page opened now learns it first thing.
	e.events(t).waitFor(t, "status unreachable on a new stream", status(false))
	for _, path := range []string{"/readyz", "/api/v1/files?prefix=", "/api/v1/stat/x.txt"} {
		a := e.do(t, "GET", path, nil)
		if a.code != http.StatusServiceUnavailable || a.errCode(t) != "unavailable" {
			t.Errorf("GET %s with no coordinator: %d %s, want 503 unavailable", path, a.code, a.body)
		}
	}

	cl.Coordinator, err = cluster.StartCoordinator(context.Background(), cluster.CoordinatorConfig{Listen: addr, Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	s.seen = nil
	s.waitFor(t, "status reachable again", status(true))
	if a := e.do(t, "GET", "/api/v1/files?prefix=", nil); a.code != http.StatusOK {
		t.Fatalf("list after the coordinator returned: %d %s", a.code, a.body)
	}
}

// An S3 PutObject without a Content-Type gets the type dfs put and REST
// give the same name and bytes; one the client names is kept.
func TestS3PutDetectsContentType(t *testing.T) {
	_, admin, srv, alice := startS3(t, gateway.S3Options{})
	ctx := context.Background()
	if err := s3Client(t, srv, alice).MakeBucket(ctx, "typed", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	mp4 := append([]byte("\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"), randomBytes(2000, 8)...)
	for _, tc := range []struct {
		key, sent string
		body      []byte
		want      string
	}{
		{"clip.mp4", "", []byte("whatever the bytes"), "video/mp4"},
		{"clip", "", mp4, "video/mp4"},
		{"notes", "", []byte("plain words\n"), "text/plain; charset=utf-8"},
		{"named.mp4", "image/png", mp4, "image/png"},
	} {
		hdr := map[string]string{}
		if tc.sent != "" {
			hdr["Content-Type"] = tc.sent
		}
		if code, s3code := s3Code(t, signed(t, srv, alice, "PUT", "/typed/"+tc.key, tc.body, time.Now(), hdr)); code != http.StatusOK {
			t.Fatalf("PUT /typed/%s: %d %s", tc.key, code, s3code)
		}
		f, err := admin.Stat(ctx, "typed/"+tc.key)
		if err != nil {
			t.Fatal(err)
		}
		if f.ContentType != tc.want || f.Size != int64(len(tc.body)) {
			t.Errorf("S3 PUT %s with Content-Type %q: stored %q, %d bytes; want %q, %d bytes", tc.key, tc.sent, f.ContentType, f.Size, tc.want, len(tc.body))
		}
	}
}
