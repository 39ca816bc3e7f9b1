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
	"sync"
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
	var xe codedError
	switch {
	case errors.As(err, &xe):
		return xe.code
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

// codedError ends a command with the exit code of failures it has already
// reported one by one.
type codedError struct {
	error
	code int
}

// failures counts what a command that goes on past failures (rm a b c,
// put -r) could not do, and what exit code they call for together: the
// code they share, or 1 when they differ.
type failures struct {
	mu   sync.Mutex
	n    int
	code int
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := exitCode(err)
	if f.n > 0 && c != f.code {
		c = exitError
	}
	f.n++
	f.code = c
}

func (f *failures) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// result is nil if nothing failed, or msg with the failures' exit code.
func (f *failures) result(msg string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return nil
	}
	return codedError{errors.New(msg), f.code}
}

// usageError marks a mistake in how a command was called.
type usageError struct{ error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}
