package meta_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
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

// One embedded etcd serves the whole package; every test keeps its keys
// under a root of its own, fresh on every run (go test -count).
var (
	etcd  *clientv3.Client
	roots atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meta-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	srv, err := etcdserver.Start(context.Background(), etcdserver.Config{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Close()
	etcd, err = clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer etcd.Close()
	return m.Run()
}

func newStore(t *testing.T) *meta.Store {
	t.Helper()
	return meta.New(etcd, meta.NewSchema(fmt.Sprintf("/test/%d/%s", roots.Add(1), t.Name())))
}

// chunks returns n distinct chunk refs, each of the given size.
func chunks(n int, size int64, seed uint64) []dfs.ChunkRef {
	out := make([]dfs.ChunkRef, n)
	var b [16]byte
	for i := range out {
		binary.LittleEndian.PutUint64(b[:8], seed)
		binary.LittleEndian.PutUint64(b[8:], uint64(i))
		out[i] = dfs.ChunkRef{Hash: sha256.Sum256(b[:]), Size: size}
	}
	return out
}

// content makes a content record over the chunks; its hash only has to be
// unique, not the hash of real bytes.
func content(cs []dfs.ChunkRef, name string) dfs.Content {
	var size int64
	for _, c := range cs {
		size += c.Size
	}
	return dfs.Content{Hash: sha256.Sum256([]byte(name)), Size: size, Chunks: cs}
}

func commit(t *testing.T, s *meta.Store, path string, c dfs.Content) (dfs.FileInfo, bool) {
	t.Helper()
	fi, dup, err := s.CommitFile(context.Background(), meta.Commit{File: dfs.FileInfo{Path: path}, Content: c, QueueJob: true})
	if err != nil {
		t.Fatalf("commit %s: %v", path, err)
	}
	return fi, dup
}

func keyCount(t *testing.T, prefix string) int64 {
	t.Helper()
	resp, err := etcd.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

func TestCommitNewThenDuplicate(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c := content(chunks(3, 1000, 1), "c")

	fi, dup := commit(t, s, "one", c)
	if dup {
		t.Fatal("first commit of a content reported duplicate")
	}
	if fi.Path != "one" || fi.Content != c.Hash || fi.Size != 3000 || fi.Created.IsZero() || !fi.Created.Equal(fi.Modified) {
		t.Fatalf("first commit returned %+v", fi)
	}
	job, err := etcd.Get(ctx, s.Schema().Job(c.Hash))
	if err != nil || len(job.Kvs) != 1 {
		t.Fatalf("job of a new content: %v, %v; want one key", job, err)
	}
	var rec api.JobRecord
	if err := proto.Unmarshal(job.Kvs[0].Value, &rec); err != nil || rec.State != "queued" {
		t.Fatalf("job record %+v, %v; want queued", &rec, err)
	}

	_, dup = commit(t, s, "two", c)
	if !dup {
		t.Fatal("second commit of the same content not reported duplicate")
	}
	job2, err := etcd.Get(ctx, s.Schema().Job(c.Hash))
	if err != nil || len(job2.Kvs) != 1 || job2.Kvs[0].ModRevision != job.Kvs[0].ModRevision {
		t.Fatalf("a duplicate commit rewrote the job: %v, %v", job2, err)
	}
	if n := keyCount(t, s.Schema().JobsPrefix()); n != 1 {
		t.Fatalf("%d jobs, want 1", n)
	}
	for _, p := range []string{"one", "two"} {
		got, err := s.GetFile(ctx, p)
		if err != nil || got.Content != c.Hash || got.Size != c.Size {
			t.Fatalf("get %s: %+v, %v", p, got, err)
		}
	}
	got, err := s.GetContent(ctx, c.Hash)
	if err != nil || got.Size != c.Size || !slices.Equal(got.Chunks, c.Chunks) {
		t.Fatalf("get content: %+v, %v", got, err)
	}

	// Without QueueJob a new content gets no job.
	c2 := content(chunks(1, 10, 2), "c2")
	if _, _, err := s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: "three"}, Content: c2}); err != nil {
		t.Fatal(err)
	}
	if n := keyCount(t, s.Schema().Job(c2.Hash)); n != 0 {
		t.Fatalf("commit without QueueJob wrote %d job keys", n)
	}
}

func TestOverwriteKeepsCreated(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	first, _ := commit(t, s, "doc", content(chunks(1, 5, 1), "v1"))
	second, _ := commit(t, s, "doc", content(chunks(2, 5, 2), "v2"))
	if !second.Created.Equal(first.Created) || second.Modified.Before(first.Modified) {
		t.Fatalf("overwrite: created %v -> %v, modified %v -> %v", first.Created, second.Created, first.Modified, second.Modified)
	}
	got, err := s.GetFile(ctx, "doc")
	if err != nil || got.Content != sha256.Sum256([]byte("v2")) || !got.Created.Equal(first.Created) {
		t.Fatalf("get after overwrite: %+v, %v", got, err)
	}
}

func TestEmptyContent(t *testing.T) {
	s := newStore(t)
	c := dfs.Content{Hash: sha256.Sum256(nil)}
	commit(t, s, "empty", c)
	got, err := s.GetContent(context.Background(), c.Hash)
	if err != nil || got.Size != 0 || len(got.Chunks) != 0 {
		t.Fatalf("empty content: %+v, %v", got, err)
	}
}

func TestLongChunkListsArePaged(t *testing.T) {
	for _, n := range []int{meta.PageSize, meta.PageSize + 1, 10000, 3 * meta.PageSize} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := newStore(t)
			ctx := context.Background()
			c := content(chunks(n, 1<<20+int64(n), uint64(n)), fmt.Sprint("long", n))
			if _, dup := commit(t, s, "long", c); dup {
				t.Fatal("new content reported duplicate")
			}
			got, err := s.GetContent(ctx, c.Hash)
			if err != nil {
				t.Fatal(err)
			}
			if got.Size != c.Size || !slices.Equal(got.Chunks, c.Chunks) {
				t.Fatalf("%d chunks read back (size %d), want %d (size %d), in order", len(got.Chunks), got.Size, n, c.Size)
			}
			// The record and one key per page, whatever n: a commit never
			// writes a key per chunk, so its transaction stays a handful
			// of operations.
			pages := 0
			if n > meta.PageSize {
				pages = (n + meta.PageSize - 1) / meta.PageSize
			}
			if k := keyCount(t, s.Schema().Content(c.Hash)); k != int64(pages+1) {
				t.Fatalf("%d keys under the content, want %d (record + %d pages)", k, pages+1, pages)
			}
			// A duplicate writes no pages.
			if _, dup := commit(t, s, "again", c); !dup {
				t.Fatal("second commit not duplicate")
			}
			if k := keyCount(t, s.Schema().Content(c.Hash)); k != int64(pages+1) {
				t.Fatalf("after a duplicate commit: %d keys under the content, want %d", k, pages+1)
			}
		})
	}
}

func TestConcurrentCommitsOfOneNewContent(t *testing.T) {
	s := newStore(t)
	c := content(chunks(10000, 100, 7), "shared")
	const writers = 8
	dups := make([]bool, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, dups[i], errs[i] = s.CommitFile(context.Background(), meta.Commit{File: dfs.FileInfo{Path: fmt.Sprint("p", i)}, Content: c, QueueJob: true})
		}()
	}
	wg.Wait()
	fresh := 0
	for i := range writers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !dups[i] {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d commits created the content, want exactly 1", fresh)
	}
	if n := keyCount(t, s.Schema().JobsPrefix()); n != 1 {
		t.Fatalf("%d jobs, want 1", n)
	}
	got, err := s.GetContent(context.Background(), c.Hash)
	if err != nil || !slices.Equal(got.Chunks, c.Chunks) {
		t.Fatalf("content after concurrent commits: %d chunks, %v", len(got.Chunks), err)
	}
}

func TestMissingThingsAreNotFound(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.GetFile(ctx, "nope"); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("get missing file: %v", err)
	}
	if _, err := s.GetContent(ctx, sha256.Sum256([]byte("nope"))); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("get missing content: %v", err)
	}
	if err := s.DeleteFile(ctx, "nope"); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("delete missing file: %v", err)
	}
	commit(t, s, "here", content(chunks(1, 1, 1), "here"))
	if err := s.DeleteFile(ctx, "here"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetFile(ctx, "here"); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("get deleted file: %v", err)
	}
	if err := s.DeleteFile(ctx, "here"); !errors.Is(err, dfs.ErrNotFound) {
		t.Errorf("delete deleted file: %v", err)
	}
}

// listStore commits every path, all pointing at one content.
func listStore(t *testing.T, paths ...string) *meta.Store {
	t.Helper()
	s := newStore(t)
	c := content(chunks(1, 1, 1), "list")
	for _, p := range paths {
		commit(t, s, p, c)
	}
	return s
}

type entries struct {
	files, prefixes []string
	truncated       bool
	next            string
}

func list(t *testing.T, s *meta.Store, prefix, delim, after string, limit int) entries {
	t.Helper()
	l, err := s.List(context.Background(), prefix, delim, after, limit)
	if err != nil {
		t.Fatalf("list %q %q %q %d: %v", prefix, delim, after, limit, err)
	}
	var e entries
	for _, f := range l.Files {
		e.files = append(e.files, f.Path)
	}
	e.prefixes, e.truncated, e.next = l.Prefixes, l.Truncated, l.Next
	return e
}

// walk lists everything page by page, checking each page's size.
func walk(t *testing.T, s *meta.Store, prefix, delim string, limit int) (all []string) {
	t.Helper()
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("listing does not end")
		}
		e := list(t, s, prefix, delim, after, limit)
		n := len(e.files) + len(e.prefixes)
		if n > limit || (e.truncated && n != limit) || (e.truncated && e.next == "") {
			t.Fatalf("page after %q: %d entries, truncated %v, next %q (limit %d)", after, n, e.truncated, e.next, limit)
		}
		// Files and prefixes of one page, merged in order.
		page := append(append([]string{}, e.files...), e.prefixes...)
		slices.Sort(page)
		all = append(all, page...)
		if !e.truncated {
			return all
		}
		after = e.next
	}
}

func TestListEdgeCases(t *testing.T) {
	paths := []string{"a/b", "a/b/c", "a/b/d/e", "a/bc", "a/é", "b", "x-1-a", "x-1-b", "x-2", "x::y::z", "x::w"}
	s := listStore(t, paths...)
	sorted := slices.Sorted(slices.Values(paths))

	cases := []struct {
		name, prefix, delim, after string
		files, prefixes            []string
	}{
		{name: "empty prefix, no delimiter", files: sorted},
		{name: "empty prefix, slash", delim: "/", files: []string{"b", "x-1-a", "x-1-b", "x-2", "x::w", "x::y::z"}, prefixes: []string{"a/"}},
		{name: "prefix that is a file", prefix: "a/b", delim: "/", files: []string{"a/b", "a/bc"}, prefixes: []string{"a/b/"}},
		{name: "prefix that is a file, no delimiter", prefix: "a/b", files: []string{"a/b", "a/b/c", "a/b/d/e", "a/bc"}},
		{name: "dash delimiter", prefix: "x-", delim: "-", files: []string{"x-2"}, prefixes: []string{"x-1-"}},
		{name: "two-byte delimiter", delim: "::", files: []string{"a/b", "a/b/c", "a/b/d/e", "a/bc", "a/é", "b", "x-1-a", "x-1-b", "x-2"}, prefixes: []string{"x::"}},
		{name: "after a common prefix", delim: "/", after: "a/", files: []string{"b", "x-1-a", "x-1-b", "x-2", "x::w", "x::y::z"}},
		{name: "after a nested common prefix", prefix: "a/", delim: "/", after: "a/b/", files: []string{"a/bc", "a/é"}},
		{name: "after a file", prefix: "a/", after: "a/b/c", files: []string{"a/b/d/e", "a/bc", "a/é"}},
		{name: "after something before the prefix", prefix: "x", after: "a", files: []string{"x-1-a", "x-1-b", "x-2", "x::w", "x::y::z"}},
		{name: "after everything", after: "zzz"},
		{name: "prefix matching nothing", prefix: "nothing/", delim: "/"},
		{name: "non-ASCII", prefix: "a/\u00e9"[:3], files: []string{"a/é"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := list(t, s, tc.prefix, tc.delim, tc.after, 0)
			if !slices.Equal(e.files, tc.files) || !slices.Equal(e.prefixes, tc.prefixes) {
				t.Fatalf("files %q prefixes %q; want files %q prefixes %q", e.files, e.prefixes, tc.files, tc.prefixes)
			}
			if e.truncated || e.next != "" {
				t.Fatalf("complete listing: truncated %v, next %q", e.truncated, e.next)
			}
		})
	}

	t.Run("limit 1 walks everything", func(t *testing.T) {
		for _, delim := range []string{"", "/", "-", "::"} {
			full := list(t, s, "", delim, "", 0)
			want := append(append([]string{}, full.files...), full.prefixes...)
			slices.Sort(want)
			for _, limit := range []int{1, 2, 3, len(want) - 1, len(want)} {
				if got := walk(t, s, "", delim, limit); !slices.Equal(got, want) {
					t.Fatalf("delimiter %q, limit %d: %q, want %q", delim, limit, got, want)
				}
			}
		}
	})
	t.Run("limit equal to the entries is not truncated", func(t *testing.T) {
		e := list(t, s, "a/", "", "", 5)
		if len(e.files) != 5 || e.truncated {
			t.Fatalf("%q truncated %v", e.files, e.truncated)
		}
		e = list(t, s, "a/", "", "", 4)
		if len(e.files) != 4 || !e.truncated || e.next != "a/bc" {
			t.Fatalf("%q truncated %v next %q", e.files, e.truncated, e.next)
		}
	})
}

// A common prefix holding many more paths than the page limit is one entry,
// and the page after it starts after all of them.
func TestListBigCommonPrefix(t *testing.T) {
	var paths []string
	for i := range 120 {
		paths = append(paths, fmt.Sprintf("d/%03d", i))
	}
	paths = append(paths, "c", "e")
	s := listStore(t, paths...)
	if got, want := walk(t, s, "", "/", 1), []string{"c", "d/", "e"}; !slices.Equal(got, want) {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := walk(t, s, "d/", "/", 50); len(got) != 120 {
		t.Fatalf("%d paths under d/, want 120", len(got))
	}
}

func TestNodeRegistry(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for _, id := range []string{"dn-b", "dn-a", "dn-c"} {
		if err := s.PutNode(ctx, meta.Fence{}, &api.NodeRecord{Id: id, Addr: id + ":1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutNode(ctx, meta.Fence{}, &api.NodeRecord{Id: "dn-a", Addr: "moved:2"}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Id+"@"+r.Addr)
	}
	if want := []string{"dn-a@moved:2", "dn-b@dn-b:1", "dn-c@dn-c:1"}; !slices.Equal(got, want) {
		t.Fatalf("nodes %q, want %q", got, want)
	}
}

// Two schemas on one etcd do not see each other's keys.
func TestRootsAreSeparate(t *testing.T) {
	a := meta.New(etcd, meta.NewSchema(fmt.Sprintf("/test/%d/roots/a", roots.Add(1))))
	b := meta.New(etcd, meta.NewSchema(fmt.Sprintf("/test/%d/roots/a-b", roots.Load())))
	commit(t, a, "f", content(chunks(1, 1, 1), "f"))
	if _, err := b.GetFile(context.Background(), "f"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("root a-b sees root a's file: %v", err)
	}
	l, err := b.List(context.Background(), "", "", "", 0)
	if err != nil || len(l.Files) != 0 {
		t.Fatalf("root a-b lists %d files, %v", len(l.Files), err)
	}
}
