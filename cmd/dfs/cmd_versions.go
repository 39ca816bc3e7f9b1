package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/gateway"
)

func newVersionsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "versions PATH",
		Short: "List the versions of a path, newest first",
		Long: `versions lists a path's current file and the earlier versions its bucket keeps:
each overwrite and delete keeps what it replaced (a delete also leaves a delete
marker) for the bucket's retention (dfs bucket versioning). An earlier version
costs only the chunks it does not share with the others.

Read one with 'dfs get PATH --version ID', make one current again with
'dfs restore', drop them with 'dfs purge'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			vs, err := c.Versions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]gateway.Version, 0, len(vs))
				for _, v := range vs {
					out = append(out, gateway.VersionOf(v))
				}
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if len(vs) == 0 {
				return fmt.Errorf("%q: %w: no file and no earlier version", args[0], dfs.ErrNotFound)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tTIME\tSIZE\tSHA256\tSTATE")
			for _, v := range vs {
				state, size, sum := "", humanize.IBytes(uint64(v.Size)), v.Content.Short()
				switch {
				case v.DeleteMarker:
					state, size, sum = "deleted", "-", "-"
				case v.Latest:
					state = "current"
				}
				if !v.Expires.IsZero() {
					state = strings.TrimSpace(state + " kept until " + v.Expires.Local().Format("2006-01-02 15:04"))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.VersionID, v.Modified.Local().Format("2006-01-02 15:04:05"), size, sum, state)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: an array, newest first")
	return cmd
}

func newRestoreCmd(g *globals) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "restore PATH",
		Short: "Make an earlier version of a path current again (undelete, undo)",
		Long: `restore makes an earlier version of PATH its current file again: by default the
newest earlier file, which undoes the last overwrite or undeletes a deleted
path; --version picks one (dfs versions lists them). It sends no bytes: the
version's chunks are stored already. The file it replaces is kept as an
earlier version, so a restore can itself be undone.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if id == "" {
				vs, err := c.Versions(ctx, args[0])
				if err != nil {
					return err
				}
				for _, v := range vs {
					if !v.Latest && !v.DeleteMarker {
						id = v.VersionID
						break
					}
				}
				if id == "" {
					return fmt.Errorf("%q: %w: no earlier version to restore", args[0], dfs.ErrNotFound)
				}
			}
			f, err := c.Restore(ctx, args[0], id)
			if err != nil {
				return err
			}
			fmt.Printf("%s  %s  %s  (restored from version %s)\n", f.Path, humanize.IBytes(uint64(f.Size)), f.Content.Short(), id)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "version", "", "the version to restore (default: the newest earlier file)")
	return cmd
}

func newPurgeCmd(g *globals) *cobra.Command {
	var id string
	var recursive bool
	cmd := &cobra.Command{
		Use:   "purge PATH",
		Short: "Drop earlier versions of a path for good",
		Long: `purge drops the earlier versions and delete markers of PATH (of every path
under the folder PATH with -r) for good; the current file stays. --version
drops one version, which may be the current file: the newest earlier one then
becomes current, unless it is a delete marker. Their chunks are collected once
nothing else refers to them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if id != "" {
				if recursive {
					return usagef("--version names one version of one path: not with -r")
				}
				v, err := c.DeleteVersion(ctx, args[0], id)
				if err != nil {
					return err
				}
				fmt.Printf("%s: version %s dropped\n", v.Path, id)
				return nil
			}
			o := client.VersionListOptions{Prefix: args[0], Exact: true}
			if recursive {
				o = client.VersionListOptions{Prefix: strings.TrimSuffix(args[0], "/") + "/"}
			}
			n, err := purge(ctx, c, o)
			fmt.Printf("%d earlier versions dropped\n", n)
			return err
		},
	}
	cmd.Flags().StringVar(&id, "version", "", "drop only this version")
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "every path under the folder PATH")
	return cmd
}

// purge drops every version but the current files that o lists.
func purge(ctx context.Context, c *client.Client, o client.VersionListOptions) (int, error) {
	n := 0
	for {
		l, err := c.ListVersions(ctx, o)
		if err != nil {
			return n, err
		}
		for _, v := range l.Versions {
			if v.Latest && !v.DeleteMarker {
				continue
			}
			if _, err := c.DeleteVersion(ctx, v.Path, v.VersionID); err != nil && !errors.Is(err, dfs.ErrNotFound) {
				return n, err
			}
			n++
		}
		if !l.Truncated {
			return n, nil
		}
		o.KeyMarker, o.VersionMarker = l.NextKeyMarker, l.NextVersionMark
	}
}

func newMvCmd(g *globals) *cobra.Command {
	var recursive, noClobber bool
	cmd := &cobra.Command{
		Use:   "mv SRC DST",
		Short: "Move a file (or with -r a folder) to another path",
		Long: `mv moves SRC to DST. Each file moves in one transaction and no byte is read or
sent. A DST ending in '/' keeps SRC's name under that folder. With -r, SRC is a
folder and every file under it moves to the same place under DST; mv goes on
past a file it cannot move and exits non-zero at the end. A file DST replaces
is kept as an earlier version where its bucket keeps versions, as SRC is.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			src, dst := args[0], args[1]
			o := client.RenameOptions{IfAbsent: noClobber}
			if !recursive {
				if strings.HasSuffix(dst, "/") {
					dst += path.Base(src)
				}
				f, err := c.Rename(ctx, src, dst, o)
				if err != nil {
					if _, serr := c.Stat(ctx, src); serr != nil {
						return notAFile(ctx, c, "mv", src, err, "dfs mv -r "+src+" "+args[1])
					}
					return err
				}
				fmt.Printf("%s -> %s\n", src, f.Path)
				return nil
			}
			from, to := strings.TrimSuffix(src, "/")+"/", strings.TrimSuffix(dst, "/")+"/"
			if strings.HasPrefix(to, from) {
				return usagef("cannot move %s into itself (%s)", src, dst)
			}
			var failed, moved int
			var last error
			// Pages go on after the last path listed (not at an offset), so
			// files moving out of the listing shift nothing.
			err = c.ListAll(ctx, client.ListOptions{Prefix: from}, func(l client.Listing) error {
				for _, f := range l.Files {
					target := to + strings.TrimPrefix(f.Path, from)
					if _, err := c.Rename(ctx, f.Path, target, o); err != nil {
						fmt.Fprintf(os.Stderr, "dfs: mv %s: %v\n", f.Path, err)
						failed++
						last = err
						continue
					}
					moved++
				}
				return nil
			})
			if err != nil {
				return err
			}
			if moved+failed == 0 {
				return fmt.Errorf("folder %q: %w: no file under it", src, dfs.ErrNotFound)
			}
			fmt.Printf("%d files moved to %s", moved, to)
			if failed > 0 {
				fmt.Printf(", %d failed", failed)
			}
			fmt.Println()
			if failed > 0 {
				return fmt.Errorf("%d of %d files not moved: %w", failed, moved+failed, last)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "move a folder: every file under SRC/")
	cmd.Flags().BoolVarP(&noClobber, "no-clobber", "n", false, "do not replace a file at the destination")
	return cmd
}

func newBucketVersioningCmd(g *globals) *cobra.Command {
	var keep, mode string
	cmd := &cobra.Command{
		Use:   "versioning BUCKET",
		Short: "Show or set how a bucket keeps earlier versions of its files",
		Long: `versioning shows how BUCKET keeps earlier versions of overwritten and deleted
files, or sets it:

  --keep 30d       keep them 30 days (any duration: 12h, 90d; 'forever' until purged)
  --mode suspended keep none: an overwrite or delete is final
  --mode default   the cluster's retention (dfs server --version-retention, 7 days)

S3 clients set the same with PutBucketVersioning (Enabled: --keep forever).
A change applies to versions made from then on.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			var v client.Versioning
			switch {
			case keep != "" && mode != "":
				return usagef("--keep and --mode: give one")
			case keep != "":
				v.Mode = "enabled"
				if keep != "forever" {
					d, err := parseDays(keep)
					if err != nil || d <= 0 {
						return usagef("--keep %q: want a duration such as 30d or 12h, or forever", keep)
					}
					v.Retention = d
				}
			case mode != "":
				if mode != "default" && mode != "suspended" {
					return usagef("--mode %q: want default or suspended (or --keep DURATION)", mode)
				}
				v.Mode = mode
			}
			if v.Mode != "" {
				if v, err = c.SetVersioning(ctx, args[0], v); err != nil {
					return err
				}
			} else if v, err = c.GetVersioning(ctx, args[0]); err != nil {
				return err
			}
			switch {
			case !v.Keeps:
				fmt.Printf("%s: %s: earlier versions are not kept\n", args[0], v.Mode)
			case v.Retention == 0:
				fmt.Printf("%s: %s: earlier versions are kept until purged\n", args[0], v.Mode)
			default:
				fmt.Printf("%s: %s: earlier versions are kept %s\n", args[0], v.Mode, days(v.Retention))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keep, "keep", "", "keep earlier versions this long (30d, 12h) or 'forever'")
	cmd.Flags().StringVar(&mode, "mode", "", "default (the cluster's retention) or suspended (keep none)")
	return cmd
}

// parseDays parses a duration that may be given in days ("30d").
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var d int
		if _, err := fmt.Sscanf(n, "%d", &d); err != nil || fmt.Sprint(d) != n {
			return 0, fmt.Errorf("%q: not a number of days", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// days prints a retention in days when it is whole days.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		n := int(d / (24 * time.Hour))
		if n == 1 {
			return "1 day"
		}
		return fmt.Sprintf("%d days", n)
	}
	return d.String()
}
