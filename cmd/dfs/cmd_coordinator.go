package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/etcdserver"
	"github.com/dfs-store/dfs/internal/pki"
)

func newCoordinatorCmd(g *globals) *cobra.Command {
	var (
		data, grpcAddr, endpoints, keyRoot string
		embed                              bool
		ec                                 etcdserver.Config
		cc                                 coordinatorFlags
	)
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a coordinator: placement, commits, lookups and the node table",
		Long: `coordinator serves the control plane: clients ask it where to put chunks
and commit files through it; datanodes register and heartbeat to it. Its
metadata lives in etcd: an embedded member (--etcd-embed, data under --data)
or an external cluster (--etcd-endpoints).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			eps := splitList(endpoints)
			if embed == (len(eps) > 0) {
				return usagef("give exactly one of --etcd-embed and --etcd-endpoints")
			}
			if embed && data == "" {
				return usagef("--etcd-embed needs --data")
			}
			node, err := g.nodeTLS(pki.RoleCoordinator)
			if err != nil {
				return err
			}
			coord, err := cc.config()
			if err != nil {
				return err
			}
			c, err := cluster.StartCoordinator(cmd.Context(), cluster.CoordinatorConfig{
				Listen:        grpcAddr,
				EtcdEndpoints: eps,
				Dir:           data,
				Etcd:          ec,
				KeyRoot:       keyRoot,
				Coordinator:   coord,
				TLS:           node,
				Logger:        slog.Default(),
			})
			if err != nil {
				return err
			}
			defer c.Close()
			where := "etcd " + endpoints
			if c.Etcd != nil {
				where = "embedded etcd " + c.Etcd.Endpoints()[0]
			}
			fmt.Printf("dfs coordinator ready: gRPC %s, %s\n", c.Addr(), where)
			return waitForStop(cmd, c.Etcd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&grpcAddr, "grpc", client.DefaultCoordinator, "gRPC listen address")
	f.StringVar(&data, "data", "", "data directory (for the embedded etcd member)")
	f.BoolVar(&embed, "etcd-embed", false, "run an etcd member inside this process")
	f.StringVar(&endpoints, "etcd-endpoints", "", "external etcd cluster, comma-separated client URLs")
	f.StringVar(&keyRoot, "key-root", "", "root of dfs's keys in etcd (default /dfs)")
	f.StringVar(&ec.Name, "etcd-name", "default", "name of the embedded etcd member")
	f.StringVar(&ec.ClientURL, "etcd-client-url", "", "client URL of the embedded member (default: a free loopback port, kept in --data)")
	f.StringVar(&ec.PeerURL, "etcd-peer-url", "", "peer URL of the embedded member (default: a free loopback port, kept in --data)")
	f.StringVar(&ec.InitialCluster, "etcd-initial-cluster", "", "name=peer-url,... of every embedded member (default: this member alone)")
	f.StringVar(&ec.ClusterState, "etcd-cluster-state", "new", "new, or existing to join a running cluster")
	cc.register(cmd)
	g.registerCertsDir(cmd)
	return cmd
}
