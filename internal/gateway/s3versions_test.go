package gateway_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/dfs-store/dfs/internal/gateway"
)

// S3 versioning through a real S3 client: with versioning enabled, every
// put and delete keeps what it replaced; each version reads back by id; a
// version deleted by id goes for good (the current one's brings back the
// one before); a suspended bucket keeps nothing; a bucket with versions
// kept on purpose cannot be deleted until they are.
func TestS3Versioning(t *testing.T) {
	_, _, srv, alice := startS3(t, gateway.S3Options{})
	ctx := context.Background()
	mc := s3Client(t, srv, alice)
	if err := mc.MakeBucket(ctx, "vers", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if cfg, err := mc.GetBucketVersioning(ctx, "vers"); err != nil || cfg.Status != "" {
		t.Fatalf("versioning of a new bucket: %+v, %v; want none set", cfg, err)
	}
	if err := mc.EnableVersioning(ctx, "vers"); err != nil {
		t.Fatal(err)
	}
	if cfg, err := mc.GetBucketVersioning(ctx, "vers"); err != nil || cfg.Status != "Enabled" {
		t.Fatalf("versioning after enabling: %+v, %v", cfg, err)
	}
	put := func(body string) minio.UploadInfo {
		t.Helper()
		info, err := mc.PutObject(ctx, "vers", "doc.txt", bytes.NewReader([]byte(body)), int64(len(body)), minio.PutObjectOptions{DisableMultipart: true})
		if err != nil {
			t.Fatal(err)
		}
		if info.VersionID == "" {
			t.Fatal("a put into a versioned bucket returned no version id")
		}
		return info
	}
	get := func(vid string) (string, error) {
		t.Helper()
		o, err := mc.GetObject(ctx, "vers", "doc.txt", minio.GetObjectOptions{VersionID: vid})
		if err != nil {
			return "", err
		}
		defer o.Close()
		b, err := io.ReadAll(o)
		return string(b), err
	}
	v1, v2 := put("first"), put("second")
	if err := mc.RemoveObject(ctx, "vers", "doc.txt", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := get(""); minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Fatalf("get after delete: %v", err)
	}
	var listed []minio.ObjectInfo
	for o := range mc.ListObjects(ctx, "vers", minio.ListObjectsOptions{WithVersions: true, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		listed = append(listed, o)
	}
	if len(listed) != 3 || !listed[0].IsDeleteMarker || !listed[0].IsLatest || listed[1].VersionID != v2.VersionID || listed[2].VersionID != v1.VersionID {
		t.Fatalf("versions listed: %+v; want a delete marker, then v2, then v1", listed)
	}
	if b, err := get(v1.VersionID); err != nil || b != "first" {
		t.Fatalf("get v1: %q, %v", b, err)
	}
	if _, err := get(listed[0].VersionID); minio.ToErrorResponse(err).StatusCode != 405 {
		t.Fatalf("get of a delete marker: %v; want 405", err)
	}
	if _, err := get("0123456789abcdef0123"); minio.ToErrorResponse(err).Code != "NoSuchVersion" {
		t.Fatalf("get of a missing version: %v", err)
	}
	if _, err := get("not-a-version"); minio.ToErrorResponse(err).StatusCode != 400 {
		t.Fatalf("get of a malformed version: %v", err)
	}
	// Dropping the delete marker undeletes: v2 is current again.
	if err := mc.RemoveObject(ctx, "vers", "doc.txt", minio.RemoveObjectOptions{VersionID: listed[0].VersionID}); err != nil {
		t.Fatal(err)
	}
	if b, err := get(""); err != nil || b != "second" {
		t.Fatalf("get after removing the marker: %q, %v", b, err)
	}
	// CopyObject from an earlier version: S3's way to restore one.
	if _, err := mc.CopyObject(ctx, minio.CopyDestOptions{Bucket: "vers", Object: "doc.txt"},
		minio.CopySrcOptions{Bucket: "vers", Object: "doc.txt", VersionID: v1.VersionID}); err != nil {
		t.Fatalf("copy from v1: %v", err)
	}
	if b, err := get(""); err != nil || b != "first" {
		t.Fatalf("get after copying v1 over the key: %q, %v", b, err)
	}
	// The bucket keeps versions on purpose: it cannot go while any is left.
	if err := mc.RemoveObject(ctx, "vers", "doc.txt", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := mc.RemoveBucket(ctx, "vers"); minio.ToErrorResponse(err).Code != "BucketNotEmpty" {
		t.Fatalf("remove a bucket holding versions: %v", err)
	}
	for o := range mc.ListObjects(ctx, "vers", minio.ListObjectsOptions{WithVersions: true, Recursive: true}) {
		if err := mc.RemoveObject(ctx, "vers", o.Key, minio.RemoveObjectOptions{VersionID: o.VersionID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := mc.RemoveBucket(ctx, "vers"); err != nil {
		t.Fatalf("remove the bucket once its versions are gone: %v", err)
	}

	// Suspended: an overwrite keeps nothing.
	if err := mc.MakeBucket(ctx, "flat", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := mc.SuspendVersioning(ctx, "flat"); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"a", "b"} {
		info, err := mc.PutObject(ctx, "flat", "k", bytes.NewReader([]byte(body)), 1, minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if info.VersionID != "" {
			t.Fatalf("a put into an unversioned bucket answered version id %q", info.VersionID)
		}
	}
	n := 0
	for o := range mc.ListObjects(ctx, "flat", minio.ListObjectsOptions{WithVersions: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("a suspended bucket lists %d versions, want 1", n)
	}
}
