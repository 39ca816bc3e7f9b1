package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/pki"
)

// gatewayFlags are the flags shared by gateway and server.
type gatewayFlags struct {
	token  string
	public bool
}

func (g *gatewayFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&g.token, "api-token", "", "token every mutating REST request must carry as 'Authorization: Bearer <token>'")
	f.BoolVar(&g.public, "insecure-public", false, "allow listening on a non-loopback address without --api-token: anyone who reaches it can write and delete")
}

func newGatewayCmd(g *globals) *cobra.Command {
	var (
		httpAddr string
		gf       gatewayFlags
	)
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run a gateway: the REST API, live events and the web UI",
		Long: `gateway serves the REST API under /api/v1, server-sent events at
/api/v1/events, Prometheus metrics at /metrics and the web UI at /. It keeps no
state: it is a client of the coordinators given with --coordinator, failing
over between them.

Without --api-token (or DFS_API_TOKEN) it listens on loopback addresses only,
unless --insecure-public says the exposure is intended.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			addrs := splitList(g.coordinators)
			if len(addrs) == 0 {
				return usagef("--coordinator: no address")
			}
			node, err := g.nodeTLS(pki.RoleGateway)
			if err != nil {
				return err
			}
			gw, err := cluster.StartGateway(cluster.GatewayConfig{
				Listen: httpAddr, Coordinators: addrs, Token: gf.token, Public: gf.public, TLS: node, Logger: slog.Default(),
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
	gf.register(cmd)
	g.registerCertsDir(cmd)
	return cmd
}
