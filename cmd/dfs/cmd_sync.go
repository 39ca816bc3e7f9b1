package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

// remotePrefix marks the dfs side of sync, as rclone writes remote:path.
const remotePrefix = "dfs:"

// syncAction is one thing sync did (or, with --dry-run, would do).
type syncAction struct {
	Action string `json:"action"` // upload, download, delete
	Path   string `json:"path"`   // on the destination: a dfs path or a local one
	Size   int64  `json:"size"`
	Error  string `json:"error,omitempty"`
}

// syncReport is sync --json, and the counts of its summary line.
type syncReport struct {
	DryRun     bool `json:"dry_run"`
	Uploaded   int  `json:"uploaded"`
	Downloaded int  `json:"downloaded"`
	Deleted    int  `json:"deleted"`
	Unchanged  int  `json:"unchanged"`
	Failed     int  `json:"failed"`
	// Bytes is the size of the files copied; SentBytes what uploads sent
	// to datanodes, after dedup.
	Bytes     int64        `json:"bytes"`
	SentBytes int64        `json:"sent_bytes"`
	Actions   []syncAction `json:"actions"`
}

type syncOptions struct {
	del, dryRun, asJSON, quiet bool
	parallel                   int
}

func newSyncCmd(g *globals) *cobra.Command {
	var o syncOptions
	cmd := &cobra.Command{
		Use:   "sync [--delete] [--dry-run] SRC DST",
		Short: "Make a dfs folder match a local directory, or the reverse, copying only what differs",
		Long: `sync makes DST hold what SRC holds. One side is a local directory, the other
a dfs folder written dfs:PREFIX (dfs: alone is every file), as rclone writes
remote:path:

  dfs sync ./photos dfs:photos      local to dfs
  dfs sync dfs:photos ./photos      dfs to local

A file is copied when DST lacks it, when the sizes differ, or when the sizes
are equal and the SHA-256 differs: dfs keeps every file's SHA-256, so only
the local side is read to compare, and an unchanged file costs no transfer.
Uploads go through put, so a changed file sends only its new chunks.
Downloads are written atomically (a temporary file renamed over the old).

--delete removes files on DST that SRC does not have (no deletion happens
if listing SRC failed). --dry-run prints what would be done and changes
nothing. Output is a line per action and a summary, or with --json one
object. dfs has no empty folders: an empty local directory is not stored,
and local directories are created only to hold files and never removed.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := args[0], args[1]
			srcRemote, dstRemote := strings.HasPrefix(src, remotePrefix), strings.HasPrefix(dst, remotePrefix)
			if srcRemote == dstRemote {
				return usagef("sync %s %s: one side must be a local directory and the other a dfs folder written %sPREFIX", src, dst, remotePrefix)
			}
			remote, local := dst, src
			if srcRemote {
				remote, local = src, dst
			}
			f, err := folderName(strings.TrimPrefix(remote, remotePrefix))
			if err != nil {
				return fmt.Errorf("sync %w", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			s := &syncer{cmd: cmd, c: c, o: o, out: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), report: syncReport{DryRun: o.dryRun, Actions: []syncAction{}}}
			if srcRemote {
				err = s.down(f, local)
			} else {
				err = s.up(local, f)
			}
			if err != nil {
				return err
			}
			return s.finish()
		},
	}
	cmd.Flags().BoolVar(&o.del, "delete", false, "remove files on DST that SRC does not have")
	cmd.Flags().BoolVarP(&o.dryRun, "dry-run", "n", false, "print what would be done; change nothing")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print one JSON object: the counts and every action")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "print only the summary, and no progress")
	cmd.Flags().IntVar(&o.parallel, "parallel", defaultParallel, "files compared and copied at once")
	return cmd
}

// syncer runs one sync and keeps its report.
type syncer struct {
	cmd         *cobra.Command
	c           *client.Client
	o           syncOptions
	out, stderr io.Writer
	mu          sync.Mutex
	report      syncReport
	fails       failures
	prog        *treeProgress
}

// pair is a file of SRC with what DST has at its relative path.
type pair struct {
	rel       string
	size      int64         // the source's
	localPath string        // the local side's path
	remote    *dfs.FileInfo // nil: dfs has no file there
	// hasLocal: there is a local file worth hashing (of the source's
	// size, when the local side is the destination).
	hasLocal bool
}

// differs says whether a pair must be copied: DST lacks it, the sizes
// differ, or, sizes equal, the local file's SHA-256 is not the dfs one.
func differs(p pair) (bool, error) {
	if p.remote == nil || !p.hasLocal || p.remote.Size != p.size {
		return true, nil
	}
	h, err := fileSHA256(p.localPath)
	if err != nil {
		return false, err
	}
	return h != p.remote.Content, nil
}

// up syncs the local directory dir to folder f.
func (s *syncer) up(dir string, f string) error {
	ctx := s.cmd.Context()
	listErrs := 0
	locals, err := localFiles(dir, func(p string, err error) {
		if errors.Is(err, errNotRegular) {
			fmt.Fprintf(s.stderr, "dfs: sync: %s: %v\n", p, err)
			return
		}
		listErrs++
		s.fail(syncAction{Action: "upload", Path: p}, err)
	})
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	remotes := map[string]dfs.FileInfo{}
	if err := remoteFiles(ctx, s.c, f, func(page []remoteFile) error {
		for _, rf := range page {
			remotes[rf.rel] = rf.info
		}
		return nil
	}); err != nil {
		return fmt.Errorf("sync: list %s%s: %w", remotePrefix, under(f), err)
	}
	pairs := make([]pair, 0, len(locals))
	for _, lf := range locals {
		// A local name dfs cannot hold is said now, dry run or not.
		if _, err := dfs.CleanPath(joinPath(f, lf.rel)); err != nil {
			s.fail(syncAction{Action: "upload", Path: lf.path}, err)
			continue
		}
		p := pair{rel: lf.rel, size: lf.size, localPath: lf.path, hasLocal: true}
		if fi, ok := remotes[lf.rel]; ok {
			p.remote = &fi
			delete(remotes, lf.rel)
		}
		pairs = append(pairs, p)
	}
	todo := s.compare(pairs)
	var total int64
	for _, p := range todo {
		total += p.size
	}
	s.startProgress("upload", len(todo), total)
	each(ctx, s.workers(), todo, func(p pair) {
		a := syncAction{Action: "upload", Path: joinPath(f, p.rel), Size: p.size}
		if s.o.dryRun {
			s.done(a, 0)
			return
		}
		progress, finish := s.prog.start(p.size)
		defer finish("")
		res, err := putOne(ctx, s.c, localFile{rel: p.rel, path: p.localPath, size: p.size}, a.Path, "", false, progress)
		if err != nil {
			s.fail(a, err)
			return
		}
		s.done(a, res.SentBytes)
	})
	s.prog.finish()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sync: interrupted: %w", err)
	}
	if !s.o.del || len(remotes) == 0 {
		return nil
	}
	if listErrs > 0 {
		fmt.Fprintf(s.stderr, "dfs: sync: %d local files could not be read: deleting nothing\n", listErrs)
		return nil
	}
	var gone []dfs.FileInfo
	for _, fi := range remotes {
		gone = append(gone, fi)
	}
	sortFiles(gone)
	each(ctx, s.workers(), gone, func(fi dfs.FileInfo) {
		a := syncAction{Action: "delete", Path: fi.Path, Size: fi.Size}
		if !s.o.dryRun {
			if err := s.c.Delete(ctx, fi.Path); err != nil && !errors.Is(err, dfs.ErrNotFound) {
				s.fail(a, err)
				return
			}
		}
		s.done(a, 0)
	})
	return nil
}

// down syncs folder f to the local directory dir.
func (s *syncer) down(f, dir string) error {
	ctx := s.cmd.Context()
	remotes, err := allRemoteFiles(ctx, s.c, f)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if len(remotes) == 0 {
		// A mistyped folder would otherwise look empty, and --delete
		// would empty dir.
		return fmt.Errorf("sync %s%s: %w: no file under %s", remotePrefix, f, dfs.ErrNotFound, under(f))
	}
	locals := map[string]localFile{}
	listErrs := 0
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return usagef("sync: %s is not a directory", dir)
		}
		lfs, err := localFiles(dir, func(p string, err error) {
			if !errors.Is(err, errNotRegular) {
				listErrs++
			}
			fmt.Fprintf(s.stderr, "dfs: sync: %s: %v\n", p, err)
		})
		if err != nil {
			return fmt.Errorf("sync %s: %w", dir, err)
		}
		for _, lf := range lfs {
			locals[lf.rel] = lf
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sync: %w", err)
	}
	pairs := make([]pair, 0, len(remotes))
	for _, rf := range remotes {
		fi := rf.info
		p := pair{rel: rf.rel, size: fi.Size, remote: &fi}
		lf, haveLocal := locals[rf.rel]
		lp, err := localPath(dir, rf.rel)
		if err != nil {
			s.fail(syncAction{Action: "download", Path: rf.rel}, err)
			continue
		}
		p.localPath = lp
		if haveLocal {
			// A local file of another size is copied over unread.
			p.hasLocal = lf.size == fi.Size
			delete(locals, rf.rel)
		}
		pairs = append(pairs, p)
	}
	todo := s.compare(pairs)
	var total int64
	for _, p := range todo {
		total += p.size
	}
	s.startProgress("download", len(todo), total)
	each(ctx, s.workers(), todo, func(p pair) {
		a := syncAction{Action: "download", Path: p.localPath, Size: p.size}
		if s.o.dryRun {
			s.done(a, 0)
			return
		}
		progress, finish := s.prog.start(p.size)
		defer finish("")
		if err := getOne(ctx, s.c, remoteFile{rel: p.rel, info: *p.remote}, dir, false, progress); err != nil {
			s.fail(a, err)
			return
		}
		s.done(a, 0)
	})
	s.prog.finish()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sync: interrupted: %w", err)
	}
	if !s.o.del || len(locals) == 0 {
		return nil
	}
	if listErrs > 0 {
		fmt.Fprintf(s.stderr, "dfs: sync: %d local files could not be read: deleting nothing\n", listErrs)
		return nil
	}
	var gone []localFile
	for _, lf := range locals {
		gone = append(gone, lf)
	}
	sortLocal(gone)
	for _, lf := range gone {
		a := syncAction{Action: "delete", Path: lf.path, Size: lf.size}
		if !s.o.dryRun {
			if err := os.Remove(lf.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.fail(a, err)
				continue
			}
		}
		s.done(a, 0)
	}
	return nil
}

// compare returns the pairs that must be copied, hashing local files
// (several at once) only where the sizes are equal.
func (s *syncer) compare(pairs []pair) []pair {
	copyIt := make([]bool, len(pairs))
	idx := make([]int, len(pairs))
	for i := range idx {
		idx[i] = i
	}
	each(s.cmd.Context(), s.o.parallel, idx, func(i int) {
		d, err := differs(pairs[i])
		if err != nil {
			// Unreadable: copying over it or from it would fail too; say so.
			s.fail(syncAction{Action: "compare", Path: pairs[i].localPath}, err)
			return
		}
		copyIt[i] = d
	})
	var todo []pair
	for i, p := range pairs {
		if copyIt[i] {
			todo = append(todo, p)
		} else {
			s.mu.Lock()
			s.report.Unchanged++
			s.mu.Unlock()
		}
	}
	return todo
}

// workers is how many files are copied at once: one in a dry run, which
// copies nothing, so that its lines come in path order.
func (s *syncer) workers() int {
	if s.o.dryRun {
		return 1
	}
	return s.o.parallel
}

func (s *syncer) startProgress(verb string, files int, total int64) {
	s.prog = newTreeProgress(verb, files, total, !s.o.quiet && !s.o.asJSON && !s.o.dryRun, nil)
}

// done records a finished action and prints its line.
func (s *syncer) done(a syncAction, sent int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch a.Action {
	case "upload":
		s.report.Uploaded++
		s.report.Bytes += a.Size
	case "download":
		s.report.Downloaded++
		s.report.Bytes += a.Size
	case "delete":
		s.report.Deleted++
	}
	s.report.SentBytes += sent
	s.report.Actions = append(s.report.Actions, a)
	if s.o.asJSON || s.o.quiet {
		return
	}
	line := fmt.Sprintf("%-8s %s\n", a.Action, a.Path)
	if s.o.dryRun {
		line = "(dry run) " + line
	}
	if s.prog != nil {
		s.prog.print(s.out, line)
	} else {
		io.WriteString(s.out, line)
	}
}

// fail records an action that failed and says why on stderr.
func (s *syncer) fail(a syncAction, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.Error = err.Error()
	s.report.Failed++
	s.fails.add(err)
	s.report.Actions = append(s.report.Actions, a)
	line := fmt.Sprintf("dfs: sync: %s %s: %v\n", a.Action, a.Path, err)
	if s.prog != nil {
		s.prog.print(s.stderr, line)
	} else {
		io.WriteString(s.stderr, line)
	}
}

// finish prints the summary and says whether everything went.
func (s *syncer) finish() error {
	r := s.report
	// Transfers end in any order; the report lists them in the order of
	// the phases, by path within each.
	rank := map[string]int{"compare": 0, "upload": 1, "download": 1, "delete": 2}
	slices.SortStableFunc(r.Actions, func(a, b syncAction) int {
		if d := rank[a.Action] - rank[b.Action]; d != 0 {
			return d
		}
		return strings.Compare(a.Path, b.Path)
	})
	if s.o.asJSON {
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		how := ""
		if r.DryRun {
			how = " (dry run: nothing changed)"
		}
		fmt.Fprintf(s.out, "sync: %d uploaded, %d downloaded, %s copied, %d deleted, %d unchanged, %d failed%s\n",
			r.Uploaded, r.Downloaded, humanize.IBytes(uint64(r.Bytes)), r.Deleted, r.Unchanged, r.Failed, how)
	}
	return s.fails.result(fmt.Sprintf("sync: %s failed (see above)", plural(r.Failed, "file")))
}

func sortFiles(fs []dfs.FileInfo) {
	slices.SortFunc(fs, func(a, b dfs.FileInfo) int { return strings.Compare(a.Path, b.Path) })
}

func sortLocal(fs []localFile) {
	slices.SortFunc(fs, func(a, b localFile) int { return strings.Compare(a.rel, b.rel) })
}
