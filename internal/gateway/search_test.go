package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/gateway"
	"github.com/dfs-store/dfs/internal/jobs"
)

// A search reads a bounded number of paths per request and says where to
// go on; asking again from there finds what lies beyond.
func TestSearchIsBoundedAndGoesOn(t *testing.T) {
	const scan = 5
	cl, err := cluster.Start(context.Background(), cluster.Config{Dir: t.TempDir(), GRPC: "127.0.0.1:0", Jobs: jobs.Config{Workers: 1}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c, err := cl.Client(client.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Client: c, Logger: quiet(), SearchScan: scan})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { gw.Close(); srv.Close(); c.Close() })
	e := &env{cl: cl, c: c, gw: gw, srv: srv}

	var paths []string
	for i := range 23 {
		paths = append(paths, fmt.Sprintf("s/a%03d.txt", i))
	}
	paths = append(paths, "s/b/Needle.txt", "t/needle-elsewhere.txt")
	for _, p := range paths {
		if a := e.do(t, "PUT", "/api/v1/files/"+p, strings.NewReader(p)); a.code != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", p, a.code, a.body)
		}
	}

	// search asks until the answer is not truncated, and returns every
	// match and the number of requests.
	search := func(query string) ([]string, int) {
		t.Helper()
		var found []string
		next := ""
		for n := 1; ; n++ {
			l := decode[gateway.Listing](t, e.do(t, "GET", query+"&start_after="+url.QueryEscape(next), nil))
			if l.Scanned > scan {
				t.Fatalf("%s after %q read %d paths, at most %d allowed", query, next, l.Scanned, scan)
			}
			for _, f := range l.Files {
				found = append(found, f.Path)
			}
			if !l.Truncated {
				return found, n
			}
			if l.Next <= next {
				t.Fatalf("%s after %q: truncated, but next %q does not move on", query, next, l.Next)
			}
			next = l.Next
			if n > 100 {
				t.Fatalf("%s: no end after %d requests", query, n)
			}
		}
	}

	// The one match lies beyond the first bounded scan: the first answer
	// has none, but says it read its share and where to go on.
	first := decode[gateway.Listing](t, e.do(t, "GET", "/api/v1/files?prefix=s/&q=NEEDLE", nil))
	if len(first.Files) != 0 || !first.Truncated || first.Scanned != scan || first.Next != "s/a004.txt" {
		t.Fatalf("first answer of a search for needle: %+v, want no match, truncated after %d paths at s/a004.txt", first, scan)
	}
	found, requests := search("/api/v1/files?prefix=s/&q=NEEDLE")
	if fmt.Sprint(found) != "[s/b/Needle.txt]" {
		t.Fatalf("search for needle under s/ found %v", found)
	}
	if requests != 5 { // 24 paths, 5 a request
		t.Errorf("search for needle took %d requests, want 5", requests)
	}

	// Matches split by the limit and by the scan bound come once each, in
	// order.
	found, _ = search("/api/v1/files?prefix=s/&q=.txt&limit=2")
	if len(found) != 24 || found[0] != "s/a000.txt" || found[23] != "s/b/Needle.txt" {
		t.Fatalf("search for .txt in twos: %v", found)
	}
	for i := 1; i < len(found); i++ {
		if found[i] <= found[i-1] {
			t.Fatalf("search for .txt: %q after %q", found[i], found[i-1])
		}
	}

	// Nothing to find: every answer is bounded, and the last says so.
	if found, _ := search("/api/v1/files?q=nothing-matches"); len(found) != 0 {
		t.Fatalf("search for nothing-matches found %v", found)
	}

	// Bad input: a cursor with a NUL byte is refused.
	if a := e.do(t, "GET", "/api/v1/files?q=x&start_after=%00", nil); a.code != http.StatusBadRequest || a.errMsg(t) == "" {
		t.Errorf("search with start_after=%%00: %d, want 400", a.code)
	}
}
