package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
)

// fsckFile is a file in fsck --json.
type fsckFile struct {
	Path            string   `json:"path"`
	SHA256          dfs.Hash `json:"sha256"`
	Chunks          int64    `json:"chunks"`
	Healthy         int64    `json:"healthy"`
	UnderReplicated int64    `json:"under_replicated"`
	Missing         int64    `json:"missing"`
	Corrupt         int64    `json:"corrupt"`
}

// fsckOutput is fsck --json.
type fsckOutput struct {
	Files            int64      `json:"files"`
	Chunks           int64      `json:"chunks"`
	Healthy          int64      `json:"healthy"`
	UnderReplicated  int64      `json:"under_replicated"`
	Missing          int64      `json:"missing"`
	Corrupt          int64      `json:"corrupt"`
	PendingRepair    int64      `json:"pending_repair"`
	PendingGC        int64      `json:"pending_gc"`
	Repaired         int64      `json:"repaired"`
	GarbageCollected int64      `json:"garbage_collected"`
	FileList         []fsckFile `json:"file_list"`
}

func newFsckCmd(g *globals) *cobra.Command {
	var asJSON, files bool
	cmd := &cobra.Command{
		Use:   "fsck [PREFIX]",
		Short: "Check the health of files: chunks healthy, under-replicated, missing, corrupt",
		Long: `fsck checks every file under PREFIX (default: all): each chunk is healthy
(at full replication), under-replicated, missing (no copy on a live node) or
corrupt (a copy failed its hash and is not replaced yet). It also shows the
repair and garbage-collection work pending in the cluster. It exits 1 when a
chunk is missing or corrupt.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.Fsck(cmd.Context(), prefix, files || asJSON)
			if err != nil {
				return err
			}
			out := fsckOutput{Files: r.Files, Chunks: r.Chunks, Healthy: r.Healthy, UnderReplicated: r.UnderReplicated,
				Missing: r.Missing, Corrupt: r.Corrupt, PendingRepair: r.PendingRepair, PendingGC: r.PendingGc,
				Repaired: r.Repaired, GarbageCollected: r.GarbageCollected, FileList: []fsckFile{}}
			for _, f := range r.FileList {
				h, _ := dfs.HashFromBytes(f.ContentHash)
				out.FileList = append(out.FileList, fsckFile{Path: f.Path, SHA256: h, Chunks: f.Chunks, Healthy: f.Healthy,
					UnderReplicated: f.UnderReplicated, Missing: f.Missing, Corrupt: f.Corrupt})
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				if files {
					tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "PATH\tCHUNKS\tHEALTHY\tUNDER\tMISSING\tCORRUPT")
					for _, f := range out.FileList {
						fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", f.Path, f.Chunks, f.Healthy, f.UnderReplicated, f.Missing, f.Corrupt)
					}
					tw.Flush()
				}
				printf("%d files, %d chunks: %d healthy, %d under-replicated, %d missing, %d corrupt\n",
					out.Files, out.Chunks, out.Healthy, out.UnderReplicated, out.Missing, out.Corrupt)
				printf("pending: %d chunks to repair, %d chunks of garbage; done since start: %d copies repaired, %d collected\n",
					out.PendingRepair, out.PendingGC, out.Repaired, out.GarbageCollected)
			}
			if out.Missing > 0 || out.Corrupt > 0 {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON, with every file")
	cmd.Flags().BoolVar(&files, "files", false, "list every file")
	return cmd
}

func newDrainCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "drain NODE_ID",
		Short: "Move every chunk off a datanode, then mark it drained",
		Long: `drain starts copying every chunk of a datanode to other nodes and returns.
The node keeps serving reads meanwhile; 'dfs nodes' shows its state
(draining, then drained) and the chunks still to move.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.Drain(cmd.Context(), dfs.NodeID(args[0]))
			if err != nil {
				return err
			}
			printf("draining %s: %d chunks to move; see 'dfs nodes'\n", args[0], n)
			return nil
		},
	}
}
