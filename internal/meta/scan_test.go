package meta_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs/api"

	"github.com/dfs-store/dfs/internal/meta"
)

// putKeys writes an empty value under every key, 128 to a transaction.
func putKeys(t testing.TB, keys []string) {
	t.Helper()
	for i := 0; i < len(keys); i += 128 {
		var ops []clientv3.Op
		for _, k := range keys[i:min(i+128, len(keys))] {
			ops = append(ops, clientv3.OpPut(k, ""))
		}
		if _, err := etcd.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// scanKeyShapes are key sets that cluster differently: sequential names
// deep below one directory, uniform hex names, and a few dense directories
// among sparse single keys.
func scanKeyShapes(n int) map[string][]string {
	shapes := map[string][]string{}
	var seq, hexs, mixed []string
	for i := range n {
		seq = append(seq, fmt.Sprintf("photos/2026/12/img-%07d.jpg", i))
		h := sha256.Sum256([]byte(fmt.Sprint(i)))
		hexs = append(hexs, hex.EncodeToString(h[:]))
		switch {
		case i%10 == 0:
			mixed = append(mixed, fmt.Sprintf("%c%d", 'a'+i%26, i))
		default:
			mixed = append(mixed, fmt.Sprintf("dense/%d/%06d", i%3, i))
		}
	}
	shapes["sequential"], shapes["hex"], shapes["mixed"] = seq, hexs, mixed
	return shapes
}

// A paged scan makes etcd count about a page of keys per request, not every
// key left under the prefix; it sees every key once, in order.
func TestScanPrefixCountsAPagePerRequest(t *testing.T) {
	n := 20000
	if !testing.Short() {
		n = 60000
	}
	const limit = 500
	s := newStore(t)
	for shape, keys := range scanKeyShapes(n) {
		t.Run(shape, func(t *testing.T) {
			prefix := s.Schema().Prefix() + "scan/" + shape + "/"
			full := make([]string, len(keys))
			for i, k := range keys {
				full[i] = prefix + k
			}
			putKeys(t, full)
			sort.Strings(full)
			var c meta.ReadCounter
			c.KV = etcd
			var got []string
			err := meta.ScanPrefix(context.Background(), &c, prefix, "", limit, func(kv *mvccpb.KeyValue) error {
				got = append(got, string(kv.Key))
				return nil
			}, clientv3.WithKeysOnly())
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "\n") != strings.Join(full, "\n") {
				t.Fatalf("scan saw %d keys, want the %d written, in order", len(got), len(full))
			}
			pages := int64(n / limit)
			t.Logf("%d keys: %d ranges, %d keys counted (%d per page of %d); unbounded ranges would count ~%d",
				n, c.Ranges.Load(), c.Counted.Load(), c.Counted.Load()/pages, limit, int64(n)*int64(n)/limit/2)
			// Where keys cluster after empty space, the one range that
			// finds the cluster counts it whole; every other range counts
			// about a page.
			if c.Counted.Load() > 6*int64(n) {
				t.Fatalf("etcd counted %d keys over %d ranges for %d keys read %d at a time: not O(page)",
					c.Counted.Load(), c.Ranges.Load(), n, limit)
			}
			// Starting after any key gives the rest, in order.
			for _, i := range []int{0, 1, n / 3, n - 2, n - 1} {
				var rest []string
				meta.ScanPrefix(context.Background(), etcd, prefix, full[i], limit, func(kv *mvccpb.KeyValue) error {
					rest = append(rest, string(kv.Key))
					return nil
				}, clientv3.WithKeysOnly())
				if strings.Join(rest, "\n") != strings.Join(full[i+1:], "\n") {
					t.Fatalf("scan after key %d: %d keys, want %d", i, len(rest), len(full)-i-1)
				}
			}
		})
	}
}

// A scan of an empty prefix, or one whose keys are all 0xff bytes, ends.
func TestScanPrefixEdges(t *testing.T) {
	s := newStore(t)
	prefix := s.Schema().Prefix() + "edges/"
	n := 0
	if err := meta.ScanPrefix(context.Background(), etcd, prefix, "", 10, func(*mvccpb.KeyValue) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("empty prefix: %d keys, %v", n, err)
	}
	keys := []string{prefix + "\xff", prefix + "\xff\xff", prefix + "\xff\xff\xff\x00", prefix + "\x00", prefix + "a"}
	putKeys(t, keys)
	sort.Strings(keys)
	var got []string
	if err := meta.ScanPrefix(context.Background(), etcd, prefix, "", 1, func(kv *mvccpb.KeyValue) error {
		got = append(got, string(kv.Key))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != strings.Join(keys, "|") {
		t.Fatalf("scan: %q, want %q", got, keys)
	}
	stop := fmt.Errorf("stop")
	if err := meta.ScanPrefix(context.Background(), etcd, prefix, "", 1, func(*mvccpb.KeyValue) error { return stop }); err != stop {
		t.Fatalf("fn's error: got %v", err)
	}
}

// Listing pages of a big flat directory cost a page each, wherever they
// start, and a walk by pages sees every path once.
func TestListPagesCountAPage(t *testing.T) {
	n := 20000
	if !testing.Short() {
		n = 50000
	}
	s := newStore(t)
	var keys []string
	for i := range n {
		keys = append(keys, s.Schema().File(fmt.Sprintf("big/f%07d", i)))
	}
	// Real records: the listing decodes them.
	for i := 0; i < n; i += 128 {
		var ops []clientv3.Op
		for _, k := range keys[i:min(i+128, n)] {
			ops = append(ops, clientv3.OpPut(k, string(fileVal(t))))
		}
		if _, err := etcd.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	var c meta.ReadCounter
	cs := s.Counting(&c)
	seen, after, pages := 0, "", 0
	for {
		l, err := cs.List(context.Background(), "big/", "/", after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range l.Files {
			if want := fmt.Sprintf("big/f%07d", seen); f.Path != want {
				t.Fatalf("entry %d is %q, want %q", seen, f.Path, want)
			}
			seen++
		}
		pages++
		if !l.Truncated {
			break
		}
		after = l.Next
	}
	if seen != n {
		t.Fatalf("walk saw %d of %d paths", seen, n)
	}
	t.Logf("%d pages, %d ranges, %d keys counted", pages, c.Ranges.Load(), c.Counted.Load())
	if c.Counted.Load() > 6*int64(n) {
		t.Fatalf("listing %d paths by pages of 1000 counted %d keys: not O(page)", n, c.Counted.Load())
	}
	// A page near the end costs what one at the start does.
	c.Counted.Store(0)
	if _, err := cs.List(context.Background(), "big/", "/", fmt.Sprintf("big/f%07d", n-1500), 1000); err != nil {
		t.Fatal(err)
	}
	if got := c.Counted.Load(); got > 8*1000 {
		t.Fatalf("one page near the end counted %d keys", got)
	}
}

func fileVal(t testing.TB) []byte {
	b, err := proto.Marshal(&api.FileRecord{ContentHash: make([]byte, 32), Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkScan reads every key of a prefix of DFS_SCAN_KEYS keys (100,000
// by default) a page of 1000 at a time: with bounded windows (ScanPrefix)
// and with ranges to the end of the prefix, as scans were before.
func BenchmarkScan(b *testing.B) {
	n := 100000
	if v := os.Getenv("DFS_SCAN_KEYS"); v != "" {
		fmt.Sscan(v, &n)
	}
	prefix := fmt.Sprintf("/bench/scan/%d/", n)
	if resp, err := etcd.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != int64(n) {
		keys := make([]string, n)
		for i := range keys {
			h := sha256.Sum256([]byte(fmt.Sprint(i)))
			keys[i] = prefix + hex.EncodeToString(h[:])
		}
		putKeys(b, keys)
	}
	b.Run("bounded", func(b *testing.B) {
		for range b.N {
			seen := 0
			meta.ScanPrefix(context.Background(), etcd, prefix, "", 1000, func(*mvccpb.KeyValue) error { seen++; return nil }, clientv3.WithKeysOnly())
			if seen != n {
				b.Fatalf("saw %d of %d keys", seen, n)
			}
		}
	})
	b.Run("to-the-end", func(b *testing.B) {
		for range b.N {
			seen, start, end := 0, prefix, clientv3.GetPrefixRangeEnd(prefix)
			for {
				resp, err := etcd.Get(context.Background(), start, clientv3.WithRange(end), clientv3.WithLimit(1000), clientv3.WithKeysOnly())
				if err != nil {
					b.Fatal(err)
				}
				seen += len(resp.Kvs)
				if !resp.More {
					break
				}
				start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
			}
			if seen != n {
				b.Fatalf("saw %d of %d keys", seen, n)
			}
		}
	})
}

// putFiles writes a file record under every path, and the sample key of
// each sampled path, as commits do.
func putFiles(t testing.TB, s *meta.Store, paths []string) {
	t.Helper()
	var keys []string
	for _, p := range paths {
		keys = append(keys, s.Schema().File(p))
		if meta.Sampled(p) {
			keys = append(keys, s.Schema().Skip(p))
		}
	}
	val := string(fileVal(t))
	for i := 0; i < len(keys); i += 128 {
		var ops []clientv3.Op
		for _, k := range keys[i:min(i+128, len(keys))] {
			v := val
			if strings.HasPrefix(k, s.Schema().SkipPrefix()) {
				v = ""
			}
			ops = append(ops, clientv3.OpPut(k, v))
		}
		if _, err := etcd.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// The first page of a directory whose paths are one long run after empty
// key space (run/000000000, run/000000001, ...) costs a page, and so does
// a page of the root that passes over the directory: the sample keys bound
// every range, where a range grown over the empty space would count the
// whole run.
func TestListFirstPageOfARunCountsAPage(t *testing.T) {
	n := 30000
	if !testing.Short() {
		n = 100000
	}
	s := newStore(t)
	paths := []string{"a", "b/x", "zz"}
	for i := range n {
		paths = append(paths, fmt.Sprintf("run/%09d", i))
	}
	putFiles(t, s, paths)
	var c meta.ReadCounter
	cs := s.Counting(&c)
	l, err := cs.List(context.Background(), "run/", "/", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Files) != 1000 || l.Files[0].Path != "run/000000000" || l.Files[999].Path != "run/000000999" || !l.Truncated {
		t.Fatalf("first page: %d files, truncated %v", len(l.Files), l.Truncated)
	}
	t.Logf("first page of %d: %d ranges, %d keys counted", n, c.Ranges.Load(), c.Counted.Load())
	if got := c.Counted.Load(); got > 8*1000 {
		t.Fatalf("the first page of a run of %d paths counted %d keys", n, got)
	}
	c.Counted.Store(0)
	root, err := cs.List(context.Background(), "", "/", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(root.Prefixes) != "[b/ run/]" || len(root.Files) != 2 {
		t.Fatalf("root: prefixes %v, %d files", root.Prefixes, len(root.Files))
	}
	t.Logf("root page: %d keys counted", c.Counted.Load())
	if got := c.Counted.Load(); got > 8*1000 {
		t.Fatalf("a root page past a directory of %d paths counted %d keys", n, got)
	}
	// A walk by pages sees every path of the run once, in order.
	seen, after := 0, ""
	for {
		l, err := s.List(context.Background(), "run/", "/", after, 777)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range l.Files {
			if want := fmt.Sprintf("run/%09d", seen); f.Path != want {
				t.Fatalf("entry %d is %q, want %q", seen, f.Path, want)
			}
			seen++
		}
		if !l.Truncated {
			break
		}
		after = l.Next
	}
	if seen != n {
		t.Fatalf("walk saw %d of %d paths", seen, n)
	}
}

// Sample keys are no part of correctness: stale ones (paths deleted behind
// the store's back) and missing ones change what a listing costs, never
// what it returns.
func TestListWithStaleOrMissingSampleKeys(t *testing.T) {
	s := newStore(t)
	var paths, stale []string
	for i := range 5000 {
		p := fmt.Sprintf("st/%05d", i)
		if i%2 == 0 {
			paths = append(paths, p)
		} else {
			stale = append(stale, p)
		}
	}
	putFiles(t, s, append(append([]string{}, paths...), stale...))
	// Remove the odd paths' file keys but keep their sample keys, and
	// drop the sample keys of the first thousand even paths.
	for _, p := range stale {
		if _, err := etcd.Delete(context.Background(), s.Schema().File(p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range paths[:1000] {
		etcd.Delete(context.Background(), s.Schema().Skip(p))
	}
	var got []string
	after := ""
	for {
		l, err := s.List(context.Background(), "st/", "", after, 300)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range l.Files {
			got = append(got, f.Path)
		}
		if !l.Truncated {
			break
		}
		after = l.Next
	}
	if strings.Join(got, ",") != strings.Join(paths, ",") {
		t.Fatalf("listing saw %d paths, want the %d that exist", len(got), len(paths))
	}
}
