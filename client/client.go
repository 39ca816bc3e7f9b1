// Package client is the Go SDK of dfs. It talks to the coordinators over
// gRPC for metadata and moves chunk bytes straight to and from the
// datanodes over HTTP.
//
// Uploads cut the stream into content-defined chunks and hash every chunk
// and the whole stream in one pass; only chunks the cluster lacks are sent,
// several at a time, each to the head of a replication chain. Downloads fetch
// several chunks at a time, spread over the replicas, verify every chunk's
// SHA-256 and fall back to another replica on any error. Memory stays
// bounded by the number of chunks in flight, whatever the file size.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/bufpool"
	"github.com/dfs-store/dfs/internal/chunker"
	"github.com/dfs-store/dfs/internal/rpc"
)

// DefaultCoordinator is the address `dfs server` listens on by default.
const DefaultCoordinator = "127.0.0.1:9400"

// Config configures a Client. Zero values take the defaults.
type Config struct {
	// Coordinators are gRPC addresses; calls fail over from one to the next.
	Coordinators []string
	// Uploads is the number of chunks written at once (default 4).
	Uploads int
	// Downloads is the number of chunks fetched at once (default 8).
	Downloads int
	// Chunk sizes in bytes (defaults 512 KiB, 2 MiB, 8 MiB).
	MinChunk, AvgChunk, MaxChunk int
	// HTTPClient reaches the datanodes.
	HTTPClient *http.Client
	// TLS, if set, is how the client reaches the cluster: coordinators and
	// datanodes over TLS, their certificates verified against the cluster's
	// CA (its RootCAs). Nil: plain text, for a cluster run with --insecure.
	// A HTTPClient given with TLS must carry the same configuration.
	TLS *tls.Config
	// AccessKeyID and SecretAccessKey are the access key the client
	// calls with, over TLS. Without one, a client proves who it is with
	// the certificate in TLS (a node's or an operator's), if any.
	AccessKeyID, SecretAccessKey string
	// UploadMemory bounds the bytes the client holds for uploads at once,
	// all its uploads together: the buffers that cut sources into chunks
	// (half of it) and the chunks on their way to the datanodes (the other
	// half). An upload waits for room rather than grow the process: a
	// gateway under many concurrent PUTs stays within its memory. Default
	// 128 MiB.
	UploadMemory int64
	// Local, if set, names the datanodes that run in this process: for
	// such a node it returns how to open a chunk there, nil for any other.
	// A chunk with a replica on one is read there first, without the
	// network, and verified like every read.
	Local  func(dfs.NodeID) LocalNode
	Logger *slog.Logger
}

// LocalNode is a datanode in the client's own process.
type LocalNode interface {
	OpenLocal(h dfs.ChunkHash) (dfs.ReadAtCloser, int64, error)
}

// Client is a connection to a dfs cluster. It is safe for concurrent use.
type Client struct {
	cfg    Config
	chunks chunker.Options
	conns  []*grpc.ClientConn
	coords []api.CoordinatorClient
	access []api.AccessClient
	http   *http.Client
	scheme string // of datanode URLs
	log    *slog.Logger
	bufs   bufpool.Pool

	// Upload memory (Config.UploadMemory): scan buffers, chunk buffers.
	scanMem, chunkMem *memBudget

	addrs []string // of coords, in order

	mu   sync.Mutex
	next int // coordinator to try first

	reports sync.WaitGroup // bad-replica reports in flight
}

// New returns a client of the cluster whose coordinators are given.
func New(cfg Config) (*Client, error) {
	if len(cfg.Coordinators) == 0 {
		cfg.Coordinators = []string{DefaultCoordinator}
	}
	if cfg.Uploads <= 0 {
		cfg.Uploads = 4
	}
	if cfg.Downloads <= 0 {
		cfg.Downloads = 8
	}
	if cfg.UploadMemory <= 0 {
		cfg.UploadMemory = 128 << 20
	}
	opts := chunker.Default
	if cfg.MinChunk > 0 || cfg.AvgChunk > 0 || cfg.MaxChunk > 0 {
		opts = chunker.Options{Min: cfg.MinChunk, Avg: cfg.AvgChunk, Max: cfg.MaxChunk}
		if err := opts.Validate(); err != nil {
			return nil, err
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Client{cfg: cfg, chunks: opts, log: cfg.Logger, http: cfg.HTTPClient, scheme: "http://",
		scanMem: newMemBudget(cfg.UploadMemory / 2), chunkMem: newMemBudget(cfg.UploadMemory / 2)}
	if cfg.TLS != nil {
		c.scheme = "https://"
	}
	if c.http == nil {
		tr := &http.Transport{
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			DisableCompression:    true,
			WriteBufferSize:       64 << 10,
			ReadBufferSize:        64 << 10,
		}
		if cfg.TLS != nil {
			tr.TLSClientConfig = cfg.TLS.Clone()
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
		c.http = &http.Client{Transport: tr}
	}
	for _, addr := range cfg.Coordinators {
		addr = strings.TrimSpace(addr)
		if addr == "" {
			continue
		}
		var opts []grpc.DialOption
		if cfg.TLS != nil && cfg.AccessKeyID != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(keyCredentials{cfg.AccessKeyID, cfg.SecretAccessKey}))
		}
		conn, err := rpc.DialTLS(addr, cfg.TLS, opts...)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.conns = append(c.conns, conn)
		c.coords = append(c.coords, api.NewCoordinatorClient(conn))
		c.access = append(c.access, api.NewAccessClient(conn))
		c.addrs = append(c.addrs, addr)
	}
	if len(c.coords) == 0 {
		return nil, errors.New("client: no coordinator address")
	}
	return c, nil
}

// Close releases the client's connections.
func (c *Client) Close() error {
	// Let reports of bad replicas reach the coordinator, for a moment.
	done := make(chan struct{})
	go func() { c.reports.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	for _, conn := range c.conns {
		conn.Close()
	}
	if t, ok := c.http.Transport.(*http.Transport); ok && c.cfg.HTTPClient == nil {
		t.CloseIdleConnections()
	}
	return nil
}

// call runs fn against a coordinator, moving on to the next one when a
// coordinator is unreachable. Errors come back as dfs errors.
func (c *Client) call(ctx context.Context, fn func(api.CoordinatorClient) error) error {
	return c.try(ctx, func(k int) error { return fn(c.coords[k]) })
}

// try runs fn with the index of a coordinator, moving on to the next one
// when a coordinator is unreachable.
func (c *Client) try(ctx context.Context, fn func(k int) error) error {
	c.mu.Lock()
	start := c.next
	c.mu.Unlock()
	var err error
	for i := range c.coords {
		k := (start + i) % len(c.coords)
		err = fn(k)
		if err == nil || !rpc.Retryable(err) || ctx.Err() != nil {
			if err == nil && k != start {
				c.mu.Lock()
				c.next = k
				c.mu.Unlock()
			}
			break
		}
	}
	if rpc.Unreachable(err) {
		return fmt.Errorf("%w: no coordinator reachable at %s: %v", dfs.ErrUnavailable, strings.Join(c.cfg.Coordinators, ","), rpc.FromStatus(err))
	}
	return rpc.FromStatus(err)
}

// Stat returns a file's record.
func (c *Client) Stat(ctx context.Context, path string) (dfs.FileInfo, error) {
	// Paths are checked here as well as by the coordinator: one that is not
	// valid UTF-8 cannot even be encoded in a request, and would fail with
	// a gRPC marshalling error rather than dfs.ErrBadPath.
	path, err := dfs.CleanPath(path)
	if err != nil {
		return dfs.FileInfo{}, err
	}
	var resp *api.StatResponse
	err = c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.Stat(ctx, &api.StatRequest{Path: path})
		return err
	})
	if err != nil {
		return dfs.FileInfo{}, err
	}
	return fileFromAPI(resp.File), nil
}

// Delete removes a path. The bytes go when nothing refers to them.
func (c *Client) Delete(ctx context.Context, path string) error {
	_, err := c.DeleteMarked(ctx, path, false)
	return err
}

// DeleteMarked removes a path as Delete does and returns the id of the
// delete marker it left where the bucket keeps versions. With markAbsent,
// a bucket that enabled versioning gets a marker even when the path holds
// no file (S3's DeleteObject).
func (c *Client) DeleteMarked(ctx context.Context, path string, markAbsent bool) (marker string, err error) {
	path, err = dfs.CleanPath(path) // see Stat
	if err != nil {
		return "", err
	}
	err = c.call(ctx, func(cc api.CoordinatorClient) error {
		resp, err := cc.Delete(ctx, &api.DeleteRequest{Path: path, MarkAbsent: markAbsent})
		if err == nil {
			marker = resp.MarkerVersionId
		}
		return err
	})
	return marker, err
}

// ListOptions select a page of a listing.
type ListOptions struct {
	Prefix     string
	Delimiter  string
	StartAfter string
	Limit      int
}

// Listing is one page of a listing.
type Listing struct {
	Files     []dfs.FileInfo
	Prefixes  []string
	Truncated bool
	Next      string // StartAfter of the next page
}

// List returns one page of the paths under a prefix.
func (c *Client) List(ctx context.Context, o ListOptions) (Listing, error) {
	// As in Stat: invalid UTF-8 cannot be sent, so say what is wrong.
	for _, s := range []string{o.Prefix, o.Delimiter, o.StartAfter} {
		if !utf8.ValidString(s) {
			return Listing{}, fmt.Errorf("%w: list: %q is not valid UTF-8", dfs.ErrBadPath, s)
		}
	}
	var resp *api.ListResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.List(ctx, &api.ListRequest{Prefix: o.Prefix, Delimiter: o.Delimiter, StartAfter: o.StartAfter, Limit: int32(o.Limit)})
		return err
	})
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Prefixes: resp.Prefixes, Truncated: resp.Truncated, Next: resp.NextStartAfter}
	for _, f := range resp.Files {
		l.Files = append(l.Files, fileFromAPI(f))
	}
	return l, nil
}

// ListAll walks every page of a listing, calling fn with each page before
// it asks for the next. Entries walks the same pages entry by entry.
func (c *Client) ListAll(ctx context.Context, o ListOptions, fn func(Listing) error) error {
	for {
		l, err := c.List(ctx, o)
		if err != nil {
			return err
		}
		if err := fn(l); err != nil {
			return err
		}
		if !l.Truncated {
			return nil
		}
		if l.Next <= o.StartAfter {
			return fmt.Errorf("list %q: the page after %q ends at %q: the listing does not move forward", o.Prefix, o.StartAfter, l.Next)
		}
		o.StartAfter = l.Next
	}
}

// Nodes returns the node table.
func (c *Client) Nodes(ctx context.Context) ([]dfs.NodeInfo, error) {
	var resp *api.NodesResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.Nodes(ctx, &api.NodesRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]dfs.NodeInfo, 0, len(resp.Nodes))
	for _, n := range resp.Nodes {
		st := dfs.NodeState(n.State)
		info := dfs.NodeInfo{
			ID: dfs.NodeID(n.Node.GetId()), Addr: n.Node.GetAddr(), GRPCAddr: n.Node.GetGrpcAddr(), Zone: n.Node.GetZone(),
			State: st, Alive: st != dfs.NodeDead && st != dfs.NodeSuspect,
			CapacityBytes: n.CapacityBytes, UsedBytes: n.UsedBytes, FreeBytes: n.FreeBytes, Chunks: n.Chunks,
		}
		if n.LastHeartbeatUnixNano != 0 {
			info.LastHeartbeat = time.Unix(0, n.LastHeartbeatUnixNano)
		}
		info.DrainRemaining = n.DrainRemaining
		if st := n.Stats; st != nil {
			info.ScrubbedChunks, info.ScrubbedBytes, info.CorruptChunks = st.ScrubbedChunks, st.ScrubbedBytes, st.CorruptChunks
			info.LeaderTerm, info.FencedCommands = st.LeaderTerm, st.FencedCommands
			if st.ScrubPassUnixNano != 0 {
				info.LastScrubPass = time.Unix(0, st.ScrubPassUnixNano)
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// Location is a file (or a content) with its chunks and their live replicas.
type Location struct {
	File    dfs.FileInfo // zero for a lookup by content hash
	Content dfs.ContentHash
	Size    int64
	Chunks  []dfs.ChunkLocation
	// Processing is the content's post-upload job; nil if it has none.
	Processing *dfs.Processing
	// Parts are the parts of a content put together from parts (S3
	// multipart), in order; nil for any other.
	Parts []dfs.Part
}

// Locate returns a file's chunks and where they live.
func (c *Client) Locate(ctx context.Context, path string) (Location, error) {
	return c.LocateVersion(ctx, path, "")
}

// LocateVersion returns the chunks of version id of a path (see
// Versions; "": the current file) and where they live.
func (c *Client) LocateVersion(ctx context.Context, path, id string) (Location, error) {
	return c.locate(ctx, &api.LookupRequest{Path: path, VersionId: id})
}

// LocateForRead is LocateVersion for reading the bytes: the location leaves
// out the processing state (Location.Processing is nil), which costs the
// coordinator an etcd read.
func (c *Client) LocateForRead(ctx context.Context, path, id string) (Location, error) {
	return c.locate(ctx, &api.LookupRequest{Path: path, VersionId: id, WithoutProcessing: true})
}

func (c *Client) locate(ctx context.Context, req *api.LookupRequest) (Location, error) {
	path, err := dfs.CleanPath(req.Path) // see Stat
	if err != nil {
		return Location{}, err
	}
	req.Path = path
	var resp *api.LookupResponse
	err = c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.Lookup(ctx, req)
		return err
	})
	if err != nil {
		return Location{}, err
	}
	return locationFromAPI(resp)
}

// LocateContent returns a content's chunks and where they live.
func (c *Client) LocateContent(ctx context.Context, h dfs.ContentHash) (Location, error) {
	var resp *api.LookupResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.LookupContent(ctx, &api.LookupContentRequest{ContentHash: h[:]})
		return err
	})
	if err != nil {
		return Location{}, err
	}
	return locationFromAPI(resp)
}

func locationFromAPI(resp *api.LookupResponse) (Location, error) {
	h, err := dfs.HashFromBytes(resp.ContentHash)
	if err != nil {
		return Location{}, err
	}
	loc := Location{Content: h, Size: resp.Size, Chunks: make([]dfs.ChunkLocation, len(resp.Chunks)),
		Processing: processingFromAPI(h, resp.Processing)}
	if resp.File != nil {
		loc.File = fileFromAPI(resp.File)
	}
	if len(resp.PartHashes) != len(resp.PartSizes) {
		return Location{}, fmt.Errorf("lookup: %d part hashes for %d parts", len(resp.PartHashes), len(resp.PartSizes))
	}
	for i, b := range resp.PartHashes {
		ph, err := dfs.HashFromBytes(b)
		if err != nil {
			return Location{}, err
		}
		loc.Parts = append(loc.Parts, dfs.Part{Hash: ph, Size: resp.PartSizes[i]})
	}
	for i, ch := range resp.Chunks {
		ref, err := dfs.HashFromBytes(ch.Hash)
		if err != nil {
			return Location{}, err
		}
		cl := dfs.ChunkLocation{ChunkRef: dfs.ChunkRef{Hash: ref, Size: ch.Size}, Offset: ch.Offset, Token: ch.Token}
		for _, id := range ch.Nodes {
			cl.Replicas = append(cl.Replicas, dfs.Replica{Node: dfs.NodeID(id), Addr: resp.Nodes[id].GetAddr()})
		}
		loc.Chunks[i] = cl
	}
	return loc, nil
}

func fileFromAPI(f *api.FileInfo) dfs.FileInfo {
	h, _ := dfs.HashFromBytes(f.GetContentHash())
	return dfs.FileInfo{
		Path:        f.GetPath(),
		Size:        f.GetSize(),
		Content:     h,
		ContentType: f.GetContentType(),
		Created:     time.Unix(0, f.GetCreatedUnixNano()),
		Modified:    time.Unix(0, f.GetModifiedUnixNano()),
		Attrs:       f.GetAttrs(),
		VersionID:   f.GetVersionId(),
	}
}

// RunGC runs one garbage collection on the leader now; full also checks
// every chunk the leader knows.
func (c *Client) RunGC(ctx context.Context, full bool) (*api.RunGCResponse, error) {
	var resp *api.RunGCResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.RunGC(ctx, &api.RunGCRequest{Full: full})
		return err
	})
	return resp, err
}

// Drain starts moving every chunk off a datanode. It returns at once; the
// node table shows the progress until the node is drained.
func (c *Client) Drain(ctx context.Context, node dfs.NodeID) (chunks int64, err error) {
	var resp *api.DrainResponse
	err = c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.Drain(ctx, &api.DrainRequest{Node: string(node)})
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.Chunks, nil
}

// Undrain ends a drain of a datanode, or undoes a finished one: the node
// takes new chunks again and its copies count. It returns the chunks the
// node holds.
func (c *Client) Undrain(ctx context.Context, node dfs.NodeID) (chunks int64, err error) {
	var resp *api.DrainResponse
	err = c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.Undrain(ctx, &api.DrainRequest{Node: string(node)})
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.Chunks, nil
}

// RemoveNode forgets a datanode that no longer runs: its registry record
// and its copies in every coordinator's location map. It fails with
// dfs.ErrConflict while the node heartbeats, or while a chunk it holds has
// fewer than min-replicas copies on other nodes that are not dead, unless
// force is set; dfs.ErrNotFound for a node the cluster does not know.
func (c *Client) RemoveNode(ctx context.Context, node dfs.NodeID, force bool) (*api.RemoveNodeResponse, error) {
	var resp *api.RemoveNodeResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.RemoveNode(ctx, &api.RemoveNodeRequest{Node: string(node), Force: force})
		return err
	})
	return resp, err
}

// Fsck checks the files under prefix: how many of their chunks are healthy,
// under-replicated, missing or corrupt, and what repair and garbage
// collection still have to do. With files, every file is listed. It walks
// every page (see FsckPages) and sums them: its memory grows with the file
// list, so a large check with files should use FsckPages.
func (c *Client) Fsck(ctx context.Context, prefix string, files bool) (*api.FsckResponse, error) {
	sum := &api.FsckResponse{}
	err := c.FsckPages(ctx, prefix, files, 0, func(p *api.FsckResponse) error {
		sum.Files += p.Files
		sum.Chunks += p.Chunks
		sum.Healthy += p.Healthy
		sum.UnderReplicated += p.UnderReplicated
		sum.Unplaceable += p.Unplaceable
		sum.Missing += p.Missing
		sum.Corrupt += p.Corrupt
		sum.FileList = append(sum.FileList, p.FileList...)
		// The cluster's pending work and done counts are as of the last
		// page.
		sum.PendingRepair, sum.PendingGc = p.PendingRepair, p.PendingGc
		sum.Repaired, sum.GarbageCollected = p.Repaired, p.GarbageCollected
		sum.Counters = p.Counters
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sum, nil
}

// FsckPages checks the files under prefix a page of at most limit files at
// a time (0: the coordinator's default), calling fn with each page in path
// order. A page's totals count its own files, each chunk once per file
// that names it. It stops at the first error, fn's included.
func (c *Client) FsckPages(ctx context.Context, prefix string, files bool, limit int, fn func(*api.FsckResponse) error) error {
	after := ""
	for {
		var resp *api.FsckResponse
		err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
			resp, err = cc.Fsck(ctx, &api.FsckRequest{Prefix: prefix, Files: files, StartAfter: after, Limit: int32(limit)})
			return err
		})
		if err != nil {
			return err
		}
		if err := fn(resp); err != nil {
			return err
		}
		if !resp.Truncated || resp.NextStartAfter == "" || resp.NextStartAfter <= after {
			return nil
		}
		after = resp.NextStartAfter
	}
}

// keyCredentials send an access key with every call.
type keyCredentials struct{ id, secret string }

func (k keyCredentials) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	return map[string]string{access.KeyIDHeader: k.id, access.SecretHeader: k.secret}, nil
}

func (keyCredentials) RequireTransportSecurity() bool { return true }
