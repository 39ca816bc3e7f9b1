package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/etcdserver"
	"github.com/dfs-store/dfs/internal/pki"
)

// ScaleConfig configures the scale benchmark: a cluster of separate
// processes filled with many small files, then measured at rest.
type ScaleConfig struct {
	// Files is the number of files the cluster holds when measured
	// (default 20000). A kept Dir that holds fewer is topped up to it.
	Files int
	// FileSize of every file (default 4 KiB: one chunk each).
	FileSize int64
	// Concurrency of the fill (default 128 puts in flight).
	Concurrency int
	// Dir keeps the cluster between runs, so that 100k and then 1M files
	// reuse one fill; empty: a temporary directory, removed at the end.
	Dir string
	// Binary is the dfs executable (default: this process's own).
	Binary string
	// Idle is the window idle CPU is measured over (default 30s).
	Idle time.Duration
	// JobsWait bounds the wait for the worker to finish the fill's
	// processing jobs before idle CPU is measured (default 2m).
	JobsWait time.Duration
	// Fsync has the datanodes fsync chunk files. Off by default: the fill
	// measures metadata at scale, and three fsyncs per 4 KiB file would
	// bound it by the disk alone.
	Fsync bool
	// Progress receives human-readable progress lines.
	Progress io.Writer
	Logger   *slog.Logger
}

func (c *ScaleConfig) fill() {
	if c.Files <= 0 {
		c.Files = 20000
	}
	if c.FileSize <= 0 {
		c.FileSize = 4 << 10
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 128
	}
	if c.Idle <= 0 {
		c.Idle = 30 * time.Second
	}
	if c.JobsWait <= 0 {
		c.JobsWait = time.Hour
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// ScaleResult is what the scale benchmark measured. Durations are in
// milliseconds or seconds as named; a figure that could not be measured
// is -1 and the reason is in Errors.
type ScaleResult struct {
	Files     int   `json:"files"`
	FileBytes int64 `json:"file_bytes"`
	// Added files were written by this run, at FillPerSec.
	Added       int     `json:"added"`
	FillSeconds float64 `json:"fill_s"`
	FillPerSec  float64 `json:"fill_per_s"`
	Concurrency int     `json:"concurrency"`
	Fsync       bool    `json:"fsync"`
	// FillCPU is the CPU time each process (and the client: this
	// process) spent per file added, in milliseconds: on a machine of C
	// cores the fill cannot pass C × 1000 / (their sum) files a second.
	FillCPU []ProcCPU `json:"fill_cpu_ms_per_file,omitempty"`
	// JobsDrainedSeconds is how long the worker still had processing
	// jobs after the fill; JobsDrained false: it had not finished when
	// idle CPU was measured.
	JobsDrainedSeconds float64 `json:"jobs_drained_s"`
	JobsDrained        bool    `json:"jobs_drained"`

	IdleSeconds float64   `json:"idle_window_s"`
	IdleCPU     []ProcCPU `json:"idle_cpu"`
	// IdleCPUTotal is the sum over every process, in percent of one core.
	IdleCPUTotal float64 `json:"idle_cpu_total_pct"`

	// CountersMs is the median time of GET /api/v1/cluster on the gateway.
	CountersMs    float64 `json:"counters_ms"`
	CountersError string  `json:"counters_error,omitempty"`
	// ListFirstMs and ListLastMs are the median times of one page of 1000
	// entries at the start of the filled prefix and near its end.
	ListFirstMs float64 `json:"list_first_page_ms"`
	ListLastMs  float64 `json:"list_last_page_ms"`
	// LsFirstLineMs is the median time from starting `dfs ls PREFIX` to
	// its first line of output.
	LsFirstLineMs float64 `json:"ls_first_line_ms"`

	// CoordinatorReadyS is the time from starting the killed coordinator
	// (the one embedding etcd) again to its ready line; CoordinatorRestartS
	// to every datanode's full chunk report reaching it.
	CoordinatorReadyS   float64 `json:"coordinator_ready_s"`
	CoordinatorRestartS float64 `json:"coordinator_restart_s"`
	// DatanodeReadyS is the time from starting a stopped datanode again to
	// its ready line; DatanodeRegisteredS to its full chunk report reaching
	// every coordinator.
	DatanodeReadyS      float64 `json:"datanode_ready_s"`
	DatanodeRegisteredS float64 `json:"datanode_registered_s"`

	// Chunks is the number of distinct chunks stored (one per file).
	Chunks int64 `json:"chunks"`
	// The standby coordinator's memory (it embeds no etcd, so its memory
	// is the coordinator's own): Go heap in use after a collection, and
	// resident set; per chunk, the growth since the empty cluster.
	StandbyHeapBytes    int64   `json:"standby_heap_bytes"`
	StandbyRSSBytes     int64   `json:"standby_rss_bytes"`
	StandbyHeapPerChunk float64 `json:"standby_heap_bytes_per_chunk"`
	StandbyRSSPerChunk  float64 `json:"standby_rss_bytes_per_chunk"`

	// etcd's database file and the part of it in use (Maintenance
	// Status), and their growth since the empty cluster per file.
	EtcdDBBytes           int64   `json:"etcd_db_bytes"`
	EtcdDBInUseBytes      int64   `json:"etcd_db_in_use_bytes"`
	EtcdBytesPerFile      float64 `json:"etcd_bytes_per_file"`
	EtcdInUseBytesPerFile float64 `json:"etcd_in_use_bytes_per_file"`

	Errors []string     `json:"errors,omitempty"`
	Env    *Environment `json:"env,omitempty"`
}

// ProcCPU is one process's CPU use: over the idle window, in percent of
// one core; during the fill, in milliseconds per file.
type ProcCPU struct {
	Process   string  `json:"process"`
	Percent   float64 `json:"cpu_pct,omitempty"`
	MsPerFile float64 `json:"ms_per_file,omitempty"`
}

// scaleState is kept in the directory of a kept cluster: its addresses,
// how far the fill got, and the figures of the empty cluster.
type scaleState struct {
	// The admin access key the bench's clients (dfs ls, the gateway's
	// API) call with, imported into the cluster at each start.
	KeyID     string `json:"access_key_id,omitempty"`
	KeySecret string `json:"secret_access_key,omitempty"`

	Coordinators []string `json:"coordinators"`
	Pprof        []string `json:"pprof"`
	EtcdClient   string   `json:"etcd_client"`
	EtcdPeer     string   `json:"etcd_peer"`
	DNListen     []string `json:"datanode_listen"`
	DNGRPC       []string `json:"datanode_grpc"`
	Gateway      string   `json:"gateway"`
	Seed         uint64   `json:"seed"`
	FileSize     int64    `json:"file_size"`
	// Filled: every file below this index is committed.
	Filled int `json:"filled"`
	// Of the empty cluster.
	BaseHeap    int64 `json:"base_heap"`
	BaseRSS     int64 `json:"base_rss"`
	BaseDB      int64 `json:"base_db"`
	BaseDBInUse int64 `json:"base_db_in_use"`
}

const (
	scalePrefix = "scale/"
	scaleBatch  = 10000 // files between two saves of the fill's progress
)

func scalePath(i int) string { return fmt.Sprintf("%s%09d", scalePrefix, i) }

// scaleContent is file i's bytes: a block drawn from seed with i written
// over its first bytes, so every file and its one chunk are distinct.
func scaleContent(block []byte, i int) []byte {
	b := slices.Clone(block)
	binary.BigEndian.PutUint64(b, uint64(i))
	return b
}

// RunScale starts (or restarts, in a kept Dir) a cluster of separate
// processes, fills it to cfg.Files files and measures it.
func RunScale(ctx context.Context, cfg ScaleConfig) (*ScaleResult, error) {
	cfg.fill()
	if cfg.FileSize < 8 {
		return nil, fmt.Errorf("scale: file size %d: at least 8 bytes, to make every file distinct", cfg.FileSize)
	}
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "dfs-scale-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	sc, err := openScale(dir, bin, cfg)
	if err != nil {
		return nil, err
	}
	defer sc.stopAll()
	res := &ScaleResult{Files: cfg.Files, FileBytes: sc.st.FileSize, Concurrency: cfg.Concurrency, Fsync: cfg.Fsync,
		Env: environment(Config{})}
	res.Env.Target = "dfs bench scale: coordinator+etcd, standby coordinator, 3 datanodes, gateway, worker (separate processes)"
	// Scrubbing re-reads every chunk as fast as its budget allows, and
	// during a fill would take the CPU the fill's own cost is measured
	// by: the datanodes fill with it off, and are restarted with it on
	// (the default rate) before anything is measured at rest.
	sc.noScrub = sc.st.Filled < cfg.Files
	if err := sc.start(ctx); err != nil {
		return res, err
	}
	c, err := client.New(client.Config{Coordinators: sc.st.Coordinators, TLS: sc.node.ClientTLS(), Logger: cfg.Logger, Uploads: 1}) // the node certificate: admin
	if err != nil {
		return res, err
	}
	defer c.Close()
	if err := sc.waitNodes(ctx, c); err != nil {
		return res, err
	}
	if err := sc.ensureKey(ctx, c); err != nil {
		return res, err
	}
	if sc.st.Filled == 0 && sc.st.BaseRSS == 0 {
		// The empty cluster's figures, once.
		sc.st.BaseHeap, _ = goHeap(ctx, sc.st.Pprof[1])
		sc.st.BaseRSS = rss(sc.procs["coordinator1"].pid())
		sc.st.BaseDB, sc.st.BaseDBInUse, _ = etcdSize(ctx, sc.st.EtcdClient, sc.node)
		if err := sc.save(); err != nil {
			return res, err
		}
	}
	if err := sc.fillTo(ctx, c, cfg, res); err != nil {
		return res, err
	}
	res.Chunks = int64(sc.st.Filled)
	if sc.noScrub {
		fmt.Fprintf(cfg.Progress, "scale: restarting the datanodes with scrubbing on\n")
		sc.noScrub = false
		for i := range sc.st.DNListen {
			if _, _, err := sc.restartDatanode(ctx, c, i); err != nil {
				return res, err
			}
		}
	}
	fail := func(what string, err error) {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", what, err))
	}
	fmt.Fprintf(cfg.Progress, "scale: waiting for the worker to finish its jobs (at most %v)\n", cfg.JobsWait)
	t0 := time.Now()
	res.JobsDrained = waitJobs(ctx, c, cfg.JobsWait) == nil
	res.JobsDrainedSeconds = time.Since(t0).Seconds()

	// At rest: every datanode's full report merged by both coordinators
	// (a start merges them all), the fill's history compacted in etcd
	// (which the embedded member does every 10 minutes anyway), and a few
	// seconds for what those leave behind.
	fmt.Fprintf(cfg.Progress, "scale: waiting for the cluster to settle\n")
	if err := sc.settle(ctx, c); err != nil {
		fail("settle", err)
	}
	fmt.Fprintf(cfg.Progress, "scale: idle CPU over %v\n", cfg.Idle)
	if err := sc.idleCPU(ctx, cfg.Idle, res); err != nil {
		fail("idle cpu", err)
	}
	fmt.Fprintf(cfg.Progress, "scale: counters, list pages, ls\n")
	res.CountersMs, res.CountersError = -1, ""
	if d, msg, err := median(5, func() (time.Duration, error) { return sc.counters(ctx) }); err != nil {
		fail("counters", err)
	} else {
		res.CountersMs, res.CountersError = ms(d), msg
	}
	res.ListFirstMs = sc.listPage(ctx, c, "", fail)
	res.ListLastMs = sc.listPage(ctx, c, scalePath(max(sc.st.Filled-1000, 0)), fail)
	res.LsFirstLineMs = -1
	if d, _, err := median(3, func() (time.Duration, error) { return sc.lsFirstLine(ctx) }); err != nil {
		fail("ls first line", err)
	} else {
		res.LsFirstLineMs = ms(d)
	}

	heap, err := goHeap(ctx, sc.st.Pprof[1])
	if err != nil {
		fail("standby heap", err)
	}
	res.StandbyHeapBytes, res.StandbyRSSBytes = heap, rss(sc.procs["coordinator1"].pid())
	if res.Chunks > 0 {
		res.StandbyHeapPerChunk = float64(res.StandbyHeapBytes-sc.st.BaseHeap) / float64(res.Chunks)
		res.StandbyRSSPerChunk = float64(res.StandbyRSSBytes-sc.st.BaseRSS) / float64(res.Chunks)
	}
	// What etcd keeps once compaction (every 10 minutes in the embedded
	// member) has dropped the fill's old revisions: the live records.
	if err := etcdCompact(ctx, sc.st.EtcdClient, sc.node); err != nil {
		fail("etcd compaction", err)
	}
	if db, inUse, err := etcdSize(ctx, sc.st.EtcdClient, sc.node); err != nil {
		fail("etcd size", err)
	} else {
		res.EtcdDBBytes, res.EtcdDBInUseBytes = db, inUse
		if sc.st.Filled > 0 {
			res.EtcdBytesPerFile = float64(db-sc.st.BaseDB) / float64(sc.st.Filled)
			res.EtcdInUseBytesPerFile = float64(inUse-sc.st.BaseDBInUse) / float64(sc.st.Filled)
		}
	}

	fmt.Fprintf(cfg.Progress, "scale: datanode restart\n")
	res.DatanodeReadyS, res.DatanodeRegisteredS = -1, -1
	if ready, reg, err := sc.restartDatanode(ctx, c, 0); err != nil {
		fail("datanode restart", err)
	} else {
		res.DatanodeReadyS, res.DatanodeRegisteredS = ready.Seconds(), reg.Seconds()
	}
	fmt.Fprintf(cfg.Progress, "scale: coordinator restart\n")
	res.CoordinatorReadyS, res.CoordinatorRestartS = -1, -1
	if ready, all, err := sc.restartCoordinator(ctx, c); err != nil {
		fail("coordinator restart", err)
	} else {
		res.CoordinatorReadyS, res.CoordinatorRestartS = ready.Seconds(), all.Seconds()
	}
	return res, nil
}

// scaleCluster is the benchmark's cluster: its state and its processes.
type scaleCluster struct {
	dir   string
	bin   string
	cfg   ScaleConfig
	st    scaleState
	procs map[string]*scaleProc
	order []string // start order, for stopping in reverse
	gen   int
	// noScrub starts datanodes with scrubbing off, for the fill.
	noScrub bool
	// node is the cluster's certificate (every role of the bench's
	// cluster shares it), kept in DIR/certs.
	node *pki.Node
}

// certs makes the cluster's CA and node certificate in DIR/certs if they
// are not there, and loads them. A cluster of an earlier run in plain text
// moves to TLS on the same ports.
func (sc *scaleCluster) certs() error {
	dir := filepath.Join(sc.dir, "certs")
	if _, err := os.Stat(filepath.Join(dir, pki.CACert)); errors.Is(err, os.ErrNotExist) {
		if err := pki.CreateCA(dir); err != nil {
			return err
		}
		if err := pki.CreateNode(dir, []string{"127.0.0.1", "localhost"}, nil); err != nil {
			return err
		}
	}
	n, err := pki.LoadNode(dir, "")
	if err != nil {
		return err
	}
	sc.node = n
	sc.st.EtcdClient = strings.Replace(sc.st.EtcdClient, "http://", "https://", 1)
	sc.st.EtcdPeer = strings.Replace(sc.st.EtcdPeer, "http://", "https://", 1)
	ca, err := os.ReadFile(filepath.Join(dir, pki.CACert))
	if err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]any{"coordinators": sc.st.Coordinators, "ca": string(ca)})
	return os.WriteFile(filepath.Join(sc.dir, "client.conf"), b, 0o600)
}

func openScale(dir, bin string, cfg ScaleConfig) (*scaleCluster, error) {
	sc := &scaleCluster{dir: dir, bin: bin, cfg: cfg, procs: map[string]*scaleProc{}}
	b, err := os.ReadFile(filepath.Join(dir, "scale.json"))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &sc.st); err != nil {
			return nil, fmt.Errorf("scale: %s: %w", filepath.Join(dir, "scale.json"), err)
		}
		if sc.st.FileSize != cfg.FileSize {
			return nil, fmt.Errorf("scale: %s holds files of %d bytes, not %d: use another --dir", dir, sc.st.FileSize, cfg.FileSize)
		}
		return sc, sc.certs()
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	addr := func() string {
		a, err2 := freeAddr()
		if err2 != nil && err == nil {
			err = err2
		}
		return a
	}
	err = nil
	st := scaleState{Seed: rand.Uint64(), FileSize: cfg.FileSize}
	st.Coordinators = []string{addr(), addr()}
	st.Pprof = []string{addr(), addr()}
	st.EtcdClient, st.EtcdPeer = "https://"+addr(), "https://"+addr()
	for range 3 {
		st.DNListen = append(st.DNListen, addr())
		st.DNGRPC = append(st.DNGRPC, addr())
	}
	st.Gateway = addr()
	if err != nil {
		return nil, err
	}
	sc.st = st
	if err := sc.certs(); err != nil {
		return nil, err
	}
	return sc, sc.save()
}

func (sc *scaleCluster) save() error {
	b, err := json.MarshalIndent(sc.st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(sc.dir, "scale.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(sc.dir, "scale.json"))
}

// procSpec is a process of the cluster: its name and its arguments.
type procSpec struct {
	name string
	args []string
}

// specs are the cluster's processes, in start order.
func (sc *scaleCluster) specs() []procSpec {
	coords := strings.Join(sc.st.Coordinators, ",")
	out := []procSpec{
		{"coordinator0", []string{"coordinator", "--etcd-embed", "--data", filepath.Join(sc.dir, "coordinator0"),
			"--grpc", sc.st.Coordinators[0], "--etcd-client-url", sc.st.EtcdClient, "--etcd-peer-url", sc.st.EtcdPeer,
			"--pprof", sc.st.Pprof[0], "--certs-dir", sc.node.Dir}},
		{"coordinator1", []string{"coordinator", "--etcd-endpoints", sc.st.EtcdClient, "--grpc", sc.st.Coordinators[1],
			"--pprof", sc.st.Pprof[1], "--certs-dir", sc.node.Dir}},
	}
	for i := range sc.st.DNListen {
		a := []string{"datanode", "--coordinator", coords, "--data", filepath.Join(sc.dir, fmt.Sprintf("datanode%d", i)),
			"--listen", sc.st.DNListen[i], "--grpc", sc.st.DNGRPC[i], "--certs-dir", sc.node.Dir}
		if !sc.cfg.Fsync {
			a = append(a, "--no-fsync")
		}
		if sc.noScrub {
			a = append(a, "--scrub-rate", "0")
		}
		out = append(out, procSpec{fmt.Sprintf("datanode%d", i), a})
	}
	out = append(out,
		procSpec{"gateway", []string{"gateway", "--coordinator", coords, "--http", sc.st.Gateway, "--certs-dir", sc.node.Dir}},
		procSpec{"worker", []string{"worker", "--coordinator", coords, "--etcd-endpoints", sc.st.EtcdClient, "--workers", "16", "--certs-dir", sc.node.Dir}},
	)
	return out
}

func (sc *scaleCluster) argsOf(name string) []string {
	for _, p := range sc.specs() {
		if p.name == name {
			return p.args
		}
	}
	return nil
}

// start starts every process and waits for its ready line, and for the
// coordinators to know every datanode.
func (sc *scaleCluster) start(ctx context.Context) error {
	for _, spec := range sc.specs() {
		p, err := sc.run(spec.name)
		if err != nil {
			return err
		}
		if _, err := p.waitReady(ctx, 2*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// waitNodes waits until the coordinators know every datanode alive.
func (sc *scaleCluster) waitNodes(ctx context.Context, c *client.Client) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		nodes, err := c.Nodes(ctx)
		alive := 0
		for _, n := range nodes {
			if n.Alive {
				alive++
			}
		}
		if err == nil && alive >= len(sc.st.DNListen) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scale: %d of %d datanodes alive after 2 minutes (%v)", alive, len(sc.st.DNListen), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (sc *scaleCluster) run(name string) (*scaleProc, error) {
	sc.gen++
	p, err := startScaleProc(sc.bin, filepath.Join(sc.dir, "logs"), fmt.Sprintf("%s.%d", name, sc.gen), sc.argsOf(name))
	if err != nil {
		return nil, err
	}
	if _, ok := sc.procs[name]; !ok {
		sc.order = append(sc.order, name)
	}
	sc.procs[name] = p
	return p, nil
}

func (sc *scaleCluster) stopAll() {
	for i := len(sc.order) - 1; i >= 0; i-- {
		if p := sc.procs[sc.order[i]]; p != nil {
			p.stop()
		}
	}
}

// fillTo puts files until the cluster holds cfg.Files, saving the count
// after every batch so that an interrupted fill goes on from there.
func (sc *scaleCluster) fillTo(ctx context.Context, c *client.Client, cfg ScaleConfig, res *ScaleResult) error {
	block := make([]byte, sc.st.FileSize)
	r := rand.NewChaCha8([32]byte(binary.BigEndian.AppendUint64(make([]byte, 24), sc.st.Seed)))
	r.Read(block)
	from := sc.st.Filled
	before, err := sc.cpuTimes()
	if err != nil {
		return err
	}
	start := time.Now()
	for sc.st.Filled < cfg.Files {
		lo, hi := sc.st.Filled, min(sc.st.Filled+scaleBatch, cfg.Files)
		label := fmt.Sprintf("scale fill %d-%d of %d", lo, hi, cfg.Files)
		_, _, err := parallel(ctx, hi-lo, cfg.Concurrency, cfg.Progress, label, func(ctx context.Context, i int) error {
			_, err := c.Put(ctx, scalePath(lo+i), bytes.NewReader(scaleContent(block, lo+i)), client.PutOptions{})
			return err
		})
		if err != nil {
			return err
		}
		sc.st.Filled = hi
		if err := sc.save(); err != nil {
			return err
		}
		el := time.Since(start)
		fmt.Fprintf(cfg.Progress, "scale: %d files, %.0f/s\n", hi, float64(hi-from)/el.Seconds())
	}
	res.Added = sc.st.Filled - from
	res.FillSeconds = time.Since(start).Seconds()
	if res.Added == 0 {
		return nil
	}
	res.FillPerSec = float64(res.Added) / res.FillSeconds
	after, err := sc.cpuTimes()
	if err != nil {
		return err
	}
	for _, name := range append(slices.Clone(sc.order), "client") {
		ms := float64((after[name] - before[name]).Microseconds()) / 1000 / float64(res.Added)
		res.FillCPU = append(res.FillCPU, ProcCPU{Process: name, MsPerFile: ms})
	}
	return nil
}

// cpuTimes returns the CPU time used so far by every process, and by this
// one as "client".
func (sc *scaleCluster) cpuTimes() (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, name := range sc.order {
		t, err := procCPU(sc.procs[name].pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = t
	}
	t, err := procCPU(os.Getpid())
	if err != nil {
		return nil, err
	}
	out["client"] = t
	return out, nil
}

// waitJobs waits until no job is queued or processing.
func waitJobs(ctx context.Context, c *client.Client, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		busy := false
		for _, st := range []dfs.JobState{dfs.JobQueued, dfs.JobProcessing} {
			jobs, err := c.Jobs(ctx, client.JobsOptions{State: st, Limit: 1})
			if err != nil {
				return err
			}
			busy = busy || len(jobs) > 0
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// idleCPU measures every process's CPU time over the window.
func (sc *scaleCluster) idleCPU(ctx context.Context, window time.Duration, res *ScaleResult) error {
	before := map[string]time.Duration{}
	for _, name := range sc.order {
		t, err := procCPU(sc.procs[name].pid())
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		before[name] = t
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(window):
	}
	el := time.Since(t0)
	res.IdleSeconds = el.Seconds()
	for _, name := range sc.order {
		t, err := procCPU(sc.procs[name].pid())
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		pct := 100 * (t - before[name]).Seconds() / el.Seconds()
		res.IdleCPU = append(res.IdleCPU, ProcCPU{Process: name, Percent: pct})
		res.IdleCPUTotal += pct
	}
	return nil
}

// ensureKey gives the cluster the bench's admin access key (made on the
// first run, kept in the state) and writes the client configuration that
// names it.
func (sc *scaleCluster) ensureKey(ctx context.Context, c *client.Client) error {
	if sc.st.KeyID == "" {
		sc.st.KeyID, sc.st.KeySecret = access.NewKey()
	}
	if _, err := c.ImportKey(ctx, "dfs bench scale", true, sc.st.KeyID, sc.st.KeySecret); err != nil && !errors.Is(err, dfs.ErrConflict) {
		return fmt.Errorf("the bench's access key: %w", err)
	}
	ca, err := os.ReadFile(filepath.Join(sc.node.Dir, pki.CACert))
	if err != nil {
		return err
	}
	return client.WriteConfigFile(filepath.Join(sc.dir, "client.conf"), &client.ConfigFile{Coordinators: sc.st.Coordinators, CA: string(ca),
		AccessKeyID: sc.st.KeyID, SecretAccessKey: sc.st.KeySecret})
}

// counters times one GET /api/v1/cluster and returns its counters_error.
func (sc *scaleCluster) counters(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+sc.st.Gateway+"/api/v1/cluster", nil)
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth(sc.st.KeyID, sc.st.KeySecret)
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		CountersError string `json:"counters_error"`
	}
	err = json.NewDecoder(resp.Body).Decode(&v)
	d := time.Since(t0)
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("GET /api/v1/cluster: %s", resp.Status)
	}
	if err != nil {
		return d, err
	}
	if v.CountersError != "" {
		return d, counterErr(v.CountersError)
	}
	return d, nil
}

// counterErr is a cluster answer that came without its counters: timed,
// but said.
type counterErr string

func (e counterErr) Error() string { return string(e) }

// median runs f n times and returns the median duration. An answer that
// came with a counterErr is timed, and its message returned.
func median(n int, f func() (time.Duration, error)) (time.Duration, string, error) {
	var ds latencies
	msg := ""
	for range n {
		d, err := f()
		var ce counterErr
		if errors.As(err, &ce) {
			msg, err = string(ce), nil
		}
		if err != nil {
			return 0, "", err
		}
		ds = append(ds, d)
	}
	return ds.percentile(0.5), msg, nil
}

// listPage returns the median time of one page of 1000 entries of the
// filled prefix after startAfter, in milliseconds.
func (sc *scaleCluster) listPage(ctx context.Context, c *client.Client, startAfter string, fail func(string, error)) float64 {
	d, _, err := median(5, func() (time.Duration, error) {
		t0 := time.Now()
		l, err := c.List(ctx, client.ListOptions{Prefix: scalePrefix, StartAfter: startAfter, Limit: 1000})
		if err == nil && len(l.Files) == 0 && sc.st.Filled > 0 {
			err = fmt.Errorf("empty page after %q", startAfter)
		}
		return time.Since(t0), err
	})
	if err != nil {
		fail("list page after "+startAfter, err)
		return -1
	}
	return ms(d)
}

// lsFirstLine runs dfs ls over the filled prefix and times its first line;
// the command is stopped then.
func (sc *scaleCluster) lsFirstLine(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sc.bin, "ls", "--config", filepath.Join(sc.dir, "client.conf"), scalePrefix)
	cmd.Env = cleanEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	_, err = bufio.NewReader(out).ReadString('\n')
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("dfs ls %s: no line: %w", scalePrefix, err)
	}
	return d, nil
}

// restartDatanode stops datanode i and starts it again, and returns the
// time to its ready line and to its full report reaching every
// coordinator.
// settle waits until both coordinators have logged every datanode's full
// report since they started, compacts etcd, and waits settleTime more.
func (sc *scaleCluster) settle(ctx context.Context, c *client.Client) error {
	for i := range sc.st.DNListen {
		id, err := sc.nodeID(ctx, c, sc.st.DNListen[i])
		if err != nil {
			return err
		}
		for _, co := range []string{"coordinator0", "coordinator1"} {
			if err := sc.procs[co].waitLog(ctx, 0, 10*time.Minute, "datanode reported", "node="+id); err != nil {
				return err
			}
		}
	}
	if err := etcdCompact(ctx, sc.st.EtcdClient, sc.node); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(settleTime):
	}
	return nil
}

// settleTime is how long the cluster rests before idle CPU is measured.
const settleTime = 10 * time.Second

func (sc *scaleCluster) restartDatanode(ctx context.Context, c *client.Client, i int) (ready, registered time.Duration, err error) {
	name := fmt.Sprintf("datanode%d", i)
	id, err := sc.nodeID(ctx, c, sc.st.DNListen[i])
	if err != nil {
		return 0, 0, err
	}
	coords := []string{"coordinator0", "coordinator1"}
	var offsets []int64
	for _, co := range coords {
		offsets = append(offsets, sc.procs[co].errSize())
	}
	if err := sc.procs[name].stop(); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	p, err := sc.run(name)
	if err != nil {
		return 0, 0, err
	}
	if ready, err = p.waitReady(ctx, 5*time.Minute); err != nil {
		return 0, 0, err
	}
	for k, co := range coords {
		if err := sc.procs[co].waitLog(ctx, offsets[k], 10*time.Minute, "datanode reported", "node="+id); err != nil {
			return ready, 0, err
		}
	}
	return ready, time.Since(t0), nil
}

// restartCoordinator kills the coordinator that embeds etcd and starts it
// again, and returns the time to its ready line and to every datanode's
// full report reaching it.
func (sc *scaleCluster) restartCoordinator(ctx context.Context, c *client.Client) (ready, all time.Duration, err error) {
	var ids []string
	for _, a := range sc.st.DNListen {
		id, err := sc.nodeID(ctx, c, a)
		if err != nil {
			return 0, 0, err
		}
		ids = append(ids, id)
	}
	sc.procs["coordinator0"].kill()
	t0 := time.Now()
	p, err := sc.run("coordinator0")
	if err != nil {
		return 0, 0, err
	}
	if ready, err = p.waitReady(ctx, 10*time.Minute); err != nil {
		return 0, 0, err
	}
	for _, id := range ids {
		if err := p.waitLog(ctx, 0, 10*time.Minute, "datanode reported", "node="+id); err != nil {
			return ready, 0, err
		}
	}
	return ready, time.Since(t0), nil
}

// nodeID returns the id of the datanode serving addr.
func (sc *scaleCluster) nodeID(ctx context.Context, c *client.Client, addr string) (string, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return "", err
	}
	for _, n := range nodes {
		if n.Addr == addr {
			return string(n.ID), nil
		}
	}
	return "", fmt.Errorf("no datanode at %s in the node table", addr)
}

// goHeap returns the Go heap in use of the process serving Go's profiles
// at addr, after a collection.
func goHeap(ctx context.Context, addr string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/heap?debug=1&gc=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return parseHeapAlloc(resp.Body)
}

// parseHeapAlloc finds "# HeapAlloc = N" in a heap profile in text form.
func parseHeapAlloc(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("heap profile: HeapAlloc %q: %v", v, err)
			}
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("heap profile: no HeapAlloc line")
}

// etcdSize returns the size of etcd's database file and the part in use.
// etcdCompact compacts etcd's history up to its current revision.
func etcdCompact(ctx context.Context, endpoint string, node *pki.Node) error {
	cli, err := clientv3.New(etcdserver.ClientConfig([]string{endpoint}, node))
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	r, err := cli.Get(ctx, "compact-probe", clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	if _, err := cli.Compact(ctx, r.Header.Revision, clientv3.WithCompactPhysical()); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("etcd compact %s: %w", endpoint, err)
	}
	return nil
}

func etcdSize(ctx context.Context, endpoint string, node *pki.Node) (db, inUse int64, err error) {
	cli, err := clientv3.New(etcdserver.ClientConfig([]string{endpoint}, node))
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		return 0, 0, fmt.Errorf("etcd status %s: %w", endpoint, err)
	}
	return st.DbSize, st.DbSizeInUse, nil
}
