package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

// lsEntry is one line of ls --json: a file, or a directory (a common prefix).
type lsEntry struct {
	Path        string    `json:"path"`
	Dir         bool      `json:"dir,omitempty"`
	Size        int64     `json:"size"`
	SHA256      *dfs.Hash `json:"sha256,omitempty"`
	ContentType string    `json:"content_type,omitempty"`
	Modified    time.Time `json:"modified,omitzero"`
}

func newLsCmd(g *globals) *cobra.Command {
	var (
		asJSON, recursive bool
	)
	cmd := &cobra.Command{
		Use:   "ls [PREFIX]",
		Short: "List files and directories under a prefix",
		Long: `ls lists what is under PREFIX. Paths are flat names and directories are
the prefixes up to a '/', as in S3. 'ls photos' lists the directory photos/
(or the file photos, if it is one); 'ls -r' lists every file underneath.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = strings.TrimPrefix(args[0], "/")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			delim := "/"
			if recursive {
				delim = ""
			}
			entries := []lsEntry{}
			if prefix != "" && !strings.HasSuffix(prefix, "/") {
				// A file of that name is listed alone, like ls(1).
				if fi, err := c.Stat(ctx, prefix); err == nil && !recursive {
					entries = append(entries, fileEntry(fi))
					return printEntries(entries, asJSON)
				} else if err != nil && !errors.Is(err, dfs.ErrNotFound) && !errors.Is(err, dfs.ErrBadPath) {
					return err
				}
			}
			collect := func(p string) error {
				return c.ListAll(ctx, client.ListOptions{Prefix: p, Delimiter: delim}, func(l client.Listing) error {
					for _, d := range l.Prefixes {
						entries = append(entries, lsEntry{Path: d, Dir: true})
					}
					for _, f := range l.Files {
						entries = append(entries, fileEntry(f))
					}
					return nil
				})
			}
			if prefix != "" && !strings.HasSuffix(prefix, "/") {
				// Try it as a directory first, then as a raw prefix.
				if err := collect(prefix + "/"); err != nil {
					return err
				}
				if len(entries) == 0 {
					if err := collect(prefix); err != nil {
						return err
					}
				}
			} else if err := collect(prefix); err != nil {
				return err
			}
			return printEntries(entries, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "list every file under the prefix")
	return cmd
}

func fileEntry(f dfs.FileInfo) lsEntry {
	h := f.Content
	return lsEntry{Path: f.Path, Size: f.Size, SHA256: &h, ContentType: f.ContentType, Modified: f.Modified}
}

func printEntries(entries []lsEntry, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	for _, e := range entries {
		if e.Dir {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", "-", "", e.Path)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", humanize.IBytes(uint64(e.Size)), e.Modified.Local().Format("2006-01-02 15:04"), e.Path)
	}
	return tw.Flush()
}
