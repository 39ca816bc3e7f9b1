// Package datanode is the datanode role: it keeps chunks in a local chunk
// store, serves them over the HTTP data plane (PUT/GET/HEAD
// /chunks/{sha256}, Range supported), forwards incoming writes along a
// replication chain, answers the control API over gRPC, and reports to every
// coordinator: a full chunk list on each (re)registration, then heartbeats
// every second carrying stats and the chunks added and removed since.
//
// A write is acknowledged only after the chunk is durable here and the
// coordinators have heard of it (or a short timeout passed), so a client may
// commit as soon as its chunk writes return.
//
// A node keeps its data honest: it scrubs (re-hashes every chunk in the
// background at a bounded rate, see scrub.go), and a copy found corrupt, by
// the scrubber, by a VerifyChunk call, or while replicating it, is moved to
// the store's quarantine and reported to every coordinator twice over in
// the next heartbeat: in removed (the node no longer holds it) and in
// corrupt (why).
package datanode

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/chunkstore/disk"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/pki"
	"github.com/dfs-store/dfs/internal/rpc"
)

// Config configures a datanode. Zero values take the defaults.
type Config struct {
	// Dir is the data directory: chunks, and the node id.
	Dir string
	// Listen is the HTTP data plane address (default 127.0.0.1:9500; port 0
	// picks a free one).
	Listen string
	// GRPCListen is the control address (default: Listen's host, a free
	// port).
	GRPCListen string
	// Advertise is the host other processes reach this node by (default:
	// the listen host, or the host name when listening on every interface).
	Advertise string
	// Coordinators are the gRPC addresses of every coordinator.
	Coordinators []string
	Zone         string
	// NoSync skips fsync of chunk files (benchmarks only).
	NoSync bool
	// Reserve is disk space, in bytes, never used for chunks.
	Reserve int64
	// SmallChunkMax is the size of the largest chunk appended to a volume
	// rather than kept in a file of its own (see disk.Options.SmallMax): 0
	// for the default, negative to keep every chunk in a file.
	SmallChunkMax int64
	// Heartbeat is the heartbeat interval (default 1s).
	Heartbeat time.Duration
	// ReportWait bounds how long a write waits for the coordinators to
	// acknowledge the new chunk (default 2s).
	ReportWait time.Duration
	// ScrubRate is the most, in MiB/s averaged, the node re-reads of its
	// chunks to check them. 0 disables scrubbing.
	ScrubRate float64
	// ScrubChunks is the most chunks a second, averaged, the scrubber
	// checks, whatever their size (default DefaultScrubChunks).
	ScrubChunks float64
	// ScrubInterval is how often every chunk is checked (default
	// DefaultScrubInterval): a pass is spread over nine tenths of it, at
	// the pace that reads what the node holds in that time, unless
	// ScrubRate or ScrubChunks hold it back; the next pass starts an
	// interval after this one began, or at once if this one took longer.
	ScrubInterval time.Duration
	// SlowWindow is how long a client may take to send or read another
	// dataplane.MinRateBytes of a chunk before its connection is cut
	// (default dataplane.MinRateWindow).
	SlowWindow time.Duration
	// TLS, if set, secures both ports with the cluster's certificates: the
	// control port takes calls only from coordinators' certificates, the
	// data port serves https, and the node dials coordinators and other
	// datanodes with its own certificate. Nil: plain text (--insecure).
	TLS    *pki.Node
	Logger *slog.Logger
}

// MaxChunkSize is the largest chunk a datanode accepts.
const MaxChunkSize = 64 << 20

// Scrub defaults. Every chunk is checked once a week, as Ceph's deep scrub
// does by default, at an even pace: a node of a million small chunks checks
// about 1.8 a second. A small chunk costs the scrubber about 150 µs of CPU
// with its file's metadata cached (an open, a direct read, a hash, a close;
// BenchmarkVerify in the chunk store) and about 550 µs measured on a node
// of a million chunks, whose metadata is read from the disk too: the week's
// pace costs that node about 0.1% of a core, where a pass at the chunk
// limit (20 a second) costs 1.1% for 14 hours. The limits bound a pass
// when the pace asks for more: a node of more than 11 million small chunks,
// or of 11 TiB, takes longer than a week.
const (
	DefaultScrubRate     = 20 // MiB/s
	DefaultScrubChunks   = 20 // chunks/s
	DefaultScrubInterval = 7 * 24 * time.Hour
)

// Node is a running datanode.
type Node struct {
	cfg   Config
	id    dfs.NodeID
	store *disk.Store
	log   *slog.Logger

	httpLn, grpcLn net.Listener
	httpSrv        *http.Server
	grpcSrv        *grpc.Server
	client         *http.Client
	addr, grpcAddr string // advertised
	// replicas is the replication factor the coordinators gave at
	// registration (0 until then): it bounds the chains the node forwards.
	replicas atomic.Int32
	// firstReg is closed once the node has registered with a coordinator
	// for the first time (replicas and tokenKeys are known from then on).
	firstReg     chan struct{}
	firstRegOnce sync.Once
	// tokenKeys is the key the coordinators make capability tokens with,
	// given at registration; nil until then.
	tokenKeys atomic.Pointer[dataplane.TokenKey]
	scheme    string // of the data port's URLs: "https://", or "http://" with --insecure

	links []*link
	terms *terms // the newest leader term seen (term.go)
	// incarnation names this process to the coordinators: one that holds
	// its chunk locations already needs no full report from it.
	incarnation uint64

	scrub        *scrubber // nil when scrubbing is off
	corruptFound atomic.Int64

	// quarantining holds the chunks being moved to quarantine, so the
	// observer reports their removal as corrupt too, in the same heartbeat.
	qmu          sync.Mutex
	quarantining map[dfs.ChunkHash]int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start opens the chunk store, starts serving, and begins reporting to the
// coordinators.
func Start(cfg Config) (*Node, error) {
	if cfg.Dir == "" {
		return nil, errors.New("datanode: no data directory")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:9500"
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.ReportWait <= 0 {
		cfg.ReportWait = 2 * time.Second
	}
	if cfg.ScrubRate < 0 || math.IsNaN(cfg.ScrubRate) {
		return nil, fmt.Errorf("datanode: scrub rate %v MiB/s: want 0 (off) or more", cfg.ScrubRate)
	}
	if cfg.ScrubChunks < 0 || math.IsNaN(cfg.ScrubChunks) {
		return nil, fmt.Errorf("datanode: scrub chunk rate %v chunks/s: want more than 0, or 0 for the default", cfg.ScrubChunks)
	}
	if cfg.ScrubChunks == 0 {
		cfg.ScrubChunks = DefaultScrubChunks
	}
	if cfg.ScrubInterval <= 0 {
		cfg.ScrubInterval = DefaultScrubInterval
	}
	if cfg.SlowWindow <= 0 {
		cfg.SlowWindow = dataplane.MinRateWindow
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("datanode: %w", err)
	}
	id, err := loadID(cfg.Dir)
	if err != nil {
		return nil, err
	}
	terms, err := loadTerms(cfg.Dir)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, id: id, log: cfg.Logger.With("role", "datanode", "node", id),
		quarantining: make(map[dfs.ChunkHash]int), terms: terms, incarnation: newIncarnation(), firstReg: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.store, err = disk.Open(cfg.Dir, disk.Options{NoSync: cfg.NoSync, Reserve: cfg.Reserve, Observer: n, SmallMax: cfg.SmallChunkMax})
	if err != nil {
		return nil, fmt.Errorf("datanode %s: %w", id, err)
	}
	if cfg.ScrubRate > 0 {
		n.scrub = newScrubber(n, cfg.ScrubRate, cfg.ScrubChunks, cfg.ScrubInterval)
	}

	if n.httpLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("datanode %s: listen %s: %w", id, cfg.Listen, err)
	}
	glisten := cfg.GRPCListen
	if glisten == "" {
		host, _, _ := net.SplitHostPort(cfg.Listen)
		glisten = net.JoinHostPort(host, "0")
	}
	if n.grpcLn, err = net.Listen("tcp", glisten); err != nil {
		n.httpLn.Close()
		return nil, fmt.Errorf("datanode %s: listen %s: %w", id, glisten, err)
	}
	n.addr = advertised(cfg.Advertise, n.httpLn.Addr())
	n.grpcAddr = advertised(cfg.Advertise, n.grpcLn.Addr())

	tr := &http.Transport{
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      64 << 10,
	}
	n.httpSrv = &http.Server{Handler: n.handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	n.scheme = "http://"
	if cfg.TLS != nil {
		n.scheme = "https://"
		tr.TLSClientConfig = cfg.TLS.ClientTLS()
		n.httpSrv.TLSConfig = dataTLS(cfg.TLS.ServerTLS(false))
		n.grpcSrv = rpc.NewServerTLS(n.log, cfg.TLS.ServerTLS(true), rpc.RequireRole(nil, pki.RoleCoordinator)...)
	} else {
		n.grpcSrv = rpc.NewServer(n.log)
	}
	n.client = &http.Client{Transport: tr}
	api.RegisterDatanodeServer(n.grpcSrv, &control{n: n})

	for _, c := range cfg.Coordinators {
		l, err := newLink(n, c)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.links = append(n.links, l)
	}
	n.wg.Add(2 + len(n.links))
	go func() {
		defer n.wg.Done()
		if cfg.TLS != nil {
			n.httpSrv.ServeTLS(n.httpLn, "", "")
		} else {
			n.httpSrv.Serve(n.httpLn)
		}
	}()
	go func() { defer n.wg.Done(); n.grpcSrv.Serve(n.grpcLn) }()
	for _, l := range n.links {
		go func() { defer n.wg.Done(); l.run(n.ctx) }()
	}
	if n.scrub != nil {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.scrub.run(n.ctx) }()
	}
	chunks, bytes := n.store.Usage()
	ost := n.store.OpenStats()
	if ost.IndexErr != "" {
		n.log.Warn("saved chunk index not used; walked the chunk directories", "err", ost.IndexErr)
	}
	if ost.TornBytes > 0 || ost.DamagedBytes > 0 {
		n.log.Warn("volumes held records that did not verify: a torn tail after a crash was cut, damaged regions skipped",
			"torn_bytes", ost.TornBytes, "damaged_bytes", ost.DamagedBytes)
	}
	n.log.Info("datanode serving", "addr", n.addr, "grpc", n.grpcAddr, "dir", cfg.Dir, "chunks", chunks, "bytes", bytes,
		"index_loaded", ost.Loaded, "files_statted", ost.Statted, "volumes", ost.Volumes, "store_open", ost.Duration.Round(time.Millisecond),
		"scrub_mib_per_s", cfg.ScrubRate, "scrub_chunks_per_s", cfg.ScrubChunks, "scrub_interval", cfg.ScrubInterval)
	return n, nil
}

// dataTLS is the data port's TLS: HTTP/1.1 only, as in plain text (one
// stream per connection keeps chunk transfers at the speed of the socket,
// with no HTTP/2 flow-control window between them).
func dataTLS(c *tls.Config) *tls.Config {
	c.NextProtos = []string{"http/1.1"}
	return c
}

// ID is the node's id.
func (n *Node) ID() dfs.NodeID { return n.id }

// Addr is the advertised HTTP data plane address.
func (n *Node) Addr() string { return n.addr }

// GRPCAddr is the advertised control address.
func (n *Node) GRPCAddr() string { return n.grpcAddr }

// waitRegistered waits, for ReportWait at most, until the node has
// registered with a coordinator once: a chunk can reach a node placed by a
// coordinator that has taken its registration before the node has read the
// answer (the replication factor, the token key). It reports whether the
// node has registered.
func (n *Node) waitRegistered(ctx context.Context) bool {
	select {
	case <-n.firstReg:
		return true
	default:
	}
	t := time.NewTimer(n.cfg.ReportWait)
	defer t.Stop()
	select {
	case <-n.firstReg:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// Store is the node's chunk store.
func (n *Node) Store() dfs.ChunkStore { return n.store }

// OpenLocal opens chunk h for a client in this process (the gateway or the
// workers that one binary starts with its datanodes): the bytes a GET of
// the data plane would serve, without a socket or TLS between them, as a
// local read of HDFS does. The reader verifies them as it verifies any
// read. It fails once the node is closed, as its data plane does.
func (n *Node) OpenLocal(h dfs.ChunkHash) (dfs.ReadAtCloser, int64, error) {
	if n.ctx.Err() != nil {
		return nil, 0, fmt.Errorf("%w: datanode %s is stopped", dfs.ErrUnavailable, n.id)
	}
	return n.store.Open(h)
}

// Close stops serving and reporting.
func (n *Node) Close() error {
	n.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n.httpSrv != nil {
		n.httpSrv.Shutdown(ctx)
	}
	if n.grpcSrv != nil {
		stopped := make(chan struct{})
		go func() { n.grpcSrv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			n.grpcSrv.Stop()
		}
	}
	n.wg.Wait()
	for _, l := range n.links {
		l.conn.Close()
	}
	if n.client != nil {
		n.client.CloseIdleConnections()
	}
	// Last, once nothing serves or scrubs: the store saves its index, so
	// the next start need not walk the disk.
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			n.log.Warn("close chunk store", "err", err)
			return fmt.Errorf("datanode %s: %w", n.id, err)
		}
	}
	return nil
}

// ChunkAdded implements dfs.ChunkObserver: queue the news for every
// coordinator.
func (n *Node) ChunkAdded(h dfs.ChunkHash, size int64) {
	for _, l := range n.links {
		l.enqueueAdded(h)
	}
}

// ChunkRemoved implements dfs.ChunkObserver. A chunk being quarantined is
// queued as removed and as corrupt at once, so one heartbeat carries both.
func (n *Node) ChunkRemoved(h dfs.ChunkHash) {
	n.qmu.Lock()
	corrupt := n.quarantining[h] > 0
	n.qmu.Unlock()
	for _, l := range n.links {
		l.enqueueRemoved(h, corrupt)
	}
}

// quarantineCorrupt handles a copy found corrupt (foundBy says how): it
// moves the copy to the store's quarantine, which queues it as removed and
// corrupt for every coordinator. If the copy cannot be moved it stays, still
// reported corrupt, so the coordinators stop sending readers to it. The
// caller makes the coordinators hear of it (announce or poke).
func (n *Node) quarantineCorrupt(h dfs.ChunkHash, foundBy string) {
	n.corruptFound.Add(1)
	n.qmu.Lock()
	n.quarantining[h]++
	n.qmu.Unlock()
	err := n.store.Quarantine(h)
	n.qmu.Lock()
	if n.quarantining[h]--; n.quarantining[h] == 0 {
		delete(n.quarantining, h)
	}
	n.qmu.Unlock()
	switch {
	case err == nil:
		n.log.Warn("corrupt chunk quarantined", "chunk", h.String(), "found_by", foundBy)
	case errors.Is(err, dfs.ErrNotFound):
		// Deleted since it was read; the deletion reported its removal.
		n.log.Warn("corrupt chunk found, already deleted", "chunk", h.String(), "found_by", foundBy)
	default:
		n.log.Error("corrupt chunk could not be quarantined", "chunk", h.String(), "found_by", foundBy, "err", err)
		for _, l := range n.links {
			l.enqueueCorrupt(h)
		}
	}
}

// poke makes every link send a heartbeat now, without waiting for it.
func (n *Node) poke() {
	for _, l := range n.links {
		l.poke()
	}
}

// announce makes the coordinators hear of what the store did so far, waiting
// at most ReportWait.
func (n *Node) announce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReportWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range n.links {
		wg.Add(1)
		go func() { defer wg.Done(); l.flush(ctx) }()
	}
	wg.Wait()
}

func (n *Node) stats() *api.NodeStats {
	chunks, used := n.store.Usage()
	free, capacity, err := n.store.Free()
	if err != nil {
		n.log.Warn("free space", "err", err)
	}
	st := &api.NodeStats{CapacityBytes: capacity, UsedBytes: used, FreeBytes: free, Chunks: chunks,
		CorruptChunks: n.corruptFound.Load()}
	st.LeaderTerm, st.FencedCommands = n.terms.stats()
	if n.scrub != nil {
		st.ScrubbedChunks = n.scrub.chunks.Load()
		st.ScrubbedBytes = n.scrub.bytes.Load()
		st.ScrubPassUnixNano = n.scrub.passEnd.Load()
	}
	return st
}

func (n *Node) apiNode() *api.Node {
	return &api.Node{Id: string(n.id), Addr: n.addr, GrpcAddr: n.grpcAddr, Zone: n.cfg.Zone}
}

// newIncarnation returns a random non-zero number for this process.
func newIncarnation() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if x := binary.LittleEndian.Uint64(b[:]); x != 0 {
			return x
		}
	}
}

// loadID reads the node id kept in dir, making one on first start.
func loadID(dir string) (dfs.NodeID, error) {
	path := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if id == "" {
			return "", fmt.Errorf("datanode: %s is empty", path)
		}
		return dfs.NodeID(id), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("datanode: %w", err)
	}
	var r [4]byte
	rand.Read(r[:])
	id := "dn-" + hex.EncodeToString(r[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("datanode: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("datanode: %w", err)
	}
	return dfs.NodeID(id), nil
}

func advertised(host string, a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	if host != "" {
		return net.JoinHostPort(host, port)
	}
	h, _, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(h); ip == nil || ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil {
			h = name
		}
	}
	return net.JoinHostPort(h, port)
}
