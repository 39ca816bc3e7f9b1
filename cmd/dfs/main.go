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
	"syscall"

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
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	err = explainTrust(err)
	if !errors.Is(err, errSilent) {
		fmt.Fprintf(os.Stderr, "dfs: %v\n", err)
	}
	os.Exit(exitCode(err))
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
