package main

import (
	"encoding/json"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
)

// statChunk is a chunk in stat --json.
type statChunk struct {
	Hash     dfs.Hash     `json:"hash"`
	Size     int64        `json:"size"`
	Replicas []dfs.NodeID `json:"replicas"`
}

// statOutput is stat --json.
type statOutput struct {
	Path        string      `json:"path"`
	Size        int64       `json:"size"`
	SHA256      dfs.Hash    `json:"sha256"`
	ContentType string      `json:"content_type,omitempty"`
	Created     time.Time   `json:"created"`
	Modified    time.Time   `json:"modified"`
	Chunks      []statChunk `json:"chunks"`
	// Processing is the content's post-upload job; absent when it has none.
	Processing *statProcessing `json:"processing,omitempty"`
}

// statProcessing is the processing part of stat --json.
type statProcessing struct {
	State   dfs.JobState      `json:"state"`
	Results map[string]string `json:"results"`
	Error   string            `json:"error,omitempty"`
}

func newStatCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stat PATH",
		Short: "Show a file's record, chunks and where each chunk lives",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			loc, err := c.Locate(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := statOutput{
				Path: loc.File.Path, Size: loc.File.Size, SHA256: loc.File.Content, ContentType: loc.File.ContentType,
				Created: loc.File.Created, Modified: loc.File.Modified, Chunks: []statChunk{},
			}
			for _, ch := range loc.Chunks {
				sc := statChunk{Hash: ch.Hash, Size: ch.Size, Replicas: []dfs.NodeID{}}
				for _, r := range ch.Replicas {
					sc.Replicas = append(sc.Replicas, r.Node)
				}
				out.Chunks = append(out.Chunks, sc)
			}
			if p := loc.Processing; p != nil {
				out.Processing = &statProcessing{State: p.State, Results: p.Results, Error: p.Error}
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			printf("path:     %s\n", out.Path)
			printf("size:     %s (%d bytes)\n", humanize.IBytes(uint64(out.Size)), out.Size)
			printf("sha256:   %s\n", out.SHA256)
			if out.ContentType != "" {
				printf("type:     %s\n", out.ContentType)
			}
			printf("created:  %s\n", out.Created.Local().Format(time.RFC3339))
			printf("modified: %s\n", out.Modified.Local().Format(time.RFC3339))
			printf("chunks:   %d\n", len(out.Chunks))
			for i, ch := range out.Chunks {
				printf("  %4d  %s  %8s  %v\n", i, ch.Hash.Short(), humanize.IBytes(uint64(ch.Size)), ch.Replicas)
			}
			if p := loc.Processing; p != nil {
				printProcessing(p)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
