package disk

import (
	"errors"
	"io/fs"
	"syscall"
	"testing"

	"github.com/dfs-store/dfs"
)

// A full disk cannot be arranged in a unit test, so check the mapping that
// turns the file system's ENOSPC into dfs.ErrNoSpace directly.
func TestNoSpaceMapping(t *testing.T) {
	full := &fs.PathError{Op: "write", Path: "/data/tmp/x", Err: syscall.ENOSPC}
	err := noSpace(full)
	if !errors.Is(err, dfs.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("noSpace(ENOSPC) = %v; want it to wrap both ErrNoSpace and ENOSPC", err)
	}
	other := &fs.PathError{Op: "write", Path: "/data/tmp/x", Err: syscall.EIO}
	if err := noSpace(other); errors.Is(err, dfs.ErrNoSpace) {
		t.Errorf("noSpace(EIO) = %v; want it not to be ErrNoSpace", err)
	}
}
