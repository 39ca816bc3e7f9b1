package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/coordinator"
	"github.com/dfs-store/dfs/internal/gateway"
	"github.com/dfs-store/dfs/internal/memlimit"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/pki"
)

// Scrub rates of each datanode of dfs server. Its datanodes share one
// machine and usually one disk, so together they scrub at about three
// quarters of a lone datanode's byte rate and 1.5 times its chunk rate:
// about 0.5% of a core with small chunks, a pass over a million chunks a
// node in about 28 hours.
const (
	serverScrubRate   = 5  // MiB/s
	serverScrubChunks = 10 // chunks/s
)

func newServerCmd(g *globals) *cobra.Command {
	var (
		data      string
		grpcAddr  string
		nodes     int
		noSync    bool
		reserve   string
		endpoints string
		keyRoot   string
		httpAddr  string
		s3Addr    string
		memLimit  string
		scrub     scrubFlags
		cc        coordinatorFlags
		gf        gatewayFlags
		wf        workerFlags
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a whole cluster in one process: etcd, a coordinator, three datanodes, three workers and a gateway",
		Long: `server runs everything dfs needs in one process, for a laptop or a test:
an embedded etcd, a coordinator, three datanodes (--datanodes), each with
its own directory and ports so that three replicas really are three copies, three
post-upload workers (worker-1 to worker-3), and a gateway serving the REST
API and the web UI on --http and the S3 API on --s3. All data lives under --data and comes back
after a restart. The datanodes scrub (re-read and check) their chunks in
the background at modest rates, as they share the machine.

One server runs on a data directory at a time: it holds a lock on
DATA/server.lock while it runs, and a second one is told the directory is
in use. Ports in use are named with the flag that sets them, before
anything is written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// The S3 API is the gateway's, and needs access keys: it is on
			// by default only where both are.
			if s3Addr != "" && (httpAddr == "" || g.insecure) {
				if cmd.Flags().Changed("s3") {
					return usagef("--s3 needs the gateway (--http) and a cluster with certificates (no --insecure): S3 requests are signed with access keys")
				}
				s3Addr = ""
			}
			if nodes < 1 {
				return usagef("--datanodes %d: want at least 1 (the default is 3, one per replica)", nodes)
			}
			res, err := parseReserve(reserve, data)
			if err != nil {
				return err
			}
			if err := scrub.check(); err != nil {
				return err
			}
			ml, err := humanize.ParseBytes(memLimit)
			if err != nil {
				return usagef("--memory-limit %q: %v", memLimit, err)
			}
			if err := gf.load(); err != nil {
				return err
			}
			coord, err := cc.config()
			if err != nil {
				return err
			}
			jc, err := wf.config()
			if err != nil {
				return err
			}
			start := time.Now()
			lock, err := lockServerData(data, listenFlag{"--grpc", grpcAddr}, listenFlag{"--http", httpAddr}, listenFlag{"--s3", s3Addr})
			if err != nil {
				return err
			}
			defer lock.Unlock()
			memlimit.Start(cmd.Context(), int64(ml), 10*time.Second, slog.Default())
			node, err := serverCerts(g, data, grpcAddr, httpAddr, s3Addr)
			if err != nil {
				return err
			}
			cl, err := cluster.Start(cmd.Context(), cluster.Config{
				Dir:             data,
				GRPC:            grpcAddr,
				Datanodes:       nodes,
				NoSync:          noSync,
				DatanodeReserve: int64(res),
				DatanodeScrub:   scrub.config(),
				EtcdEndpoints:   splitList(endpoints),
				KeyRoot:         keyRoot,
				Coordinator:     coord,
				HTTP:            httpAddr,
				S3:              s3Addr,
				S3Region:        gf.s3Region,
				S3Domain:        gf.s3Domain,
				APIToken:        gf.token,
				HTTPPublic:      gf.public,
				Jobs:            jc,
				TLS:             node,
				Logger:          slog.Default(),
			})
			if err != nil {
				return err
			}
			defer cl.Close()
			confPath, wroteDefault, err := serverClientConfig(cmd.Context(), data, cl.Addr(), node, cl.Coordinator.Meta)
			if err != nil {
				return err
			}
			workers := 0
			if cl.Workers != nil {
				workers = len(cl.Workers.Workers())
			}
			fmt.Printf("dfs server ready in %v: coordinator %s, %d datanodes, %d workers, data in %s\n",
				time.Since(start).Round(time.Millisecond), cl.Addr(), len(cl.Nodes), workers, data)
			if wroteDefault {
				fmt.Printf("  client configuration: %s (also written to %s)\n", confPath, defaultConfigPath())
			} else {
				fmt.Printf("  clients: export DFS_CONFIG=%s\n", confPath)
			}
			if cl.Gateway != nil {
				fmt.Printf("  web UI %s\n", cl.Gateway.URL())
				if a := cl.Gateway.S3Addr(); a != "" {
					fmt.Printf("  S3 API %s (region %s; keys: dfs key create NAME)\n", a, gateway.DefaultRegion)
				}
			}
			fmt.Printf("  try: dfs put FILE && dfs ls && dfs nodes\n")
			return waitForStop(cmd, cl.Coordinator.Etcd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "./dfs-data", "directory for all data")
	f.StringVar(&grpcAddr, "grpc", client.DefaultCoordinator, "coordinator gRPC listen address")
	f.IntVar(&nodes, "datanodes", 3, "number of datanodes")
	f.BoolVar(&noSync, "no-fsync", false, "do not fsync chunk files (benchmarks only: a crash can lose acknowledged data)")
	f.StringVar(&reserve, "reserve", defaultReserve, "disk space each datanode leaves free: bytes (1GiB) or a share of the disk (1%)")
	f.StringVar(&endpoints, "etcd-endpoints", "", "use this external etcd cluster instead of an embedded one")
	f.StringVar(&keyRoot, "key-root", "", "root of dfs's keys in etcd (default /dfs)")
	f.StringVar(&httpAddr, "http", "127.0.0.1:8080", "gateway (REST API and web UI) listen address; empty: no gateway")
	f.StringVar(&s3Addr, "s3", "127.0.0.1:9100", "S3 API listen address (path-style, signed with access keys); empty: none")
	f.StringVar(&memLimit, "memory-limit", "384MiB", "soft memory limit while the live data is small: the collector runs earlier rather than let bursts of uploads double the process (it rises with the live data, so never binds a server that needs more; 0: Go's default; GOMEMLIMIT overrides)")
	scrub.register(cmd, serverScrubRate, serverScrubChunks)
	cc.register(cmd)
	gf.register(cmd)
	wf.register(cmd)
	return cmd
}

// listenFlag is a listen address and the flag that set it.
type listenFlag struct{ flag, addr string }

// lockServerData takes the lock on the data directory of dfs server (see
// cluster.LockDir) and checks that the ports it is to listen on are free,
// before anything is written: a second server on the same directory is
// told the directory is in use, and one on a port in use is told which
// flag to change, and leaves no data directory behind.
func lockServerData(data string, ports ...listenFlag) (*cluster.DirLock, error) {
	var lock *cluster.DirLock
	_, err := os.Stat(data)
	existed := err == nil
	if existed {
		if lock, err = cluster.LockDir(data); err != nil {
			return nil, err
		}
	}
	for _, p := range ports {
		if p.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			lock.Unlock()
			if errors.Is(err, syscall.EADDRINUSE) {
				_, port, _ := net.SplitHostPort(p.addr)
				return nil, fmt.Errorf("port %s is in use (%s %s), by another dfs server or another program: pass %s with a free address", port, p.flag, p.addr, p.flag)
			}
			return nil, usagef("%s %s: %v", p.flag, p.addr, err)
		}
		ln.Close()
	}
	if !existed {
		if err := os.MkdirAll(data, 0o755); err != nil {
			return nil, fmt.Errorf("make the data directory: %w", err)
		}
		return cluster.LockDir(data)
	}
	return lock, nil
}

// serverCerts returns the node certificate of dfs server, made on first
// start in DATA/certs: a CA of its own, and a certificate for this host's
// loopback names and addresses and for the hosts of --grpc and --http. Nil
// with --insecure.
func serverCerts(g *globals, data string, addrs ...string) (*pki.Node, error) {
	if g.insecure {
		warnInsecure()
		return nil, nil
	}
	dir := filepath.Join(data, "certs")
	if _, err := os.Stat(filepath.Join(dir, pki.CACert)); errors.Is(err, fs.ErrNotExist) {
		if err := pki.CreateCA(dir); err != nil {
			return nil, fmt.Errorf("make the cluster's CA: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, pki.NodeCert)); errors.Is(err, fs.ErrNotExist) {
		hosts := []string{"localhost", "127.0.0.1", "::1"}
		if h, err := os.Hostname(); err == nil && h != "" {
			hosts = append(hosts, h)
		}
		for _, a := range addrs {
			if h, _, err := net.SplitHostPort(a); err == nil && h != "" && !slices.Contains(hosts, h) {
				if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
					hosts = append(hosts, h)
				}
			}
		}
		if err := pki.CreateNode(dir, hosts, nil); err != nil {
			return nil, fmt.Errorf("make the node certificate: %w", err)
		}
	}
	return pki.LoadNode(dir, "")
}

// serverClientConfig writes the client configuration of dfs server to
// DATA/client.conf, with an admin access key (the one written before, if it
// is still valid; else a new one), and to ~/.config/dfs/config if the user
// has none or it is one this server wrote. It returns the first path and
// whether it wrote the second.
func serverClientConfig(ctx context.Context, data, addr string, node *pki.Node, m *meta.Store) (string, bool, error) {
	dataAbs, err := filepath.Abs(data)
	if err != nil {
		return "", false, err
	}
	path := filepath.Join(dataAbs, "client.conf")
	c := &clientConfig{Coordinators: []string{addr}, Insecure: node == nil, ServerData: dataAbs}
	if node != nil {
		ca, err := os.ReadFile(filepath.Join(node.Dir, pki.CACert))
		if err != nil {
			return "", false, err
		}
		c.CA = string(ca)
		c.AccessKeyID, c.SecretAccessKey, err = serverAdminKey(ctx, path, m)
		if err != nil {
			return "", false, err
		}
	}
	if err := client.WriteConfigFile(path, c); err != nil {
		return "", false, fmt.Errorf("write the client configuration: %w", err)
	}
	def := defaultConfigPath()
	if def == "" {
		return path, false, nil
	}
	if old, err := client.ReadConfigFile(def); !errors.Is(err, fs.ErrNotExist) && (err != nil || old.ServerData != dataAbs) {
		return path, false, nil // the user's own, or another server's
	}
	if err := client.WriteConfigFile(def, c); err != nil {
		slog.Warn("could not write the default client configuration", "path", def, "err", err)
		return path, false, nil
	}
	return path, true, nil
}

// serverAdminKey returns the admin access key of dfs server: the one in its
// client configuration at path if the cluster still holds it, else a new
// one.
func serverAdminKey(ctx context.Context, path string, m *meta.Store) (id, secret string, err error) {
	if old, err := client.ReadConfigFile(path); err == nil && old.AccessKeyID != "" {
		rec, err := m.AccessKey(ctx, old.AccessKeyID)
		switch {
		case err == nil && rec.Secret == old.SecretAccessKey && rec.Admin:
			return old.AccessKeyID, old.SecretAccessKey, nil
		case err != nil && !errors.Is(err, dfs.ErrNotFound):
			return "", "", fmt.Errorf("read the admin access key: %w", err)
		}
	}
	id, secret = access.NewKey()
	rec := &api.AccessKeyRecord{Id: id, Secret: secret, Name: "admin (dfs server)", Admin: true, CreatedUnixNano: time.Now().UnixNano()}
	if err := m.CreateAccessKey(ctx, rec); err != nil {
		return "", "", fmt.Errorf("make the admin access key: %w", err)
	}
	slog.Info("made an admin access key", "key", id, "config", path)
	return id, secret, nil
}

// coordinatorFlags are the tuning flags shared by server and coordinator.
type coordinatorFlags struct {
	maxFileSize           string
	replicas, minReplicas int
	deadAfter             time.Duration
	commitWait            time.Duration
	repairInterval        time.Duration
	gcInterval, gcGrace   time.Duration
	electionTTL           time.Duration
	maxKeySessions        int
	maxKeyChunks          int
	multipartExpiry       time.Duration
	versionRetention      time.Duration
}

func (c *coordinatorFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.maxFileSize, "max-file-size", "5TiB", "the largest file an upload may make")
	f.IntVar(&c.replicas, "replicas", 3, "copies of every chunk")
	f.IntVar(&c.minReplicas, "min-replicas", 2, "copies every chunk needs before a commit succeeds")
	f.DurationVar(&c.deadAfter, "dead-after", 60*time.Second, "heartbeat silence after which a datanode is dead")
	f.DurationVar(&c.commitWait, "commit-wait", 10*time.Second, "how long a commit waits for chunk replicas to be reported")
	f.DurationVar(&c.repairInterval, "repair-interval", 10*time.Second, "time between scans for under-replicated chunks")
	f.DurationVar(&c.gcInterval, "gc-interval", 10*time.Minute, "time between garbage collections")
	f.DurationVar(&c.gcGrace, "gc-grace", time.Hour, "how old unreferenced data must be before it is collected")
	f.IntVar(&c.maxKeySessions, "max-key-sessions", 1000, "open uploads one access key may hold on a coordinator")
	f.IntVar(&c.maxKeyChunks, "max-key-chunks", 1<<20, "chunks allocated in one access key's open uploads on a coordinator")
	f.DurationVar(&c.multipartExpiry, "multipart-expiry", 7*24*time.Hour, "how long an unfinished multipart upload stays before it is aborted and its parts dropped")
	f.DurationVar(&c.versionRetention, "version-retention", 7*24*time.Hour, "how long earlier versions of overwritten and deleted files are kept, in buckets that do not set their own (0: not kept; dfs versioning)")
	f.DurationVar(&c.electionTTL, "election-ttl", 5*time.Second, "lease of the leader's election key: a leader silent this long is replaced (whole seconds, at least 1s)")
}

func (c *coordinatorFlags) config() (coordinator.Config, error) {
	max, err := humanize.ParseBytes(c.maxFileSize)
	if err != nil || max == 0 {
		return coordinator.Config{}, usagef("--max-file-size %q: want a size such as 100GiB", c.maxFileSize)
	}
	if c.versionRetention < 0 || c.versionRetention > meta.MaxRetention {
		return coordinator.Config{}, usagef("--version-retention %v: want 0 (not kept) to %v (100 years)", c.versionRetention, meta.MaxRetention)
	}
	return coordinator.Config{
		MaxFileSize:      int64(max),
		Replicas:         c.replicas,
		MinReplicas:      c.minReplicas,
		DeadAfter:        c.deadAfter,
		CommitWait:       c.commitWait,
		RepairInterval:   c.repairInterval,
		GCInterval:       c.gcInterval,
		GCGrace:          c.gcGrace,
		ElectionTTL:      c.electionTTL,
		MaxKeySessions:   c.maxKeySessions,
		MaxKeyChunks:     c.maxKeyChunks,
		UploadExpiry:     c.multipartExpiry,
		VersionRetention: c.versionRetention,
	}, nil
}
