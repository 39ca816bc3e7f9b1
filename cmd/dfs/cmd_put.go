package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/contenttype"
)

// putOutput is put --json, one object per file.
type putOutput struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Status is what the REST API answers for an upload: "queued" for
	// new content (its processing job is queued), "duplicate" when the
	// cluster already held these bytes.
	Status string `json:"status"`
	// Duplicate is Status == "duplicate", kept for scripts written
	// before Status.
	Duplicate bool  `json:"duplicate"`
	Chunks    int   `json:"chunks"`
	NewChunks int   `json:"new_chunks"`
	SentBytes int64 `json:"sent_bytes"`
}

func putResult(res client.PutResult) putOutput {
	out := putOutput{
		Path: res.File.Path, Size: res.File.Size, SHA256: res.File.Content.String(), Status: "queued",
		Duplicate: res.Duplicate, Chunks: res.Chunks, NewChunks: res.NewChunks, SentBytes: res.SentBytes,
	}
	if res.Duplicate {
		out.Status = "duplicate"
	}
	return out
}

// putLine is put's line for a stored file.
func putLine(res client.PutResult) string {
	how := fmt.Sprintf("%s, %d new, %s sent", plural(res.Chunks, "chunk"), res.NewChunks, humanize.IBytes(uint64(res.SentBytes)))
	if res.Duplicate {
		how = "duplicate: content already stored, nothing sent"
	}
	return fmt.Sprintf("%s  %s  %s  (%s)\n", res.File.Path, humanize.IBytes(uint64(res.File.Size)), res.File.Content, how)
}

// plural is n and the noun, in the singular for one: "1 chunk",
// "2 chunks", "3 copies".
func plural(n int, noun string) string {
	switch {
	case n == 1:
		return "1 " + noun
	case strings.HasSuffix(noun, "y") && !strings.ContainsAny(noun[len(noun)-2:len(noun)-1], "aeiou"):
		return fmt.Sprintf("%d %sies", n, noun[:len(noun)-1])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func newPutCmd(g *globals) *cobra.Command {
	var (
		contentType   string
		asJSON, quiet bool
		recursive     bool
		noClobber     bool
		parallel      int
	)
	cmd := &cobra.Command{
		Use:   "put LOCAL [REMOTE]",
		Short: "Store a local file (or stdin, as '-') at a path; with -r, a directory",
		Long: `put stores LOCAL at REMOTE. REMOTE defaults to LOCAL's base name; a REMOTE
ending in '/' gets LOCAL's base name appended. Only chunks the cluster does
not hold yet are sent. The path points at the new bytes only once every chunk
is stored: an interrupted put leaves the previous version in place.

With -r, LOCAL is a directory and REMOTE a folder (default: the directory's
base name): every file under LOCAL is stored under REMOTE/ at the same
relative path, several at once (--parallel), with one progress display over
the whole tree. Symbolic links are followed to files, not into directories.
Empty directories store nothing: dfs has no empty folders. A file that
fails is reported and the others are still stored; the exit code is then
non-zero.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			local := args[0]
			remote := ""
			if len(args) == 2 {
				remote = args[1]
			}
			if st, err := os.Stat(local); recursive && err == nil && !st.IsDir() {
				recursive = false // a file is stored as put stores it, as cp -r copies one
			}
			if recursive {
				if local == "-" {
					return usagef("put -r needs a directory, not stdin")
				}
				if len(args) == 1 {
					abs, err := filepath.Abs(local)
					if err != nil {
						return fmt.Errorf("put -r: %w", err)
					}
					remote = filepath.Base(abs)
				}
				f, err := folderName(remote)
				if err != nil {
					return fmt.Errorf("put -r %w", err)
				}
				c, err := g.client()
				if err != nil {
					return err
				}
				defer c.Close()
				return putTree(cmd, c, local, f, putTreeOptions{contentType: contentType, asJSON: asJSON, quiet: quiet, parallel: parallel, noClobber: noClobber})
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
					return usagef("put: %s is a directory: use -r (dfs put -r %s FOLDER)", local, local)
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
			if noClobber {
				// Checked before sending a byte; the commit checks again.
				if _, err := c.Stat(cmd.Context(), remote); err == nil {
					return errClobber(remote)
				}
			}
			bar := newBar(size, "put "+remote, !quiet && !asJSON)
			res, err := c.Put(cmd.Context(), remote, src, client.PutOptions{ContentType: contentType, Progress: progressFunc(bar), IfAbsent: noClobber, Size: size})
			finishBar(bar)
			if noClobber && errors.Is(err, dfs.ErrPrecondition) {
				return errClobber(remote)
			}
			if err != nil {
				if errors.Is(err, cmd.Context().Err()) {
					return fmt.Errorf("put %s: interrupted, nothing committed", remote)
				}
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(putResult(res))
			}
			if !quiet {
				io.WriteString(cmd.OutOrStdout(), putLine(res))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&contentType, "content-type", "", "content type to record (default: from the file name, else its first bytes)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON (with -r, one object per line per file)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing on success")
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "store every file under the directory LOCAL under the folder REMOTE")
	cmd.Flags().BoolVarP(&noClobber, "no-clobber", "n", false, "never replace a file at REMOTE (with -r: skip the files that exist)")
	cmd.Flags().IntVar(&parallel, "parallel", defaultParallel, "files stored at once with -r")
	return cmd
}

type putTreeOptions struct {
	contentType   string
	asJSON, quiet bool
	parallel      int
	noClobber     bool // skip the files that exist
}

// errClobber refuses to replace a file (--no-clobber).
func errClobber(p string) error {
	return fmt.Errorf("%s exists: not replaced (--no-clobber)", p)
}

// putTree stores every file under the local directory dir under folder f.
func putTree(cmd *cobra.Command, c *client.Client, dir, f string, o putTreeOptions) error {
	ctx := cmd.Context()
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var fails failures
	files, err := localFiles(dir, func(p string, err error) {
		if !errors.Is(err, errNotRegular) {
			fails.add(err)
		}
		fmt.Fprintf(stderr, "dfs: put %s: %v\n", p, err)
	})
	if err != nil {
		return fmt.Errorf("put -r %s: %w", dir, err)
	}
	var total int64
	for _, lf := range files {
		total += lf.size
	}
	var out io.Writer
	if !o.quiet || o.asJSON {
		out = stdout
	}
	prog := newTreeProgress("put", len(files), total, !o.quiet && !o.asJSON, out)
	var chunks, newChunks, sent atomic.Int64
	each(ctx, o.parallel, files, func(lf localFile) {
		progress, finish := prog.start(lf.size)
		remote := joinPath(f, lf.rel)
		if o.noClobber {
			if _, err := c.Stat(ctx, remote); err == nil {
				finish(remote + " exists: skipped (--no-clobber)\n")
				return
			}
		}
		res, err := putOne(ctx, c, lf, remote, o.contentType, o.noClobber, progress)
		if o.noClobber && errors.Is(err, dfs.ErrPrecondition) {
			finish(remote + " exists: skipped (--no-clobber)\n")
			return
		}
		if err != nil {
			finish("")
			fails.add(err)
			prog.print(stderr, fmt.Sprintf("dfs: put %s: %v\n", lf.path, err))
			return
		}
		chunks.Add(int64(res.Chunks))
		newChunks.Add(int64(res.NewChunks))
		sent.Add(res.SentBytes)
		line := putLine(res)
		if o.asJSON {
			b, _ := json.Marshal(putResult(res))
			line = string(b) + "\n"
		}
		finish(line)
	})
	prog.finish()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put -r %s: interrupted after %d of %d files (those are stored; the one in flight is not): %w", dir, prog.done, len(files), err)
	}
	if n := fails.count(); n > 0 {
		return fails.result(fmt.Sprintf("put -r %s: %s not stored (see above)", dir, plural(n, "file")))
	}
	if !o.quiet && !o.asJSON {
		fmt.Fprintf(stdout, "%s  %s, %s: %s, %d new, %s sent\n", under(f), plural(len(files), "file"), humanize.IBytes(uint64(total)),
			plural(int(chunks.Load()), "chunk"), newChunks.Load(), humanize.IBytes(uint64(sent.Load())))
	}
	return nil
}

// putOne stores one local file at remote.
func putOne(ctx context.Context, c *client.Client, lf localFile, remote, contentType string, ifAbsent bool, progress func(int64)) (client.PutResult, error) {
	src, err := os.Open(lf.path)
	if err != nil {
		return client.PutResult{}, err
	}
	defer src.Close()
	var r io.Reader = src
	if contentType == "" {
		contentType, r = contenttype.Detect(remote, src)
	}
	return c.Put(ctx, remote, r, client.PutOptions{ContentType: contentType, Progress: progress, IfAbsent: ifAbsent, Size: lf.size})
}
