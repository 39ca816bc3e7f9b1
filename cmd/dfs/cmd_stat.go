package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

// statChunk is a chunk in stat --json.
type statChunk struct {
	// Index is the chunk's place in the file, from 1 (as the web UI
	// numbers them).
	Index    int          `json:"index"`
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
	State    dfs.JobState      `json:"state"`
	Worker   string            `json:"worker,omitempty"`
	Attempts int               `json:"attempts"`
	Results  map[string]string `json:"results"`
	Error    string            `json:"error,omitempty"`
}

// statFolder is stat --json of a folder.
type statFolder struct {
	Path   string `json:"path"` // ending in '/'
	Folder bool   `json:"folder"`
	// Entries is how many files and folders are directly in it, up to
	// one listing page; EntriesMore says there are more than that.
	Entries     int  `json:"entries"`
	EntriesMore bool `json:"entries_more,omitempty"`
}

func newStatCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stat PATH",
		Short: "Show a file's record, chunks and where each chunk lives",
		Long: `stat shows a file's record, its chunks (numbered from 1) and the nodes
that hold each. A PATH that is a folder (files under PATH/, none at PATH;
'media/' names it too) is answered as one, with how many entries it holds.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			w := cmd.OutOrStdout()
			loc, err := c.Locate(cmd.Context(), args[0])
			if err != nil {
				if errors.Is(err, dfs.ErrNotFound) || errors.Is(err, dfs.ErrBadPath) {
					if ok, ferr := statAsFolder(cmd, c, w, args[0], asJSON); ok || ferr != nil {
						return ferr
					}
					if f, ferr := folderName(args[0]); ferr == nil && f != "" && strings.HasSuffix(args[0], "/") {
						return fmt.Errorf("stat %s: %w: no file under %s", args[0], dfs.ErrNotFound, under(f))
					}
				}
				return err
			}
			out := statOutput{
				Path: loc.File.Path, Size: loc.File.Size, SHA256: loc.File.Content, ContentType: loc.File.ContentType,
				Created: loc.File.Created, Modified: loc.File.Modified, Chunks: []statChunk{},
			}
			for i, ch := range loc.Chunks {
				sc := statChunk{Index: i + 1, Hash: ch.Hash, Size: ch.Size, Replicas: []dfs.NodeID{}}
				for _, r := range ch.Replicas {
					sc.Replicas = append(sc.Replicas, r.Node)
				}
				out.Chunks = append(out.Chunks, sc)
			}
			if p := loc.Processing; p != nil {
				out.Processing = &statProcessing{State: p.State, Worker: p.Worker, Attempts: p.Attempts, Results: p.Results, Error: p.Error}
			}
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			fmt.Fprintf(w, "path:     %s\n", out.Path)
			fmt.Fprintf(w, "size:     %s (%d bytes)\n", humanize.IBytes(uint64(out.Size)), out.Size)
			fmt.Fprintf(w, "sha256:   %s\n", out.SHA256)
			if out.ContentType != "" {
				fmt.Fprintf(w, "type:     %s\n", out.ContentType)
			}
			fmt.Fprintf(w, "created:  %s\n", out.Created.Local().Format(time.RFC3339))
			fmt.Fprintf(w, "modified: %s\n", out.Modified.Local().Format(time.RFC3339))
			fmt.Fprintf(w, "chunks:   %d\n", len(out.Chunks))
			for _, ch := range out.Chunks {
				fmt.Fprintf(w, "  %4d  %s  %8s  %v\n", ch.Index, ch.Hash.Short(), humanize.IBytes(uint64(ch.Size)), ch.Replicas)
			}
			if p := loc.Processing; p != nil {
				fprintProcessing(w, p)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// statAsFolder answers stat of a path that names no file: if it is a
// folder, it prints what it holds and says ok.
func statAsFolder(cmd *cobra.Command, c *client.Client, w io.Writer, p string, asJSON bool) (ok bool, err error) {
	f, err := folderName(p)
	if err != nil || f == "" {
		return false, nil
	}
	n, more, err := folderSize(cmd.Context(), c, f)
	if err != nil || n == 0 {
		return false, err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return true, enc.Encode(statFolder{Path: under(f), Folder: true, Entries: n, EntriesMore: more})
	}
	count := plural(n, "entry")
	if more {
		count = "more than " + count
	}
	fmt.Fprintf(w, "path:     %s\n", under(f))
	fmt.Fprintf(w, "type:     folder, %s; list them with 'dfs ls %s'\n", count, strings.TrimSuffix(under(f), "/"))
	return true, nil
}
