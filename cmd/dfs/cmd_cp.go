package main

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

func newCpCmd(g *globals) *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy a file (with -r, a folder) within dfs, sending no bytes",
		Long: `cp makes DST point at SRC's content. Contents are named by their hash, so a
copy is one metadata commit: no byte is read or sent and no chunk is stored
again, whatever the file's size. The copy keeps SRC's content type. A DST
ending in '/' gets SRC's base name appended.

With -r, SRC is a folder: every file under SRC/ is copied under DST/ at the
same relative path. A file that fails is reported and the others are still
copied; the exit code is then non-zero.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := args[0], args[1]
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if !recursive {
				if strings.HasSuffix(dst, "/") {
					dst += path.Base(src)
				}
				if _, err := c.Copy(ctx, src, dst, client.CopyOptions{}); err != nil {
					if _, serr := c.Stat(ctx, src); serr != nil {
						return notAFile(ctx, c, "cp", src, err, "dfs cp -r "+src+" "+args[1])
					}
					return err
				}
				return nil
			}
			from, err := folderName(src)
			if err != nil {
				return fmt.Errorf("cp -r %w", err)
			}
			to, err := folderName(dst)
			if err != nil {
				return fmt.Errorf("cp -r %w", err)
			}
			if from == "" || to == "" {
				return usagef("cp -r %s %s: the whole namespace is not a folder to copy from or into", src, dst)
			}
			if to == from || strings.HasPrefix(to, under(from)) {
				return usagef("cp -r %s %s: cannot copy a folder into itself", src, dst)
			}
			var copied atomic.Int64
			var fails failures
			stderr := cmd.ErrOrStderr()
			err = remoteFiles(ctx, c, from, func(page []remoteFile) error {
				each(ctx, 8, page, func(rf remoteFile) {
					if _, err := c.Copy(ctx, rf.info.Path, joinPath(to, rf.rel), client.CopyOptions{}); err != nil {
						fails.add(err)
						fmt.Fprintf(stderr, "dfs: %v\n", err)
						return
					}
					copied.Add(1)
				})
				return ctx.Err()
			})
			if err != nil {
				return fmt.Errorf("cp -r %s: %w", src, err)
			}
			if n := fails.count(); n > 0 {
				return fails.result(fmt.Sprintf("cp -r %s %s: %d of %d files not copied (see above)", src, dst, n, int64(n)+copied.Load()))
			}
			if copied.Load() == 0 {
				// A file named SRC is copied as cp without -r would.
				if _, err := c.Copy(ctx, from, to, client.CopyOptions{}); err == nil {
					return nil
				} else if !errors.Is(err, dfs.ErrNotFound) {
					return err
				}
				return fmt.Errorf("cp -r %s: %w: no file under %s", src, dfs.ErrNotFound, under(from))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "copy every file under the folder SRC under the folder DST")
	return cmd
}
