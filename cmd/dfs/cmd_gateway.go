package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/pki"
)

// gatewayFlags are the flags shared by gateway and server.
type gatewayFlags struct {
	tokenFile string
	inFlag    string // --api-token, refused: a flag shows in ps
	public    bool
	token     string // set by load
	s3Region  string
	s3Domain  string
}

func (g *gatewayFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&g.tokenFile, "api-token-file", "", "file holding the token every mutating REST request must carry as 'Authorization: Bearer <token>' (or DFS_API_TOKEN)")
	f.StringVar(&g.inFlag, "api-token", "", "")
	f.MarkHidden("api-token")
	f.BoolVar(&g.public, "insecure-public", false, "allow listening on a non-loopback address without a token: anyone who reaches it can write and delete")
	f.StringVar(&g.s3Region, "s3-region", "us-east-1", "the region the S3 API answers for (clients sign requests for it)")
	f.StringVar(&g.s3Domain, "s3-domain", "", "serve virtual-hosted style S3 requests (BUCKET.DOMAIN) for this domain too, besides path style")
}

// load reads the token: from DFS_API_TOKEN or --api-token-file, never
// from the command line, where every user of the host sees it in ps.
func (g *gatewayFlags) load() error {
	if g.inFlag != "" {
		return usagef("--api-token: a token on the command line shows in ps to every user of the host; set DFS_API_TOKEN or use --api-token-file")
	}
	g.token = os.Getenv("DFS_API_TOKEN")
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return usagef("--api-token-file: %v", err)
		}
		g.token = strings.TrimSpace(string(b))
		if g.token == "" {
			return usagef("--api-token-file %s is empty", g.tokenFile)
		}
	}
	return nil
}

func newGatewayCmd(g *globals) *cobra.Command {
	var (
		httpAddr string
		s3Addr   string
		gf       gatewayFlags
	)
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run a gateway: the REST API, live events and the web UI",
		Long: `gateway serves the REST API under /api/v1, server-sent events at
/api/v1/events, Prometheus metrics at /metrics and the web UI at /. It keeps no
state: it is a client of the coordinators given with --coordinator, failing
over between them.

Without a token (DFS_API_TOKEN or --api-token-file) it listens on loopback addresses only,
unless --insecure-public says the exposure is intended.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			addrs := splitList(g.coordinators)
			if len(addrs) == 0 {
				return usagef("--coordinator: no address")
			}
			if err := gf.load(); err != nil {
				return err
			}
			node, err := g.nodeTLS(pki.RoleGateway)
			if err != nil {
				return err
			}
			gw, err := cluster.StartGateway(cluster.GatewayConfig{
				Listen: httpAddr, S3: s3Addr, S3Region: gf.s3Region, S3Domain: gf.s3Domain, Coordinators: addrs, Token: gf.token, Public: gf.public, TLS: node, Logger: slog.Default(),
			})
			if err != nil {
				return err
			}
			defer gw.Close()
			fmt.Printf("dfs gateway ready: web UI %s, coordinators %s\n", gw.URL(), g.coordinators)
			return waitForStop(cmd, nil)
		},
	}
	cmd.Flags().StringVar(&httpAddr, "http", "127.0.0.1:8080", "HTTP listen address")
	cmd.Flags().StringVar(&s3Addr, "s3", "", "S3 API listen address (path-style; requests signed with access keys); empty: none")
	gf.register(cmd)
	g.registerCertsDir(cmd)
	return cmd
}
