// Command dfs is the one binary of the dfs distributed file store: every role
// (server, coordinator, datanode) and every client command is a subcommand.
// Commands are thin: they parse flags and call the packages that do the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1 // anything else
	exitUsage       = 2 // bad flags, arguments or paths
	exitNotFound    = 3 // the path or content does not exist
	exitUnavailable = 4 // the cluster could not be reached or cannot serve
	// exitAuth (5): not authenticated or not allowed (security.go).
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := execute(ctx, newRootCmd())
	if err == nil {
		return
	}
	err = explainTrust(err)
	if !errors.Is(err, errSilent) {
		fmt.Fprintf(os.Stderr, "dfs: %v\n", err)
	}
	os.Exit(exitCode(err))
}

// execute runs the command line. An error that comes before the command's
// own code ran is cobra's: a wrong number of arguments, an unknown command
// or flag, a required flag missing. Those are usage errors (exit 2), and
// say which command's usage to read.
func execute(ctx context.Context, root *cobra.Command) error {
	ran := false
	var mark func(*cobra.Command)
	mark = func(c *cobra.Command) {
		if run := c.RunE; run != nil {
			c.RunE = func(cmd *cobra.Command, args []string) error {
				ran = true
				return run(cmd, args)
			}
		}
		for _, sub := range c.Commands() {
			mark(sub)
		}
	}
	mark(root)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil || ran || exitCode(err) != exitError {
		return err
	}
	if cmd == nil || cmd == root {
		return usageError{err}
	}
	name := strings.TrimPrefix(cmd.CommandPath(), root.Name()+" ")
	return usageError{fmt.Errorf("%s: %w (usage: %s)", name, err, cmd.UseLine())}
}

func exitCode(err error) int {
	var ue usageError
	var ae authError
	switch {
	case errors.As(err, &ae), errors.Is(err, dfs.ErrDenied):
		return exitAuth
	case errors.As(err, &ue), errors.Is(err, dfs.ErrBadPath), errors.Is(err, dfs.ErrBadHash), errors.Is(err, dfs.ErrInvalid):
		return exitUsage
	case errors.Is(err, dfs.ErrNotFound):
		return exitNotFound
	case errors.Is(err, dfs.ErrUnavailable):
		return exitUnavailable
	}
	return exitError
}

// errSilent ends a command with exit code 1 after it has said why.
var errSilent = errors.New("")

// usageError marks a mistake in how a command was called.
type usageError struct{ error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}
