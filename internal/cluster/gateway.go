package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/gateway"
	"github.com/dfs-store/dfs/internal/pki"
)

// GatewayConfig configures a gateway.
type GatewayConfig struct {
	// Listen is the HTTP address (port 0 picks a free one).
	Listen       string
	Coordinators []string
	// S3, if set, is the address of the S3 API (a cluster with
	// certificates only: S3 requests are signed with access keys), for
	// region S3Region (gateway.DefaultRegion if empty).
	S3, S3Region string
	// S3Domain, if set, also serves virtual-hosted style requests
	// (BUCKET.S3Domain) on the S3 address.
	S3Domain string
	// Token and Public as in gateway.Listen.
	Token  string
	Public bool
	// TLS, if set, is the gateway's node certificate: it reaches the
	// cluster over TLS with it. Nil: plain text (--insecure).
	TLS *pki.Node
	// Local, if set, names the datanodes in this process, which the
	// gateway reads chunks from without the network (client.Config.Local).
	Local  func(dfs.NodeID) client.LocalNode
	Logger *slog.Logger
}

// Gateway is a serving gateway with its client of the cluster.
type Gateway struct {
	Server *gateway.Server
	Client *client.Client
	addr   string
	scheme string
	s3addr string
	s3done chan struct{}
	stop   context.CancelFunc
	done   chan struct{}
}

// StartGateway starts a gateway serving on cfg.Listen.
func StartGateway(cfg GatewayConfig) (*Gateway, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// On a cluster with certificates every API request needs an access
	// key, so the gateway may listen anywhere; off loopback it serves
	// HTTPS with its node certificate, so keys and sessions never cross a
	// network in plain text.
	ln, err := gateway.Listen(cfg.Listen, cfg.Token, cfg.Public || cfg.TLS != nil)
	if err != nil {
		return nil, err
	}
	scheme := "http://"
	if cfg.TLS != nil && !gateway.IsLoopback(cfg.Listen) {
		ln = tls.NewListener(ln, publicTLS(cfg.TLS))
		scheme = "https://"
	}
	var s3ln net.Listener
	if cfg.S3 != "" {
		if cfg.TLS == nil {
			ln.Close()
			return nil, errors.New("gateway: the S3 API needs a cluster with certificates: its requests are signed with access keys")
		}
		if s3ln, err = net.Listen("tcp", cfg.S3); err != nil {
			ln.Close()
			return nil, fmt.Errorf("gateway: S3 listen %s: %w", cfg.S3, err)
		}
		if !gateway.IsLoopback(cfg.S3) {
			s3ln = tls.NewListener(s3ln, publicTLS(cfg.TLS))
		}
	}
	cl, err := client.New(client.Config{Coordinators: cfg.Coordinators, TLS: nodeTLS(cfg.TLS), Local: cfg.Local, Logger: cfg.Logger})
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv, err := gateway.New(gateway.Config{Client: cl, Keys: cfg.TLS != nil, Token: cfg.Token, Public: cfg.Public, Logger: cfg.Logger})
	if err != nil {
		ln.Close()
		if s3ln != nil {
			s3ln.Close()
		}
		cl.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{Server: srv, Client: cl, addr: ln.Addr().String(), scheme: scheme, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		if err := srv.Serve(ctx, ln); err != nil {
			cfg.Logger.Error("gateway stopped", "err", err)
		}
	}()
	if s3ln != nil {
		g.s3addr = s3ln.Addr().String()
		g.s3done = make(chan struct{})
		hs := &http.Server{Handler: srv.S3(gateway.S3Options{Region: cfg.S3Region, Domain: cfg.S3Domain}), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
		go func() {
			defer close(g.s3done)
			go func() { <-ctx.Done(); hs.Close() }()
			if err := hs.Serve(s3ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				cfg.Logger.Error("S3 API stopped", "err", err)
			}
		}()
	}
	return g, nil
}

// publicTLS is how a gateway serves HTTPS to clients: its node
// certificate, no client certificate asked for.
func publicTLS(n *pki.Node) *tls.Config {
	tc := n.ServerTLS(false)
	tc.ClientAuth = tls.NoClientCert
	tc.MinVersion = tls.VersionTLS12 // browsers and clients of every age
	tc.NextProtos = []string{"h2", "http/1.1"}
	return tc
}

// S3Addr is the S3 API's address, "" if it has none.
func (g *Gateway) S3Addr() string { return g.s3addr }

// Addr is the gateway's HTTP address.
func (g *Gateway) Addr() string { return g.addr }

// URL is the web UI's address.
func (g *Gateway) URL() string { return g.scheme + g.addr + "/" }

// Close stops the gateway: its server, its event feeds, its client.
func (g *Gateway) Close() error {
	g.stop()
	<-g.done
	if g.s3done != nil {
		<-g.s3done
	}
	g.Server.Close()
	g.Client.Close()
	return nil
}

// nodeTLS is how a role reaches the cluster with its node certificate; nil
// (plain text) without one.
func nodeTLS(n *pki.Node) *tls.Config {
	if n == nil {
		return nil
	}
	return n.ClientTLS()
}
