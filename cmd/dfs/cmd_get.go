package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/client"
)

func newGetCmd(g *globals) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "get REMOTE [LOCAL|-]",
		Short: "Fetch a file to a local path, or to stdout as '-'",
		Long: `get writes the file at REMOTE to LOCAL (default: REMOTE's base name in the
current directory) or to stdout when LOCAL is '-'. Every chunk is verified
against its SHA-256; a bad or unreachable replica is skipped for another. A
local file appears only when complete.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote := args[0]
			local := path.Base(remote)
			if len(args) == 2 {
				local = args[1]
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if local == "-" {
				_, err := c.Get(cmd.Context(), remote, os.Stdout, client.GetOptions{})
				return err
			}
			return getToFile(cmd, c, remote, local, quiet)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

// getToFile writes to a temporary file beside local and renames it into
// place once every byte is verified.
func getToFile(cmd *cobra.Command, c *client.Client, remote, local string, quiet bool) error {
	if st, err := os.Stat(local); err == nil && st.IsDir() {
		local = filepath.Join(local, path.Base(remote))
	}
	loc, err := c.Locate(cmd.Context(), remote)
	if err != nil {
		return fmt.Errorf("get %s: %w", remote, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(local), "."+filepath.Base(local)+".dfs-*")
	if err != nil {
		return fmt.Errorf("get %s: %w", remote, err)
	}
	defer os.Remove(tmp.Name())
	bar := newBar(loc.Size, "get "+remote, !quiet)
	err = c.Read(cmd.Context(), loc, tmp, client.GetOptions{Progress: progressFunc(bar)})
	finishBar(bar)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("get %s: %w", remote, err)
	}
	if err := os.Rename(tmp.Name(), local); err != nil {
		return fmt.Errorf("get %s: %w", remote, err)
	}
	return nil
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
					return err
				}
			}
			return nil
		},
	}
}
