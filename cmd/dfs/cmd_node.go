package main

import (
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
)

func newUndrainCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "undrain NODE_ID",
		Short: "Make a draining or drained datanode active again",
		Long: `undrain ends a drain, or undoes a finished one: the node takes new chunks
again, its copies count toward the replication factor, and the leader stops
moving its chunks away. Copies already made elsewhere are extra and are
trimmed back to the replication factor.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.Undrain(cmd.Context(), dfs.NodeID(args[0]))
			if err != nil {
				return err
			}
			printf("%s is active again (%s); see 'dfs nodes'\n", args[0], plural(int(n), "chunk"))
			return nil
		},
	}
}

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Manage datanodes: remove one that is gone for good",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newNodeRemoveCmd(g))
	return cmd
}

func newNodeRemoveCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove NODE_ID",
		Short: "Forget a datanode that no longer runs",
		Long: `remove deletes a datanode from the cluster's registry, and every
coordinator forgets the copies it held: 'dfs nodes' no longer lists it and
fsck no longer counts on it. Nothing on the node's disk is touched.

It is refused while the node heartbeats (stop it first: a running node
would register again), and while any chunk it holds has fewer than
--min-replicas copies (default 2) on other nodes that are not dead: drain
the node before stopping it, or let repair copy a dead node's chunks
first. The usual way out of a cluster is: dfs drain NODE, wait for
'drained' in dfs nodes, stop the node, dfs node remove NODE.

--force removes it anyway, for a node whose disk is gone: chunks it held
with too few copies elsewhere stay under-replicated, and those it held
alone are lost (fsck shows them missing).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.RemoveNode(cmd.Context(), dfs.NodeID(args[0]), force)
			if err != nil {
				return err
			}
			printf("removed %s: %d chunk copies forgotten\n", args[0], r.Chunks)
			if r.ShortChunks > 0 {
				printf("warning: %d of its chunks had fewer than min-replicas copies elsewhere; see 'dfs fsck'\n", r.ShortChunks)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove it even if some of its chunks have too few copies elsewhere (they may be lost)")
	return cmd
}
