package main

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

func newRmCmd(g *globals) *cobra.Command {
	var force, recursive bool
	cmd := &cobra.Command{
		Use:   "rm PATH...",
		Short: "Remove paths; with -r, folders",
		Long: `rm removes paths. Their bytes stay while another path shares them and are
collected as garbage once nothing refers to them.

As rm(1) does, it goes on past a path it cannot remove, says why, and exits
non-zero at the end: 3 if every failure was a path that does not exist.
With -r, a PATH that is a folder loses every file under PATH/ (and a file
named PATH, if there is one).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			r := remover{cmd: cmd, c: c, force: force, stderr: cmd.ErrOrStderr()}
			for _, p := range args {
				if cmd.Context().Err() != nil {
					break
				}
				if recursive {
					r.tree(p)
				} else {
					r.one(p)
				}
			}
			return r.result()
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "ignore paths that do not exist")
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove every file under each folder PATH")
	return cmd
}

// remover removes paths, counting what it could not remove.
type remover struct {
	cmd     *cobra.Command
	c       *client.Client
	force   bool
	stderr  io.Writer
	fails   failures
	removed atomic.Int64
}

// fail reports err.
func (r *remover) fail(err error) {
	r.fails.add(err)
	fmt.Fprintf(r.stderr, "dfs: %v\n", err)
}

func (r *remover) one(p string) {
	ctx := r.cmd.Context()
	err := r.c.Delete(ctx, p)
	switch {
	case err == nil:
		r.removed.Add(1)
	case errors.Is(err, dfs.ErrNotFound) || errors.Is(err, dfs.ErrBadPath):
		err = notAFile(ctx, r.c, "rm", p, fmt.Errorf("rm %s: %w", p, err), "dfs rm -r "+p)
		if !(r.force && errors.Is(err, dfs.ErrNotFound)) {
			r.fail(err)
		}
	default:
		r.fail(fmt.Errorf("rm %s: %w", p, err))
	}
}

// tree removes every file under folder p, and the file p, if any.
func (r *remover) tree(p string) {
	ctx := r.cmd.Context()
	f, err := folderName(p)
	if err != nil {
		r.fail(fmt.Errorf("rm -r %w", err))
		return
	}
	if f == "" {
		// Everything at once is one typo away: the whole namespace is
		// not a folder rm removes.
		r.fail(usagef("rm -r %q: names every file; remove folders one by one", p))
		return
	}
	before := r.removed.Load()
	if err := r.c.Delete(ctx, f); err == nil {
		r.removed.Add(1)
	} else if !errors.Is(err, dfs.ErrNotFound) {
		r.fail(fmt.Errorf("rm %s: %w", f, err))
	}
	// Deleting what a page listed does not move the next page: it starts
	// after the last path listed.
	err = remoteFiles(ctx, r.c, f, func(page []remoteFile) error {
		each(ctx, 8, page, func(rf remoteFile) {
			if err := r.c.Delete(ctx, rf.info.Path); err == nil {
				r.removed.Add(1)
			} else if !errors.Is(err, dfs.ErrNotFound) { // gone meanwhile: what rm wanted
				r.fail(fmt.Errorf("rm %s: %w", rf.info.Path, err))
			}
		})
		return ctx.Err()
	})
	if err != nil {
		r.fail(fmt.Errorf("rm -r %s: %w", p, err))
		return
	}
	if r.removed.Load() == before && !r.force {
		r.fail(fmt.Errorf("rm -r %s: %w: no file %s and none under %s", p, dfs.ErrNotFound, f, under(f)))
	}
}

// result is rm's outcome: nil if every path went, otherwise an error with
// the exit code the failures share (3 if every one was a missing path, 2
// if every one was a folder named without -r), or 1. Each failure was
// already reported.
func (r *remover) result() error {
	if err := r.cmd.Context().Err(); err != nil {
		return fmt.Errorf("rm: interrupted: %w", err)
	}
	return r.fails.result(fmt.Sprintf("rm: %s not removed", plural(r.fails.count(), "path")))
}
