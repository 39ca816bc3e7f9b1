package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/minio/minio-go/v7"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/gateway"
)

// signed makes a request to srv signed with key k at time at, its payload
// unsigned (the checks under test are the body's, not the signature's).
func signed(t *testing.T, srv *httptest.Server, k client.AccessKey, method, path string, body []byte, at time.Time, hdr map[string]string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range hdr {
		if name == "Content-Length" {
			fmt.Sscan(v, &r.ContentLength) // a length the body does not have
			continue
		}
		r.Header.Set(name, v)
	}
	r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	s := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err := s.SignHTTP(context.Background(), aws.Credentials{AccessKeyID: k.ID, SecretAccessKey: k.Secret}, r, "UNSIGNED-PAYLOAD", "s3", "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	return r
}

// s3Code sends r and returns the status and the S3 error code of the
// answer ("" for a success).
func s3Code(t *testing.T, r *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Code string }
	xml.Unmarshal(b, &e)
	return resp.StatusCode, e.Code
}

// Every bad request is answered with its S3 error, and commits nothing: a
// body that does not match its Content-MD5 or x-amz-checksum-*, a skewed
// clock, a body cut short, malformed XML, an unknown upload, what dfs does
// not support.
func TestS3Errors(t *testing.T) {
	_, admin, srv, alice := startS3(t, gateway.S3Options{})
	ctx := context.Background()
	if err := s3Client(t, srv, alice).MakeBucket(ctx, "errs", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	body := []byte("the bytes of an object")
	md := md5.Sum([]byte("other bytes"))
	now := time.Now()
	upload := func() string {
		id, err := (&minio.Core{Client: s3Client(t, srv, alice)}).NewMultipartUpload(ctx, "errs", "mp.bin", minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	id := upload()
	for name, c := range map[string]struct {
		r      *http.Request
		status int
		code   string
	}{
		"wrong Content-MD5": {signed(t, srv, alice, "PUT", "/errs/a", body, now, map[string]string{"Content-Md5": base64.StdEncoding.EncodeToString(md[:])}),
			400, "BadDigest"},
		"Content-MD5 not base64": {signed(t, srv, alice, "PUT", "/errs/a", body, now, map[string]string{"Content-Md5": "not base64!"}),
			400, "InvalidDigest"},
		"wrong crc32": {signed(t, srv, alice, "PUT", "/errs/a", body, now, map[string]string{"X-Amz-Checksum-Crc32": "AAAAAA=="}),
			400, "BadDigest"},
		"wrong sha256 checksum": {signed(t, srv, alice, "PUT", "/errs/a", body, now, map[string]string{"X-Amz-Checksum-Sha256": base64.StdEncoding.EncodeToString(make([]byte, 32))}),
			400, "BadDigest"},
		"clock 20 minutes slow": {signed(t, srv, alice, "PUT", "/errs/a", body, now.Add(-20*time.Minute), nil),
			403, "RequestTimeTooSkewed"},
		"part to an unknown upload": {signed(t, srv, alice, "PUT", "/errs/a?partNumber=1&uploadId="+strings.Repeat("ab", 16), body, now, nil),
			404, "NoSuchUpload"},
		"part to a malformed upload id": {signed(t, srv, alice, "PUT", "/errs/a?partNumber=1&uploadId=..%2F..", body, now, nil),
			404, "NoSuchUpload"},
		"part number 0": {signed(t, srv, alice, "PUT", "/errs/mp.bin?partNumber=0&uploadId="+id, body, now, nil),
			400, "InvalidArgument"},
		"part number 10001": {signed(t, srv, alice, "PUT", "/errs/mp.bin?partNumber=10001&uploadId="+id, body, now, nil),
			400, "InvalidArgument"},
		"complete with malformed XML": {signed(t, srv, alice, "POST", "/errs/mp.bin?uploadId="+id, []byte("<CompleteMultipartUpload><Part>"), now, nil),
			400, "MalformedXML"},
		"delete with malformed XML": {signed(t, srv, alice, "POST", "/errs?delete", []byte("<Delete><Object><Key>a"), now, nil),
			400, "MalformedXML"},
		"abort an unknown upload": {signed(t, srv, alice, "DELETE", "/errs/mp.bin?uploadId="+strings.Repeat("cd", 16), nil, now, nil),
			404, "NoSuchUpload"},
		"versioning without a status": {signed(t, srv, alice, "PUT", "/errs?versioning", []byte("<VersioningConfiguration/>"), now, nil),
			400, "MalformedXML"},
		"MFA delete": {signed(t, srv, alice, "PUT", "/errs?versioning", []byte("<VersioningConfiguration><Status>Enabled</Status><MfaDelete>Enabled</MfaDelete></VersioningConfiguration>"), now, nil),
			501, "NotImplemented"},
		"object lock": {signed(t, srv, alice, "PUT", "/errs/a?retention", nil, now, nil),
			501, "NotImplemented"},
		"lifecycle": {signed(t, srv, alice, "GET", "/errs?lifecycle", nil, now, nil),
			501, "NotImplemented"},
		"POST on an object": {signed(t, srv, alice, "POST", "/errs/a", nil, now, nil),
			501, "NotImplemented"},
	} {
		status, code := s3Code(t, c.r)
		if status != c.status || code != c.code {
			t.Errorf("%s: %d %s, want %d %s", name, status, code, c.status, c.code)
		}
	}
	// A body cut short: the connection closes before Content-Length bytes.
	r := signed(t, srv, alice, "PUT", "/errs/short", body, now, map[string]string{"Content-Length": "1000"})
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	var head bytes.Buffer
	fmt.Fprintf(&head, "PUT /errs/short HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n", r.Host)
	for name, vs := range r.Header {
		if name != "Content-Length" {
			fmt.Fprintf(&head, "%s: %s\r\n", name, vs[0])
		}
	}
	head.WriteString("\r\n")
	conn.Write(head.Bytes())
	conn.Write(body)
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	conn.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "IncompleteBody") {
		t.Errorf("a body cut short: %d %s", resp.StatusCode, b)
	}

	// Nothing was committed by any of them, and the upload is still open
	// with no part.
	l, err := admin.List(ctx, client.ListOptions{Prefix: "errs/"})
	if err != nil || len(l.Files) != 0 {
		t.Fatalf("files after refused requests: %+v, %v", l.Files, err)
	}
	if _, parts, _, err := admin.ListParts(ctx, "errs/mp.bin", id, 0, 10); err != nil || len(parts) != 0 {
		t.Fatalf("the upload after refused requests: %v parts, %v", parts, err)
	}
	if _, err := admin.Stat(ctx, "errs/a"); err == nil || !strings.Contains(err.Error(), dfs.ErrNotFound.Error()) {
		t.Fatalf("errs/a: %v", err)
	}
}

// Conditional writes: If-None-Match: * creates only, If-Match replaces
// only the version it names; the loser of either gets 412 and changes
// nothing. Reads honour If-Match, If-None-Match and the date conditions.
func TestS3ConditionalRequests(t *testing.T) {
	_, admin, srv, alice := startS3(t, gateway.S3Options{})
	ctx := context.Background()
	if err := s3Client(t, srv, alice).MakeBucket(ctx, "cond", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	put := func(body string, hdr map[string]string) (int, string) {
		return s3Code(t, signed(t, srv, alice, "PUT", "/cond/k", []byte(body), now, hdr))
	}
	etag := func(s string) string { m := md5.Sum([]byte(s)); return fmt.Sprintf("%x", m) }
	if st, code := put("v1", map[string]string{"If-None-Match": "*"}); st != 200 {
		t.Fatalf("create-only put of a new key: %d %s", st, code)
	}
	if st, code := put("v2", map[string]string{"If-None-Match": "*"}); st != 412 || code != "PreconditionFailed" {
		t.Fatalf("create-only put over an object: %d %s", st, code)
	}
	if st, code := put("v2", map[string]string{"If-Match": `"` + etag("nope") + `"`}); st != 412 || code != "PreconditionFailed" {
		t.Fatalf("put matching another ETag: %d %s", st, code)
	}
	if st, code := put("v2", map[string]string{"If-Match": `"` + etag("v1") + `"`}); st != 200 {
		t.Fatalf("put matching the ETag: %d %s", st, code)
	}
	if st, code := s3Code(t, signed(t, srv, alice, "PUT", "/cond/none", []byte("x"), now, map[string]string{"If-Match": `"` + etag("x") + `"`})); st != 404 || code != "NoSuchKey" {
		t.Fatalf("If-Match put of no object: %d %s", st, code)
	}
	if st, code := put("v3", map[string]string{"If-None-Match": `"` + etag("v2") + `"`}); st != 412 || code != "PreconditionFailed" {
		t.Fatalf("If-None-Match with the object's ETag on a put: %d %s", st, code)
	}
	if st, code := put("v3", map[string]string{"If-None-Match": `"a", "b"`}); st != 501 || code != "NotImplemented" {
		t.Fatalf("If-None-Match with two ETags on a put: %d %s", st, code)
	}
	if st, code := s3Code(t, signed(t, srv, alice, "PUT", "/cond/none", []byte("x"), now, map[string]string{"If-Match": "*"})); st != 404 || code != "NoSuchKey" {
		t.Fatalf("If-Match: * put of no object: %d %s", st, code)
	}
	var got bytes.Buffer
	if _, err := admin.Get(ctx, "cond/k", &got, client.GetOptions{}); err != nil || got.String() != "v2" {
		t.Fatalf("cond/k holds %q (%v), want v2", got.String(), err)
	}
	// Racing create-only puts: exactly one wins.
	wins := make(chan int, 8)
	for i := range 8 {
		go func() {
			st, _ := s3Code(t, signed(t, srv, alice, "PUT", "/cond/race", []byte(fmt.Sprint("writer ", i)), now, map[string]string{"If-None-Match": "*"}))
			wins <- st
		}()
	}
	won := 0
	for range 8 {
		if <-wins == 200 {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d of 8 racing create-only puts won", won)
	}

	// Reads.
	mod := now.UTC().Add(time.Hour).Format(http.TimeFormat)
	for name, c := range map[string]struct {
		hdr    map[string]string
		status int
	}{
		"If-Match the ETag":        {map[string]string{"If-Match": `"` + etag("v2") + `"`}, 200},
		"If-Match another":         {map[string]string{"If-Match": `"` + etag("v1") + `"`}, 412},
		"If-None-Match the ETag":   {map[string]string{"If-None-Match": `"` + etag("v2") + `"`}, 304},
		"If-None-Match another":    {map[string]string{"If-None-Match": `"` + etag("v1") + `"`}, 200},
		"If-Modified-Since later":  {map[string]string{"If-Modified-Since": mod}, 304},
		"If-Unmodified-Since past": {map[string]string{"If-Unmodified-Since": now.UTC().Add(-time.Hour).Format(http.TimeFormat)}, 412},
	} {
		if st, _ := s3Code(t, signed(t, srv, alice, "GET", "/cond/k", nil, now, c.hdr)); st != c.status {
			t.Errorf("GET, %s: %d, want %d", name, st, c.status)
		}
	}
}

// ListBuckets pages with max-buckets and continuation-token, and filters
// by prefix.
func TestS3ListBucketsPaginated(t *testing.T) {
	_, _, srv, alice := startS3(t, gateway.S3Options{})
	ctx := context.Background()
	for _, b := range []string{"pages-a", "pages-b", "pages-c", "other"} {
		if err := s3Client(t, srv, alice).MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(query string) (names []string, token string) {
		t.Helper()
		resp, err := http.DefaultClient.Do(signed(t, srv, alice, "GET", "/?"+query, nil, time.Now(), nil))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Buckets           []struct{ Name string } `xml:"Buckets>Bucket"`
			ContinuationToken string
		}
		if err := xml.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("list buckets ?%s: %d %v", query, resp.StatusCode, err)
		}
		for _, b := range out.Buckets {
			names = append(names, b.Name)
		}
		return names, out.ContinuationToken
	}
	var all []string
	token := ""
	for range 5 {
		names, next := list("max-buckets=2&prefix=pages-&continuation-token=" + token)
		all = append(all, names...)
		if next == "" {
			break
		}
		token = next
	}
	if strings.Join(all, ",") != "pages-a,pages-b,pages-c" {
		t.Fatalf("paged listing of pages-*: %v", all)
	}
	if names, next := list(""); len(names) != 4 || next != "" {
		t.Fatalf("unpaged listing: %v %q", names, next)
	}
}
