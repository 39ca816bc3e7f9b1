package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/jobs"
	"github.com/dfs-store/dfs/internal/pki"
)

func newWorkerCmd(g *globals) *cobra.Command {
	var (
		endpoints, keyRoot, name string
		wf                       workerFlags
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run post-upload workers: verify every new content and read its media metadata",
		Long: `worker runs --workers workers that take the processing jobs of new
contents from etcd, one worker per job at a time however many worker
processes run on however many hosts: each job is claimed with an etcd lock
and every state change is fenced by it, so a job is processed exactly once
in effect, even when a worker crashes or pauses. The content's bytes are read
from the datanodes through the coordinators (--coordinator).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			eps := splitList(endpoints)
			if len(eps) == 0 {
				return usagef("--etcd-endpoints: no endpoint")
			}
			coords := splitList(g.coordinators)
			if len(coords) == 0 {
				return usagef("--coordinator: no address")
			}
			if name == "" {
				host, _ := os.Hostname()
				name = fmt.Sprintf("%s-%d", host, os.Getpid())
			}
			jc, err := wf.config()
			if err != nil {
				return err
			}
			if jc.Workers < 1 {
				return usagef("--workers %d: at least 1", jc.Workers)
			}
			jc.Name = name
			node, err := g.nodeTLS(pki.RoleWorker)
			if err != nil {
				return err
			}
			w, err := cluster.StartWorkers(cmd.Context(), cluster.WorkersConfig{
				EtcdEndpoints: eps,
				Coordinators:  coords,
				KeyRoot:       keyRoot,
				Jobs:          jc,
				TLS:           node,
				Logger:        slog.Default(),
			})
			if err != nil {
				return err
			}
			defer w.Close()
			fmt.Printf("dfs worker ready: %s, etcd %s, coordinator %s\n",
				strings.Join(w.Pool.Workers(), " "), endpoints, g.coordinators)
			return waitForStop(cmd, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&endpoints, "etcd-endpoints", "", "etcd cluster, comma-separated client URLs")
	f.StringVar(&keyRoot, "key-root", "", "root of dfs's keys in etcd (default /dfs)")
	f.StringVar(&name, "name", "", "name of this worker process, prefixing its workers' ids (default HOST-PID)")
	wf.register(cmd)
	g.registerCertsDir(cmd)
	return cmd
}

// workerFlags are the flags shared by worker and server.
type workerFlags struct {
	workers      int
	lockTTL      time.Duration
	maxAttempts  int
	backoff      time.Duration
	processDelay time.Duration
}

func (w *workerFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&w.workers, "workers", 3, "number of post-upload workers")
	f.DurationVar(&w.lockTTL, "lock-ttl", 10*time.Second, "lease of a worker's job locks: a crashed or paused worker loses its jobs after this long")
	f.IntVar(&w.maxAttempts, "max-attempts", 3, "tries of a job before it ends in error")
	f.DurationVar(&w.backoff, "retry-backoff", time.Second, "wait before the first retry of a failed job, doubling with every retry")
	// A testing aid: keeps every job in a worker's hands this long, so a
	// test can kill or pause a worker that holds jobs.
	f.DurationVar(&w.processDelay, "process-delay", 0, "testing aid: hold every claimed job this long before processing it")
	f.MarkHidden("process-delay")
}

func (w *workerFlags) config() (jobs.Config, error) {
	if w.workers < 0 {
		return jobs.Config{}, usagef("--workers %d: must not be negative", w.workers)
	}
	if w.lockTTL < time.Second {
		return jobs.Config{}, usagef("--lock-ttl %v: at least 1s", w.lockTTL)
	}
	if w.maxAttempts < 1 {
		return jobs.Config{}, usagef("--max-attempts %d: at least 1", w.maxAttempts)
	}
	return jobs.Config{
		Workers:      w.workers,
		LockTTL:      w.lockTTL,
		MaxAttempts:  w.maxAttempts,
		Backoff:      w.backoff,
		ProcessDelay: w.processDelay,
	}, nil
}
