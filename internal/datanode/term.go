package datanode

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/dfs-store/dfs"
)

// Fencing. Only the leader coordinator copies, trims and deletes chunks,
// and it stamps each such command with its term: the etcd revision at
// which it was elected. A datanode remembers the newest term it has seen —
// from commands and from every coordinator's heartbeat answers — and
// refuses a command with an older one, so a leader that was paused or cut
// off and does not yet know it was deposed cannot act on data after its
// successor is known. The newest term is kept in the data directory, so a
// restart does not forget it.

// termFile holds the newest leader term, in decimal.
const termFile = "leader-term"

type terms struct {
	mu      sync.Mutex
	path    string
	max     int64
	refused int64
}

func loadTerms(dir string) (*terms, error) {
	t := &terms{path: filepath.Join(dir, termFile)}
	b, err := os.ReadFile(t.path)
	switch {
	case os.IsNotExist(err):
		return t, nil
	case err != nil:
		return nil, fmt.Errorf("datanode: leader term: %w", err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("datanode: leader term in %s: %w", t.path, err)
	}
	t.max = v
	return t, nil
}

// newest returns the newest term seen.
func (t *terms) newest() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.max
}

// stats returns the newest term and the commands refused so far.
func (t *terms) stats() (newest, refused int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.max, t.refused
}

// observe raises the newest term to term, if it is newer.
func (t *terms) observe(term int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.raiseLocked(term)
}

func (t *terms) raiseLocked(term int64) error {
	if term <= t.max {
		return nil
	}
	if err := writeFileSync(t.path, []byte(strconv.FormatInt(term, 10)+"\n")); err != nil {
		return fmt.Errorf("datanode: save leader term: %w", err)
	}
	t.max = term
	return nil
}

// admit checks a leader-only command's term: one older than the newest
// seen is refused with dfs.ErrFenced; a newer one becomes the newest.
func (t *terms) admit(term int64, what string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if term <= 0 {
		t.refused++
		return fmt.Errorf("%w: %s carries no leader term", dfs.ErrFenced, what)
	}
	if term < t.max {
		t.refused++
		return fmt.Errorf("%w: %s with leader term %d, but term %d is newer", dfs.ErrFenced, what, term, t.max)
	}
	if err := t.raiseLocked(term); err != nil {
		// Keep the newer term in memory and act: refusing would stop the
		// leader's deletes that might free the disk that failed the save.
		t.max = term
		return nil
	}
	return nil
}

// writeFileSync replaces path durably: a temporary file, fsynced, renamed,
// and the directory fsynced, so a crash leaves the old or the new content.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
