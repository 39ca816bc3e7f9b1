// Package etcdserver runs an etcd member inside a dfs process, so that a
// laptop (dfs server) or a set of coordinators needs no separate etcd
// install. It wraps go.etcd.io/etcd/server/v3/embed with the settings dfs
// wants: quiet logs, periodic compaction, online defragmentation one member
// at a time (defrag.go), a larger transaction limit, and ports chosen once
// and remembered in the data directory.
package etcdserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/dfs-store/dfs/internal/pki"
)

// Config says how to run the member.
type Config struct {
	// Dir holds the member's data and the remembered URLs.
	Dir string
	// Name of this member; "default" if empty.
	Name string
	// ClientURL and PeerURL are listened on and advertised. Empty means a
	// free port on 127.0.0.1, chosen at first start and kept in Dir.
	ClientURL string
	PeerURL   string
	// InitialCluster is name=peerURL,... of every member; empty means this
	// member alone.
	InitialCluster string
	// ClusterState is "new" (default) or "existing" (joining a running
	// cluster).
	ClusterState string
	// StartTimeout bounds the wait for the member to be ready (default 60s).
	StartTimeout time.Duration
	// DefragCheck is how often the member looks whether its file needs
	// defragmenting (defrag.go); 0 means DefragCheck, < 0 never.
	DefragCheck time.Duration
	// Logger gets the member's defragmentation lines (slog.Default if nil).
	Logger *slog.Logger
	// TLS, if set, secures both ports: they serve https with the node
	// certificate and accept only peers and clients with a certificate the
	// cluster's CA signed. URLs chosen here are then https ones, and a
	// remembered http URL becomes https on the same port.
	TLS *pki.Node
}

// Server is a running etcd member.
type Server struct {
	e         *embed.Etcd
	clientURL string
	closeOnce sync.Once
	logLevel  zap.AtomicLevel
	log       *slog.Logger
	tls       *pki.Node
	stop      chan struct{} // stops the defragmentation loop
	wg        sync.WaitGroup
}

type urls struct {
	Client string `json:"client"`
	Peer   string `json:"peer"`
	// ClientHTTP serves etcd's HTTP endpoints (health, metrics) apart
	// from the client URL when TLS is on, so that the client URL serves
	// gRPC natively: sharing one TLS port, etcd routes gRPC through Go's
	// HTTP server, which halved dfs's metadata throughput.
	ClientHTTP string `json:"client_http,omitempty"`
}

// Start starts the member and waits until it serves (for a multi-member
// cluster, until it has joined a quorum).
func Start(ctx context.Context, c Config) (*Server, error) {
	if c.Dir == "" {
		return nil, errors.New("etcd: no data directory")
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if c.Name == "" {
		c.Name = "default"
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 60 * time.Second
	}
	u, err := rememberURLs(c)
	if err != nil {
		return nil, err
	}
	cu, err := url.Parse(u.Client)
	if err != nil {
		return nil, fmt.Errorf("etcd client url %q: %w", u.Client, err)
	}
	pu, err := url.Parse(u.Peer)
	if err != nil {
		return nil, fmt.Errorf("etcd peer url %q: %w", u.Peer, err)
	}

	cfg := embed.NewConfig()
	if c.TLS != nil {
		hu, err := url.Parse(u.ClientHTTP)
		if err != nil {
			return nil, fmt.Errorf("etcd client http url %q: %w", u.ClientHTTP, err)
		}
		cfg.ListenClientHttpUrls = []url.URL{*hu}
		info := transport.TLSInfo{
			CertFile:       filepath.Join(c.TLS.Dir, pki.NodeCert),
			KeyFile:        filepath.Join(c.TLS.Dir, pki.NodeKey),
			TrustedCAFile:  filepath.Join(c.TLS.Dir, pki.CACert),
			ClientCertAuth: true,
		}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = info, info
	}
	cfg.Name = c.Name
	cfg.Dir = filepath.Join(c.Dir, "member-data")
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	if c.InitialCluster != "" {
		cfg.InitialCluster = c.InitialCluster
	} else {
		cfg.InitialCluster = c.Name + "=" + pu.String()
	}
	if c.ClusterState == "existing" {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	// etcd logs only errors, through the process's slog logger (one format
	// for every line), and nothing once dfs stops it (it reports a closed
	// server as an error).
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	level := zap.NewAtomicLevelAt(zap.ErrorLevel)
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(newSlogCore(c.Logger.With("role", "etcd"), level)))
	if err := portsFree(c.Dir, u); err != nil {
		return nil, err
	}
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "10m"
	cfg.MaxTxnOps = 1024
	cfg.QuotaBackendBytes = 8 << 30
	cfg.MaxRequestBytes = 4 << 20

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: start member %s in %s: %w", c.Name, c.Dir, err)
	}
	t := time.NewTimer(c.StartTimeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: member %s: %w", c.Name, err)
	case <-t.C:
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcd: member %s not ready after %v (is a quorum of members up?)", c.Name, c.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	s := &Server{e: e, clientURL: cu.String(), logLevel: level, log: c.Logger.With("role", "etcd"), stop: make(chan struct{}), tls: c.TLS}
	if c.DefragCheck == 0 {
		c.DefragCheck = DefragCheck
	}
	if c.DefragCheck > 0 {
		s.wg.Add(1)
		go s.defragLoop(s.stop, c.DefragCheck, DefragFreeRatio, DefragFreeBytes)
	}
	return s, nil
}

// Endpoints are the client URLs to reach this member.
func (s *Server) Endpoints() []string { return []string{s.clientURL} }

// Err reports a fatal error of the running member.
func (s *Server) Err() <-chan error { return s.e.Err() }

// Close stops the member. Calling it again does nothing: embed.Etcd.Close
// panics when called twice, and a process shutting down on a signal may
// well reach Close from two paths.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.logLevel.SetLevel(zap.FatalLevel)
		s.e.Close()
	})
}

// rememberURLs fills in empty URLs with free loopback ports, chosen once and
// kept in Dir so the member keeps its identity across restarts.
func rememberURLs(c Config) (urls, error) {
	path := filepath.Join(c.Dir, "urls.json")
	var u urls
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &u); err != nil {
			return u, fmt.Errorf("etcd: %s: %w", path, err)
		}
	}
	if c.ClientURL != "" {
		u.Client = c.ClientURL
	}
	if c.PeerURL != "" {
		u.Peer = c.PeerURL
	}
	scheme := "http://"
	if c.TLS != nil {
		scheme = "https://"
	}
	var err error
	if u.Client == "" {
		if u.Client, err = freeURL(scheme); err != nil {
			return u, err
		}
	}
	if u.Peer == "" {
		if u.Peer, err = freeURL(scheme); err != nil {
			return u, err
		}
	}
	if c.TLS != nil {
		// A member first started in plain text keeps its ports.
		u.Client = strings.Replace(u.Client, "http://", "https://", 1)
		u.Peer = strings.Replace(u.Peer, "http://", "https://", 1)
		if u.ClientHTTP == "" {
			if u.ClientHTTP, err = freeURL(scheme); err != nil {
				return u, err
			}
		}
	}
	b, _ := json.Marshal(u)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return u, fmt.Errorf("etcd: %w", err)
	}
	return u, nil
}

// portsFree checks that the member's ports are free before etcd tries
// them: they were chosen at its first start and kept in urls.json, so a
// clash names that file rather than a port the user never chose.
func portsFree(dir string, u urls) error {
	for _, s := range []string{u.Client, u.Peer, u.ClientHTTP} {
		if s == "" {
			continue
		}
		pu, err := url.Parse(s)
		if err != nil {
			continue // StartEtcd says what is wrong with it
		}
		ln, err := net.Listen("tcp", pu.Host)
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("etcd: port %s is in use by another program; it was chosen at the member's first start and is kept in %s (stop that program, or edit the file while dfs is stopped)",
				pu.Port(), filepath.Join(dir, "urls.json"))
		}
		if err == nil {
			ln.Close()
		}
	}
	return nil
}

func freeURL(scheme string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("etcd: find a free port: %w", err)
	}
	defer l.Close()
	return scheme + l.Addr().String(), nil
}

// ClientConfig returns the etcd client configuration that reaches
// endpoints: over TLS with the node certificate if node is not nil.
func ClientConfig(endpoints []string, node *pki.Node) clientv3.Config {
	cfg := clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if node != nil {
		cfg.TLS = node.ClientTLS()
	}
	return cfg
}
