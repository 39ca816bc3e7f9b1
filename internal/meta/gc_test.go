package meta_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
)

// prefixKeys returns every key under prefix with its value.
func prefixKeys(t testing.TB, prefix string) map[string]string {
	t.Helper()
	resp, err := etcd.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), prefix)] = string(kv.Value)
	}
	return out
}

// recount checks the counts, candidates and chunk references against the
// files and contents stored: every content's count is the number of paths
// pointing at it, a content is a candidate iff its count is 0, and a
// content of more than itself references each of its chunks.
func recount(t testing.TB, s *meta.Store) {
	t.Helper()
	sc := s.Schema()
	paths := map[string]int64{}
	for _, v := range prefixKeys(t, sc.FilesPrefix()) {
		var rec api.FileRecord
		if err := proto.Unmarshal([]byte(v), &rec); err != nil {
			t.Fatal(err)
		}
		h, _ := dfs.HashFromBytes(rec.ContentHash)
		paths[h.String()]++
	}
	// An earlier version holds a reference as a path does; a delete
	// marker none.
	for _, v := range prefixKeys(t, sc.VersionsPrefix()) {
		var rec api.FileRecord
		if err := proto.Unmarshal([]byte(v), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.DeleteMarker {
			continue
		}
		h, _ := dfs.HashFromBytes(rec.ContentHash)
		paths[h.String()]++
	}
	refs := prefixKeys(t, sc.RefsPrefix())
	cands := prefixKeys(t, sc.ContentCandidatesPrefix())
	crefs := prefixKeys(t, sc.CrefsPrefix())
	wantCrefs := map[string]bool{}
	for name := range prefixKeys(t, sc.ContentsPrefix()) {
		if strings.Contains(name, "/") {
			continue
		}
		h, _ := dfs.ParseHash(name)
		n := count(refs, name)
		if n != paths[name] {
			t.Errorf("content %s: count %d (%q), %d paths point at it", name[:12], n, refs[name], paths[name])
		}
		if _, cand := cands[name]; cand != (n == 0) {
			t.Errorf("content %s: count %d, candidate %v", name[:12], n, cand)
		}
		c, err := s.GetContent(context.Background(), h)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Chunks) == 1 && c.Chunks[0].Hash == c.Hash {
			continue
		}
		for _, ch := range c.Chunks {
			key := ch.Hash.String() + "/" + name
			wantCrefs[key] = true
			if _, ok := crefs[key]; !ok {
				t.Errorf("content %s: no reference to its chunk %s", name[:12], ch.Hash.Short())
			}
		}
	}
	for name := range paths {
		if n := count(refs, name); n != paths[name] {
			t.Errorf("content %s: count %d, %d paths point at it", name[:12], n, paths[name])
		}
	}
}

// count reads a count as stored: no key is 1.
func count(refs map[string]string, name string) int64 {
	v, ok := refs[name]
	if !ok {
		return 1
	}
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

// selfContent is a content of one chunk whose hash is the content's, as a
// small file's is.
func selfContent(name string) dfs.Content {
	c := content(chunks(1, 4096, 0), name)
	c.Chunks[0].Hash = c.Hash
	return c
}

// Counts agree with a recount after random commits, overwrites, deletes
// and duplicates from several writers at once.
func TestRefCountsAgreeWithRecount(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var contents []dfs.Content
	for i := range 6 {
		contents = append(contents, content(chunks(3, 100, uint64(100+i%3)), fmt.Sprint("multi", i)), selfContent(fmt.Sprint("self", i)))
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for range 60 {
				path := fmt.Sprint("p", r.IntN(10))
				if r.IntN(3) == 0 {
					if err := s.DeleteFile(ctx, path); err != nil && !errors.Is(err, dfs.ErrNotFound) {
						t.Error(err)
					}
					continue
				}
				c := contents[r.IntN(len(contents))]
				if _, _, err := s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: path}, Content: c, QueueJob: true}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	recount(t, s)
}

// A candidate referenced again is kept; with no path left and the grace
// period over, the content goes with its job and chunk references, and its
// chunks become candidates that no content references.
func TestCollectContents(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c := content(chunks(3, 100, 60), "gc-ref")
	shared := content(append(chunks(1, 100, 60), chunks(1, 100, 61)...), "shares-a-chunk")
	commit(t, s, "a", c)
	commit(t, s, "other", shared)
	if err := s.DeleteFile(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if st, err := s.CollectContents(ctx, meta.Fence{}, time.Hour); err != nil || st.Deleted != 0 || st.Young != 1 {
		t.Fatalf("collection within the grace period: %+v, %v", st, err)
	}
	// Referenced again: no longer a candidate.
	if _, dup := commit(t, s, "b", c); !dup {
		t.Fatal("second commit of the content is not a duplicate")
	}
	if st, err := s.CollectContents(ctx, meta.Fence{}, 0); err != nil || st.Deleted != 0 {
		t.Fatalf("collection of a content referenced again: %+v, %v", st, err)
	}
	if _, err := s.GetContent(ctx, c.Hash); err != nil {
		t.Fatalf("content after the collection: %v", err)
	}
	recount(t, s)
	if err := s.DeleteFile(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	st, err := s.CollectContents(ctx, meta.Fence{}, 0)
	if err != nil || st.Deleted != 1 || st.Chunks != 3 {
		t.Fatalf("collection of an unreferenced content: %+v, %v", st, err)
	}
	if _, err := s.GetContent(ctx, c.Hash); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("content after collection: %v, want not found", err)
	}
	for _, p := range []string{s.Schema().Job(c.Hash), s.Schema().Ref(c.Hash), s.Schema().ContentCandidate(c.Hash), s.Schema().DeadContent(c.Hash)} {
		if n := keyCount(t, p); n != 0 {
			t.Errorf("%s left after the content's collection", p)
		}
	}
	cands, err := s.ChunkCandidates(ctx, dfs.Hash{}, 100)
	if err != nil || len(cands) != 3 {
		t.Fatalf("chunk candidates %v, %v; want the content's 3", cands, err)
	}
	refd, err := s.Referenced(ctx, meta.Fence{}, cands)
	if err != nil {
		t.Fatal(err)
	}
	if len(refd) != 1 || !refd[shared.Chunks[0].Hash] {
		t.Fatalf("referenced chunks %v; want only the one the other file shares", refd)
	}
	recount(t, s)
	if err := s.DropChunkCandidates(ctx, meta.Fence{}, cands); err != nil {
		t.Fatal(err)
	}
	if n := keyCount(t, s.Schema().ChunkCandidatesPrefix()); n != 0 {
		t.Fatalf("%d chunk candidates left", n)
	}
}

// A content of one chunk is its chunk's reference.
func TestSelfChunkContentIsItsChunksReference(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c := selfContent("small")
	commit(t, s, "small", c)
	if n := keyCount(t, s.Schema().CrefsPrefix()); n != 0 {
		t.Fatalf("a one-chunk content wrote %d chunk references", n)
	}
	if refd, err := s.Referenced(ctx, meta.Fence{}, []dfs.Hash{c.Hash}); err != nil || !refd[c.Hash] {
		t.Fatalf("chunk of a stored one-chunk content: referenced %v, %v", refd, err)
	}
	s.DeleteFile(ctx, "small")
	if st, err := s.CollectContents(ctx, meta.Fence{}, 0); err != nil || st.Deleted != 1 || st.Chunks != 1 {
		t.Fatalf("collection: %+v, %v", st, err)
	}
	if refd, err := s.Referenced(ctx, meta.Fence{}, []dfs.Hash{c.Hash}); err != nil || refd[c.Hash] {
		t.Fatalf("chunk of a collected one-chunk content: referenced %v, %v", refd, err)
	}
}

// A collection reads the candidates and what they name, not the files or
// the contents stored.
func TestCollectionReadsOnlyCandidates(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	const files, deleted = 600, 5
	for i := range files {
		commit(t, s, fmt.Sprint("f", i), selfContent(fmt.Sprint("c", i)))
	}
	for i := range deleted {
		if err := s.DeleteFile(ctx, fmt.Sprint("f", i)); err != nil {
			t.Fatal(err)
		}
	}
	var c meta.ReadCounter
	st, err := s.Counting(&c).CollectContents(ctx, meta.Fence{}, 0)
	if err != nil || st.Deleted != deleted {
		t.Fatalf("collection: %+v, %v", st, err)
	}
	t.Logf("%d files, %d deleted: a collection counted %d keys and read %d", files, deleted, c.Counted.Load(), c.Returned.Load())
	if c.Counted.Load() > 10*deleted || c.Returned.Load() > 10*deleted {
		t.Fatalf("a collection of %d candidates among %d files counted %d keys, read %d", deleted, files, c.Counted.Load(), c.Returned.Load())
	}
}

// References a commit wrote before a transaction it never made count while
// the commit could still be on its way; once stale they are deleted with
// the commit's pages, and the chunks are unreferenced.
func TestStaleChunkReferences(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c := content(chunks(2, 100, 70), "never-committed")
	fresh := strconv.FormatInt(time.Now().UnixNano(), 10)
	old := strconv.FormatInt(time.Now().Add(-time.Hour).UnixNano(), 10)
	page := s.Schema().ContentPage(c.Hash, "0123456789abcdef", 0)
	for _, kv := range [][2]string{
		{s.Schema().ChunkRef(c.Chunks[0].Hash, c.Hash), fresh},
		{s.Schema().ChunkRef(c.Chunks[1].Hash, c.Hash), old},
		{page, "x"},
	} {
		if _, err := etcd.Put(ctx, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	refd, err := s.Referenced(ctx, meta.Fence{}, []dfs.Hash{c.Chunks[0].Hash, c.Chunks[1].Hash})
	if err != nil {
		t.Fatal(err)
	}
	if !refd[c.Chunks[0].Hash] || refd[c.Chunks[1].Hash] {
		t.Fatalf("referenced %v: want the fresh reference to count and the stale one not", refd)
	}
	if n := keyCount(t, s.Schema().ChunkRefs(c.Chunks[1].Hash)); n != 0 {
		t.Fatal("the stale reference is still there")
	}
	if n := keyCount(t, page); n != 0 {
		t.Fatal("the pages of the commit that never finished are still there")
	}
}

// A content collected and then committed afresh while its references are
// being removed keeps the references its commit wrote.
func TestCommitAfreshDuringReferenceRemoval(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c := content(chunks(300, 100, 80), "again") // more than one removal batch
	commit(t, s, "a", c)
	s.DeleteFile(ctx, "a")
	// The removal stopped half way: the marker is there, some references
	// are gone.
	if _, err := etcd.Put(ctx, s.Schema().DeadContent(c.Hash), "300"); err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.Delete(ctx, s.Schema().Content(c.Hash)); err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.Delete(ctx, s.Schema().ChunkRef(c.Chunks[0].Hash, c.Hash)); err != nil {
		t.Fatal(err)
	}
	if _, dup := commit(t, s, "b", c); dup {
		t.Fatal("the content was deleted: its commit is no duplicate")
	}
	if n := keyCount(t, s.Schema().DeadContent(c.Hash)); n != 0 {
		t.Fatal("the commit left the removal marker")
	}
	// A removal still under way stops at the marker's change.
	cands := []dfs.Hash{}
	for _, ch := range c.Chunks {
		cands = append(cands, ch.Hash)
	}
	refd, err := s.Referenced(ctx, meta.Fence{}, cands)
	if err != nil || len(refd) != len(cands) {
		t.Fatalf("%d of %d chunks referenced after the commit, %v", len(refd), len(cands), err)
	}
}

// A cluster written before reference counts (empty marks, no chunk
// references, no candidates, no layout version) gets them once, right,
// while commits go on.
func TestMigrateFromMarks(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sc := s.Schema()
	var cs []dfs.Content
	for i := range 8 {
		cs = append(cs, content(chunks(2, 100, uint64(200+i)), fmt.Sprint("m", i)), selfContent(fmt.Sprint("ms", i)))
	}
	for i := range 30 {
		commit(t, s, fmt.Sprint("p", i), cs[i%len(cs)])
	}
	for i := range 5 {
		s.DeleteFile(ctx, fmt.Sprint("p", i))
	}
	// Back to the old layout.
	for _, p := range []string{sc.CrefsPrefix(), sc.ContentCandidatesPrefix(), sc.Format(), sc.SkipPrefix()} {
		if _, err := etcd.Delete(ctx, p, clientv3.WithPrefix()); err != nil {
			t.Fatal(err)
		}
	}
	for name := range prefixKeys(t, sc.RefsPrefix()) {
		if _, err := etcd.Put(ctx, sc.RefsPrefix()+name, ""); err != nil {
			t.Fatal(err)
		}
	}
	if f, err := s.Format(ctx); err != nil || f != "" {
		t.Fatalf("layout version %q, %v", f, err)
	}
	// Commits and deletes run through the migration.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 40 {
			path := fmt.Sprint("p", i%35)
			if i%4 == 3 {
				s.DeleteFile(ctx, path)
				continue
			}
			if _, _, err := s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: path}, Content: cs[(i*7)%len(cs)]}); err != nil {
				t.Error(err)
			}
		}
	}()
	st, err := s.Migrate(ctx, meta.Fence{})
	<-done
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migration: %+v", st)
	if f, _ := s.Format(ctx); f != meta.FormatCurrent {
		t.Fatalf("layout version %q after migration", f)
	}
	recount(t, s)
	checkSampleKeys(t, s)
	// Once is enough.
	if st, err := s.Migrate(ctx, meta.Fence{}); err != nil || st.Contents != 0 {
		t.Fatalf("second migration: %+v, %v", st, err)
	}
}

// A content with more chunks than one transaction holds, and a page of
// them beyond the inline list, is collected whole: record, pages,
// references and the removal marker.
func TestCollectBigContent(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c := content(chunks(meta.PageSize+300, 10, 90), "big")
	commit(t, s, "big", c)
	if n := keyCount(t, s.Schema().CrefsPrefix()); n != int64(len(c.Chunks)) {
		t.Fatalf("%d chunk references for %d chunks", n, len(c.Chunks))
	}
	s.DeleteFile(ctx, "big")
	st, err := s.CollectContents(ctx, meta.Fence{}, 0)
	if err != nil || st.Deleted != 1 || st.Chunks != len(c.Chunks) {
		t.Fatalf("collection: %+v, %v", st, err)
	}
	for _, p := range []string{s.Schema().CrefsPrefix(), s.Schema().Content(c.Hash), s.Schema().DeadContent(c.Hash)} {
		if n := keyCount(t, p); n != 0 {
			t.Errorf("%d keys left under %s", n, p)
		}
	}
	if n := keyCount(t, s.Schema().ChunkCandidatesPrefix()); n != int64(len(c.Chunks)) {
		t.Fatalf("%d chunk candidates, want %d", n, len(c.Chunks))
	}
}

// checkSampleKeys fails unless exactly the sampled paths that exist have a
// sample key.
func checkSampleKeys(t *testing.T, s *meta.Store) {
	t.Helper()
	sc := s.Schema()
	want := map[string]string{}
	for path := range prefixKeys(t, sc.FilesPrefix()) {
		if meta.Sampled(path) {
			want[path] = ""
		}
	}
	if got := prefixKeys(t, sc.SkipPrefix()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sample keys %v, want %v", got, want)
	}
}

// Commits write the sample key of a sampled path and deletes remove it; a
// migration writes the ones a cluster lacks.
func TestSampleKeysFollowPaths(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var sampled []string
	for i := 0; len(sampled) < 3; i++ {
		if p := fmt.Sprintf("dir/%d", i); meta.Sampled(p) {
			sampled = append(sampled, p)
		}
	}
	c := selfContent("sample")
	for _, p := range append([]string{"dir/x", "dir/y"}, sampled...) {
		commit(t, s, p, c)
	}
	commit(t, s, sampled[0], selfContent("sample2")) // an overwrite
	checkSampleKeys(t, s)
	if err := s.DeleteFile(ctx, sampled[1]); err != nil {
		t.Fatal(err)
	}
	checkSampleKeys(t, s)
	if _, err := etcd.Delete(ctx, s.Schema().SkipPrefix(), clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.Put(ctx, s.Schema().Format(), meta.FormatRefCounts); err != nil {
		t.Fatal(err)
	}
	st, err := s.Migrate(ctx, meta.Fence{})
	if err != nil || st.Sampled != 2 {
		t.Fatalf("migration: %+v, %v; want 2 sample keys written", st, err)
	}
	checkSampleKeys(t, s)
	if f, _ := s.Format(ctx); f != meta.FormatCurrent {
		t.Fatalf("layout version %q", f)
	}
}
