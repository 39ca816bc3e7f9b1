package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the file in a data directory that dfs server holds an
// exclusive lock on while it runs, with its process id inside.
const LockFile = "server.lock"

// ErrDirInUse is the error of LockDir for a directory another process
// holds.
var ErrDirInUse = errors.New("in use by another dfs server")

// DirLock is a held lock on a data directory.
type DirLock struct{ f *os.File }

// LockDir takes the exclusive lock on data directory dir, which must
// exist, for as long as the process runs or until Unlock: two servers on
// one directory would share one etcd member and the same datanode
// directories, and the second would fail on a port the user never chose.
// It fails with an error wrapping ErrDirInUse that names the holder's process id when another process holds it. The lock
// is the kernel's (flock): it goes with the process, however it ends, so
// a crash leaves no stale lock behind.
func LockDir(dir string) (*DirLock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := ""
			if b, err := os.ReadFile(path); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
					holder = fmt.Sprintf(" (pid %d)", pid)
				}
			}
			return nil, fmt.Errorf("data directory %s is %w%s: stop it, or pass another --data", dir, ErrDirInUse, holder)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
}

// Unlock releases the lock.
func (l *DirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the only descriptor releases the flock
	l.f = nil
	return err
}
