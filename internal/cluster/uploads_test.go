package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/jobs"
)

// uploadParts stages and commits parts (numbered from 1) of upload up, in
// reverse order and in parallel, and returns what each sent.
func uploadParts(t *testing.T, c *client.Client, up client.Upload, parts [][]byte) []client.PutResult {
	t.Helper()
	res := make([]client.PutResult, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i := len(parts) - 1; i >= 0; i-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := c.Stage(context.Background(), up.Path, bytes.NewReader(parts[i]), client.PutOptions{})
			if err == nil {
				res[i], err = st.CommitPart(context.Background(), up.ID, i+1)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return res
}

func numbers(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// An upload in parts: parts arrive in any order and in parallel, are kept
// across a garbage collection while the upload is open, and complete into
// a file that reads as the parts in order, with its parts' sizes, whose
// post-upload job computes the SHA-256 of the whole. The same parts again
// send nothing and complete into the same content; a small edit sends one
// part's changed chunks.
func TestUploadInParts(t *testing.T) {
	slow(t, "multipart uploads of many MiB")
	ctx := context.Background()
	cl, c := startCluster(t, func(cfg *cluster.Config) {
		cfg.Coordinator.GCGrace = 200 * time.Millisecond
		cfg.Coordinator.GCInterval = time.Hour
		cfg.Jobs = jobs.Config{Workers: 1, LockTTL: 2 * time.Second, Backoff: 10 * time.Millisecond}
	})
	parts := [][]byte{randomBytes(6<<20, 1), randomBytes(5<<20, 2), randomBytes(1<<20, 3)}
	whole := bytes.Join(parts, nil)

	up, err := c.CreateUpload(ctx, "mp/video.bin", "video/x-test", map[string]string{"x-amz-meta-a": "1"})
	if err != nil {
		t.Fatal(err)
	}
	uploadParts(t, c, up, parts)
	// A collection while the upload is open keeps its parts: they are
	// referenced, not merely young.
	time.Sleep(600 * time.Millisecond)
	if err := cl.Coordinator.Server.CollectGarbageFull(ctx); err != nil {
		t.Fatal(err)
	}
	got, listed, more, err := c.ListParts(ctx, up.Path, up.ID, 0, 2)
	if err != nil || got.ID != up.ID || len(listed) != 2 || !more || listed[0].Number != 1 || listed[1].Size != 5<<20 {
		t.Fatalf("list parts: %+v %+v more=%v %v", got, listed, more, err)
	}
	if listed[0].Content != sha256.Sum256(parts[0]) {
		t.Fatalf("part 1 lists content %s", listed[0].Content.Short())
	}
	ups, _, err := c.ListUploads(ctx, client.ListUploadsOptions{Prefix: "mp/", Limit: 10})
	if err != nil || len(ups) != 1 || ups[0].ID != up.ID || ups[0].Attrs["x-amz-meta-a"] != "1" {
		t.Fatalf("list uploads: %+v %v", ups, err)
	}

	res, err := c.CompleteUpload(ctx, up.Path, up.ID, numbers(3), client.CompleteOptions{Attrs: map[string]string{"etag": "e-3"}})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]dfs.Part, len(parts))
	for i, p := range parts {
		want[i] = dfs.Part{Hash: sha256.Sum256(p), Size: int64(len(p))}
	}
	if res.File.Content != dfs.PartsHash(want) || res.File.Size != int64(len(whole)) || res.File.ContentType != "video/x-test" ||
		res.File.Attrs["etag"] != "e-3" || res.File.Attrs["x-amz-meta-a"] != "1" {
		t.Fatalf("completed: %+v", res.File)
	}
	mustRead(t, c, up.Path, whole)
	loc, err := c.Locate(ctx, up.Path)
	if err != nil || fmt.Sprint(loc.Parts) != fmt.Sprint(want) {
		t.Fatalf("parts of the completed file: %v, want %v (%v)", loc.Parts, want, err)
	}
	// The upload is gone: no part commits to it, no second completion.
	if _, _, _, err := c.ListParts(ctx, up.Path, up.ID, 0, 10); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("list parts of a completed upload: %v", err)
	}
	st, err := c.Stage(ctx, up.Path, bytes.NewReader(parts[2]), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CommitPart(ctx, up.ID, 4); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("a part committed to a completed upload: %v", err)
	}
	// A completion sent again (its answer lost) gets the same answer.
	if again, err := c.CompleteUpload(ctx, up.Path, up.ID, numbers(3), client.CompleteOptions{}); err != nil || again.File.Content != res.File.Content {
		t.Fatalf("completed twice: %+v, %v", again.File, err)
	}

	// The post-upload job checks each part and computes the whole's SHA-256.
	jobsDone := waitJobs(t, c, 1)
	j := jobsDone[res.File.Content]
	if j.State != dfs.JobDone || j.Results["verify.sha256"] != fmt.Sprintf("%x", sha256.Sum256(whole)) || j.Results["verify.parts"] != "3" {
		t.Fatalf("job of the completed file: %+v", j)
	}

	// The same parts again: nothing sent, the same content.
	again, err := c.CreateUpload(ctx, "mp/copy.bin", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range uploadParts(t, c, again, parts) {
		if r.SentBytes != 0 {
			t.Fatalf("part %d of the same bytes sent %d bytes", i+1, r.SentBytes)
		}
	}
	res2, err := c.CompleteUpload(ctx, again.Path, again.ID, numbers(3), client.CompleteOptions{})

	if err != nil || !res2.Duplicate || res2.File.Content != res.File.Content {
		t.Fatalf("the same parts completed: %+v %v", res2, err)
	}

	// A small edit in the middle of part 1 sends a chunk or two of it.
	edited := bytes.Clone(parts[0])
	copy(edited[3<<20:], "an edit")
	ed, err := c.CreateUpload(ctx, "mp/edited.bin", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var sent int64
	for _, r := range uploadParts(t, c, ed, [][]byte{edited, parts[1], parts[2]}) {
		sent += r.SentBytes
	}
	if sent == 0 || sent > 4<<20 {
		t.Fatalf("an edit of 7 bytes in %d sent %d bytes", len(whole), sent)
	}
	if _, err := c.CompleteUpload(ctx, ed.Path, ed.ID, numbers(3), client.CompleteOptions{}); err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, ed.Path, bytes.Join([][]byte{edited, parts[1], parts[2]}, nil))

	// Parts may be left out, but not named out of order or twice, and a
	// part not uploaded fails the completion, which leaves the upload open.
	sk, err := c.CreateUpload(ctx, "mp/skip.bin", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	uploadParts(t, c, sk, parts)
	for _, bad := range [][]int{{2, 1}, {1, 1}, {0, 1}, {}} {
		if _, err := c.CompleteUpload(ctx, sk.Path, sk.ID, bad, client.CompleteOptions{}); !errors.Is(err, dfs.ErrInvalid) {
			t.Fatalf("complete with parts %v: %v", bad, err)
		}
	}
	if _, err := c.CompleteUpload(ctx, sk.Path, sk.ID, []int{1, 4}, client.CompleteOptions{}); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("complete with a part never uploaded: %v", err)
	}
	if _, err := c.CompleteUpload(ctx, "mp/other.bin", sk.ID, []int{1}, client.CompleteOptions{}); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("complete at another path: %v", err)
	}
	if _, err := c.Stat(ctx, sk.Path); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("a failed completion made the file: %v", err)
	}
	if _, err := c.CompleteUpload(ctx, sk.Path, sk.ID, []int{1, 3}, client.CompleteOptions{}); err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, sk.Path, append(bytes.Clone(parts[0]), parts[2]...))

	// Every part record is dropped once its upload completed; the parts'
	// own contents are collected, the chunks the files use are kept.
	if n := keysUnder(t, cl, "upload-parts/"); n != 0 {
		t.Fatalf("%d part records left after the uploads completed", n)
	}
	time.Sleep(600 * time.Millisecond)
	if err := cl.Coordinator.Server.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{up.Path, again.Path, ed.Path} {
		var buf bytes.Buffer
		if _, err := c.Get(ctx, p, &buf, client.GetOptions{}); err != nil {
			t.Fatalf("%s after a collection: %v", p, err)
		}
	}
	if _, err := c.LocateContent(ctx, sha256.Sum256(parts[1])); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("a part's own content after completion and collection: %v", err)
	}
}

// keysUnder counts the etcd keys under the schema's prefix plus rel.
func keysUnder(t *testing.T, cl *cluster.Cluster, rel string) int64 {
	t.Helper()
	m := cl.Coordinator.Meta
	resp, err := m.Client().Get(context.Background(), m.Schema().Prefix()+rel, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// Aborting drops the parts; so does the clean-up, for an upload left open
// past its expiry.
func TestUploadAbortAndExpiry(t *testing.T) {
	slow(t, "waits for uploads to expire")
	ctx := context.Background()
	cl, c := startCluster(t, func(cfg *cluster.Config) {
		cfg.Coordinator.UploadExpiry = 2 * time.Second
	})
	data := randomBytes(3<<20, 7)
	up, err := c.CreateUpload(ctx, "ab/x.bin", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	uploadParts(t, c, up, [][]byte{data})
	if err := c.AbortUpload(ctx, up.Path, up.ID); err != nil {
		t.Fatal(err)
	}
	if n := keysUnder(t, cl, "upload-parts/"); n != 0 {
		t.Fatalf("%d part records after the abort", n)
	}
	if err := c.AbortUpload(ctx, up.Path, up.ID); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("aborted twice: %v", err)
	}
	if _, err := c.CompleteUpload(ctx, up.Path, up.ID, []int{1}, client.CompleteOptions{}); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("completed after the abort: %v", err)
	}
	if _, err := c.LocateContent(ctx, sha256.Sum256(data)); err != nil {
		t.Fatalf("the part's content is collected only after the grace period: %v", err)
	}

	old, err := c.CreateUpload(ctx, "ab/old.bin", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	uploadParts(t, c, old, [][]byte{data[:1<<20]})
	eventually(t, 10*time.Second, func() error {
		if _, _, _, err := c.ListParts(ctx, old.Path, old.ID, 0, 10); !errors.Is(err, dfs.ErrNotFound) {
			return fmt.Errorf("upload past its expiry still listed (%v)", err)
		}
		if n := keysUnder(t, cl, "upload-parts/"); n != 0 {
			return fmt.Errorf("%d part records after expiry", n)
		}
		if n := keysUnder(t, cl, "uploads/"); n != 0 {
			return fmt.Errorf("%d upload heads after expiry", n)
		}
		return nil
	})
}
