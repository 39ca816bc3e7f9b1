package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/contenttype"
)

func newPutCmd(g *globals) *cobra.Command {
	var (
		contentType string
		asJSON      bool
		quiet       bool
	)
	cmd := &cobra.Command{
		Use:   "put LOCAL [REMOTE]",
		Short: "Store a local file (or stdin, as '-') at a path",
		Long: `put stores LOCAL at REMOTE. REMOTE defaults to LOCAL's base name; a REMOTE
ending in '/' gets LOCAL's base name appended. Only chunks the cluster does
not hold yet are sent. The path points at the new bytes only once every chunk
is stored: an interrupted put leaves the previous version in place.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			local := args[0]
			remote := ""
			if len(args) == 2 {
				remote = args[1]
			}
			if local == "-" && (len(args) == 1 || strings.HasSuffix(remote, "/")) {
				return usagef("put from stdin needs a REMOTE file path")
			}
			// An omitted REMOTE, or a directory one, takes LOCAL's base
			// name; an explicit empty REMOTE is an error CleanPath reports.
			if len(args) == 1 || strings.HasSuffix(remote, "/") {
				remote += filepath.Base(local)
			}
			var (
				src  io.Reader
				size int64 = -1
			)
			if local == "-" {
				src = os.Stdin
			} else {
				f, err := os.Open(local)
				if err != nil {
					return fmt.Errorf("put: %w", err)
				}
				defer f.Close()
				st, err := f.Stat()
				if err != nil {
					return fmt.Errorf("put: %w", err)
				}
				if st.IsDir() {
					return usagef("put: %s is a directory", local)
				}
				src, size = f, st.Size()
			}
			if contentType == "" {
				contentType, src = contenttype.Detect(remote, src)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			bar := newBar(size, "put "+remote, !quiet && !asJSON)
			res, err := c.Put(cmd.Context(), remote, src, client.PutOptions{ContentType: contentType, Progress: progressFunc(bar)})
			finishBar(bar)
			if err != nil {
				if errors.Is(err, cmd.Context().Err()) {
					return fmt.Errorf("put %s: interrupted, nothing committed", remote)
				}
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{
					"path": res.File.Path, "size": res.File.Size, "sha256": res.File.Content,
					"duplicate": res.Duplicate, "chunks": res.Chunks, "new_chunks": res.NewChunks, "sent_bytes": res.SentBytes,
				})
			}
			if quiet {
				return nil
			}
			how := fmt.Sprintf("%d chunks, %d new, %s sent", res.Chunks, res.NewChunks, humanize.IBytes(uint64(res.SentBytes)))
			if res.Duplicate {
				how = "duplicate: content already stored, nothing sent"
			}
			printf("%s  %s  %s  (%s)\n", res.File.Path, humanize.IBytes(uint64(res.File.Size)), res.File.Content, how)
			return nil
		},
	}
	cmd.Flags().StringVar(&contentType, "content-type", "", "content type to record (default: from the file name)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing on success")
	return cmd
}
