package gateway_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/dfs-store/dfs/client"
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

// The S3 API through a real S3 client: a key makes a bucket and owns it,
// puts objects (streaming-signed, with metadata), reads them whole and in
// ranges with their MD5 ETag, lists them by prefix and delimiter, and
// deletes them; another key sees none of it; a presigned GET works until
// it expires; wrong credentials are refused.
func TestS3Basics(t *testing.T) {
	e, admin := secureEnv(t)
	srv := httptest.NewServer(e.gw.S3(""))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	alice, err := admin.CreateKey(ctx, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := admin.CreateKey(ctx, "bob", false)
	mc, bc := s3Client(t, srv, alice), s3Client(t, srv, bob)

	if err := mc.MakeBucket(ctx, "photos", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	if err := bc.MakeBucket(ctx, "photos", minio.MakeBucketOptions{}); minio.ToErrorResponse(err).Code != "BucketAlreadyExists" {
		t.Fatalf("bob makes alice's bucket: %v", err)
	}
	if err := mc.MakeBucket(ctx, "photos", minio.MakeBucketOptions{}); minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
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
	e, admin := secureEnv(t)
	srv := httptest.NewServer(e.gw.S3(""))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	alice, _ := admin.CreateKey(ctx, "alice", false)
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
