package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/etcdserver"
)

// unavailable marks an etcd failure as the cluster being unreachable (exit 4).
func unavailable(err error) error { return fmt.Errorf("%w: %v", dfs.ErrUnavailable, err) }

func newEtcdCmd(g *globals) *cobra.Command {
	var endpoints string
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Manage the members of the etcd cluster the coordinators embed",
		Long: `etcd lists, adds and removes members of the etcd cluster, so that a lost
coordinator host can be replaced without a separate etcd install:

  dfs etcd remove c2 --etcd-endpoints http://10.0.0.1:2379
  dfs etcd add c4 http://10.0.0.4:2380 --etcd-endpoints http://10.0.0.1:2379
  # then, on the new host, with the --etcd-initial-cluster value it printed:
  dfs coordinator --etcd-embed --etcd-name c4 --etcd-cluster-state existing \
      --etcd-initial-cluster c1=...,c3=...,c4=http://10.0.0.4:2380 ...`,
	}
	cmd.PersistentFlags().StringVar(&endpoints, "etcd-endpoints", "", "client URLs of live etcd members, comma-separated")
	cmd.PersistentFlags().StringVar(&g.certsDir, "certs-dir", "", "a node's certificates ('dfs certs'): etcd accepts only clients with a certificate of the cluster's CA")
	dial := func(cmd *cobra.Command) (*clientv3.Client, context.Context, func(), error) {
		eps := splitList(endpoints)
		if len(eps) == 0 {
			return nil, nil, nil, usagef("--etcd-endpoints is needed")
		}
		node, err := g.nodeTLS("")
		if err != nil {
			return nil, nil, nil, err
		}
		cli, err := etcdserver.Dial(eps, node)
		if err != nil {
			return nil, nil, nil, unavailable(err)
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
		return cli, ctx, func() { cancel(); cli.Close() }, nil
	}

	var asJSON bool
	members := &cobra.Command{
		Use:   "members",
		Short: "List the etcd members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cli, ctx, done, err := dial(cmd)
			if err != nil {
				return err
			}
			defer done()
			ms, err := etcdserver.Members(ctx, cli)
			if err != nil {
				return unavailable(err)
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(ms)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tPEER URLS\tCLIENT URLS")
			for _, m := range ms {
				name := m.Name
				if !m.Started {
					name = "(not started)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, name, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","))
			}
			return tw.Flush()
		},
	}
	members.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")

	add := &cobra.Command{
		Use:   "add NAME PEER_URL",
		Short: "Add a member; prints the --etcd-initial-cluster to start it with",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cli, ctx, done, err := dial(cmd)
			if err != nil {
				return err
			}
			defer done()
			initial, err := etcdserver.AddMember(ctx, cli, args[0], args[1])
			if err != nil {
				return unavailable(err)
			}
			fmt.Printf("added %s; start it with --etcd-cluster-state existing --etcd-initial-cluster %s\n", args[0], initial)
			return nil
		},
	}
	remove := &cobra.Command{
		Use:   "remove NAME|ID",
		Short: "Remove a member (a dead one, before replacing it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cli, ctx, done, err := dial(cmd)
			if err != nil {
				return err
			}
			defer done()
			if err := etcdserver.RemoveMember(ctx, cli, args[0]); err != nil {
				return unavailable(err)
			}
			fmt.Printf("removed %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(members, add, remove)
	return cmd
}
