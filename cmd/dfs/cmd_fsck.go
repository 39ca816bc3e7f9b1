package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// fsckFile is a file in fsck --json.
type fsckFile struct {
	Path            string   `json:"path"`
	SHA256          dfs.Hash `json:"sha256"`
	Chunks          int64    `json:"chunks"`
	Healthy         int64    `json:"healthy"`
	UnderReplicated int64    `json:"under_replicated"`
	Unplaceable     int64    `json:"unplaceable"` // of under_replicated: no node to place a copy on
	Missing         int64    `json:"missing"`
	Corrupt         int64    `json:"corrupt"`
}

// fsckTotals is fsck --json after the file list: the sums over every page,
// and the cluster's pending work as of the last page.
type fsckTotals struct {
	Files            int64 `json:"files"`
	Chunks           int64 `json:"chunks"` // chunk references: a chunk two files share counts twice
	Healthy          int64 `json:"healthy"`
	UnderReplicated  int64 `json:"under_replicated"`
	Unplaceable      int64 `json:"unplaceable"` // of under_replicated: no node to place a copy on
	Missing          int64 `json:"missing"`
	Corrupt          int64 `json:"corrupt"`
	PendingRepair    int64 `json:"pending_repair"`
	PendingGC        int64 `json:"pending_gc"`
	Repaired         int64 `json:"repaired"`
	GarbageCollected int64 `json:"garbage_collected"`
}

func newFsckCmd(g *globals) *cobra.Command {
	var asJSON, files bool
	var pageSize int
	cmd := &cobra.Command{
		Use:   "fsck [PREFIX]",
		Short: "Check the health of files: chunks healthy, under-replicated, missing, corrupt",
		Long: `fsck checks every file under PREFIX (default: all): each chunk is healthy
(at full replication), under-replicated, missing (no copy on a live node) or
corrupt (a copy failed its hash and is not replaced yet). Under-replicated
chunks that no node can take another copy of (fewer datanodes take copies
than the replication factor, as when a drained or dead node held one) are
shown apart, and are not counted as pending repair. It also shows the
repair and garbage-collection work pending in the cluster. It exits 1 when a
chunk is missing or corrupt.

It asks for a page of files at a time and prints as it goes, so it starts
at once and holds one page in memory however many files there are. With
--json it prints one object: "file_list" first, streamed, then the totals.
For the cluster's counters without checking every file, see 'dfs status'.`,
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
			w := bufio.NewWriter(os.Stdout)
			defer w.Flush()
			var out fsckTotals
			listed := 0
			if asJSON {
				w.WriteString("{\n  \"file_list\": [")
			} else if files {
				fmt.Fprintln(w, "PATH\tCHUNKS\tHEALTHY\tUNDER\tMISSING\tCORRUPT")
			}
			err = c.FsckPages(cmd.Context(), prefix, files || asJSON, pageSize, func(r *api.FsckResponse) error {
				out.Files += r.Files
				out.Chunks += r.Chunks
				out.Healthy += r.Healthy
				out.UnderReplicated += r.UnderReplicated
				out.Unplaceable += r.Unplaceable
				out.Missing += r.Missing
				out.Corrupt += r.Corrupt
				out.PendingRepair, out.PendingGC = r.PendingRepair, r.PendingGc
				out.Repaired, out.GarbageCollected = r.Repaired, r.GarbageCollected
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				for _, f := range r.FileList {
					h, _ := dfs.HashFromBytes(f.ContentHash)
					ff := fsckFile{Path: f.Path, SHA256: h, Chunks: f.Chunks, Healthy: f.Healthy,
						UnderReplicated: f.UnderReplicated, Unplaceable: f.Unplaceable, Missing: f.Missing, Corrupt: f.Corrupt}
					if asJSON {
						b, err := json.Marshal(ff)
						if err != nil {
							return err
						}
						if listed > 0 {
							w.WriteString(",")
						}
						w.WriteString("\n    ")
						w.Write(b)
					} else {
						fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", ff.Path, ff.Chunks, ff.Healthy, ff.UnderReplicated, ff.Missing, ff.Corrupt)
					}
					listed++
				}
				tw.Flush()
				return w.Flush()
			})
			if err != nil {
				return err
			}
			if asJSON {
				b, err := json.MarshalIndent(out, "", "  ")
				if err != nil {
					return err
				}
				w.WriteString("\n  ],\n")
				w.Write(b[2:]) // the totals' fields, after the list
				w.WriteString("\n")
			} else {
				under := fmt.Sprintf("%d under-replicated", out.UnderReplicated)
				if out.Unplaceable > 0 {
					under += fmt.Sprintf(" (%d with no node to place a copy on)", out.Unplaceable)
				}
				fmt.Fprintf(w, "%s, %s: %d healthy, %s, %d missing, %d corrupt\n",
					plural(int(out.Files), "file"), plural(int(out.Chunks), "chunk"), out.Healthy, under, out.Missing, out.Corrupt)
				fmt.Fprintf(w, "pending: %s to repair, %s of garbage; done since start: %s repaired, %d collected\n",
					plural(int(out.PendingRepair), "chunk"), plural(int(out.PendingGC), "chunk"), plural(int(out.Repaired), "copy"), out.GarbageCollected)
				if out.Unplaceable > 0 {
					fmt.Fprintln(w, "fewer datanodes take copies than the replication factor: start or add a node, or undrain one ('dfs undrain'); a node gone for good is removed with 'dfs node remove'")
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if out.Missing > 0 || out.Corrupt > 0 {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON, with every file")
	cmd.Flags().BoolVar(&files, "files", false, "list every file")
	cmd.Flags().IntVar(&pageSize, "page", 0, "files per request (0: the coordinator's default)")
	return cmd
}

func newDrainCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "drain NODE_ID",
		Short: "Move every chunk off a datanode, then mark it drained",
		Long: `drain starts copying every chunk of a datanode to other nodes and returns.
The node keeps serving reads meanwhile; 'dfs nodes' shows its state
(draining, then drained) and the chunks still to move. 'dfs undrain' takes
it back; once drained and stopped, 'dfs node remove' forgets it.`,
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
			printf("draining %s: %s to move; see 'dfs nodes'\n", args[0], plural(int(n), "chunk"))
			return nil
		},
	}
}
