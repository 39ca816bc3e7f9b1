package main

import (
	"bufio"
	"context"
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

// lsEntry is one line of ls --json: a file, or a directory (a common prefix).
type lsEntry struct {
	Path        string    `json:"path"`
	Dir         bool      `json:"dir,omitempty"`
	Size        int64     `json:"size"`
	SHA256      *dfs.Hash `json:"sha256,omitempty"`
	ContentType string    `json:"content_type,omitempty"`
	Modified    time.Time `json:"modified,omitzero"`
}

// lsPage is how many entries ls asks for at a time, and prints before it
// asks for more.
const lsPage = 1000

func newLsCmd(g *globals) *cobra.Command {
	var (
		asJSON, recursive bool
	)
	cmd := &cobra.Command{
		Use:   "ls [PREFIX]",
		Short: "List files and directories under a prefix",
		Long: `ls lists what is under PREFIX. Paths are flat names and directories are
the prefixes up to a '/', as in S3. 'ls photos' lists the directory photos/
(or the file photos, if it is one); 'ls -r' lists every file underneath.

Entries are printed a page at a time as they arrive, so a listing of
millions of entries starts at once and holds one page in memory: the
columns have fixed widths, and --json writes the array element by element.`,
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
			return list(cmd.Context(), c, cmd.OutOrStdout(), prefix, recursive, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "list every file under the prefix")
	return cmd
}

// list prints what is under prefix to w, flushing after every page.
func list(ctx context.Context, c *client.Client, w io.Writer, prefix string, recursive, asJSON bool) error {
	out := newEntryWriter(w, asJSON)
	delim := "/"
	if recursive {
		delim = ""
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		// A file of that name is listed alone, like ls(1).
		if fi, err := c.Stat(ctx, prefix); err == nil && !recursive {
			out.add(fileEntry(fi))
			return out.close()
		} else if err != nil && !errors.Is(err, dfs.ErrNotFound) && !errors.Is(err, dfs.ErrBadPath) {
			return err
		}
		// Try it as a directory first, then as a raw prefix.
		n, err := walk(ctx, c, out, prefix+"/", delim)
		if err != nil {
			return err
		}
		if n > 0 {
			return out.close()
		}
	}
	if _, err := walk(ctx, c, out, prefix, delim); err != nil {
		return err
	}
	return out.close()
}

// walk prints every entry under prefix, a page at a time, and says how
// many there were.
func walk(ctx context.Context, c *client.Client, out *entryWriter, prefix, delim string) (int, error) {
	n := 0
	err := c.ListAll(ctx, client.ListOptions{Prefix: prefix, Delimiter: delim, Limit: lsPage}, func(l client.Listing) error {
		for e := range l.Entries() {
			if e.Dir {
				out.add(lsEntry{Path: e.Path, Dir: true})
			} else {
				out.add(fileEntry(e.File))
			}
			n++
		}
		// The page is out before the next is asked for.
		return out.flush()
	})
	return n, err
}

func fileEntry(f dfs.FileInfo) lsEntry {
	h := f.Content
	return lsEntry{Path: f.Path, Size: f.Size, SHA256: &h, ContentType: f.ContentType, Modified: f.Modified}
}

// entryWriter prints entries as they come: a line each with fixed-width
// columns, or the elements of one JSON array.
type entryWriter struct {
	w      *bufio.Writer
	asJSON bool
	n      int
	err    error
}

func newEntryWriter(w io.Writer, asJSON bool) *entryWriter {
	return &entryWriter{w: bufio.NewWriter(w), asJSON: asJSON}
}

func (o *entryWriter) add(e lsEntry) {
	if o.err != nil {
		return
	}
	if !o.asJSON {
		size, mod := "-", ""
		if !e.Dir {
			size, mod = humanize.IBytes(uint64(e.Size)), e.Modified.Local().Format("2006-01-02 15:04")
		}
		_, o.err = fmt.Fprintf(o.w, "%10s  %-16s  %s\n", size, mod, e.Path)
		return
	}
	b, err := json.MarshalIndent(e, "  ", "  ")
	if err != nil {
		o.err = err
		return
	}
	sep := ",\n  "
	if o.n == 0 {
		sep = "[\n  "
	}
	o.n++
	o.w.WriteString(sep)
	_, o.err = o.w.Write(b)
}

func (o *entryWriter) flush() error {
	if o.err == nil {
		o.err = o.w.Flush()
	}
	return o.err
}

// close ends the output (the JSON array) and flushes it.
func (o *entryWriter) close() error {
	if o.asJSON && o.err == nil {
		if o.n == 0 {
			o.w.WriteString("[]\n")
		} else {
			o.w.WriteString("\n]\n")
		}
	}
	return o.flush()
}
