package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
)

func newRmCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm PATH...",
		Short: "Remove paths",
		Long: `rm removes paths. Their bytes stay while another path shares them and are
collected as garbage once nothing refers to them.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			for _, p := range args {
				err := c.Delete(cmd.Context(), p)
				if err != nil && !(force && errors.Is(err, dfs.ErrNotFound)) {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "ignore paths that do not exist")
	return cmd
}
