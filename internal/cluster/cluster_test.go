package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/chunkstore/disk"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/datanode"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/rpc"
)

func quiet() *slog.Logger {
	if os.Getenv("DFS_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCluster starts an in-process cluster with an embedded etcd and three
// datanodes, stopped when the test ends.
func startCluster(t *testing.T, mod func(*cluster.Config)) (*cluster.Cluster, *client.Client) {
	t.Helper()
	cfg := cluster.Config{Dir: t.TempDir(), GRPC: "127.0.0.1:0", Logger: quiet()}
	if mod != nil {
		mod(&cfg)
	}
	cl, err := cluster.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c, err := cl.Client(client.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return cl, c
}

// slow skips a slow cluster scenario under -short, saying why it is slow:
// go test -short is a quick check that keeps the fast tests of each kind,
// and the full run (without -short) has every scenario.
func slow(t *testing.T, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("slow cluster scenario (%s): runs without -short", why)
	}
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// diskBytes is the total size of chunk files under the cluster's datanodes.
func diskBytes(t *testing.T, cl *cluster.Cluster) int64 {
	t.Helper()
	var total int64
	for _, n := range cl.Nodes {
		_, b := n.Store().Usage()
		total += b
	}
	return total
}

func TestPutGetRoundTrip(t *testing.T) {
	cl, c := startCluster(t, nil)
	ctx := context.Background()
	data := randomBytes(20<<20+12345, 1)
	res, err := c.Put(ctx, "dir/a.bin", bytes.NewReader(data), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.File.Content != sha256.Sum256(data) || res.File.Size != int64(len(data)) || res.Duplicate {
		t.Fatalf("put result %+v", res)
	}
	var out bytes.Buffer
	if _, err := c.Get(ctx, "dir/a.bin", &out, client.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("bytes read back differ")
	}
	// Every chunk is on three distinct nodes.
	loc, err := c.Locate(ctx, "dir/a.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range loc.Chunks {
		if len(ch.Replicas) != 3 {
			t.Fatalf("chunk %s has %d replicas, want 3", ch.Hash.Short(), len(ch.Replicas))
		}
	}
	if got, want := diskBytes(t, cl), 3*int64(len(data)); got != want {
		t.Fatalf("%d chunk bytes on disk, want %d (3 copies)", got, want)
	}
}

// --- helpers -------------------------------------------------------------

func put(t *testing.T, c *client.Client, path string, data []byte) client.PutResult {
	t.Helper()
	res, err := c.Put(context.Background(), path, bytes.NewReader(data), client.PutOptions{})
	if err != nil {
		t.Fatalf("put %s (%d bytes): %v", path, len(data), err)
	}
	if res.File.Content != sha256.Sum256(data) || res.File.Size != int64(len(data)) {
		t.Fatalf("put %s: result %+v does not describe the %d bytes sent", path, res.File, len(data))
	}
	return res
}

func get(t *testing.T, c *client.Client, path string) []byte {
	t.Helper()
	var out bytes.Buffer
	if _, err := c.Get(context.Background(), path, &out, client.GetOptions{}); err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	return out.Bytes()
}

// mustRead checks that path reads back exactly as want.
func mustRead(t *testing.T, c *client.Client, path string, want []byte) {
	t.Helper()
	got := get(t, c, path)
	if !bytes.Equal(got, want) {
		t.Fatalf("get %s: %d bytes read back differ from the %d put (first difference at %d)", path, len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}

// replicaCounts checks that every chunk of path has want live replicas on
// distinct nodes.
func replicaCounts(c *client.Client, path string, want int) error {
	loc, err := c.Locate(context.Background(), path)
	if err != nil {
		return err
	}
	for _, ch := range loc.Chunks {
		seen := map[dfs.NodeID]bool{}
		for _, r := range ch.Replicas {
			seen[r.Node] = true
		}
		if len(ch.Replicas) != want || len(seen) != want {
			return fmt.Errorf("%s: chunk %s at %d has replicas %v, want %d distinct", path, ch.Hash.Short(), ch.Offset, ch.Replicas, want)
		}
	}
	return nil
}

func nodeDir(n *datanode.Node) string {
	return n.Store().(interface{ Dir() string }).Dir()
}

// chunkOnDisk says where a datanode keeps a chunk's bytes: a file of its
// own, or a volume at an offset. It fails if the node holds no copy.
func chunkOnDisk(n *datanode.Node, h dfs.Hash) (string, int64, error) {
	return disk.Locate(nodeDir(n), h)
}

// statChunk is nil if the node holds a copy of h on its disk.
func statChunk(n *datanode.Node, h dfs.Hash) error {
	_, _, err := chunkOnDisk(n, h)
	return err
}

// damageChunk overwrites a node's copy of h with junk at offset at, as rot
// would.
func damageChunk(t *testing.T, n *datanode.Node, h dfs.Hash, at int64, junk []byte) {
	t.Helper()
	p, off, err := chunkOnDisk(n, h)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(junk, off+at); err != nil {
		t.Fatal(err)
	}
}

// readChunkOnDisk reads a node's copy of h, of size bytes, from its disk.
func readChunkOnDisk(n *datanode.Node, h dfs.Hash, size int64) ([]byte, error) {
	p, off, err := chunkOnDisk(n, h)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, size)
	_, err = f.ReadAt(b, off)
	return b, err
}

func nodeByID(cl *cluster.Cluster, id dfs.NodeID) *datanode.Node {
	for _, n := range cl.Nodes {
		if n.ID() == id {
			return n
		}
	}
	return nil
}

// allPaths lists every path in the cluster.
func allPaths(t *testing.T, c *client.Client) []string {
	t.Helper()
	var out []string
	err := c.ListAll(context.Background(), client.ListOptions{}, func(l client.Listing) error {
		for _, f := range l.Files {
			out = append(out, f.Path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return out
}

// --- round trips -----------------------------------------------------------

func TestRoundTripSizes(t *testing.T) {
	_, c := startCluster(t, nil)
	for i, size := range []int{0, 1, 1<<20 - 1, 2<<20 + 1} {
		path := fmt.Sprintf("sizes/%d", size)
		data := randomBytes(size, int64(100+i))
		put(t, c, path, data)
		mustRead(t, c, path, data)
		fi, err := c.Stat(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size != int64(size) || fi.Content != sha256.Sum256(data) {
			t.Fatalf("stat %s: %+v", path, fi)
		}
	}
}

func TestRangeReads(t *testing.T) {
	slow(t, "many range reads of a multi-chunk file")
	_, c := startCluster(t, nil)
	ctx := context.Background()
	data := randomBytes(9<<20+777, 2)
	put(t, c, "big", data)
	loc, err := c.Locate(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if len(loc.Chunks) < 3 {
		t.Fatalf("%d chunks; the test wants several chunk boundaries", len(loc.Chunks))
	}
	size := int64(len(data))
	type rng struct{ off, n int64 }
	ranges := []rng{{0, 1}, {size - 1, 1}, {0, 0}, {size / 2, 0}, {size, 0}, {size - 10, 100}, {12345, size}}
	for _, ch := range loc.Chunks[1:] {
		b := ch.Offset
		ranges = append(ranges,
			rng{b - 1, 2},          // one byte each side of a boundary
			rng{b - 4096, 1 << 20}, // across it
			rng{b, ch.Size},        // exactly one chunk
			rng{b - 1, ch.Size + 2},
		)
	}
	// A range across every chunk but the first and last bytes.
	ranges = append(ranges, rng{1, size - 2})
	for _, r := range ranges {
		var out bytes.Buffer
		if _, err := c.Get(ctx, "big", &out, client.GetOptions{Offset: r.off, Length: r.n}); err != nil {
			t.Fatalf("range %d+%d: %v", r.off, r.n, err)
		}
		end := size
		if r.n > 0 && r.off+r.n < end {
			end = r.off + r.n
		}
		if want := data[r.off:end]; !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("range %d+%d: got %d bytes, want %d (first difference at %d)", r.off, r.n, out.Len(), len(want), firstDiff(out.Bytes(), want))
		}
	}
	for _, off := range []int64{-1, size + 1} {
		if _, err := c.Get(ctx, "big", io.Discard, client.GetOptions{Offset: off}); err == nil {
			t.Fatalf("range at offset %d of a %d-byte file: no error", off, size)
		}
	}
}

// --- dedup -------------------------------------------------------------------

func TestSameContentTwiceStoresNothingNew(t *testing.T) {
	cl, c := startCluster(t, nil)
	data := randomBytes(5<<20+3, 3)
	first := put(t, c, "a/one", data)
	if first.Duplicate {
		t.Fatal("first upload of new content reported as duplicate")
	}
	before := diskBytes(t, cl)
	second := put(t, c, "b/two", data)
	if !second.Duplicate || second.NewChunks != 0 || second.SentBytes != 0 {
		t.Fatalf("second upload of the same bytes: %+v; want Duplicate and nothing sent", second)
	}
	if after := diskBytes(t, cl); after != before {
		t.Fatalf("chunk bytes on disk went from %d to %d for a duplicate", before, after)
	}
	mustRead(t, c, "a/one", data)
	mustRead(t, c, "b/two", data)
}

func TestInsertionInTheMiddleStoresLittle(t *testing.T) {
	slow(t, "tens of MiB through the chunker twice")
	cl, c := startCluster(t, nil)
	data := randomBytes(64<<20, 4)
	put(t, c, "v1", data)
	before := diskBytes(t, cl)

	mid := len(data) / 2
	edited := append(append(append([]byte{}, data[:mid]...), randomBytes(1<<10, 5)...), data[mid:]...)
	res := put(t, c, "v2", edited)
	added := (diskBytes(t, cl) - before) / 3
	t.Logf("1 KiB inserted into 64 MiB: %d of %d chunks new, %d bytes sent, %d new bytes per copy", res.NewChunks, res.Chunks, res.SentBytes, added)
	if limit := int64(len(edited)) / 10; added >= limit || res.SentBytes >= limit {
		t.Fatalf("%d new chunk bytes per copy (%d sent); want under 10%% of %d", added, res.SentBytes, len(edited))
	}
	mustRead(t, c, "v2", edited)
	mustRead(t, c, "v1", data)
}

// A file made of one block repeated stores each distinct chunk once.
//
// FastCDC skips its minimum chunk size after every cut, so where it cuts
// depends on where it last cut: over a repeated block the cut points settle
// into a cycle whose length is a whole number of blocks, though not always
// one (with this block, four: a cycle of 7 chunks over 16 MiB). What is
// stored is that cycle, however many times the block repeats.
func TestRepeatedBlockStoredOnce(t *testing.T) {
	slow(t, "a large repeated file")
	cl, c := startCluster(t, nil)
	const block = 4 << 20
	b := randomBytes(block, 6)
	data := bytes.Repeat(b, 8)
	res := put(t, c, "repeated", data)
	perCopy := diskBytes(t, cl) / 3

	loc, err := c.Locate(context.Background(), "repeated")
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[dfs.Hash]int64{}
	var distinctBytes int64
	for _, ch := range loc.Chunks {
		if _, ok := distinct[ch.Hash]; !ok {
			distinctBytes += ch.Size
		}
		distinct[ch.Hash] = ch.Size
	}
	t.Logf("8 x 4 MiB: %d chunks, %d distinct (%d bytes), %d sent, %d bytes stored per copy", res.Chunks, len(distinct), distinctBytes, res.NewChunks, perCopy)
	if res.NewChunks != len(distinct) || res.SentBytes != distinctBytes || perCopy != distinctBytes {
		t.Fatalf("sent %d chunks (%d bytes), %d bytes stored per copy; want each of the %d distinct chunks (%d bytes) once",
			res.NewChunks, res.SentBytes, perCopy, len(distinct), distinctBytes)
	}
	if perCopy > int64(len(data))/2 {
		t.Fatalf("%d bytes stored per copy for a %d-byte file of one repeated block", perCopy, len(data))
	}
	// More repetitions of the same block add at most the chunk that the
	// end of the file cuts short.
	longer := bytes.Repeat(b, 12)
	more := put(t, c, "repeated-longer", longer)
	if added := diskBytes(t, cl)/3 - perCopy; added > 8<<20 {
		t.Fatalf("4 more repetitions stored %d new bytes per copy (%d chunks)", added, more.NewChunks)
	}
	mustRead(t, c, "repeated", data)
	mustRead(t, c, "repeated-longer", longer)
}

// --- namespace -------------------------------------------------------------

func TestOverwriteKeepsCreated(t *testing.T) {
	_, c := startCluster(t, nil)
	ctx := context.Background()
	v1, v2 := randomBytes(1000, 7), randomBytes(3000, 8)
	put(t, c, "doc", v1)
	fi1, err := c.Stat(ctx, "doc")
	if err != nil {
		t.Fatal(err)
	}
	put(t, c, "doc", v2)
	fi2, err := c.Stat(ctx, "doc")
	if err != nil {
		t.Fatal(err)
	}
	if !fi2.Created.Equal(fi1.Created) {
		t.Fatalf("overwrite changed Created from %v to %v", fi1.Created, fi2.Created)
	}
	if fi2.Modified.Before(fi1.Modified) || fi2.Content == fi1.Content || fi2.Size != 3000 {
		t.Fatalf("after overwrite: %+v (before: %+v)", fi2, fi1)
	}
	mustRead(t, c, "doc", v2)
}

func TestDeleteThenGetIsNotFound(t *testing.T) {
	_, c := startCluster(t, nil)
	ctx := context.Background()
	put(t, c, "gone", []byte("soon gone"))
	if err := c.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "gone", io.Discard, client.GetOptions{}); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("get after delete: %v; want ErrNotFound", err)
	}
	if _, err := c.Stat(ctx, "gone"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("stat after delete: %v; want ErrNotFound", err)
	}
	if err := c.Delete(ctx, "gone"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("second delete: %v; want ErrNotFound", err)
	}
	if _, err := c.Stat(ctx, "never/was"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("stat of a missing path: %v; want ErrNotFound", err)
	} else if !strings.Contains(err.Error(), "never/was") {
		t.Fatalf("stat of a missing path: %q does not name the path", err)
	}
}

// putMany stores small files at every path, a few at a time.
func putMany(t *testing.T, c *client.Client, paths []string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(paths))
	sem := make(chan struct{}, 8)
	for _, p := range paths {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := c.Put(context.Background(), p, strings.NewReader("content of "+p), client.PutOptions{})
			if err != nil {
				errs <- fmt.Errorf("put %s: %w", p, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestListPrefixAndDelimiter(t *testing.T) {
	_, c := startCluster(t, nil)
	ctx := context.Background()
	putMany(t, c, []string{"docs/a.txt", "docs/b.txt", "docs/img/x.png", "docs/img/y.png", "docs/z/deep/q", "docs", "docsx", "other/thing"})

	l, err := c.List(ctx, client.ListOptions{Prefix: "docs/", Delimiter: "/"})
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range l.Files {
		files = append(files, f.Path)
	}
	if want := []string{"docs/a.txt", "docs/b.txt"}; !slices.Equal(files, want) {
		t.Fatalf("files under docs/: %q, want %q", files, want)
	}
	if want := []string{"docs/img/", "docs/z/"}; !slices.Equal(l.Prefixes, want) {
		t.Fatalf("common prefixes under docs/: %q, want %q", l.Prefixes, want)
	}
	if l.Truncated {
		t.Fatal("short listing reported truncated")
	}

	l, err = c.List(ctx, client.ListOptions{Delimiter: "/"})
	if err != nil {
		t.Fatal(err)
	}
	files = files[:0]
	for _, f := range l.Files {
		files = append(files, f.Path)
	}
	if want := []string{"docs", "docsx"}; !slices.Equal(files, want) {
		t.Fatalf("top-level files: %q, want %q", files, want)
	}
	if want := []string{"docs/", "other/"}; !slices.Equal(l.Prefixes, want) {
		t.Fatalf("top-level prefixes: %q, want %q", l.Prefixes, want)
	}
	// A file's size and hash come with the listing.
	if l.Files[0].Size != int64(len("content of docs")) {
		t.Fatalf("listed %+v", l.Files[0])
	}
}

func TestListPaginationReturnsEveryPathOnce(t *testing.T) {
	slow(t, "hundreds of files listed page by page")
	_, c := startCluster(t, nil)
	ctx := context.Background()
	var paths []string
	for i := range 100 {
		paths = append(paths, fmt.Sprintf("a/%03d", i))
	}
	for i := range 100 {
		paths = append(paths, fmt.Sprintf("b/%02d/f%d", i/10, i%10))
	}
	for i := range 50 {
		paths = append(paths, fmt.Sprintf("c%03d", i))
	}
	putMany(t, c, paths)
	slices.Sort(paths)

	walk := func(o client.ListOptions) (files, prefixes []string, pages int) {
		t.Helper()
		err := c.ListAll(ctx, o, func(l client.Listing) error {
			pages++
			if n := len(l.Files) + len(l.Prefixes); n > o.Limit || (l.Truncated && n != o.Limit) {
				return fmt.Errorf("page %d has %d entries (truncated %v), limit %d", pages, n, l.Truncated, o.Limit)
			}
			for _, f := range l.Files {
				files = append(files, f.Path)
			}
			prefixes = append(prefixes, l.Prefixes...)
			return nil
		})
		if err != nil {
			t.Fatalf("list %+v: %v", o, err)
		}
		return files, prefixes, pages
	}

	// No delimiter: pages of 100 break inside a/ and b/.
	files, prefixes, pages := walk(client.ListOptions{Limit: 100})
	if !slices.Equal(files, paths) || len(prefixes) != 0 || pages != 3 {
		t.Fatalf("limit 100: %d files in %d pages (want %d in 3), prefixes %q", len(files), pages, len(paths), prefixes)
	}
	// With a delimiter every prefix is one entry, wherever a page breaks.
	for _, limit := range []int{1, 2, 3, 7, 100} {
		files, prefixes, _ := walk(client.ListOptions{Delimiter: "/", Limit: limit})
		if want := paths[200:]; !slices.Equal(files, want) {
			t.Fatalf("delimiter, limit %d: files %q, want %q", limit, files, want)
		}
		if want := []string{"a/", "b/"}; !slices.Equal(prefixes, want) {
			t.Fatalf("delimiter, limit %d: prefixes %q, want %q", limit, prefixes, want)
		}
	}
	// Inside one prefix, with sub-prefixes.
	for _, limit := range []int{1, 4, 9} {
		files, prefixes, _ := walk(client.ListOptions{Prefix: "b/", Delimiter: "/", Limit: limit})
		var want []string
		for i := range 10 {
			want = append(want, fmt.Sprintf("b/%02d/", i))
		}
		if len(files) != 0 || !slices.Equal(prefixes, want) {
			t.Fatalf("b/, limit %d: files %q prefixes %q", limit, files, prefixes)
		}
		files, _, _ = walk(client.ListOptions{Prefix: "b/01/", Limit: limit})
		if !slices.Equal(files, paths[110:120]) {
			t.Fatalf("b/01/ without delimiter, limit %d: %q", limit, files)
		}
	}
}

// --- bad input -------------------------------------------------------------

func TestBadPathsAreRejected(t *testing.T) {
	cl, c := startCluster(t, nil)
	ctx := context.Background()
	conn, err := rpc.Dial(cl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := api.NewCoordinatorClient(conn)
	data := []byte("payload")
	h := sha256.Sum256(data)

	bad := []string{"", "/", "../x", "a/../b", "a//b", "./a", "a/.", "dir/", "with\x00nul", "\xff\xfe", strings.Repeat("x", dfs.MaxPathLen+1)}
	for _, p := range bad {
		name := fmt.Sprintf("%.40q", p)
		if _, err := c.Put(ctx, p, bytes.NewReader(data), client.PutOptions{}); !errors.Is(err, dfs.ErrBadPath) {
			t.Errorf("put %s: %v; want ErrBadPath", name, err)
		}
		if _, err := c.Stat(ctx, p); !errors.Is(err, dfs.ErrBadPath) {
			t.Errorf("stat %s: %v; want ErrBadPath", name, err)
		}
		if _, err := c.Get(ctx, p, io.Discard, client.GetOptions{}); !errors.Is(err, dfs.ErrBadPath) {
			t.Errorf("get %s: %v; want ErrBadPath", name, err)
		}
		if err := c.Delete(ctx, p); !errors.Is(err, dfs.ErrBadPath) {
			t.Errorf("delete %s: %v; want ErrBadPath", name, err)
		}
		// The coordinator checks too: a client that skips the check gets
		// the same answer. (Invalid UTF-8 cannot be put in a request.)
		if utf8.ValidString(p) {
			_, err := raw.Commit(ctx, &api.CommitRequest{Path: p, ContentHash: h[:], Size: 0})
			if err := rpc.FromStatus(err); !errors.Is(err, dfs.ErrBadPath) {
				t.Errorf("raw commit %s: %v; want ErrBadPath", name, err)
			}
		}
	}
	if _, err := c.List(ctx, client.ListOptions{Prefix: "\xff"}); !errors.Is(err, dfs.ErrBadPath) {
		t.Errorf("list with a prefix that is not UTF-8: %v; want ErrBadPath", err)
	}
	if got := allPaths(t, c); len(got) != 0 {
		t.Fatalf("bad paths committed: %q", got)
	}
	// A leading slash is dropped, not rejected, and the longest path fits.
	long := strings.Repeat("y", dfs.MaxPathLen)
	put(t, c, "/rooted", data)
	put(t, c, "/"+long, data)
	if got, want := allPaths(t, c), []string{"rooted", long}; !slices.Equal(got, want) {
		t.Fatalf("paths %.60q, want %.60q", got, want)
	}
}

var errSourceBroke = errors.New("source broke off")

// newFailingReader yields the first n bytes of data, then errSourceBroke.
func newFailingReader(data []byte, n int) io.Reader {
	return io.MultiReader(bytes.NewReader(data[:n]), iotest.ErrReader(errSourceBroke))
}

func TestFailingSourceCommitsNothing(t *testing.T) {
	slow(t, "a large upload made to fail")
	cl, c := startCluster(t, nil)
	ctx := context.Background()
	old := randomBytes(3<<20, 9)
	put(t, c, "kept", old)
	fiOld, err := c.Stat(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}

	next := randomBytes(12<<20, 10)
	for _, path := range []string{"kept", "fresh"} {
		_, err := c.Put(ctx, path, newFailingReader(next, 5<<20), client.PutOptions{})
		if !errors.Is(err, errSourceBroke) {
			t.Fatalf("put %s from a source that fails after 5 MiB: %v; want the source's error", path, err)
		}
	}
	mustRead(t, c, "kept", old)
	if fi, err := c.Stat(ctx, "kept"); err != nil || !reflect.DeepEqual(fi, fiOld) {
		t.Fatalf("stat after the failed overwrite: %+v, %v; want %+v", fi, err, fiOld)
	}
	if _, err := c.Stat(ctx, "fresh"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("stat of a path whose only upload failed: %v; want ErrNotFound", err)
	}
	// The failed uploads closed their sessions.
	if n := cl.Coordinator.Server.OpenSessions(); n != 0 {
		t.Fatalf("%d sessions open after failed uploads; want none", n)
	}
}

func TestChunkWithWrongBytesIsRefusedByEveryNode(t *testing.T) {
	cl, _ := startCluster(t, nil)
	claimed := randomBytes(100<<10, 11)
	h := dfs.Sum(claimed)
	body := randomBytes(100<<10, 12)

	var chain []dataplane.Hop
	for _, n := range cl.Nodes[1:] {
		chain = append(chain, dataplane.Hop{ID: n.ID(), Addr: n.Addr()})
	}
	req, err := http.NewRequest(http.MethodPut, "http://"+cl.Nodes[0].Addr()+"/chunks/"+h.String(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(dataplane.ChainHeader, dataplane.FormatChain(chain))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), "mismatch") {
		t.Fatalf("PUT of bytes that do not match the name: %s %s; want 400 naming the mismatch", resp.Status, msg)
	}
	for _, n := range cl.Nodes {
		for _, x := range []dfs.Hash{h, dfs.Sum(body)} {
			if _, err := n.Store().Stat(x); !errors.Is(err, dfs.ErrNotFound) {
				t.Errorf("node %s: chunk %s stored after a refused PUT (stat: %v)", n.ID(), x.Short(), err)
			}
		}
		if chunks, _ := n.Store().Usage(); chunks != 0 {
			t.Errorf("node %s holds %d chunks", n.ID(), chunks)
		}
		if ents, _ := os.ReadDir(filepath.Join(nodeDir(n), "tmp")); len(ents) != 0 {
			t.Errorf("node %s left %d temporary files", n.ID(), len(ents))
		}
	}
}

// --- full disks ------------------------------------------------------------

// noRoom makes a datanode keep all of its disk in reserve: it has no room
// for any chunk.
func noRoom(c *datanode.Config) { c.Reserve = 1 << 62 }

func addFullNode(t *testing.T, cl *cluster.Cluster, name string) *datanode.Node {
	t.Helper()
	if err := cl.AddDatanodeWith(filepath.Join(t.TempDir(), name), noRoom); err != nil {
		t.Fatal(err)
	}
	return cl.Nodes[len(cl.Nodes)-1]
}

func TestFullNodeGetsNoChunks(t *testing.T) {
	cl, c := startCluster(t, nil)
	full := addFullNode(t, cl, "full")
	if err := cl.WaitNodes(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(6<<20, 13)
	put(t, c, "f", data)
	if err := replicaCounts(c, "f", 3); err != nil {
		t.Fatal(err)
	}
	if chunks, _ := full.Store().Usage(); chunks != 0 {
		t.Fatalf("the full node holds %d chunks", chunks)
	}
	mustRead(t, c, "f", data)
}

func TestTwoUsableNodesOfThreeStillStore(t *testing.T) {
	cl, c := startCluster(t, func(cfg *cluster.Config) { cfg.Datanodes = 2 })
	addFullNode(t, cl, "full")
	if err := cl.WaitNodes(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(5<<20, 14)
	put(t, c, "two-copies", data)
	if err := replicaCounts(c, "two-copies", 2); err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, "two-copies", data)
}

func TestOneUsableNodeFailsNamingTheCause(t *testing.T) {
	cl, c := startCluster(t, func(cfg *cluster.Config) { cfg.Datanodes = 1 })
	addFullNode(t, cl, "full1")
	addFullNode(t, cl, "full2")
	if err := cl.WaitNodes(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	_, err := c.Put(context.Background(), "one-copy", bytes.NewReader(randomBytes(1<<20, 15)), client.PutOptions{})
	if err == nil {
		t.Fatal("upload with one usable datanode and MinReplicas 2 succeeded")
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, dfs.ErrNoSpace) || !strings.Contains(err.Error(), "space") || !strings.Contains(err.Error(), "one-copy") {
		t.Fatalf("error %q does not say the datanodes are out of space", err)
	}
	if _, err := c.Stat(context.Background(), "one-copy"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("stat after the failed upload: %v", err)
	}
}

// --- failures of stored data -----------------------------------------------

func TestCorruptReplicaIsAvoidedAndReported(t *testing.T) {
	cl, c := startCluster(t, nil)
	ctx := context.Background()
	data := randomBytes(3<<20, 16)
	put(t, c, "precious", data)
	loc, err := c.Locate(ctx, "precious")
	if err != nil {
		t.Fatal(err)
	}
	ch := loc.Chunks[0]
	victim := nodeByID(cl, ch.Replicas[0].Node)
	damageChunk(t, victim, ch.Hash, ch.Size/2, []byte("bit rot bit rot bit rot"))

	// Read until the client has stumbled on the bad copy (each read starts
	// at a random replica), checking every read. The report makes the node
	// check its copy and quarantine it, and repair puts a good copy back.
	healed := func() error {
		q, _ := filepath.Glob(filepath.Join(nodeDir(victim), "quarantine", ch.Hash.String()+".*"))
		if len(q) == 0 {
			return fmt.Errorf("the corrupt copy on %s is not quarantined", victim.ID())
		}
		b, err := readChunkOnDisk(victim, ch.Hash, ch.Size)
		if err != nil || dfs.Sum(b) != ch.Hash {
			return fmt.Errorf("no good copy back on %s yet (%v)", victim.ID(), err)
		}
		return replicaCounts(c, "precious", 3)
	}
	eventually(t, 30*time.Second, func() error {
		mustRead(t, c, "precious", data)
		return healed()
	})
	for range 5 {
		mustRead(t, c, "precious", data)
	}
}

func TestStoppedDatanodeDoesNotStopReads(t *testing.T) {
	slow(t, "a datanode stopped under reads")
	cl, c := startCluster(t, nil)
	data := randomBytes(7<<20, 17)
	put(t, c, "survivor", data)
	cl.Nodes[0].Close()
	for range 6 {
		mustRead(t, c, "survivor", data)
	}
	var out bytes.Buffer
	if _, err := c.Get(context.Background(), "survivor", &out, client.GetOptions{Offset: 3 << 20, Length: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data[3<<20:5<<20]) {
		t.Fatal("range read with a node down differs")
	}
}

// A datanode that stops before the coordinator notices costs the chunks
// placed on it a retry elsewhere, not the upload.
func TestUploadWhileADatanodeIsDown(t *testing.T) {
	cl, _ := startCluster(t, nil)
	cfg := smallChunks
	cfg.Logger = quiet()
	c, err := cl.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	down := cl.Nodes[1]
	down.Close()
	data := randomBytes(3<<20, 25)
	res := put(t, c, "while-down", data)
	loc, err := c.Locate(context.Background(), "while-down")
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range loc.Chunks {
		for _, r := range ch.Replicas {
			if r.Node == down.ID() {
				t.Fatalf("chunk %s listed on the stopped node", ch.Hash.Short())
			}
		}
		if len(ch.Replicas) != 2 {
			t.Fatalf("chunk %s has replicas %v; want the 2 running nodes", ch.Hash.Short(), ch.Replicas)
		}
	}
	t.Logf("%d chunks stored with one of three nodes down", res.Chunks)
	mustRead(t, c, "while-down", data)
}

func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	cfg := cluster.Config{Dir: dir, GRPC: "127.0.0.1:0", Logger: quiet()}
	ctx := context.Background()
	cl, err := cluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cl.Client(client.Config{Logger: quiet()})
	if err != nil {
		cl.Close()
		t.Fatal(err)
	}
	files := map[string][]byte{
		"empty":      {},
		"tiny":       []byte("x"),
		"mid/3mib":   randomBytes(3<<20, 18),
		"mid/5mib+1": randomBytes(5<<20+1, 19),
	}
	for p, d := range files {
		if _, err := c.Put(ctx, p, bytes.NewReader(d), client.PutOptions{}); err != nil {
			c.Close()
			cl.Close()
			t.Fatal(err)
		}
	}
	c.Close()
	cl.Close()

	_, c = startCluster(t, func(cfg *cluster.Config) { cfg.Dir = dir })
	for p := range files {
		eventually(t, 30*time.Second, func() error { return replicaCounts(c, p, 3) })
	}
	for p, d := range files {
		mustRead(t, c, p, d)
	}
	if got := allPaths(t, c); len(got) != len(files) {
		t.Fatalf("after restart: paths %q", got)
	}
}

func TestConcurrentPutsOfOneNewContent(t *testing.T) {
	slow(t, "many concurrent uploads")
	cl, c := startCluster(t, nil)
	data := randomBytes(5<<20+9, 20)
	const writers = 6
	results := make([]client.PutResult, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = c.Put(context.Background(), fmt.Sprintf("copy%d", i), bytes.NewReader(data), client.PutOptions{})
		}()
	}
	wg.Wait()
	fresh := 0
	for i := range writers {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		if !results[i].Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d uploads report new content, want exactly 1", fresh)
	}
	if got, want := diskBytes(t, cl), 3*int64(len(data)); got != want {
		t.Fatalf("%d chunk bytes on disk after %d concurrent uploads of %d bytes; want %d (3 copies of one)", got, writers, len(data), want)
	}
	for i := range writers {
		mustRead(t, c, fmt.Sprintf("copy%d", i), data)
	}
}

func TestNoGoroutinesLeftAfterClose(t *testing.T) {
	slow(t, "a whole cluster started and stopped to count goroutines")
	base := runtime.NumGoroutine()
	func() {
		cl, c := startCluster(t, nil)
		data := randomBytes(3<<20, 21)
		put(t, c, "x", data)
		mustRead(t, c, "x", data)
		allPaths(t, c)
		if _, err := c.Put(context.Background(), "y", newFailingReader(data, 1<<20), client.PutOptions{}); err == nil {
			t.Fatal("put from a failing source succeeded")
		}
		cl.Nodes[2].Close()
		mustRead(t, c, "x", data)
		c.Close()
		cl.Close()
	}()
	waitGoroutines(t, base)
	t.Logf("%d goroutines before the cluster, %d after it closed", base, runtime.NumGoroutine())
}

// --- nodes that refuse writes ------------------------------------------------

func TestChainThroughAFullNode(t *testing.T) {
	cl, _ := startCluster(t, nil)
	full := addFullNode(t, cl, "full")
	if err := cl.WaitNodes(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	head, tail := cl.Nodes[0], cl.Nodes[1]
	data := randomBytes(3<<20, 22) // several blocks of the datanode's fan-out
	h := dfs.Sum(data)
	req, err := http.NewRequest(http.MethodPut, "http://"+head.Addr()+"/chunks/"+h.String(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(dataplane.ChainHeader, dataplane.FormatChain([]dataplane.Hop{{ID: full.ID(), Addr: full.Addr()}, {ID: tail.ID(), Addr: tail.Addr()}}))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res dataplane.PutResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT along head, full, tail: %s, %+v, %v", resp.Status, res, err)
	}
	t.Logf("answer: %+v", res)
	// The full node passes the bytes on while it fails to keep them.
	if !slices.Equal(res.Stored, []dfs.NodeID{head.ID(), tail.ID()}) || len(res.Failed) != 1 || !strings.Contains(res.Failed[full.ID()], "space") {
		t.Fatalf("answer %+v; want head and tail stored, the full node failed for lack of space", res)
	}
	for _, n := range []*datanode.Node{head, tail} {
		if _, err := n.Store().Stat(h); err != nil {
			t.Fatalf("node %s: %v", n.ID(), err)
		}
	}
	if n, _ := full.Store().Usage(); n != 0 {
		t.Fatalf("full node holds %d chunks", n)
	}
}

// startLiar registers a fake datanode that claims as much free space as a
// real one and heartbeats like one, but answers every chunk PUT at once with
// 507 without reading it: a node whose disk filled since its last heartbeat.
func startLiar(t *testing.T, cl *cluster.Cluster) dfs.NodeID {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInsufficientStorage)
		io.WriteString(w, `{"error":"no space left: disk filled since the last heartbeat"}`)
	}))
	conn, err := rpc.Dial(cl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		conn.Close()
		srv.Close()
	})
	reg := api.NewRegistryClient(conn)
	free := cl.Coordinator.Server.NodeTable()[0].FreeBytes
	stats := &api.NodeStats{CapacityBytes: 2 * free, FreeBytes: free}
	id := dfs.NodeID("dn-liar")
	r, err := reg.Register(ctx, &api.RegisterRequest{Node: &api.Node{Id: string(id), Addr: srv.Listener.Addr().String()}, Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := reg.ReportChunks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&api.ChunkReport{NodeId: string(id), Generation: r.Generation, Last: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				reg.Heartbeat(ctx, &api.HeartbeatRequest{NodeId: string(id), Generation: r.Generation, Stats: stats})
			}
		}
	}()
	return id
}

// smallChunks makes a client cut many chunks from a few MiB, so that a test
// sees every position of a node in the chains.
var smallChunks = client.Config{MinChunk: 32 << 10, AvgChunk: 64 << 10, MaxChunk: 128 << 10}

func TestNodeRefusingWritesCostsARetry(t *testing.T) {
	slow(t, "uploads through nodes that refuse writes")
	for _, real := range []int{3, 2} {
		t.Run(fmt.Sprintf("%d real nodes", real), func(t *testing.T) {
			cl, bigc := startCluster(t, func(cfg *cluster.Config) { cfg.Datanodes = real })
			liar := startLiar(t, cl)
			if err := cl.WaitNodes(context.Background(), real+1); err != nil {
				t.Fatal(err)
			}
			cfg := smallChunks
			cfg.Logger = quiet()
			c, err := cl.Client(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			data := randomBytes(4<<20, 23)
			res := put(t, c, "refused", data)
			if res.Chunks < 20 {
				t.Fatalf("%d chunks; want many", res.Chunks)
			}
			// And chunks of the usual size, which a node refuses while
			// the sender is still writing them.
			big := randomBytes(16<<20, 24)
			put(t, bigc, "refused-big", big)
			for path, data := range map[string][]byte{"refused": data, "refused-big": big} {
				loc, err := c.Locate(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				for _, ch := range loc.Chunks {
					if len(ch.Replicas) < 2 {
						t.Fatalf("chunk %s has replicas %v, want at least 2", ch.Hash.Short(), ch.Replicas)
					}
					for _, r := range ch.Replicas {
						if r.Node == liar {
							t.Fatalf("chunk %s listed on the node that refused it", ch.Hash.Short())
						}
					}
				}
				mustRead(t, c, path, data)
			}
		})
	}
}

// waitGoroutines waits until no more than a few goroutines are left beyond
// base (what ran before the code under test started), and fails with
// every goroutine's stack if they do not go within a deadline.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	const slack = 5
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > base+slack {
		if time.Now().After(deadline) {
			var buf bytes.Buffer
			pprof.Lookup("goroutine").WriteTo(&buf, 1)
			t.Fatalf("%d goroutines after close, %d before:\n%s", runtime.NumGoroutine(), base, buf.String())
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// countingLocal is a datanode in the client's process that counts the
// chunks read from it.
type countingLocal struct {
	n     *datanode.Node
	opens atomic.Int64
}

func (l *countingLocal) OpenLocal(h dfs.ChunkHash) (dfs.ReadAtCloser, int64, error) {
	l.opens.Add(1)
	return l.n.OpenLocal(h)
}

// A client in a datanode's process reads the chunks that node holds
// without the network; it verifies them as every read, so a rotten local
// copy is read from another node and reported; a stopped local node sends
// reads to the others.
func TestLocalReadsAreVerified(t *testing.T) {
	cl, _ := startCluster(t, nil)
	local := &countingLocal{n: cl.Nodes[0]}
	c, err := cl.Client(client.Config{Logger: quiet(), Local: func(id dfs.NodeID) client.LocalNode {
		if id == local.n.ID() {
			return local
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := randomBytes(9<<20, 41)
	put(t, c, "near", data)
	loc, err := c.Locate(context.Background(), "near")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		mustRead(t, c, "near", data)
	}
	if got, want := local.opens.Load(), int64(3*len(loc.Chunks)); got != want {
		t.Fatalf("%d chunks read from the local node in 3 reads of %d chunks; want %d (every chunk has a copy there)", got, len(loc.Chunks), want)
	}

	ch := loc.Chunks[len(loc.Chunks)/2]
	damageChunk(t, local.n, ch.Hash, ch.Size/3, []byte("rot in the local copy"))
	mustRead(t, c, "near", data)
	eventually(t, 30*time.Second, func() error {
		q, _ := filepath.Glob(filepath.Join(nodeDir(local.n), "quarantine", ch.Hash.String()+".*"))
		if len(q) == 0 {
			return fmt.Errorf("the corrupt local copy is not quarantined")
		}
		return nil
	})

	local.n.Close()
	before := local.opens.Load()
	mustRead(t, c, "near", data)
	if local.opens.Load() == before {
		t.Fatal("the stopped local node was not tried first: the test proves nothing")
	}
}

// Uploads share the client's upload memory: with room for a few chunks
// only (less than one scan buffer), many concurrent uploads, of known and
// unknown lengths, wait their turn and all complete.
func TestUploadsWithinTheClientsMemory(t *testing.T) {
	cl, _ := startCluster(t, nil)
	cfg := smallChunks
	cfg.Logger = quiet()
	cfg.UploadMemory = 384 << 10 // 192 KiB for scan buffers of 256 KiB: each takes it all
	c, err := cl.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 12
	datas := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		datas[i] = randomBytes(700<<10+i*9000, int64(300+i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := client.PutOptions{}
			if i%2 == 0 {
				o.Size = int64(len(datas[i]))
			}
			_, errs[i] = c.Put(context.Background(), fmt.Sprintf("tight/%d", i), bytes.NewReader(datas[i]), o)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("upload %d: %v", i, errs[i])
		}
		mustRead(t, c, fmt.Sprintf("tight/%d", i), datas[i])
	}
}
