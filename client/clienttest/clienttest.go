// Package clienttest serves a namespace held in memory over the
// coordinator's gRPC API, for tests of what walks listings (the SDK's
// iterator, dfs ls). It counts the pages it answers and can hold a page
// back until the test lets it go, so a test can see what a caller did
// before the rest of a listing arrived, without timing anything.
package clienttest

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/rpc"
)

// Coordinator answers List and Stat from a sorted set of paths. Every
// other call fails as unimplemented.
type Coordinator struct {
	api.UnimplementedCoordinatorServer

	paths []string // sorted

	mu    sync.Mutex
	pages int
	// gate, if set, is called before answering page n (1-based) and may
	// block; it returns an error to fail the page.
	gate func(ctx context.Context, n int) error
}

// Start serves paths (any order; each a file of len(path) bytes) on a
// loopback port until the test ends, and returns the server and its
// address.
func Start(t interface {
	Helper()
	Fatal(...any)
	Cleanup(func())
}, paths []string) (*Coordinator, string) {
	t.Helper()
	c := &Coordinator{paths: slices.Sorted(slices.Values(paths))}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(slog.New(slog.DiscardHandler))
	api.RegisterCoordinatorServer(srv, c)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return c, l.Addr().String()
}

// Gate sets a function called before each page is answered, with the
// page's number from 1; it may block until the test lets the page go, and
// an error it returns fails the page.
func (c *Coordinator) Gate(f func(ctx context.Context, page int) error) {
	c.mu.Lock()
	c.gate = f
	c.mu.Unlock()
}

// Pages is the number of List calls answered or being answered.
func (c *Coordinator) Pages() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pages
}

func file(p string) *api.FileInfo {
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	var h dfs.Hash
	copy(h[:], p)
	return &api.FileInfo{Path: p, Size: int64(len(p)), ContentHash: h[:], CreatedUnixNano: t, ModifiedUnixNano: t}
}

// Stat implements api.CoordinatorServer.
func (c *Coordinator) Stat(ctx context.Context, req *api.StatRequest) (*api.StatResponse, error) {
	if _, ok := slices.BinarySearch(c.paths, req.Path); !ok {
		return nil, rpc.ToStatus(dfs.ErrNotFound)
	}
	return &api.StatResponse{File: file(req.Path)}, nil
}

// List implements api.CoordinatorServer with the semantics of meta.Store.List:
// entries after start_after in byte order, paths folded on the delimiter
// into common prefixes, at most limit entries (default 1000).
func (c *Coordinator) List(ctx context.Context, req *api.ListRequest) (*api.ListResponse, error) {
	c.mu.Lock()
	c.pages++
	n, gate := c.pages, c.gate
	c.mu.Unlock()
	if gate != nil {
		if err := gate(ctx, n); err != nil {
			return nil, rpc.ToStatus(err)
		}
	}
	limit := int(req.Limit)
	if limit <= 0 {
		limit = 1000
	}
	resp := &api.ListResponse{}
	count := 0
	i, _ := slices.BinarySearch(c.paths, req.Prefix)
	for ; i < len(c.paths); i++ {
		p := c.paths[i]
		if !strings.HasPrefix(p, req.Prefix) {
			break
		}
		if req.StartAfter != "" && (p <= req.StartAfter ||
			req.Delimiter != "" && strings.HasSuffix(req.StartAfter, req.Delimiter) && strings.HasPrefix(p, req.StartAfter)) {
			continue
		}
		entry := p
		dir := false
		if req.Delimiter != "" {
			if j := strings.Index(p[len(req.Prefix):], req.Delimiter); j >= 0 {
				entry, dir = p[:len(req.Prefix)+j+len(req.Delimiter)], true
				if resp.NextStartAfter == entry {
					continue // folded already
				}
			}
		}
		if count == limit {
			resp.Truncated = true
			return resp, nil
		}
		if dir {
			resp.Prefixes = append(resp.Prefixes, entry)
		} else {
			resp.Files = append(resp.Files, file(p))
		}
		resp.NextStartAfter = entry
		count++
	}
	resp.NextStartAfter = ""
	return resp, nil
}
