package main

import (
	"encoding/json"
	"os"

	"github.com/spf13/cobra"
)

// gcOutput is gc --json.
type gcOutput struct {
	Contents        int64 `json:"contents"`
	ChunkCandidates int64 `json:"chunk_candidates"`
	GarbageChunks   int64 `json:"garbage_chunks"`
	DeletedCopies   int64 `json:"deleted_copies"`
	YoungChunks     int64 `json:"young_chunks"`
}

func newGCCmd(g *globals) *cobra.Command {
	var full, asJSON bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Collect garbage now",
		Long: `gc runs one garbage collection on the leader coordinator now, as it does
every --gc-interval: contents no path has pointed at for --gc-grace are
deleted, and chunks no content references are deleted from the datanodes.
It reads only the garbage candidates. With --full it also checks every chunk
the leader knows, finding chunks written but never committed whose notice
was lost (all coordinators restarted within their grace period); that reads
the references of every chunk, in batches.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.RunGC(cmd.Context(), full)
			if err != nil {
				return err
			}
			out := gcOutput{Contents: r.Contents, ChunkCandidates: r.ChunkCandidates, GarbageChunks: r.GarbageChunks,
				DeletedCopies: r.DeletedCopies, YoungChunks: r.YoungChunks}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			printf("contents deleted: %d\nchunk candidates: %d\ngarbage chunks: %d\ncopies deleted: %d\nchunks within the grace period: %d\n",
				out.Contents, out.ChunkCandidates, out.GarbageChunks, out.DeletedCopies, out.YoungChunks)
			return nil
		},
	}
	cmd.Flags().BoolVar(&full, "full", false, "also check every chunk the leader knows")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
