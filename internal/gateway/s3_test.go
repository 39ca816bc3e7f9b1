package gateway_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/gateway"
)

// s3Client is a minio-go client of the gateway's S3 API on srv, as key k.
func s3Client(t *testing.T, srv *httptest.Server, k client.AccessKey) *minio.Client {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	mc, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(k.ID, k.Secret, ""), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return mc
}

// startS3 starts a secure cluster with its S3 API served with o, and
// returns it, its admin client, the S3 server and a key, alice, that is
// not an admin.
func startS3(t *testing.T, o gateway.S3Options) (*env, *client.Client, *httptest.Server, client.AccessKey) {
	t.Helper()
	e, admin := secureEnv(t)
	srv := httptest.NewServer(e.gw.S3(o))
	t.Cleanup(srv.Close)
	alice, err := admin.CreateKey(context.Background(), "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	return e, admin, srv, alice
}

// The S3 API through a real S3 client: a key makes a bucket and owns it,
// puts objects (streaming-signed, with metadata), reads them whole and in
// ranges with their MD5 ETag, lists them by prefix and delimiter, and
// deletes them; another key sees none of it; a presigned GET works until
// it expires; wrong credentials are refused.
func TestS3Basics(t *testing.T) {
	_, admin, srv, alice := startS3(t, gateway.S3Options{})
	ctx := context.Background()
	bob, _ := admin.CreateKey(ctx, "bob", false)
	mc, bc := s3Client(t, srv, alice), s3Client(t, srv, bob)

	if err := mc.MakeBucket(ctx, "photos", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	if err := bc.MakeBucket(ctx, "photos", minio.MakeBucketOptions{}); minio.ToErrorResponse(err).Code != "BucketAlreadyExists" {
		t.Fatalf("bob makes alice's bucket: %v", err)
	}
	// In us-east-1, S3 answers its owner's second CreateBucket with a
	// success (elsewhere BucketAlreadyOwnedByYou).
	if err := mc.MakeBucket(ctx, "photos", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("alice makes her bucket again: %v", err)
	}
	data := bytes.Repeat([]byte("dfs s3 "), 300<<10/7) // more than one streaming chunk
	sum := md5.Sum(data)
	info, err := mc.PutObject(ctx, "photos", "2024/a b.jpg", bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "image/jpeg", UserMetadata: map[string]string{"camera": "x100"}, DisableMultipart: true})
	if err != nil {
		t.Fatalf("put object: %v", err)
	}
	if info.ETag != hex.EncodeToString(sum[:]) {
		t.Fatalf("put ETag %s, want the MD5 %x", info.ETag, sum)
	}
	for _, k := range []string{"2024/b.jpg", "2025/c.jpg", "top.txt"} {
		if _, err := mc.PutObject(ctx, "photos", k, strings.NewReader(k), int64(len(k)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := mc.StatObject(ctx, "photos", "2024/a b.jpg", minio.StatObjectOptions{})
	if err != nil || st.Size != int64(len(data)) || st.ETag != hex.EncodeToString(sum[:]) || st.ContentType != "image/jpeg" || st.UserMetadata["Camera"] != "x100" {
		t.Fatalf("stat: %+v, %v", st, err)
	}
	obj, err := mc.GetObject(ctx, "photos", "2024/a b.jpg", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get: %d bytes, %v", len(got), err)
	}
	ro := minio.GetObjectOptions{}
	ro.SetRange(100, 199)
	obj, _ = mc.GetObject(ctx, "photos", "2024/a b.jpg", ro)
	if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, data[100:200]) {
		t.Fatalf("range get: %q, %v", got, err)
	}

	// Listings.
	var keys, prefixes []string
	for o := range mc.ListObjects(ctx, "photos", minio.ListObjectsOptions{}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if strings.HasSuffix(o.Key, "/") {
			prefixes = append(prefixes, o.Key)
		} else {
			keys = append(keys, o.Key)
		}
	}
	if strings.Join(keys, ",") != "top.txt" || strings.Join(prefixes, ",") != "2024/,2025/" {
		t.Fatalf("list with /: keys %v prefixes %v", keys, prefixes)
	}
	keys = nil
	for o := range mc.ListObjects(ctx, "photos", minio.ListObjectsOptions{Prefix: "2024/", Recursive: true, MaxKeys: 1}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	if strings.Join(keys, ",") != "2024/a b.jpg,2024/b.jpg" {
		t.Fatalf("list 2024/ one key a page: %v", keys)
	}
	bs, err := mc.ListBuckets(ctx)
	if err != nil || len(bs) != 1 || bs[0].Name != "photos" {
		t.Fatalf("alice's buckets: %+v, %v", bs, err)
	}

	// Bob has no right on photos.
	if _, err := bc.StatObject(ctx, "photos", "top.txt", minio.StatObjectOptions{}); minio.ToErrorResponse(err).StatusCode != http.StatusForbidden {
		t.Fatalf("bob stats alice's object: %v", err)
	}
	if bs, err := bc.ListBuckets(ctx); err != nil || len(bs) != 0 {
		t.Fatalf("bob's buckets: %+v, %v", bs, err)
	}
	// A wrong secret.
	bad := alice
	bad.Secret = strings.Repeat("x", 40)
	if _, err := s3Client(t, srv, bad).ListBuckets(ctx); minio.ToErrorResponse(err).Code != "SignatureDoesNotMatch" {
		t.Fatalf("a wrong secret: %v", err)
	}

	// A presigned GET, fetched with a plain HTTP client.
	u, err := mc.PresignedGetObject(ctx, "photos", "top.txt", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "top.txt" {
		t.Fatalf("presigned GET: %d %q", resp.StatusCode, b)
	}

	// The same namespace: the object is a file.
	fi, err := admin.Stat(ctx, "photos/2024/a b.jpg")
	if err != nil || fi.Size != int64(len(data)) {
		t.Fatalf("the object as a file: %+v, %v", fi, err)
	}

	// Deletes; a bucket with objects is not deleted.
	if err := mc.RemoveBucket(ctx, "photos"); minio.ToErrorResponse(err).Code != "BucketNotEmpty" {
		t.Fatalf("remove a bucket with objects: %v", err)
	}
	for _, k := range []string{"2024/a b.jpg", "2024/b.jpg", "2025/c.jpg", "top.txt", "never-was"} {
		if err := mc.RemoveObject(ctx, "photos", k, minio.RemoveObjectOptions{}); err != nil {
			t.Fatalf("remove %s: %v", k, err)
		}
	}
	if err := mc.RemoveBucket(ctx, "photos"); err != nil {
		t.Fatalf("remove the empty bucket: %v", err)
	}
	if ok, err := mc.BucketExists(ctx, "photos"); err != nil || ok {
		t.Fatalf("the removed bucket exists: %v, %v", ok, err)
	}
}

// CopyObject is a commit, not a copy of bytes: the copy shares the
// source's content, keeps or replaces its metadata as told; DeleteObjects
// deletes many keys in one request and says which failed.
func TestS3CopyAndDeleteObjects(t *testing.T) {
	_, admin, srv, alice := startS3(t, gateway.S3Options{})
	ctx := context.Background()
	mc := s3Client(t, srv, alice)
	if err := mc.MakeBucket(ctx, "docs", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("x"), 1<<20)
	if _, err := mc.PutObject(ctx, "docs", "a.bin", bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/x-a", UserMetadata: map[string]string{"k": "v"}, DisableMultipart: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := mc.CopyObject(ctx, minio.CopyDestOptions{Bucket: "docs", Object: "copy.bin"}, minio.CopySrcOptions{Bucket: "docs", Object: "a.bin"}); err != nil {
		t.Fatalf("copy: %v", err)
	}
	if _, err := mc.CopyObject(ctx, minio.CopyDestOptions{Bucket: "docs", Object: "replaced.bin", ReplaceMetadata: true, UserMetadata: map[string]string{"k": "new"}},
		minio.CopySrcOptions{Bucket: "docs", Object: "a.bin"}); err != nil {
		t.Fatalf("copy with new metadata: %v", err)
	}
	a, _ := admin.Stat(ctx, "docs/a.bin")
	for name, want := range map[string]string{"copy.bin": "v", "replaced.bin": "new"} {
		st, err := mc.StatObject(ctx, "docs", name, minio.StatObjectOptions{})
		if err != nil || st.UserMetadata["K"] != want || st.Size != int64(len(data)) {
			t.Fatalf("stat %s: %+v, %v; want metadata k=%s", name, st, err, want)
		}
		f, _ := admin.Stat(ctx, "docs/"+name)
		if f.Content != a.Content {
			t.Fatalf("%s has content %s, the source %s: a copy shares the content", name, f.Content.Short(), a.Content.Short())
		}
	}
	if _, err := mc.CopyObject(ctx, minio.CopyDestOptions{Bucket: "docs", Object: "a.bin"}, minio.CopySrcOptions{Bucket: "docs", Object: "a.bin"}); minio.ToErrorResponse(err).Code != "InvalidRequest" {
		t.Fatalf("a copy onto itself without REPLACE: %v", err)
	}

	objs := make(chan minio.ObjectInfo, 4)
	for _, k := range []string{"a.bin", "copy.bin", "never-was"} {
		objs <- minio.ObjectInfo{Key: k}
	}
	close(objs)
	for res := range mc.RemoveObjects(ctx, "docs", objs, minio.RemoveObjectsOptions{}) {
		t.Errorf("remove %s: %v", res.ObjectName, res.Err)
	}
	l, _ := admin.List(ctx, client.ListOptions{Prefix: "docs/"})
	if len(l.Files) != 1 || l.Files[0].Path != "docs/replaced.bin" {
		t.Fatalf("after DeleteObjects: %+v", l.Files)
	}
}

// Multipart uploads through a real S3 client: parts sent out of order and
// in parallel complete into one object with the MD5-of-MD5s ETag, readable
// whole and by part number; every misuse of Complete is answered with its
// error and leaves the upload as it was; an aborted or completed upload is
// gone; a key with no right on the bucket can neither see nor touch an
// upload in it; UploadPartCopy builds a part from a range of an object.
func TestS3Multipart(t *testing.T) {
	_, admin, srv, alice := startS3(t, gateway.S3Options{})
	ctx := context.Background()
	bob, _ := admin.CreateKey(ctx, "bob", false)
	mc, bc := s3Client(t, srv, alice), s3Client(t, srv, bob)
	core, bcore := &minio.Core{Client: mc}, &minio.Core{Client: bc}
	if err := mc.MakeBucket(ctx, "big", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{randomData(5<<20, 1), randomData(5<<20, 2), randomData(1<<20, 3)}
	whole := bytes.Join(parts, nil)

	id, err := core.NewMultipartUpload(ctx, "big", "v/movie.bin", minio.PutObjectOptions{ContentType: "video/x-test", UserMetadata: map[string]string{"take": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make([]minio.CompletePart, len(parts))
	errs := make(chan error, len(parts))
	for i := len(parts) - 1; i >= 0; i-- {
		go func() {
			p, err := core.PutObjectPart(ctx, "big", "v/movie.bin", id, i+1, bytes.NewReader(parts[i]), int64(len(parts[i])), minio.PutObjectPartOptions{})
			done[i] = minio.CompletePart{PartNumber: i + 1, ETag: p.ETag}
			errs <- err
		}()
	}
	for range parts {
		if err := <-errs; err != nil {
			t.Fatalf("upload part: %v", err)
		}
	}
	for i, p := range done {
		if sum := md5.Sum(parts[i]); strings.Trim(p.ETag, `"`) != hex.EncodeToString(sum[:]) {
			t.Fatalf("part %d ETag %s, want its MD5", i+1, p.ETag)
		}
	}
	lp, err := core.ListObjectParts(ctx, "big", "v/movie.bin", id, 0, 2)
	if err != nil || len(lp.ObjectParts) != 2 || !lp.IsTruncated || lp.NextPartNumberMarker != 2 || lp.ObjectParts[1].Size != 5<<20 {
		t.Fatalf("list parts: %+v, %v", lp, err)
	}
	lu, err := core.ListMultipartUploads(ctx, "big", "v/", "", "", "", 10)
	if err != nil || len(lu.Uploads) != 1 || lu.Uploads[0].UploadID != id || lu.Uploads[0].Key != "v/movie.bin" {
		t.Fatalf("list uploads: %+v, %v", lu, err)
	}
	lu, err = core.ListMultipartUploads(ctx, "big", "", "", "", "/", 10)
	if err != nil || len(lu.Uploads) != 0 || len(lu.CommonPrefixes) != 1 || lu.CommonPrefixes[0].Prefix != "v/" {
		t.Fatalf("list uploads by /: %+v, %v", lu, err)
	}
	// Bob, with no right on the bucket.
	if _, err := bcore.ListObjectParts(ctx, "big", "v/movie.bin", id, 0, 10); minio.ToErrorResponse(err).StatusCode != http.StatusForbidden {
		t.Fatalf("bob lists alice's parts: %v", err)
	}
	if _, err := bcore.PutObjectPart(ctx, "big", "v/movie.bin", id, 4, bytes.NewReader(parts[2]), int64(len(parts[2])), minio.PutObjectPartOptions{}); minio.ToErrorResponse(err).StatusCode != http.StatusForbidden {
		t.Fatalf("bob uploads a part: %v", err)
	}
	if err := bcore.AbortMultipartUpload(ctx, "big", "v/movie.bin", id); minio.ToErrorResponse(err).StatusCode != http.StatusForbidden {
		t.Fatalf("bob aborts: %v", err)
	}

	// Complete, wrongly: each refusal leaves the upload open.
	for name, c := range map[string]struct {
		parts []minio.CompletePart
		code  string
	}{
		"wrong ETag":      {[]minio.CompletePart{done[0], {PartNumber: 2, ETag: done[0].ETag}, done[2]}, "InvalidPart"},
		"missing part":    {[]minio.CompletePart{done[0], {PartNumber: 7, ETag: done[1].ETag}}, "InvalidPart"},
		"out of order":    {[]minio.CompletePart{done[1], done[0], done[2]}, "InvalidPartOrder"},
		"small in mid":    {[]minio.CompletePart{done[0], done[2], {PartNumber: 4, ETag: done[1].ETag}}, "InvalidPart"},
		"unknown id":      {done, "NoSuchUpload"},
		"no parts at all": {nil, "MalformedXML"},
	} {
		uid := id
		if name == "unknown id" {
			uid = strings.Repeat("0", 32)
		}
		if _, err := core.CompleteMultipartUpload(ctx, "big", "v/movie.bin", uid, c.parts, minio.PutObjectOptions{}); minio.ToErrorResponse(err).Code != c.code {
			t.Fatalf("complete, %s: %v, want %s", name, err, c.code)
		}
	}
	if _, err := mc.StatObject(ctx, "big", "v/movie.bin", minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Fatalf("a refused completion made the object: %v", err)
	}
	// A small part before the last is EntityTooSmall.
	small, _ := core.NewMultipartUpload(ctx, "big", "small.bin", minio.PutObjectOptions{})
	var sp []minio.CompletePart
	for i, p := range [][]byte{parts[2], parts[2]} {
		op, err := core.PutObjectPart(ctx, "big", "small.bin", small, i+1, bytes.NewReader(p), int64(len(p)), minio.PutObjectPartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sp = append(sp, minio.CompletePart{PartNumber: i + 1, ETag: op.ETag})
	}
	if _, err := core.CompleteMultipartUpload(ctx, "big", "small.bin", small, sp, minio.PutObjectOptions{}); minio.ToErrorResponse(err).Code != "EntityTooSmall" {
		t.Fatalf("complete with a small first part: %v", err)
	}
	if err := core.AbortMultipartUpload(ctx, "big", "small.bin", small); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if _, err := core.ListObjectParts(ctx, "big", "small.bin", small, 0, 10); minio.ToErrorResponse(err).Code != "NoSuchUpload" {
		t.Fatalf("list parts of an aborted upload: %v", err)
	}

	// Complete, rightly.
	info, err := core.CompleteMultipartUpload(ctx, "big", "v/movie.bin", id, done, minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("complete: %v", err)
	}
	md := md5.New()
	for _, p := range parts {
		s := md5.Sum(p)
		md.Write(s[:])
	}
	wantETag := hex.EncodeToString(md.Sum(nil)) + "-3"
	if info.ETag != wantETag {
		t.Fatalf("multipart ETag %s, want %s", info.ETag, wantETag)
	}
	st, err := mc.StatObject(ctx, "big", "v/movie.bin", minio.StatObjectOptions{})
	if err != nil || st.ETag != wantETag || st.Size != int64(len(whole)) || st.ContentType != "video/x-test" || st.UserMetadata["Take"] != "2" {
		t.Fatalf("stat: %+v, %v", st, err)
	}
	obj, _ := mc.GetObject(ctx, "big", "v/movie.bin", minio.GetObjectOptions{})
	if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, whole) {
		t.Fatalf("get: %d bytes, %v", len(got), err)
	}
	for n := 1; n <= 3; n++ {
		rc, oi, hd, err := core.GetObject(ctx, "big", "v/movie.bin", minio.GetObjectOptions{PartNumber: n})
		if err != nil {
			t.Fatalf("get part %d: %v", n, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, parts[n-1]) || oi.Size != int64(len(parts[n-1])) || hd.Get("X-Amz-Mp-Parts-Count") != "3" {
			t.Fatalf("get part %d: %d bytes, size %d, parts count %q, %v", n, len(got), oi.Size, hd.Get("X-Amz-Mp-Parts-Count"), err)
		}
	}
	if _, _, _, err := core.GetObject(ctx, "big", "v/movie.bin", minio.GetObjectOptions{PartNumber: 4}); minio.ToErrorResponse(err).Code != "InvalidPartNumber" {
		t.Fatalf("get part 4 of 3: %v", err)
	}
	if _, err := core.ListObjectParts(ctx, "big", "v/movie.bin", id, 0, 10); minio.ToErrorResponse(err).Code != "NoSuchUpload" {
		t.Fatalf("list parts of a completed upload: %v", err)
	}
	// A completion sent again (its answer lost) is answered as the first.
	if again, err := core.CompleteMultipartUpload(ctx, "big", "v/movie.bin", id, done, minio.PutObjectOptions{}); err != nil || again.ETag != wantETag {
		t.Fatalf("complete again: %+v, %v", again, err)
	}
	if _, err := core.PutObjectPart(ctx, "big", "v/movie.bin", id, 4, bytes.NewReader(parts[2]), int64(len(parts[2])), minio.PutObjectPartOptions{}); minio.ToErrorResponse(err).Code != "NoSuchUpload" {
		t.Fatalf("a part for a completed upload: %v", err)
	}
	// The object is a file, whose chunks are the parts'.
	if fi, err := admin.Stat(ctx, "big/v/movie.bin"); err != nil || fi.Size != int64(len(whole)) {
		t.Fatalf("the object as a file: %+v, %v", fi, err)
	}

	// UploadPartCopy: a new object from a range of the first and a part
	// of its own.
	cid, _ := core.NewMultipartUpload(ctx, "big", "cut.bin", minio.PutObjectOptions{})
	cp, err := core.CopyObjectPart(ctx, "big", "v/movie.bin", "big", "cut.bin", cid, 1, 1<<20, 5<<20, nil)
	if err != nil {
		t.Fatalf("upload part copy: %v", err)
	}
	p2, err := core.PutObjectPart(ctx, "big", "cut.bin", cid, 2, bytes.NewReader(parts[2]), int64(len(parts[2])), minio.PutObjectPartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.CompleteMultipartUpload(ctx, "big", "cut.bin", cid, []minio.CompletePart{cp, {PartNumber: 2, ETag: p2.ETag}}, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("complete the copy: %v", err)
	}
	obj, _ = mc.GetObject(ctx, "big", "cut.bin", minio.GetObjectOptions{})
	want := append(bytes.Clone(whole[1<<20:6<<20]), parts[2]...)
	if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("get the copy: %d bytes, %v", len(got), err)
	}

	// minio-go's own multipart PutObject, streaming, parts in parallel.
	big := randomData(17<<20, 9)
	if _, err := mc.PutObject(ctx, "big", "auto.bin", bytes.NewReader(big), int64(len(big)), minio.PutObjectOptions{PartSize: 5 << 20, NumThreads: 3}); err != nil {
		t.Fatalf("put in parts: %v", err)
	}
	obj, _ = mc.GetObject(ctx, "big", "auto.bin", minio.GetObjectOptions{})
	if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("get what was put in parts: %d bytes, %v", len(got), err)
	}
}

func randomData(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// With a domain set, a bucket may be named in the host (virtual-hosted
// style, what SDKs use by default) as well as in the path.
func TestS3VirtualHostedStyle(t *testing.T) {
	_, admin, srv, alice := startS3(t, gateway.S3Options{Domain: "s3.dfs.test"})
	ctx := context.Background()
	addr := strings.TrimPrefix(srv.URL, "http://")
	_, port, _ := net.SplitHostPort(addr)
	// Every host under the domain reaches the test server.
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	vh, err := minio.New("s3.dfs.test:"+port, &minio.Options{Creds: credentials.NewStaticV4(alice.ID, alice.Secret, ""),
		Region: "us-east-1", BucketLookup: minio.BucketLookupDNS, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	if err := vh.MakeBucket(ctx, "hosted", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket, virtual-hosted: %v", err)
	}
	if _, err := vh.PutObject(ctx, "hosted", "a/b.txt", strings.NewReader("by host"), 7, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put, virtual-hosted: %v", err)
	}
	var keys []string
	for o := range vh.ListObjects(ctx, "hosted", minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	if strings.Join(keys, ",") != "a/b.txt" {
		t.Fatalf("list, virtual-hosted: %v", keys)
	}
	// The same object, path style, and as a file.
	obj, err := s3Client(t, srv, alice).GetObject(ctx, "hosted", "a/b.txt", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(obj); err != nil || string(b) != "by host" {
		t.Fatalf("path-style read of a virtual-hosted put: %q %v", b, err)
	}
	if f, err := admin.Stat(ctx, "hosted/a/b.txt"); err != nil || f.Size != 7 {
		t.Fatalf("as a file: %+v %v", f, err)
	}
}

// Dedup through S3: the same bytes put again, a copy, and a new version
// with a small edit store (almost) nothing new on the datanodes.
func TestS3Dedup(t *testing.T) {
	e, _, srv, alice := startS3(t, gateway.S3Options{})
	ctx := context.Background()
	mc := s3Client(t, srv, alice)
	if err := mc.MakeBucket(ctx, "dedup", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	stored := func() int64 {
		var total int64
		for _, n := range e.cl.Nodes {
			_, b := n.Store().Usage()
			total += b
		}
		return total
	}
	put := func(key string, data []byte, multipart bool) {
		t.Helper()
		o := minio.PutObjectOptions{DisableMultipart: !multipart}
		if multipart {
			o.PartSize = 8 << 20
		}
		if _, err := mc.PutObject(ctx, "dedup", key, bytes.NewReader(data), int64(len(data)), o); err != nil {
			t.Fatal(err)
		}
	}
	data := randomData(32<<20, 5)
	before := stored()
	put("v1.bin", data, false)
	first := stored() - before
	if first < 3*int64(len(data)) {
		t.Fatalf("the first put stored %d bytes, less than 3 copies of %d", first, len(data))
	}
	mark := stored()
	put("again.bin", data, false)
	if _, err := mc.CopyObject(ctx, minio.CopyDestOptions{Bucket: "dedup", Object: "copy.bin"}, minio.CopySrcOptions{Bucket: "dedup", Object: "v1.bin"}); err != nil {
		t.Fatal(err)
	}
	if grew := stored() - mark; grew != 0 {
		t.Fatalf("the same bytes again and a copy stored %d new bytes", grew)
	}
	edited := bytes.Clone(data)
	copy(edited[20<<20:], "a small edit")
	mark = stored()
	put("v2.bin", edited, false)
	if grew := stored() - mark; grew == 0 || grew > first/3 {
		t.Fatalf("a 12-byte edit of %d bytes stored %d new bytes (the first version %d)", len(data), grew, first)
	}
	// In parts: each part is cut on its own, so an object put in parts
	// shares with one put whole only the chunks inside its parts; two
	// versions put in the same parts share all but the edited chunks.
	put("v1-parts.bin", data, true)
	mark = stored()
	put("v2-parts.bin", edited, true)
	if grew := stored() - mark; grew == 0 || grew > first/3 {
		t.Fatalf("the edited version in 8 MiB parts stored %d new bytes (the first version %d)", grew, first)
	}
	for _, k := range []string{"v1.bin", "again.bin", "copy.bin", "v2.bin", "v1-parts.bin", "v2-parts.bin"} {
		obj, _ := mc.GetObject(ctx, "dedup", k, minio.GetObjectOptions{})
		got, err := io.ReadAll(obj)
		want := data
		if strings.HasPrefix(k, "v2") {
			want = edited
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s read back wrong: %d bytes, %v", k, len(got), err)
		}
	}
}
