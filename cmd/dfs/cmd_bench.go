package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/internal/bench"
)

func newBenchCmd(g *globals) *cobra.Command {
	var (
		cfg       bench.Config
		size      string
		fileSize  string
		chunkSize string
		asJSON    bool
		target    bool
	)
	cmd := &cobra.Command{
		Use:   "bench [WORKLOAD...]",
		Short: "Measure throughput, small-file and metadata rates, and dedup against the machine's limits",
		Long: `bench runs workloads against a dfs server it starts in a temporary directory
or, when a cluster is named with --coordinator (or DFS_COORDINATOR), against
that cluster, reached as every client command reaches it (--insecure,
--config). Against a running cluster, the workloads write their files
under the folder bench/ and delete them. Workloads:

  limits  the machine's ceilings: SHA-256 per core, disk writes with fsync,
          fsyncs per second, loopback TCP
  large   one file (--size, default 1GiB) up and down, with fsync on and off
  small   --count files of --file-size (10000 x 64KiB) at --concurrency (32):
          puts, gets and stats per second with p50/p99 latency
  meta    --count creates, stats, list pages and deletes of empty files
  dedup   the files of --dataset DIR in name order: logical and physical
          bytes, beside fixed 2 MiB chunking of the same files

With no WORKLOAD it runs limits, large, small and meta (and dedup with
--dataset). Progress goes to stderr; the result to stdout, as a table or with
--json as one object.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Workloads = args
			s, err := humanize.ParseBytes(size)
			if err != nil {
				return usagef("--size %q: %v", size, err)
			}
			fs, err := humanize.ParseBytes(fileSize)
			if err != nil {
				return usagef("--file-size %q: %v", fileSize, err)
			}
			cs, err := humanize.ParseBytes(chunkSize)
			if err != nil {
				return usagef("--chunk-size %q: %v", chunkSize, err)
			}
			cfg.Size, cfg.FileSize, cfg.ChunkSize = int64(s), int64(fs), int(cs)
			// Naming a cluster means to measure it; --target is the
			// older spelling, for the default address.
			if target || g.coordinatorSet(cmd) {
				cc, err := g.clientSetup(cmd)
				if err != nil {
					return err
				}
				cfg.Coordinator, cfg.Client = strings.Join(cc.Coordinators, ","), cc
			}
			cfg.Insecure = g.insecure && cfg.Coordinator == ""
			cfg.Progress = cmd.ErrOrStderr()
			rep, err := bench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printReport(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&size, "size", "1GiB", "size of the large file")
	f.IntVar(&cfg.Count, "count", 10000, "files in the small workload, operations in meta")
	f.StringVar(&fileSize, "file-size", "64KiB", "size of each small file")
	f.IntVar(&cfg.Concurrency, "concurrency", 32, "operations in flight in small and meta")
	f.StringVar(&cfg.Dataset, "dataset", "", "directory for the dedup workload (scripts/dedup-dataset.sh builds the default)")
	f.StringVar(&chunkSize, "chunk-size", "2MiB", "average chunk size of the dedup workload, and the fixed size it is compared with")
	f.StringVar(&cfg.Dir, "tmp", "", "directory for temporary servers and files (default the system's)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.BoolVar(&target, "target", false, "run against the cluster at --coordinator even when it is the default address")
	cmd.AddCommand(newBenchScaleCmd())
	return cmd
}

func newBenchScaleCmd() *cobra.Command {
	var (
		cfg      bench.ScaleConfig
		fileSize string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Fill a cluster of separate processes with many small files and measure it at rest",
		Long: `scale starts a cluster as separate dfs processes: a coordinator embedding
etcd, a standby coordinator, 3 datanodes, a gateway and a worker. It fills it
with --files files of --file-size (one chunk each) through real uploads at
--concurrency, then measures: idle CPU per process over --idle, the gateway's
cluster counters, a listing page at the start and near the end of the filled
prefix, the first line of 'dfs ls', datanode and coordinator restarts to
their full chunk reports, the standby coordinator's memory per chunk and
etcd's bytes per file.

With --dir the cluster is kept there: a later run with a larger --files tops
it up instead of starting again. Datanodes run with --no-fsync unless --fsync
is given. Progress goes to stderr; the result to stdout, as a table or with
--json as one object.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs, err := humanize.ParseBytes(fileSize)
			if err != nil {
				return usagef("--file-size %q: %v", fileSize, err)
			}
			if cfg.Files <= 0 {
				return usagef("--files %d: want at least 1", cfg.Files)
			}
			cfg.FileSize = int64(fs)
			cfg.Progress = os.Stderr
			res, err := bench.RunScale(cmd.Context(), cfg)
			if res != nil {
				if asJSON {
					enc := json.NewEncoder(os.Stdout)
					enc.SetIndent("", "  ")
					if e := enc.Encode(res); e != nil && err == nil {
						err = e
					}
				} else {
					printScale(res)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Files, "files", 20000, "files the cluster holds when measured")
	f.StringVar(&fileSize, "file-size", "4KiB", "size of every file")
	f.IntVar(&cfg.Concurrency, "concurrency", 128, "puts in flight during the fill")
	f.StringVar(&cfg.Dir, "dir", "", "keep the cluster in this directory, to top it up in a later run (default: a temporary one)")
	f.DurationVar(&cfg.Idle, "idle", 30*time.Second, "window idle CPU is measured over")
	f.DurationVar(&cfg.JobsWait, "jobs-wait", time.Hour, "longest wait for the worker to finish the fill's jobs before idle CPU is measured")
	f.BoolVar(&cfg.Fsync, "fsync", false, "datanodes fsync chunk files")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func printScale(r *bench.ScaleResult) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	row := func(fig, val, unit string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", fig, val, unit) }
	num := func(v float64, prec int) string {
		if v < 0 {
			return "-"
		}
		return strconv.FormatFloat(v, 'f', prec, 64)
	}
	row("files", strconv.Itoa(r.Files), fmt.Sprintf("of %s", humanize.IBytes(uint64(r.FileBytes))))
	row("fill", fmt.Sprintf("%d in %.0f s", r.Added, r.FillSeconds), fmt.Sprintf("%.0f files/s at %d in flight, fsync %v", r.FillPerSec, r.Concurrency, r.Fsync))
	sum := 0.0
	for _, p := range r.FillCPU {
		row("fill cpu "+p.Process, num(p.MsPerFile, 2), "ms per file")
		sum += p.MsPerFile
	}
	if sum > 0 && r.Env != nil {
		row("fill cpu, all", num(sum, 2), fmt.Sprintf("ms per file: at most %.0f files/s on %d cores", float64(r.Env.CPUs)*1000/sum, r.Env.CPUs))
	}
	row("jobs drained", fmt.Sprintf("%v after %.0f s", r.JobsDrained, r.JobsDrainedSeconds), "")
	for _, p := range r.IdleCPU {
		row("idle cpu "+p.Process, num(p.Percent, 1), fmt.Sprintf("%% of a core over %.0f s", r.IdleSeconds))
	}
	row("idle cpu, all", num(r.IdleCPUTotal, 1), "% of a core")
	counters := "ms, median of 5"
	if r.CountersError != "" {
		counters += ", counters_error: " + r.CountersError
	}
	row("cluster counters", num(r.CountersMs, 1), counters)
	row("list page, start", num(r.ListFirstMs, 1), "ms, 1000 entries, median of 5")
	row("list page, end", num(r.ListLastMs, 1), "ms, 1000 entries, median of 5")
	row("ls first line", num(r.LsFirstLineMs, 1), "ms, median of 3")
	row("datanode restart", num(r.DatanodeReadyS, 2), "s to ready")
	row("datanode registered", num(r.DatanodeRegisteredS, 2), "s to its full report at both coordinators")
	row("coordinator restart", num(r.CoordinatorReadyS, 2), "s to ready (embedded etcd)")
	row("coordinator warm", num(r.CoordinatorRestartS, 2), "s to every datanode's full report")
	row("standby heap", humanize.IBytes(uint64(max(r.StandbyHeapBytes, 0))), fmt.Sprintf("%.0f B per chunk over the empty cluster (%s)", r.StandbyHeapPerChunk, plural(int(r.Chunks), "chunk")))
	row("standby rss", humanize.IBytes(uint64(max(r.StandbyRSSBytes, 0))), fmt.Sprintf("%.0f B per chunk over the empty cluster", r.StandbyRSSPerChunk))
	row("etcd db", humanize.IBytes(uint64(max(r.EtcdDBBytes, 0))), fmt.Sprintf("%.0f B per file over the empty cluster", r.EtcdBytesPerFile))
	row("etcd db in use", humanize.IBytes(uint64(max(r.EtcdDBInUseBytes, 0))), fmt.Sprintf("%.0f B per file over the empty cluster, after compaction", r.EtcdInUseBytesPerFile))
	tw.Flush()
	for _, e := range r.Errors {
		fmt.Printf("not measured: %s\n", e)
	}
	if e := r.Env; e != nil {
		fmt.Printf("\n%s, %d CPUs (%s), %s\n", e.Date, e.CPUs, e.CPU, e.Target)
	}
}

// printReport prints the report as a table. The columns that read a
// figure against the machine's limits appear only when limits ran.
func printReport(w io.Writer, r *bench.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	withLimits := r.Limits != nil
	if withLimits {
		fmt.Fprintln(tw, "workload\tfigure\tvalue\t\tbound by\tlimit\t\tratio\t")
	} else {
		fmt.Fprintln(tw, "workload\tfigure\tvalue\t\t")
	}
	row := func(w, fig string, v float64, unit, bound string, limit float64, lunit string) {
		if !withLimits {
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t\n", w, fig, v, unit)
			return
		}
		ratio, lim := "", ""
		if limit > 0 {
			ratio = fmt.Sprintf("%.2f", v/limit)
			lim = fmt.Sprintf("%.0f", limit)
		} else {
			bound, lunit = "", ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n", w, fig, v, unit, bound, lim, lunit, ratio)
	}
	// text prints a row whose value is not a number.
	text := func(w, fig, v, unit string) {
		if withLimits {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\t\t\t\n", w, fig, v, unit)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", w, fig, v, unit)
		}
	}
	l := r.Limits
	if l != nil {
		row("limits", "sha256 per core", l.SHA256MBps, "MB/s", "", 0, "")
		row("limits", "seq write+fsync", l.SeqWriteMiBps, "MiB/s", "", 0, "")
		row("limits", "chunk writes+fsync", l.ChunkWriteMiBps, "MiB/s", "", 0, "")
		row("limits", "fsyncs", l.FsyncsPerSec, "/s", "", 0, "")
		row("limits", "fsyncs, 32 writers", l.ParallelFsyncsPerSec, "/s", "", 0, "")
		row("limits", "loopback tcp", l.LoopbackMiBps, "MiB/s", "", 0, "")
	}
	lim := func(f func(*bench.Limits) float64) float64 {
		if l == nil {
			return 0
		}
		return f(l)
	}
	if x := r.Large; x != nil {
		up := lim(func(l *bench.Limits) float64 { return l.ChunkWriteMiBps / 3 })
		down := lim(func(l *bench.Limits) float64 {
			return min(l.SHA256MBps*float64(l.CPUs)*1e6/(1<<20), l.LoopbackMiBps)
		})
		row("large", "upload", x.UploadMiBps, "MiB/s", "chunk writes / 3 copies", up, "MiB/s")
		row("large", "download", x.DownloadMiBps, "MiB/s", "sha256 x cpus", down, "MiB/s")
		if x.UploadNoSyncMiBps > 0 {
			row("large", "upload, no fsync", x.UploadNoSyncMiBps, "MiB/s", "", 0, "")
			row("large", "download, no fsync", x.DownloadNoSyncMiBps, "MiB/s", "", 0, "")
		}
		if x.ServerPeakRSSBytes > 0 {
			row("large", "server peak RSS", float64(x.ServerPeakRSSBytes)/(1<<20), "MiB", "", 0, "")
		}
	}
	if x := r.Small; x != nil {
		row("small", "puts", x.PutPerSec, "/s", "32-writer fsyncs / 6", lim(func(l *bench.Limits) float64 { return l.ParallelFsyncsPerSec / 6 }), "/s")
		row("small", "gets", x.GetPerSec, "/s", "", 0, "")
		row("small", "stats", x.StatPerSec, "/s", "", 0, "")
		text("small", "put p50/p99", fmt.Sprintf("%.1f/%.1f", x.PutP50ms, x.PutP99ms), "ms")
		text("small", "get p50/p99", fmt.Sprintf("%.1f/%.1f", x.GetP50ms, x.GetP99ms), "ms")
		text("small", "stat p50/p99", fmt.Sprintf("%.1f/%.1f", x.StatP50ms, x.StatP99ms), "ms")
	}
	if x := r.Meta; x != nil {
		row("meta", "creates", x.CreatePerS, "/s", "32-writer fsyncs", lim(func(l *bench.Limits) float64 { return l.ParallelFsyncsPerSec }), "/s")
		row("meta", "stats", x.StatPerS, "/s", "", 0, "")
		row("meta", "list pages (100)", x.ListPerS, "/s", "", 0, "")
		row("meta", "deletes", x.DeletePerS, "/s", "", 0, "")
	}
	if x := r.Dedup; x != nil {
		text("dedup", "logical", humanize.IBytes(uint64(x.LogicalBytes)), "")
		text("dedup", "physical", humanize.IBytes(uint64(x.PhysicalBytes)), "")
		// The dedup ratio is read against fixed-size chunking, which
		// the workload measures itself, with or without limits.
		text("dedup", "ratio", fmt.Sprintf("%.2f", x.Ratio), "")
		text("dedup", "ratio, fixed "+humanize.IBytes(uint64(x.ChunkSize))+" chunks", fmt.Sprintf("%.2f", x.FixedRatio), "")
	}
	tw.Flush()
	if e := r.Env; e != nil {
		fmt.Fprintf(w, "\n%s, %d CPUs (%s), target: %s, %d replicas\n", e.Date, e.CPUs, e.CPU, e.Target, e.Replicas)
	}
}
