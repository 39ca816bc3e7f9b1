package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
)

// nodeOutput is a row of nodes --json.
type nodeOutput struct {
	ID            dfs.NodeID    `json:"id"`
	Addr          string        `json:"addr"`
	GRPCAddr      string        `json:"grpc_addr"`
	Zone          string        `json:"zone,omitempty"`
	Alive         bool          `json:"alive"`
	State         dfs.NodeState `json:"state"`
	LastHeartbeat *time.Time    `json:"last_heartbeat"`
	HeartbeatAgeS *float64      `json:"heartbeat_age_s"`
	UsedBytes     int64         `json:"used_bytes"`
	FreeBytes     int64         `json:"free_bytes"`
	CapacityBytes int64         `json:"capacity_bytes"`
	Chunks        int64         `json:"chunks"`
	// DrainRemaining counts the chunks a draining node still has to move.
	DrainRemaining int64      `json:"drain_remaining"`
	ScrubbedChunks int64      `json:"scrubbed_chunks"`
	ScrubbedBytes  int64      `json:"scrubbed_bytes"`
	CorruptChunks  int64      `json:"corrupt_chunks"`
	LastScrubPass  *time.Time `json:"last_scrub_pass"`
	LeaderTerm     int64      `json:"leader_term"`
	FencedCommands int64      `json:"fenced_commands"`
}

func newNodesCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "Show the datanodes: state, last heartbeat, space and chunks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			nodes, err := c.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			out := []nodeOutput{}
			for _, n := range nodes {
				o := nodeOutput{ID: n.ID, Addr: n.Addr, GRPCAddr: n.GRPCAddr, Zone: n.Zone, Alive: n.Alive, State: n.State,
					UsedBytes: n.UsedBytes, FreeBytes: n.FreeBytes, CapacityBytes: n.CapacityBytes, Chunks: n.Chunks,
					DrainRemaining: n.DrainRemaining, ScrubbedChunks: n.ScrubbedChunks, ScrubbedBytes: n.ScrubbedBytes, CorruptChunks: n.CorruptChunks,
					LeaderTerm: n.LeaderTerm, FencedCommands: n.FencedCommands}
				if !n.LastScrubPass.IsZero() {
					t := n.LastScrubPass
					o.LastScrubPass = &t
				}
				if !n.LastHeartbeat.IsZero() {
					t := n.LastHeartbeat
					age := now.Sub(t).Seconds()
					o.LastHeartbeat, o.HeartbeatAgeS = &t, &age
				}
				out = append(out, o)
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if leader, term, err := c.Leader(cmd.Context()); err == nil && leader != "" {
				fmt.Printf("leader coordinator: %s (term %d)\n", leader, term)
			} else if err == nil {
				fmt.Println("leader coordinator: none")
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tHEARTBEAT\tADDR\tUSED\tFREE\tCHUNKS\tSCRUBBED\tCORRUPT")
			for _, o := range out {
				beat := "never"
				if o.HeartbeatAgeS != nil {
					beat = fmt.Sprintf("%.1fs ago", *o.HeartbeatAgeS)
				}
				state := string(o.State)
				if o.State == dfs.NodeDraining {
					state = fmt.Sprintf("draining (%d left)", o.DrainRemaining)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", o.ID, state, beat, o.Addr,
					humanize.IBytes(uint64(o.UsedBytes)), humanize.IBytes(uint64(o.FreeBytes)), o.Chunks, o.ScrubbedChunks, o.CorruptChunks)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}
