package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

func newGetCmd(g *globals) *cobra.Command {
	var (
		quiet, recursive, noClobber bool
		version                     string
		parallel                    int
	)
	cmd := &cobra.Command{
		Use:   "get REMOTE [LOCAL|-]",
		Short: "Fetch a file to a local path, or to stdout as '-'; with -r, a folder",
		Long: `get writes the file at REMOTE to LOCAL (default: REMOTE's base name in the
current directory) or to stdout when LOCAL is '-'. Every chunk is verified
against its SHA-256; a bad or unreachable replica is skipped for another. A
local file appears only when complete. A new file gets mode 0666 less the
umask, as cp gives; a file that exists keeps its mode.

With -r, REMOTE is a folder: every file under REMOTE/ is written under
LOCAL (default: the folder's base name), creating directories as needed,
with one progress display over the whole tree. dfs has no empty folders,
so only directories that hold files are created. A file that fails is
reported and the others are still fetched; the exit code is then non-zero.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote := args[0]
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if recursive && version != "" {
				return usagef("--version names a version of one file: not with -r")
			}
			if recursive {
				f, err := folderName(remote)
				if err != nil {
					return fmt.Errorf("get -r %w", err)
				}
				local := path.Base("/" + f)
				if len(args) == 2 {
					local = args[1]
				}
				if f == "" && len(args) == 1 {
					return usagef("get -r of every file needs a LOCAL directory")
				}
				return getTree(cmd, c, f, local, quiet, parallel, noClobber)
			}
			local := path.Base(remote)
			if len(args) == 2 {
				local = args[1]
			}
			if local == "-" {
				if _, err := c.Get(cmd.Context(), remote, os.Stdout, client.GetOptions{Version: version}); err != nil {
					return notAFile(cmd.Context(), c, "get", remote, err, "dfs get -r "+remote+" DIR")
				}
				return nil
			}
			return getToFile(cmd, c, remote, local, getOptions{quiet: quiet, version: version, noClobber: noClobber})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "fetch every file under the folder REMOTE into the directory LOCAL")
	cmd.Flags().IntVar(&parallel, "parallel", defaultParallel, "files fetched at once with -r")
	cmd.Flags().StringVar(&version, "version", "", "fetch this earlier version of REMOTE (dfs versions lists them)")
	cmd.Flags().BoolVarP(&noClobber, "no-clobber", "n", false, "never replace a local file (with -r: skip the files that exist)")
	return cmd
}

// getToFile writes to a temporary file beside local and renames it into
// place once every byte is verified.
// getOptions qualify a get of one file.
type getOptions struct {
	quiet     bool
	version   string // an earlier version of the file
	noClobber bool   // refuse to replace a local file
}

func getToFile(cmd *cobra.Command, c *client.Client, remote, local string, o getOptions) error {
	if st, err := os.Stat(local); err == nil && st.IsDir() {
		local = filepath.Join(local, path.Base(remote))
	}
	if _, err := os.Lstat(local); err == nil && o.noClobber {
		return fmt.Errorf("get %s: %s exists: not replaced (--no-clobber)", remote, local)
	}
	loc, err := c.LocateVersion(cmd.Context(), remote, o.version)
	if err != nil {
		return notAFile(cmd.Context(), c, "get", remote, fmt.Errorf("get %s: %w", remote, err), "dfs get -r "+remote+" DIR")
	}
	bar := newBar(loc.Size, "get "+remote, !o.quiet)
	err = writeLocal(cmd.Context(), c, loc, local, progressFunc(bar))
	finishBar(bar)
	if err != nil {
		return fmt.Errorf("get %s: %w", remote, err)
	}
	return nil
}

// getTree writes every file under folder f below the directory dir.
func getTree(cmd *cobra.Command, c *client.Client, f, dir string, quiet bool, parallel int, noClobber bool) error {
	ctx := cmd.Context()
	files, err := allRemoteFiles(ctx, c, f)
	if err != nil {
		return fmt.Errorf("get -r: %w", err)
	}
	if len(files) == 0 {
		// A file of that name is fetched as get without -r would.
		if _, serr := c.Stat(ctx, f); f != "" && serr == nil {
			return getToFile(cmd, c, f, dir, getOptions{quiet: quiet, noClobber: noClobber})
		}
		return fmt.Errorf("get -r %s: %w: no file under %s", f, dfs.ErrNotFound, under(f))
	}
	var total int64
	for _, rf := range files {
		total += rf.info.Size
	}
	stderr := cmd.ErrOrStderr()
	prog := newTreeProgress("get", len(files), total, !quiet, nil)
	var fails failures
	each(ctx, parallel, files, func(rf remoteFile) {
		progress, finish := prog.start(rf.info.Size)
		defer finish("")
		err := getOne(ctx, c, rf, dir, noClobber, progress)
		if errors.Is(err, errExists) {
			prog.print(stderr, fmt.Sprintf("dfs: get %s: %s exists: skipped (--no-clobber)\n", rf.info.Path, rf.rel))
			return
		}
		if err != nil {
			fails.add(err)
			prog.print(stderr, fmt.Sprintf("dfs: get %s: %v\n", rf.info.Path, err))
		}
	})
	prog.finish()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("get -r %s: interrupted after %d of %d files: %w", f, prog.done, len(files), err)
	}
	if n := fails.count(); n > 0 {
		return fails.result(fmt.Sprintf("get -r %s: %d of %d files not written (see above)", f, n, len(files)))
	}
	if !quiet {
		fmt.Fprintf(cmd.OutOrStdout(), "%s  %d files, %s\n", dir, len(files), humanize.IBytes(uint64(total)))
	}
	return nil
}

// errExists: a local file that --no-clobber keeps.
var errExists = errors.New("exists")

func getOne(ctx context.Context, c *client.Client, rf remoteFile, dir string, noClobber bool, progress func(int64)) error {
	dst, err := localPath(dir, rf.rel)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err == nil && noClobber {
		return errExists
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o777); err != nil {
		return err
	}
	loc, err := c.Locate(ctx, rf.info.Path)
	if err != nil {
		return err
	}
	return writeLocal(ctx, c, loc, dst, progress)
}

func newCatCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cat REMOTE...",
		Short: "Write files to stdout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			for _, remote := range args {
				if _, err := c.Get(cmd.Context(), remote, os.Stdout, client.GetOptions{}); err != nil {
					return notAFile(cmd.Context(), c, "cat", remote, err, "dfs get -r "+remote+" DIR")
				}
			}
			return nil
		},
	}
}
