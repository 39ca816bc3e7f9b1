package cluster

import (
	"context"
	"crypto/tls"
	"log/slog"

	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/gateway"
	"github.com/dfs-store/dfs/internal/pki"
)

// GatewayConfig configures a gateway.
type GatewayConfig struct {
	// Listen is the HTTP address (port 0 picks a free one).
	Listen       string
	Coordinators []string
	// Token and Public as in gateway.Listen.
	Token  string
	Public bool
	// TLS, if set, is the gateway's node certificate: it reaches the
	// cluster over TLS with it. Nil: plain text (--insecure).
	TLS    *pki.Node
	Logger *slog.Logger
}

// Gateway is a serving gateway with its client of the cluster.
type Gateway struct {
	Server *gateway.Server
	Client *client.Client
	addr   string
	scheme string
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
		tc := cfg.TLS.ServerTLS(false)
		tc.ClientAuth = tls.NoClientCert
		tc.MinVersion = tls.VersionTLS12 // browsers and curl of every age
		tc.NextProtos = []string{"h2", "http/1.1"}
		ln = tls.NewListener(ln, tc)
		scheme = "https://"
	}
	cl, err := client.New(client.Config{Coordinators: cfg.Coordinators, TLS: nodeTLS(cfg.TLS), Logger: cfg.Logger})
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv, err := gateway.New(gateway.Config{Client: cl, Keys: cfg.TLS != nil, Token: cfg.Token, Public: cfg.Public, Logger: cfg.Logger})
	if err != nil {
		ln.Close()
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
	return g, nil
}

// Addr is the gateway's HTTP address.
func (g *Gateway) Addr() string { return g.addr }

// URL is the web UI's address.
func (g *Gateway) URL() string { return g.scheme + g.addr + "/" }

// Close stops the gateway: its server, its event feeds, its client.
func (g *Gateway) Close() error {
	g.stop()
	<-g.done
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
