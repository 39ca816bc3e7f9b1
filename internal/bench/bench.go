// Package bench measures a dfs cluster against the machine it runs on:
// large-file throughput, small-file and metadata rates, deduplication on a
// real data set, and the machine's own ceilings (hashing, disk, loopback)
// measured in the same run, so every figure can be read beside the limit
// that bounds it.
//
// A run either starts its own `dfs server` process in a temporary directory
// (and reports that process's peak memory) or targets a running cluster.
package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dfs-store/dfs/client"
)

// Workloads are the names of the workloads, in the order they run.
var Workloads = []string{"limits", "large", "small", "meta", "dedup"}

// Config says what to run and how big.
type Config struct {
	// Workloads to run (names from Workloads); empty means all but dedup
	// unless Dataset is set.
	Workloads []string
	// Coordinator targets a running cluster; empty starts a dfs server.
	Coordinator string
	// Client is how to reach the running cluster Coordinator names: its
	// TLS and access key.
	Client client.Config
	// Insecure starts the server in plain text (--insecure), to measure
	// what TLS costs.
	Insecure bool
	// Binary is the dfs executable to start servers with (default: this
	// process's own).
	Binary string
	// Size of the large file (default 1 GiB); also the byte count of the
	// limits disk test.
	Size int64
	// Count and FileSize of the small files (defaults 10000 × 64 KiB);
	// Count is also the number of meta operations.
	Count    int
	FileSize int64
	// Concurrency of the small and meta workloads (default 32).
	Concurrency int
	// Dataset is the directory the dedup workload stores.
	Dataset string
	// ChunkSize is the average chunk size of the dedup workload (default
	// 2 MiB, dfs's own; min and max are a quarter and four times it), and
	// the size of the fixed chunks it is compared with.
	ChunkSize int
	// Dir holds temporary servers and files (default the system's).
	Dir string
	// Progress receives human-readable progress lines.
	Progress io.Writer
	Logger   *slog.Logger
}

func (c *Config) fill() {
	if len(c.Workloads) == 0 {
		c.Workloads = []string{"limits", "large", "small", "meta"}
		if c.Dataset != "" {
			c.Workloads = append(c.Workloads, "dedup")
		}
	}
	if c.Size <= 0 {
		c.Size = 1 << 30
	}
	if c.Count <= 0 {
		c.Count = 10000
	}
	if c.FileSize <= 0 {
		c.FileSize = 64 << 10
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = 2 << 20
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Report holds the results of the workloads that ran.
type Report struct {
	Limits *Limits      `json:"limits,omitempty"`
	Large  *LargeResult `json:"large,omitempty"`
	Small  *SmallResult `json:"small,omitempty"`
	Meta   *MetaResult  `json:"meta,omitempty"`
	Dedup  *DedupResult `json:"dedup,omitempty"`
	Env    *Environment `json:"env,omitempty"`
}

// Environment records where the figures come from.
type Environment struct {
	Date     string `json:"date"`
	CPUs     int    `json:"cpus"`
	CPU      string `json:"cpu,omitempty"`
	Target   string `json:"target"` // "dfs server (started by bench)" or the coordinator
	Replicas int    `json:"replicas"`
}

// Run runs the configured workloads.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.fill()
	for _, w := range cfg.Workloads {
		if !slices.Contains(Workloads, w) {
			return nil, fmt.Errorf("unknown workload %q (have %s)", w, strings.Join(Workloads, ", "))
		}
	}
	if slices.Contains(cfg.Workloads, "dedup") && cfg.Dataset == "" {
		return nil, fmt.Errorf("dedup needs --dataset DIR (see scripts/dedup-dataset.sh)")
	}
	rep := &Report{Env: environment(cfg)}
	run := func(name string) bool { return slices.Contains(cfg.Workloads, name) }
	var err error
	// Limits first: the other figures are read against them.
	if run("limits") {
		if rep.Limits, err = measureLimits(ctx, cfg); err != nil {
			return rep, fmt.Errorf("limits: %w", err)
		}
	}
	if run("large") {
		if rep.Large, err = runLarge(ctx, cfg); err != nil {
			return rep, fmt.Errorf("large: %w", err)
		}
	}
	if run("small") || run("meta") || run("dedup") {
		err := withCluster(ctx, cfg, false, func(t *target) error {
			if run("small") {
				if rep.Small, err = runSmall(ctx, cfg, t); err != nil {
					return fmt.Errorf("small: %w", err)
				}
			}
			if run("meta") {
				if rep.Meta, err = runMeta(ctx, cfg, t); err != nil {
					return fmt.Errorf("meta: %w", err)
				}
			}
			if run("dedup") {
				if rep.Dedup, err = runDedup(ctx, cfg, t); err != nil {
					return fmt.Errorf("dedup: %w", err)
				}
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func environment(cfg Config) *Environment {
	e := &Environment{Date: time.Now().UTC().Format(time.RFC3339), CPUs: cpus(), Replicas: 3, Target: "dfs server (started by bench)"}
	if cfg.Insecure {
		e.Target = "dfs server --insecure (started by bench)"
	}
	if cfg.Coordinator != "" {
		e.Target = cfg.Coordinator
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return e
}

// target is a cluster under test.
type target struct {
	base   client.Config // how its clients reach the cluster
	client *client.Client
	server *exec.Cmd // nil for a running cluster
	dir    string    // the server's data directory
}

// peakRSS is the server process's peak resident memory, in bytes, or 0
// when bench did not start it.
func (t *target) peakRSS() int64 {
	if t.server == nil || t.server.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", t.server.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// withCluster runs fn against the configured cluster, starting a dfs server
// (with or without fsync) when none is given.
func withCluster(ctx context.Context, cfg Config, noSync bool, fn func(*target) error) error {
	if cfg.Coordinator != "" {
		base := cfg.Client
		base.Coordinators, base.Logger = strings.Split(cfg.Coordinator, ","), cfg.Logger
		c, err := client.New(withConcurrency(base))
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(&target{client: c, base: base})
	}
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp(cfg.Dir, "dfs-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	// No workers: post-upload processing reads every new content back,
	// which would compete with the workload for the same two cores; the
	// figures are those of the storage path. No gateway either: it would
	// take the default web port from a server already running.
	args := []string{"server", "--data", filepath.Join(dir, "data"), "--grpc", addr, "--log-level", "warn", "--workers", "0", "--http", ""}
	if noSync {
		args = append(args, "--no-fsync")
	}
	if cfg.Insecure {
		args = append(args, "--insecure")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	// The server's client configuration goes to its own directory, not to
	// the user's ~/.config.
	cmd.Env = append(cleanEnv(), "XDG_CONFIG_HOME="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dfs server: %w", err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready") {
				ready <- nil
				io.Copy(io.Discard, out)
				return
			}
		}
		ready <- fmt.Errorf("dfs server exited before it was ready")
	}()
	select {
	case err := <-ready:
		if err != nil {
			return err
		}
	case <-time.After(60 * time.Second):
		return fmt.Errorf("dfs server not ready after 60s")
	case <-ctx.Done():
		return ctx.Err()
	}
	// The server's admin client configuration: its CA and access key.
	base := client.Config{Coordinators: []string{addr}}
	if !cfg.Insecure {
		f, err := client.ReadConfigFile(filepath.Join(dir, "data", "client.conf"))
		if err != nil {
			return err
		}
		if base, err = f.Config(); err != nil {
			return err
		}
		base.Coordinators = []string{addr}
	}
	base.Logger = cfg.Logger
	c, err := client.New(withConcurrency(base))
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(&target{client: c, base: base, server: cmd, dir: filepath.Join(dir, "data")})
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// latencies summarises operation times.
type latencies []time.Duration

func (l latencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func mibPerSec(bytes int64, d time.Duration) float64 {
	return float64(bytes) / (1 << 20) / d.Seconds()
}

// withConcurrency sets the transfers a benchmark's client keeps in flight.
func withConcurrency(c client.Config) client.Config {
	c.Uploads, c.Downloads = 8, 16
	return c
}
