package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dfs-store/dfs/client"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// globals are the flags every command shares.
type globals struct {
	coordinators string
	logLevel     string
	pprof        string
	insecure     bool
	certsDir     string // a role's --certs-dir
	config       string // a client's --config
	cmd          *cobra.Command
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "dfs",
		Short: "dfs: a distributed file store with deduplication and replication",
		Long: `dfs stores files on a cluster of machines: cut into content-defined chunks,
each chunk stored once and kept on three datanodes, with metadata in etcd.

Start everything on one machine with 'dfs server', then use put, get, ls,
stat, rm and nodes. Every flag can also be set with an environment variable
named DFS_ and the flag's name in capitals (--coordinator: DFS_COORDINATOR).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			g.cmd = cmd
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := setupLogging(g.logLevel, cmd); err != nil {
				return err
			}
			return servePprof(g.pprof)
		},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&g.coordinators, "coordinator", client.DefaultCoordinator, "coordinator gRPC addresses, comma-separated")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error (default info for roles, warn for client commands)")
	root.PersistentFlags().StringVar(&g.pprof, "pprof", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060")
	root.PersistentFlags().BoolVar(&g.insecure, "insecure", false, "plain text with no authentication, for a cluster on a private test network: roles serve and clients dial without TLS")
	root.PersistentFlags().StringVar(&g.config, "config", "", "client configuration file: the cluster's addresses, CA and access key (default ~/.config/dfs/config)")

	root.AddCommand(
		newServerCmd(g),
		newCoordinatorCmd(g),
		newGatewayCmd(g),
		newDatanodeCmd(g),
		newPutCmd(g),
		newGetCmd(g),
		newCatCmd(g),
		newLsCmd(g),
		newStatCmd(g),
		newRmCmd(g),
		newCpCmd(g),
		newMvCmd(g),
		newSyncCmd(g),
		newVersionsCmd(g),
		newRestoreCmd(g),
		newPurgeCmd(g),
		newNodesCmd(g),
		newBenchCmd(g),
		newFsckCmd(g),
		newDrainCmd(g),
		newUndrainCmd(g),
		newNodeCmd(g),
		newGCCmd(g),
		newStatusCmd(g),
		newEtcdCmd(g),
		newWorkerCmd(g),
		newJobsCmd(g),
		newCertsCmd(),
		newKeyCmd(g),
		newBucketCmd(g),
		newWhoAmICmd(g),
	)
	return root
}

// applyEnv sets every flag the command line left alone from its DFS_*
// environment variable. Hidden flags take none: they are refused forms
// (--api-token) whose variable is read otherwise (DFS_API_TOKEN).
func applyEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Hidden || err != nil {
			return
		}
		name := "DFS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := cmd.Flags().Set(f.Name, v); e != nil {
				err = usagef("%s=%q: %v", name, v, e)
			}
		}
	})
	return err
}

// roleCommands log at info by default; client commands only warn.
var roleCommands = map[string]bool{"server": true, "coordinator": true, "datanode": true, "worker": true}

func setupLogging(level string, cmd *cobra.Command) error {
	if level == "" {
		level = "warn"
		if roleCommands[cmd.Name()] {
			level = "info"
		}
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return usagef("--log-level %q: %v", level, err)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
	return nil
}

// client returns a client of the cluster, set up as clientSetup says.
func (g *globals) client() (*client.Client, error) { return g.clientFor(g.cmd) }

func splitList(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func printf(format string, args ...any) { fmt.Fprintf(os.Stdout, format, args...) }

// servePprof serves the Go runtime's profiles on addr, if set, for as long
// as the process runs.
func servePprof(addr string) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return usagef("--pprof %s: %v", addr, err)
	}
	// Lock contention and blocking are sampled too (/debug/pprof/mutex,
	// /debug/pprof/block): a throughput that stops short of the cores
	// shows where requests wait. Sampled, they cost little.
	runtime.SetMutexProfileFraction(20)
	runtime.SetBlockProfileRate(int(100 * time.Microsecond))
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go http.Serve(ln, mux)
	slog.Info("profiles served", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}
