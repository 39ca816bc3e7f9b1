package main

import (
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/internal/pki"
)

func newCertsCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make the certificates that secure a cluster",
		Long: `certs makes the cluster's certificate authority and the certificates issued
by it. Every internal port of a cluster (coordinator and datanode gRPC, the
datanodes' data port, etcd's client and peer ports) serves TLS with a node
certificate and accepts only peers whose certificates the cluster's CA
signed.

  dfs certs create-ca --certs-dir DIR        ca.crt and ca.key
  dfs certs create-node HOST... --certs-dir DIR [--roles R,...]
                                              node.crt and node.key
  dfs certs create-client NAME --certs-dir DIR
                                              client.NAME.crt and .key

Make the CA once, on a machine you trust, and keep ca.key there. For each
host, make a directory with a copy of ca.crt (and, while issuing, ca.key),
create that host's node certificate in it naming every name and address
peers reach it by, and copy the directory to the host without ca.key.
Start each role there with --certs-dir DIR. 'dfs server' makes all of this
in its data directory by itself.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "certs-dir", "", "the certificates directory (required)")
	need := func() error {
		if dir == "" {
			return usagef("--certs-dir: required")
		}
		return nil
	}
	var roles []string
	// maker is one create-* command: it makes files in dir and names them.
	maker := func(use, short string, args cobra.PositionalArgs, run func(args []string) (cert, key string, err error)) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: args,
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := need(); err != nil {
					return err
				}
				cert, key, err := run(args)
				if err != nil {
					return err
				}
				printf("created %s and %s\n", filepath.Join(dir, cert), filepath.Join(dir, key))
				return nil
			},
		}
	}
	create := []*cobra.Command{
		maker("create-ca", "Make the cluster's certificate authority", cobra.NoArgs, func([]string) (string, string, error) {
			return pki.CACert, pki.CAKey, pki.CreateCA(dir)
		}),
		maker("create-node HOST...", "Issue a host's node certificate, for the names and addresses peers reach it by", cobra.MinimumNArgs(1),
			func(args []string) (string, string, error) {
				return pki.NodeCert, pki.NodeKey, pki.CreateNode(dir, args, roles)
			}),
		maker("create-client NAME", "Issue a client certificate", cobra.ExactArgs(1), func(args []string) (string, string, error) {
			return pki.ClientCert(args[0]), pki.ClientKey(args[0]), pki.CreateClient(dir, args[0])
		}),
	}
	create[1].Flags().StringSliceVar(&roles, "roles", nil, "roles the certificate holds: coordinator, datanode, gateway, worker (default all)")
	cmd.AddCommand(create...)
	return cmd
}
