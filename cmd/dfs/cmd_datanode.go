package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/datanode"
	"github.com/dfs-store/dfs/internal/pki"
)

func newDatanodeCmd(g *globals) *cobra.Command {
	var (
		cfg     datanode.Config
		reserve string
		scrub   scrubFlags
	)
	cmd := &cobra.Command{
		Use:   "datanode",
		Short: "Run a datanode: chunk storage on local disk, served over HTTP",
		Long: `datanode keeps chunks in --data, serves them on --listen (HTTP:
PUT/GET/HEAD /chunks/{sha256}), and reports to every coordinator in
--coordinator. Its id is made at first start and kept in --data.

In the background it re-reads every chunk and checks its bytes against its
name, at most --scrub-rate MiB/s and --scrub-chunks chunks a second; a pass
starts at most once every --scrub-interval. A corrupt copy is moved to
--data/quarantine/ and reported, so the coordinator has a good copy made
elsewhere.

A clean stop saves the list of chunks to --data/chunk-index, so the next
start reads one file instead of every chunk's; after a crash the datanode
walks its chunk directories once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.Dir == "" {
				return usagef("--data is required")
			}
			if err := scrub.check(); err != nil {
				return err
			}
			cfg.ScrubRate, cfg.ScrubChunks, cfg.ScrubInterval = scrub.rate, scrub.chunks, scrub.interval
			var err error
			if cfg.Reserve, err = parseReserve(reserve, cfg.Dir); err != nil {
				return err
			}
			cfg.Coordinators = splitList(g.coordinators)
			cfg.Logger = slog.Default()
			if cfg.TLS, err = g.nodeTLS(pki.RoleDatanode); err != nil {
				return err
			}
			n, err := datanode.Start(cfg)
			if err != nil {
				return err
			}
			defer n.Close()
			fmt.Printf("dfs datanode %s ready: data %s, gRPC %s, coordinators %s\n", n.ID(), n.Addr(), n.GRPCAddr(), g.coordinators)
			return waitForStop(cmd, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "data", "", "data directory")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:9500", "HTTP data plane listen address")
	f.StringVar(&cfg.GRPCListen, "grpc", "", "gRPC control listen address (default: the --listen host, a free port)")
	f.StringVar(&cfg.Advertise, "advertise", "", "host name or IP others reach this node by (default: the listen host)")
	f.StringVar(&cfg.Zone, "zone", "", "failure zone label; copies of a chunk go to distinct zones")
	f.BoolVar(&cfg.NoSync, "no-fsync", false, "do not fsync chunk files (benchmarks only)")
	f.StringVar(&reserve, "reserve", defaultReserve, "disk space to leave free: bytes (10GiB) or a share of the disk (1%)")
	scrub.register(cmd, datanode.DefaultScrubRate, datanode.DefaultScrubChunks)
	g.registerCertsDir(cmd)
	return cmd
}

// scrubFlags are the scrub flags shared by datanode and server.
type scrubFlags struct {
	rate, chunks float64
	interval     time.Duration
}

func (s *scrubFlags) register(cmd *cobra.Command, defRate, defChunks float64) {
	f := cmd.Flags()
	f.Float64Var(&s.rate, "scrub-rate", defRate, "most MiB/s at which to re-read chunks to find corrupt ones; 0 disables scrubbing")
	f.Float64Var(&s.chunks, "scrub-chunks", defChunks,
		"most chunks a second to re-read, whatever their size: each costs a file open and read (about 150µs of CPU for a small chunk), so this bounds scrubbing's CPU when chunks are small")
	f.DurationVar(&s.interval, "scrub-interval", datanode.DefaultScrubInterval, "how often every chunk is re-read: a pass is spread evenly over this time, within --scrub-rate and --scrub-chunks")
}

func (s *scrubFlags) check() error {
	if s.rate < 0 || s.rate != s.rate {
		return usagef("--scrub-rate %v: want 0 (off) or more MiB/s", s.rate)
	}
	if !(s.chunks > 0) {
		return usagef("--scrub-chunks %v: want more than 0 chunks a second", s.chunks)
	}
	if s.interval <= 0 {
		return usagef("--scrub-interval %v: want more than 0", s.interval)
	}
	return nil
}

func (s *scrubFlags) config() cluster.Scrub {
	return cluster.Scrub{Rate: s.rate, Chunks: s.chunks, Interval: s.interval}
}

// defaultReserve is the disk space a datanode leaves free unless told
// otherwise: a full disk breaks more than dfs (logs, etcd, the system).
const defaultReserve = "1%"

// parseReserve reads --reserve: bytes (10GiB) or a share of the file
// system that holds dir (1%).
func parseReserve(v, dir string) (int64, error) {
	if pct, ok := strings.CutSuffix(strings.TrimSpace(v), "%"); ok {
		p, err := strconv.ParseFloat(pct, 64)
		if err != nil || p < 0 || p >= 100 {
			return 0, usagef("--reserve %q: want a percentage from 0 to 99", v)
		}
		// The directory may not exist yet: its nearest existing parent is
		// on the same file system.
		for d := dir; ; d = filepath.Dir(d) {
			var st syscall.Statfs_t
			if err := syscall.Statfs(d, &st); err == nil {
				return int64(float64(st.Blocks) * float64(st.Bsize) * p / 100), nil
			}
			if d == filepath.Dir(d) {
				return 0, usagef("--reserve %q: cannot read the size of the file system of %s", v, dir)
			}
		}
	}
	r, err := humanize.ParseBytes(v)
	if err != nil {
		return 0, usagef("--reserve %q: %v", v, err)
	}
	return int64(r), nil
}
