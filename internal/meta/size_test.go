package meta_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/etcdserver"
	"github.com/dfs-store/dfs/internal/meta"
)

// etcdBytesPerFile fills a fresh etcd member with n small files written by
// write and returns the growth of its database in use, per file.
func etcdBytesPerFile(t *testing.T, n int, write func(s *meta.Store, i int)) float64 {
	t.Helper()
	dir := t.TempDir()
	srv, err := etcdserver.Start(context.Background(), etcdserver.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	inUse := func() int64 {
		// Compacted and defragmented: only live keys count.
		r, err := cli.Get(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Compact(ctx, r.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Defragment(ctx, srv.Endpoints()[0]); err != nil {
			t.Fatal(err)
		}
		st, err := cli.Status(ctx, srv.Endpoints()[0])
		if err != nil {
			t.Fatal(err)
		}
		return st.DbSizeInUse
	}
	s := meta.New(cli, meta.NewSchema(""))
	before := inUse()
	for i := range n {
		write(s, i)
	}
	return float64(inUse()-before) / float64(n)
}

// Bytes of etcd per small file (a 4 KiB single-chunk file, its job queued),
// as stored now and as the records were before they left out what their
// keys say.
func TestEtcdBytesPerSmallFile(t *testing.T) {
	if testing.Short() {
		t.Skip("measures a fresh etcd member with thousands of files")
	}
	n := 5000
	if v := os.Getenv("DFS_SIZE_FILES"); v != "" {
		fmt.Sscan(v, &n)
	}
	ctx := context.Background()
	small := func(i int) dfs.Content {
		c := dfs.Content{Hash: sha256.Sum256([]byte(fmt.Sprint("small", i))), Size: 4096}
		c.Chunks = []dfs.ChunkRef{{Hash: c.Hash, Size: 4096}}
		return c
	}
	path := func(i int) string { return fmt.Sprintf("photos/2026/12/img-%07d.jpg", i) }
	now := func(s *meta.Store, i int) {
		if _, _, err := s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: path(i), ContentType: "image/jpeg"}, Content: small(i), QueueJob: true}); err != nil {
			t.Fatal(err)
		}
	}
	// The records as they were: the path in the file record, the hash in
	// the content record, no count.
	before := func(s *meta.Store, i int) {
		c, p, t0 := small(i), path(i), time.Now().UnixNano()
		f, _ := proto.Marshal(&api.FileRecord{Path: p, ContentHash: c.Hash[:], Size: 4096, ContentType: "image/jpeg", CreatedUnixNano: t0, ModifiedUnixNano: t0})
		r, _ := proto.Marshal(&api.ContentRecord{Hash: c.Hash[:], Size: 4096, ChunkCount: 1, CreatedUnixNano: t0, Layout: "0123456789abcdef",
			Inline: &api.ChunkPage{Hashes: [][]byte{c.Hash[:]}, Sizes: []int64{4096}}})
		j, _ := proto.Marshal(&api.JobRecord{ContentHash: c.Hash[:], State: "queued", QueuedUnixNano: t0, UpdatedUnixNano: t0})
		sc := s.Schema()
		if _, err := s.Client().Txn(ctx).Then(clientv3.OpPut(sc.File(p), string(f)), clientv3.OpPut(sc.Content(c.Hash), string(r)),
			clientv3.OpPut(sc.Job(c.Hash), string(j))).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	old := etcdBytesPerFile(t, n, before)
	cur := etcdBytesPerFile(t, n, now)
	t.Logf("etcd bytes in use per small file (%d files): %.0f as before, %.0f now", n, old, cur)
	if cur >= old {
		t.Fatalf("a small file costs %.0f bytes of etcd, no fewer than the %.0f before", cur, old)
	}
}

// Bytes of etcd per chunk of a large file: its entry in the content's chunk
// list and its reference from the chunk back to the content.
func TestEtcdBytesPerChunkOfLargeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("measures a fresh etcd member with thousands of chunks")
	}
	const files, per = 40, 256
	ctx := context.Background()
	perFile := etcdBytesPerFile(t, files, func(s *meta.Store, i int) {
		c := dfs.Content{Hash: sha256.Sum256([]byte(fmt.Sprint("large", i))), Size: per << 21}
		for k := range per {
			c.Chunks = append(c.Chunks, dfs.ChunkRef{Hash: sha256.Sum256([]byte(fmt.Sprint("chunk", i, k))), Size: 2 << 20})
		}
		if _, _, err := s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: fmt.Sprintf("videos/v-%04d.mp4", i)}, Content: c, QueueJob: true}); err != nil {
			t.Fatal(err)
		}
	})
	perChunk := perFile / per
	t.Logf("etcd bytes in use per chunk of a %d-chunk file: %.0f (%.0f per file)", per, perChunk, perFile)
	// A chunk's hash is 32 bytes; its reference key alone spells two
	// hashes in hex.
	if perChunk < 32 {
		t.Fatalf("%.0f bytes per chunk is less than its hash: the measure is broken", perChunk)
	}
}
