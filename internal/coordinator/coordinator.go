// Package coordinator is the control plane of dfs. A coordinator places new
// chunks on datanodes, commits files to etcd, answers lookups with live
// replica locations, and keeps the node table from the datanodes'
// heartbeats.
//
// Its only state is soft: which node holds which chunk, and when each node
// was last heard from. Both are rebuilt from the datanodes' reports (a full
// report when the coordinator has no state for the datanode's process,
// deltas on every heartbeat), so a restarted coordinator is correct again
// once the live datanodes have reported. What must survive (paths,
// contents, the node registry) is in etcd. Chunk health is counted as the
// locations and node states change (health.go), so status answers and
// repair cost what changed, not what is stored.
package coordinator

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/meta"
)

// Config tunes a coordinator. Zero values take the defaults.
type Config struct {
	// Addr is the coordinator's own gRPC address, recorded with the upload
	// sessions it opens.
	Addr string
	// Replicas is the replication factor (default 3).
	Replicas int
	// MinReplicas is the number of known copies every chunk needs before a
	// commit succeeds (default 2).
	MinReplicas int
	// SuspectAfter is the heartbeat silence after which a node is suspect and
	// gets no new chunks (default 3s: three missed beats).
	SuspectAfter time.Duration
	// DeadAfter is the silence after which a node is dead and its copies no
	// longer count (default 60s).
	DeadAfter time.Duration
	// CommitWait bounds how long a commit waits for chunk replicas to be
	// reported (default 10s).
	CommitWait time.Duration
	// SessionTTL is how long an upload session stays open without
	// activity: every allocation renews it (default 1h).
	SessionTTL time.Duration
	// MaxSessions bounds the upload sessions open on this coordinator
	// (default 10000), MaxSessionChunks the chunks one session may
	// allocate (default 1,048,576: a 2 TiB file at the average chunk
	// size), and MaxPendingChunks the chunks allocated in all open
	// sessions together (default 4,194,304, about 600 MB of memory): past
	// them, allocations fail with ResourceExhausted, and no flood of
	// allocations can exhaust the coordinator's memory.
	MaxSessions, MaxSessionChunks, MaxPendingChunks int
	// MaxKeySessions bounds the upload sessions one access key may hold
	// open on this coordinator (default 1000), and MaxKeyChunks the chunks
	// allocated in them (default a quarter of MaxPendingChunks): one user
	// cannot take every upload slot.
	MaxKeySessions, MaxKeyChunks int
	// MaxFileSize is the largest file an upload may make (default 5 TiB,
	// S3's largest object): its chunks' sizes add up to at most this much
	// in one session, and a commit of a larger file is refused.
	MaxFileSize int64
	// MaxChunkSize is the largest chunk accepted (default 64 MiB).
	MaxChunkSize int64
	// RepairInterval is the time between scans for chunks below the
	// replication factor (default 10s); a node's death starts one at once.
	RepairInterval time.Duration
	// CopiesPerNode bounds the repair copies a node sends or receives at
	// once, so a node's loss does not starve client traffic (default 2).
	CopiesPerNode int
	// GCInterval is the time between garbage collections (default 10m);
	// GCGrace is how old unreferenced data must be to be collected
	// (default 1h). Both are shortened in tests.
	GCInterval time.Duration
	GCGrace    time.Duration
	// UploadExpiry is how long an upload in parts (S3 multipart) may stay
	// open before it is aborted and its parts dropped (default 7 days).
	UploadExpiry time.Duration
	// VersionRetention is how long buckets in the default versioning mode
	// keep earlier versions of their paths (0: none; `dfs server` and
	// `dfs coordinator` default to 7 days).
	VersionRetention time.Duration
	// ElectionTTL is the lease of the leader's etcd session: a leader that
	// stops renewing it loses the election after this long (default 5s).
	ElectionTTL time.Duration
	// TLS, if set, is how the coordinator dials datanodes and other
	// coordinators: their certificates verified against the cluster's CA,
	// its own node certificate presented. Nil: plain text (--insecure).
	TLS    *tls.Config
	Logger *slog.Logger
}

func (c *Config) fill() {
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.MinReplicas <= 0 {
		c.MinReplicas = min(2, c.Replicas)
	}
	if c.MinReplicas > c.Replicas {
		c.MinReplicas = c.Replicas
	}
	if c.SuspectAfter <= 0 {
		c.SuspectAfter = 3 * time.Second
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = 60 * time.Second
	}
	if c.DeadAfter < c.SuspectAfter {
		c.SuspectAfter = c.DeadAfter
	}
	if c.CommitWait <= 0 {
		c.CommitWait = 10 * time.Second
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = time.Hour
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 10000
	}
	if c.MaxSessionChunks <= 0 {
		c.MaxSessionChunks = 1 << 20
	}
	if c.MaxPendingChunks <= 0 {
		c.MaxPendingChunks = 4 << 20
	}
	if c.MaxKeySessions <= 0 {
		c.MaxKeySessions = 1000
	}
	if c.MaxKeyChunks <= 0 {
		c.MaxKeyChunks = max(1, c.MaxPendingChunks/4)
	}
	if c.MaxFileSize <= 0 {
		c.MaxFileSize = 5 << 40
	}
	if c.MaxChunkSize <= 0 {
		c.MaxChunkSize = 64 << 20
	}
	if c.RepairInterval <= 0 {
		c.RepairInterval = 10 * time.Second
	}
	if c.CopiesPerNode <= 0 {
		c.CopiesPerNode = 2
	}
	if c.GCInterval <= 0 {
		c.GCInterval = 10 * time.Minute
	}
	if c.GCGrace <= 0 {
		c.GCGrace = time.Hour
	}
	if c.UploadExpiry <= 0 {
		c.UploadExpiry = 7 * 24 * time.Hour
	}
	if c.ElectionTTL < time.Second {
		c.ElectionTTL = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server is a coordinator. It implements the Coordinator and Registry gRPC
// services.
type Server struct {
	api.UnimplementedCoordinatorServer
	api.UnimplementedRegistryServer
	api.UnimplementedAccessServer

	cfg  Config
	keys keyCache // access keys read from etcd (access.go)
	// self knows the one-chunk contents, whose lookups need no content
	// read (selfcache.go).
	self selfCache
	// tokens makes the datanodes' capability tokens; nil on a cluster run
	// with --insecure.
	tokens *dataplane.TokenKey
	// httpc reads chunks to check a content hash (integrity.go).
	httpOnce sync.Once
	httpc    *http.Client
	meta     *meta.Store
	log      *slog.Logger

	mu       sync.Mutex
	nodes    map[dfs.NodeID]*node
	locs     *locMap             // soft state: who holds each chunk (locmap.go)
	changed  chan struct{}       // closed and replaced when locs grow
	gen      uint64              // last registration generation
	sessions map[string]*session // sessions this coordinator opened
	// keySessions and keyChunks count the open sessions and their chunks
	// by owner (the per-key limits).
	keySessions, keyChunks map[string]int
	pending                int // chunks allocated in them, together

	heal healState   // repair, drain and garbage collection (heal.go)
	hl   healthState // chunk health, kept as it changes (health.go)
	fc   fileCount   // files, kept from the etcd watch (files.go)
	gc   gcState     // garbage collection's own memory (gc.go)

	fsckPages atomic.Int64 // Fsck pages served (gc.go)

	// Leadership (leader.go).
	leader     atomic.Bool                // elected, and not found deposed
	fence      atomic.Pointer[meta.Fence] // the election key and term while leader
	seenTerm   atomic.Int64               // newest term seen in the election
	leaderSeen atomic.Value               // leaderInfo: who leads, as observed
	termNumber atomic.Int64               // this coordinator's last term, as numbered (leader.go)
	terms      termNumbers                // numbers of the terms seen, by fence
	lead       leadership
	events     eventsState // ends Events streams on stop (events.go)

	started time.Time // when New ran

	peersMu sync.Mutex
	peers   map[string]*grpc.ClientConn // other coordinators (status.go)

	lease   clientv3.LeaseID
	leaseMu sync.Mutex

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a coordinator over the metadata in m. Close stops it.
func New(ctx context.Context, m *meta.Store, cfg Config) (*Server, error) {
	cfg.fill()
	if cfg.VersionRetention > meta.MaxRetention {
		return nil, fmt.Errorf("coordinator: version retention %v: want at most %v (100 years)", cfg.VersionRetention, meta.MaxRetention)
	}
	m.SetDefaultRetention(cfg.VersionRetention)
	s := &Server{
		cfg:         cfg,
		meta:        m,
		log:         cfg.Logger.With("role", "coordinator"),
		nodes:       map[dfs.NodeID]*node{},
		locs:        newLocMap(),
		changed:     make(chan struct{}),
		sessions:    map[string]*session{},
		keySessions: map[string]int{}, keyChunks: map[string]int{},
		started: time.Now(),
	}
	s.heal.init()
	s.hl.init(cfg.Replicas)
	if s.secure() {
		id, secret, err := m.TokenKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("coordinator: %w", err)
		}
		s.tokens = &dataplane.TokenKey{ID: id, Secret: secret}
	}
	recs, err := m.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("coordinator: load node registry: %w", err)
	}
	for _, r := range recs {
		if _, err := s.newNodeLocked(dfs.NodeID(r.Id), r); err != nil {
			return nil, fmt.Errorf("coordinator: load node registry: %w", err)
		}
	}
	if err := s.renewLease(ctx); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(9)
	go s.uploadLoop()
	s.wg.Add(1)
	go s.versionLoop()
	go s.countFiles()
	go s.healthLoop()
	go s.maintain()
	go s.campaign()
	go s.observeLeader()
	go s.watchNodes()
	go s.repairLoop()
	go s.gcLoop()
	return s, nil
}

// Close stops the coordinator's background work and drops its sessions.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	s.closeDatanodeConns()
	s.closePeers()
	s.leaseMu.Lock()
	lease := s.lease
	s.leaseMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.meta.Client().Revoke(ctx, lease)
	return nil
}

// renewLease takes a fresh etcd lease for the sessions this coordinator
// opens, kept alive until Close. Sessions on it vanish if the coordinator
// dies.
func (s *Server) renewLease(ctx context.Context) error {
	g, err := s.meta.Client().Grant(ctx, 30)
	if err != nil {
		return fmt.Errorf("coordinator: etcd lease: %w", err)
	}
	s.leaseMu.Lock()
	s.lease = g.ID
	s.leaseMu.Unlock()
	return s.meta.AnnounceCoordinator(ctx, s.cfg.Addr, g.ID)
}

func (s *Server) currentLease() clientv3.LeaseID {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	return s.lease
}

// maintain keeps the session lease alive and expires stale sessions.
func (s *Server) maintain() {
	defer s.wg.Done()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		if _, err := s.meta.Client().KeepAliveOnce(ctx, s.currentLease()); err != nil && s.ctx.Err() == nil {
			s.log.Warn("session lease lost, taking a new one", "err", err)
			if err := s.renewLease(ctx); err != nil {
				s.log.Error("renew session lease", "err", err)
			}
		}
		now := time.Now()
		s.mu.Lock()
		for id, ss := range s.sessions {
			if now.After(ss.expires) {
				s.dropSessionLocked(id)
			}
		}
		s.mu.Unlock()
		cancel()
	}
}
