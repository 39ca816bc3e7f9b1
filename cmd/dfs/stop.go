package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/internal/etcdserver"
)

// waitForStop blocks until the command is interrupted (SIGINT, SIGTERM) or
// the embedded etcd member, if any, fails.
func waitForStop(cmd *cobra.Command, e *etcdserver.Server) error {
	var etcdErr <-chan error
	if e != nil {
		etcdErr = e.Err()
	}
	select {
	case <-cmd.Context().Done():
		slog.Info("shutting down")
		return nil
	case err := <-etcdErr:
		return fmt.Errorf("embedded etcd stopped: %w", err)
	}
}
