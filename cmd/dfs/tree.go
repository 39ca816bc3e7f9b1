package main

// What the commands that work on whole folders share: put -r, get -r,
// rm -r, cp -r and sync.
//
// dfs has no folder records: as in S3, a folder is the set of paths under
// a prefix ending in '/', and it exists while one file is under it. So an
// empty local directory has nothing to become in dfs: put -r and sync
// store nothing for it, and get -r and sync create local directories only
// to hold files.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/schollz/progressbar/v3"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

// defaultParallel is how many files put -r, get -r and sync move at once.
// Each transfer holds at most the SDK's window of chunks in memory, so
// memory is bounded by this times that window, whatever the tree's size.
const defaultParallel = 4

// folderName is the folder a user named: "media", "media/" and "/media/"
// all name the folder media, returned without the slash; "" or "/" is the
// whole namespace, returned as "".
func folderName(p string) (string, error) {
	t := strings.TrimRight(strings.TrimPrefix(p, "/"), "/")
	if t == "" {
		return "", nil
	}
	clean, err := dfs.CleanPath(t)
	if err != nil {
		return "", fmt.Errorf("%q: %w", p, err)
	}
	return clean, nil
}

// under is the listing prefix of folder f.
func under(f string) string {
	if f == "" {
		return ""
	}
	return f + "/"
}

// joinPath is the path of rel inside folder f.
func joinPath(f, rel string) string {
	if f == "" {
		return rel
	}
	return f + "/" + rel
}

// folderSize says how many entries (files and subfolders) are directly
// in folder f, counting one page at most: more is set when there are more.
func folderSize(ctx context.Context, c *client.Client, f string) (n int, more bool, err error) {
	l, err := c.List(ctx, client.ListOptions{Prefix: under(f), Delimiter: "/", Limit: lsPage})
	if err != nil {
		return 0, false, err
	}
	return len(l.Files) + len(l.Prefixes), l.Truncated, nil
}

// isFolder reports whether any file is under folder f.
func isFolder(ctx context.Context, c *client.Client, f string) (bool, error) {
	if f == "" {
		return true, nil
	}
	l, err := c.List(ctx, client.ListOptions{Prefix: under(f), Limit: 1})
	if err != nil {
		return false, err
	}
	return len(l.Files) > 0, nil
}

// notAFile is the error for a path that names no file: when it names a
// folder, a usage error saying so and what to type (exit 2); otherwise
// err, the lookup's own (not found, bad path). verb is the command, and
// example how to use it with -r.
func notAFile(ctx context.Context, c *client.Client, verb, p string, err error, example string) error {
	if !errors.Is(err, dfs.ErrNotFound) && !errors.Is(err, dfs.ErrBadPath) {
		return err
	}
	f, ferr := folderName(p)
	if ferr != nil || f == "" {
		return err
	}
	if ok, lerr := isFolder(ctx, c, f); lerr != nil || !ok {
		if strings.HasSuffix(p, "/") && lerr == nil {
			return fmt.Errorf("%s %s: %w: no file under %s", verb, p, dfs.ErrNotFound, under(f))
		}
		return err
	}
	return usagef("%s %s: %s is a folder: use -r (%s)", verb, p, under(f), example)
}

// remoteFile is a file under a folder, with its path relative to it.
type remoteFile struct {
	rel  string
	info dfs.FileInfo
}

// remoteFiles calls fn with every page of the files under folder f, in
// path order, so that a caller holds one page at a time if it wants.
func remoteFiles(ctx context.Context, c *client.Client, f string, fn func([]remoteFile) error) error {
	return c.ListAll(ctx, client.ListOptions{Prefix: under(f), Limit: lsPage}, func(l client.Listing) error {
		page := make([]remoteFile, 0, len(l.Files))
		for _, fi := range l.Files {
			page = append(page, remoteFile{rel: strings.TrimPrefix(fi.Path, under(f)), info: fi})
		}
		return fn(page)
	})
}

// allRemoteFiles is every file under folder f.
func allRemoteFiles(ctx context.Context, c *client.Client, f string) ([]remoteFile, error) {
	var all []remoteFile
	err := remoteFiles(ctx, c, f, func(page []remoteFile) error {
		all = append(all, page...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", under(f), err)
	}
	return all, nil
}

// localFile is a regular file of a local tree.
type localFile struct {
	rel  string // relative to the tree's root, '/'-separated
	path string
	size int64
}

// errNotRegular marks what a local tree holds that is not a file to copy
// (a symbolic link to a directory, a socket, a device): left out with a
// notice, as rsync does, and no failure.
var errNotRegular = errors.New("skipped")

// localFiles lists the regular files under dir, sorted by relative path.
// Symbolic links are followed to files, not into directories. What cannot
// be read or is not a regular file is passed to skip and left out; empty
// directories contribute nothing.
func localFiles(dir string, skip func(path string, err error)) ([]localFile, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, usagef("%s is not a directory", dir)
	}
	var out []localFile
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			skip(p, err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		info, err := os.Stat(p)
		if err != nil {
			skip(p, err)
			return nil
		}
		if !info.Mode().IsRegular() {
			what := "not a regular file"
			if info.IsDir() {
				what = "a symbolic link to a directory"
			}
			skip(p, fmt.Errorf("%w: %s", errNotRegular, what))
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			skip(p, err)
			return nil
		}
		out = append(out, localFile{rel: filepath.ToSlash(rel), path: p, size: info.Size()})
		return nil
	})
	slices.SortFunc(out, func(a, b localFile) int { return strings.Compare(a.rel, b.rel) })
	return out, err
}

// localPath is where rel of a remote folder goes under dir. A relative
// path that would leave dir cannot come from CleanPath'd names, but is
// refused all the same rather than written.
func localPath(dir, rel string) (string, error) {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if r, err := filepath.Rel(dir, p); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%w: %q would be written outside %s", dfs.ErrBadPath, rel, dir)
	}
	return p, nil
}

// fileSHA256 is the SHA-256 of a local file, as dfs names contents.
func fileSHA256(path string) (dfs.ContentHash, error) {
	f, err := os.Open(path)
	if err != nil {
		return dfs.ContentHash{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return dfs.ContentHash{}, fmt.Errorf("read %s: %w", path, err)
	}
	return dfs.ContentHash(h.Sum(nil)), nil
}

// each calls fn with every item, n at a time, and goes on past items that
// fail (fn reports its own errors); it stops starting new ones once ctx
// is done.
func each[T any](ctx context.Context, n int, items []T, fn func(T)) {
	if n < 1 {
		n = 1
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(it)
		}()
	}
	wg.Wait()
}

// treeProgress is one progress display over a whole tree: files done of
// the total, and bytes, with several files in flight.
type treeProgress struct {
	mu    sync.Mutex
	bar   *progressbar.ProgressBar
	out   io.Writer // for a line per file; nil prints none
	verb  string
	files int
	done  int
	bytes int64
}

func newTreeProgress(verb string, files int, total int64, show bool, out io.Writer) *treeProgress {
	t := &treeProgress{verb: verb, files: files, out: out}
	t.bar = newBar(total, t.describe(), show)
	return t
}

func (t *treeProgress) describe() string {
	return fmt.Sprintf("%s %d/%d files", t.verb, t.done, t.files)
}

// start begins a file of size bytes: progress is its SDK callback, and
// finish ends it, printing line if not empty.
func (t *treeProgress) start(size int64) (progress func(int64), finish func(line string)) {
	var last int64
	progress = func(done int64) {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.bytes += done - last
		last = done
		if t.bar != nil {
			t.bar.Set64(t.bytes)
		}
	}
	finish = func(line string) {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.bytes += size - last
		last = size
		t.done++
		if t.bar != nil {
			t.bar.Set64(t.bytes)
			t.bar.Describe(t.describe())
		}
		if line != "" && t.out != nil {
			if t.bar != nil {
				t.bar.Clear()
			}
			io.WriteString(t.out, line)
		}
	}
	return progress, finish
}

// print writes a line between the bar's updates.
func (t *treeProgress) print(w io.Writer, line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bar != nil {
		t.bar.Clear()
	}
	io.WriteString(w, line)
}

func (t *treeProgress) finish() { finishBar(t.bar) }

// writeLocal writes the located file to dst atomically: into a new file
// beside it, renamed over dst once every byte is verified and synced. A
// new file gets mode 0666 less the umask, as cp and curl give; an
// existing file keeps its mode.
func writeLocal(ctx context.Context, c *client.Client, loc client.Location, dst string, progress func(int64)) error {
	mode := fs.FileMode(0)
	if st, err := os.Stat(dst); err == nil {
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s exists and is not a regular file", dst)
		}
		mode = st.Mode().Perm()
	}
	tmp, err := createBeside(dst)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if mode != 0 {
		// Chmod is not subject to the umask: the old mode exactly.
		if err := tmp.Chmod(mode); err != nil {
			tmp.Close()
			return err
		}
	}
	err = c.Read(ctx, loc, tmp, client.GetOptions{Progress: progress})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// createBeside creates a new, empty temporary file in dst's directory,
// with mode 0666 so that the kernel applies the umask (os.CreateTemp
// would make it 0600, which the rename would then give dst).
func createBeside(dst string) (*os.File, error) {
	dir, base := filepath.Split(dst)
	for range 100 {
		name := filepath.Join(dir, "."+base+".dfs-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("create a temporary file beside %s: too many exist", dst)
}
