// Package cluster starts dfs roles inside one process: a coordinator with
// its metadata (an embedded etcd member or an external etcd cluster), and
// whole clusters of coordinator plus datanodes for `dfs server` and for
// tests. The roles talk over real sockets exactly as separate processes do;
// nothing here takes a shortcut through memory.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/coordinator"
	"github.com/dfs-store/dfs/internal/datanode"
	"github.com/dfs-store/dfs/internal/etcdserver"
	"github.com/dfs-store/dfs/internal/jobs"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/pki"
	"github.com/dfs-store/dfs/internal/rpc"
)

// CoordinatorConfig configures a coordinator and its metadata store.
type CoordinatorConfig struct {
	// Listen is the gRPC address (port 0 picks a free one).
	Listen string
	// EtcdEndpoints, if set, is an external etcd cluster. Otherwise an etcd
	// member is embedded, with its data under Dir.
	EtcdEndpoints []string
	Dir           string
	Etcd          etcdserver.Config // for the embedded member; Dir is filled in
	// KeyRoot is the root of dfs's keys in etcd (default /dfs).
	KeyRoot     string
	Coordinator coordinator.Config
	// TLS, if set, secures every port and connection of the coordinator
	// and of its embedded etcd member with the cluster's certificates; nil
	// runs them in plain text (--insecure).
	TLS    *pki.Node
	Logger *slog.Logger
}

// Coordinator is a serving coordinator with its metadata connection.
type Coordinator struct {
	Etcd   *etcdserver.Server // nil with an external etcd
	Client *clientv3.Client
	Meta   *meta.Store
	Server *coordinator.Server
	grpc   *grpc.Server
	ln     net.Listener
	done   chan struct{}
}

// Addr is the coordinator's gRPC address.
func (c *Coordinator) Addr() string { return c.ln.Addr().String() }

// StartCoordinator starts etcd (when embedded), the coordinator and its gRPC
// server.
func StartCoordinator(ctx context.Context, cfg CoordinatorConfig) (_ *Coordinator, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Coordinator{done: make(chan struct{})}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		if cfg.Dir == "" {
			return nil, errors.New("coordinator: embedded etcd needs a data directory")
		}
		ec := cfg.Etcd
		ec.Dir = filepath.Join(cfg.Dir, "etcd")
		ec.TLS = cfg.TLS
		if c.Etcd, err = etcdserver.Start(ctx, ec); err != nil {
			return nil, err
		}
		endpoints = c.Etcd.Endpoints()
	}
	ecfg := etcdserver.ClientConfig(endpoints, cfg.TLS)
	ecfg.Logger = quietZap()
	c.Client, err = clientv3.New(ecfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	// Fail early and clearly when etcd cannot be reached.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = c.Client.Get(sctx, "health-probe")
	cancel()
	if err != nil {
		return nil, fmt.Errorf("etcd %s: not reachable: %w", strings.Join(endpoints, ","), err)
	}
	c.Meta = meta.New(c.Client, meta.NewSchema(cfg.KeyRoot))
	if c.Etcd != nil {
		c.Meta = c.Meta.WithKV(c.Etcd.KV())
	}

	if c.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("coordinator: listen %s: %w", cfg.Listen, err)
	}
	cc := cfg.Coordinator
	cc.Addr = c.ln.Addr().String()
	cc.Logger = cfg.Logger
	if cfg.TLS != nil {
		cc.TLS = cfg.TLS.ClientTLS()
	}
	if c.Server, err = coordinator.New(ctx, c.Meta, cc); err != nil {
		return nil, err
	}
	c.grpc = coordinatorServer(cfg.Logger.With("role", "coordinator"), cfg.TLS, c.Server)
	api.RegisterCoordinatorServer(c.grpc, c.Server)
	api.RegisterRegistryServer(c.grpc, c.Server)
	api.RegisterAccessServer(c.grpc, c.Server)
	go func() {
		defer close(c.done)
		c.grpc.Serve(c.ln)
	}()
	return c, nil
}

// coordinatorServer is the coordinator's gRPC server: over TLS, only a
// datanode's certificate may call the Registry service (register, report,
// heartbeat), and every other call is made by an access key or a cluster
// certificate, and checked against its rights (coordinator/access.go).
func coordinatorServer(log *slog.Logger, node *pki.Node, srv *coordinator.Server) *grpc.Server {
	if node == nil {
		return rpc.NewServer(log)
	}
	registry := "/" + api.Registry_ServiceDesc.ServiceName + "/"
	notRegistry := func(method string) bool { return !strings.HasPrefix(method, registry) }
	opts := append(rpc.RequireRole(notRegistry, pki.RoleDatanode), srv.AuthInterceptors()...)
	return rpc.NewServerTLS(log, node.ServerTLS(false), opts...)
}

// Close stops the coordinator and, when embedded, its etcd member.
func (c *Coordinator) Close() error {
	if c.Server != nil {
		c.Server.StopEvents() // event streams would hold up a graceful stop
	}
	if c.grpc != nil {
		stopped := make(chan struct{})
		go func() { c.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			c.grpc.Stop()
		}
		<-c.done
	} else if c.ln != nil {
		c.ln.Close()
	}
	if c.Server != nil {
		c.Server.Close()
	}
	if c.Client != nil {
		c.Client.Close()
	}
	if c.Etcd != nil {
		c.Etcd.Close()
	}
	return nil
}

// Config configures an all-in-one cluster.
type Config struct {
	// Dir holds everything: etcd under etcd/, datanodes under datanodes/.
	Dir string
	// GRPC is the coordinator's address (default 127.0.0.1:9400).
	GRPC string
	// Datanodes is the number of datanodes (default 3).
	Datanodes int
	// NoSync skips fsync of chunk files (benchmarks only).
	NoSync bool
	// DatanodeReserve is disk space each datanode leaves free.
	DatanodeReserve int64
	// DatanodeScrubRate is how fast, in MiB/s, each datanode re-reads its
	// chunks to find corrupt ones; 0 disables scrubbing unless
	// DatanodeScrub.Rate is set.
	DatanodeScrubRate float64
	// DatanodeScrub, if its Rate is set, is how each datanode scrubs; it
	// takes precedence over DatanodeScrubRate.
	DatanodeScrub Scrub
	// EtcdEndpoints, if set, replaces the embedded etcd.
	EtcdEndpoints []string
	KeyRoot       string
	Coordinator   coordinator.Config
	// HTTP, if set, is the address of a gateway (REST API and web UI)
	// started with the cluster; APIToken and HTTPPublic as in
	// gateway.Listen.
	HTTP string
	// S3, if set with HTTP, is the address of the gateway's S3 API, for
	// region S3Region, virtual-hosted style too for S3Domain.
	S3, S3Region, S3Domain string
	APIToken               string
	HTTPPublic             bool
	// Jobs configures the post-upload workers; none run if Jobs.Workers
	// is 0. The etcd and dfs clients and the key schema are filled in.
	Jobs jobs.Config
	// TLS, if set, is the node certificate every role of the cluster
	// serves and dials with; nil runs them in plain text (--insecure).
	TLS    *pki.Node
	Logger *slog.Logger
}

// Scrub is how a datanode scrubs: see the Scrub fields of datanode.Config.
// Zero values take the datanode's defaults; a zero Rate disables scrubbing.
type Scrub struct {
	Rate     float64 // MiB/s
	Chunks   float64 // chunks/s
	Interval time.Duration
}

// Cluster is a coordinator and its datanodes in one process.
type Cluster struct {
	Coordinator *Coordinator
	Nodes       []*datanode.Node
	Gateway     *Gateway   // nil unless Config.HTTP is set
	Workers     *jobs.Pool // nil without workers
	workerCli   *client.Client
	cfg         Config
	local       sync.Map // dfs.NodeID → *datanode.Node, for localNode
}

// Start starts a cluster and waits until every datanode has registered.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg.Dir == "" {
		return nil, errors.New("cluster: no data directory")
	}
	if cfg.GRPC == "" {
		cfg.GRPC = client.DefaultCoordinator
	}
	if cfg.Datanodes <= 0 {
		cfg.Datanodes = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	cl := &Cluster{cfg: cfg}
	defer func() {
		if err != nil {
			cl.Close()
		}
	}()
	cl.Coordinator, err = StartCoordinator(ctx, CoordinatorConfig{
		Listen:        cfg.GRPC,
		EtcdEndpoints: cfg.EtcdEndpoints,
		Dir:           cfg.Dir,
		KeyRoot:       cfg.KeyRoot,
		Coordinator:   cfg.Coordinator,
		TLS:           cfg.TLS,
		Logger:        cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	for i := range cfg.Datanodes {
		if err := cl.AddDatanode(filepath.Join(cfg.Dir, "datanodes", fmt.Sprintf("dn%d", i+1))); err != nil {
			return nil, err
		}
	}
	if err := cl.WaitNodes(ctx, cfg.Datanodes); err != nil {
		return nil, err
	}
	if cfg.HTTP != "" {
		if cl.Gateway, err = StartGateway(GatewayConfig{
			Listen: cfg.HTTP, S3: cfg.S3, S3Region: cfg.S3Region, S3Domain: cfg.S3Domain, Coordinators: []string{cl.Addr()}, Token: cfg.APIToken, Public: cfg.HTTPPublic, TLS: cfg.TLS, Local: cl.localNode, Logger: cfg.Logger,
		}); err != nil {
			return nil, err
		}
	}
	if cfg.Jobs.Workers > 0 {
		if err := cl.startWorkers(); err != nil {
			return nil, err
		}
	}
	return cl, nil
}

// startWorkers starts the post-upload workers, reading content through
// the SDK like workers on other hosts.
func (cl *Cluster) startWorkers() (err error) {
	if cl.workerCli, err = cl.Client(client.Config{Downloads: workerDownloads, TLS: nodeTLS(cl.cfg.TLS), Local: cl.localNode}); err != nil {
		return err
	}
	jc := cl.cfg.Jobs
	jc.Etcd, jc.Client, jc.Schema, jc.Logger = cl.Coordinator.Client, cl.workerCli, cl.Coordinator.Meta.Schema(), cl.cfg.Logger
	cl.Workers, err = jobs.Start(jc)
	return err
}

// AddDatanode starts one more datanode with its data in dir.
func (cl *Cluster) AddDatanode(dir string) error {
	return cl.AddDatanodeWith(dir, nil)
}

// AddDatanodeWith starts one more datanode with its data in dir, its
// configuration first set from the cluster's and then changed by mod (if
// not nil): a zone label, or a reserve that leaves this one node no room.
func (cl *Cluster) AddDatanodeWith(dir string, mod func(*datanode.Config)) error {
	cfg := datanode.Config{
		Dir:          dir,
		Listen:       "127.0.0.1:0",
		Coordinators: []string{cl.Coordinator.Addr()},
		NoSync:       cl.cfg.NoSync,
		Reserve:      cl.cfg.DatanodeReserve,
		ScrubRate:    cl.cfg.DatanodeScrubRate,
		TLS:          cl.cfg.TLS,
		Logger:       cl.cfg.Logger,
	}
	if sc := cl.cfg.DatanodeScrub; sc.Rate > 0 {
		cfg.ScrubRate, cfg.ScrubChunks, cfg.ScrubInterval = sc.Rate, sc.Chunks, sc.Interval
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := datanode.Start(cfg)
	if err != nil {
		return err
	}
	cl.Nodes = append(cl.Nodes, n)
	cl.local.Store(n.ID(), n)
	return nil
}

// localNode is the datanode of this cluster called id, for the gateway and
// workers to read from without the network; nil if it is elsewhere.
func (cl *Cluster) localNode(id dfs.NodeID) client.LocalNode {
	if n, ok := cl.local.Load(id); ok {
		return n.(*datanode.Node)
	}
	return nil
}

// WaitNodes waits until at least n datanodes are alive in the node table.
func (cl *Cluster) WaitNodes(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		alive := 0
		for _, ni := range cl.Coordinator.Server.NodeTable() {
			if ni.Alive {
				alive++
			}
		}
		if alive >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %d of %d datanodes alive: %w", alive, n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Addr is the coordinator's gRPC address, for clients.
func (cl *Cluster) Addr() string { return cl.Coordinator.Addr() }

// Client returns a client of the cluster: over TLS when the cluster runs
// TLS, with its node certificate (an admin) unless cfg names an access key
// or a TLS configuration of its own.
func (cl *Cluster) Client(cfg client.Config) (*client.Client, error) {
	cfg.Coordinators = []string{cl.Addr()}
	if cl.cfg.TLS != nil && cfg.TLS == nil {
		if cfg.AccessKeyID != "" {
			cfg.TLS = pki.ClientTLS(cl.cfg.TLS.CAs)
		} else {
			cfg.TLS = cl.cfg.TLS.ClientTLS()
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = cl.cfg.Logger
	}
	return client.New(cfg)
}

// Close stops every role: the gateway and the workers first, then
// datanodes, so none reports to a coordinator that is gone.
func (cl *Cluster) Close() error {
	if cl.Gateway != nil {
		cl.Gateway.Close()
	}
	if cl.Workers != nil {
		cl.Workers.Close()
	}
	if cl.workerCli != nil {
		cl.workerCli.Close()
	}
	for _, n := range cl.Nodes {
		n.Close()
	}
	if cl.Coordinator != nil {
		cl.Coordinator.Close()
	}
	return nil
}
