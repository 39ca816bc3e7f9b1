package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/etcdserver"
	"github.com/dfs-store/dfs/internal/jobs"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/pki"
)

// WorkersConfig configures a pool of post-upload workers of their own
// (`dfs worker`): they reach etcd for the jobs and the coordinators for
// the content bytes, like any client.
type WorkersConfig struct {
	EtcdEndpoints []string
	Coordinators  []string
	KeyRoot       string
	Jobs          jobs.Config // the clients and the schema are filled in
	// TLS, if set, is the worker's node certificate, for etcd and the
	// cluster. Nil: plain text (--insecure).
	TLS    *pki.Node
	Logger *slog.Logger
}

// workerDownloads is the chunks a worker's reads fetch at once: processing
// is not latency-bound, and each worker's memory stays a few chunks.
const workerDownloads = 4

// Workers is a running pool with its connections.
type Workers struct {
	Pool *jobs.Pool
	etcd *clientv3.Client
	cli  *client.Client
}

// StartWorkers connects to etcd and the coordinators and starts the pool.
func StartWorkers(ctx context.Context, cfg WorkersConfig) (_ *Workers, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Workers{}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	if len(cfg.EtcdEndpoints) == 0 {
		return nil, fmt.Errorf("workers: no etcd endpoint")
	}
	ecfg := etcdserver.ClientConfig(cfg.EtcdEndpoints, cfg.TLS)
	ecfg.Logger = quietZap()
	w.etcd, err = clientv3.New(ecfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(cfg.EtcdEndpoints, ","), err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = w.etcd.Get(sctx, "health-probe")
	cancel()
	if err != nil {
		return nil, fmt.Errorf("etcd %s: not reachable: %w", strings.Join(cfg.EtcdEndpoints, ","), err)
	}
	if w.cli, err = client.New(client.Config{Coordinators: cfg.Coordinators, Downloads: workerDownloads, TLS: nodeTLS(cfg.TLS), Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	jc := cfg.Jobs
	jc.Etcd, jc.Client, jc.Schema, jc.Logger = w.etcd, w.cli, meta.NewSchema(cfg.KeyRoot), cfg.Logger
	if w.Pool, err = jobs.Start(jc); err != nil {
		return nil, err
	}
	return w, nil
}

// Close stops the workers and closes the connections.
func (w *Workers) Close() error {
	if w.Pool != nil {
		w.Pool.Close()
	}
	if w.cli != nil {
		w.cli.Close()
	}
	if w.etcd != nil {
		w.etcd.Close()
	}
	return nil
}
