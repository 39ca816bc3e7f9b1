package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/cluster"
)

func getVersion(t *testing.T, c *client.Client, path, id string) []byte {
	t.Helper()
	var out bytes.Buffer
	if _, err := c.Get(context.Background(), path, &out, client.GetOptions{Version: id}); err != nil {
		t.Fatalf("get %s version %q: %v", path, id, err)
	}
	return out.Bytes()
}

// A version of a large file with a small edit costs only the chunks the
// edit touched; every version reads back byte-exact; a restore, an
// undelete and a move send no bytes; versions outlive a full collection
// and, once purged, their chunks go.
func TestVersionsOfAFile(t *testing.T) {
	cl, c := startCluster(t, func(cfg *cluster.Config) {
		cfg.Coordinator.VersionRetention = time.Hour
		cfg.Coordinator.GCGrace = 50 * time.Millisecond
		cfg.Coordinator.GCInterval = time.Hour
	})
	ctx := context.Background()
	v1 := randomBytes(64<<20, 41)
	put(t, c, "b/big.bin", v1)
	d1 := diskBytes(t, cl)
	v2 := bytes.Clone(v1)
	copy(v2[30<<20:], []byte("a small edit in the middle of the file"))
	put(t, c, "b/big.bin", v2)
	d2 := diskBytes(t, cl)
	extra := d2 - d1
	t.Logf("a 64 MiB file: first version %d bytes on the datanodes, the edited version %d more (%.1f%% of a full copy)",
		d1, extra, 100*float64(extra)/float64(d1))
	if extra <= 0 || extra > d1/4 {
		t.Fatalf("the edited version added %d bytes to %d: want only the edited chunks' copies", extra, d1)
	}

	vs, err := c.Versions(ctx, "b/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || !vs[0].Latest || vs[0].Content != dfs.ContentHash(sha256.Sum256(v2)) || vs[1].Content != dfs.ContentHash(sha256.Sum256(v1)) {
		t.Fatalf("versions %+v: want v2 (latest), v1", vs)
	}
	if !bytes.Equal(getVersion(t, c, "b/big.bin", vs[1].VersionID), v1) {
		t.Fatal("the earlier version does not read back byte-exact")
	}

	// Restore v1: a commit, no bytes.
	if _, err := c.Restore(ctx, "b/big.bin", vs[1].VersionID); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(getVersion(t, c, "b/big.bin", ""), v1) || diskBytes(t, cl) != d2 {
		t.Fatal("restore: the current file is not v1, or bytes were stored")
	}

	// Delete, then undelete from the newest earlier version.
	if err := c.Delete(ctx, "b/big.bin"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "b/big.bin"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("stat after delete: %v", err)
	}
	vs, err = c.Versions(ctx, "b/big.bin")
	if err != nil || len(vs) != 4 || !vs[0].DeleteMarker {
		t.Fatalf("versions after delete: %+v, %v; want a marker and three versions", vs, err)
	}
	if _, err := c.Get(ctx, "b/big.bin", &bytes.Buffer{}, client.GetOptions{Version: vs[0].VersionID}); !errors.Is(err, dfs.ErrInvalid) {
		t.Fatalf("reading a delete marker: %v", err)
	}
	if _, err := c.Restore(ctx, "b/big.bin", vs[1].VersionID); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(getVersion(t, c, "b/big.bin", ""), v1) {
		t.Fatal("undelete: the file is not back")
	}

	// A move sends no bytes and is one commit.
	if _, err := c.Rename(ctx, "b/big.bin", "b/moved.bin", client.RenameOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rename(ctx, "b/nothing", "b/x", client.RenameOptions{}); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("moving a missing file: %v", err)
	}
	if !bytes.Equal(getVersion(t, c, "b/moved.bin", ""), v1) || diskBytes(t, cl) != d2 {
		t.Fatal("move: bytes differ or were stored")
	}

	// Versions outlive a full collection.
	if _, err := c.RunGC(ctx, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // past the grace period
	if _, err := c.RunGC(ctx, true); err != nil {
		t.Fatal(err)
	}
	vs, err = c.Versions(ctx, "b/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if !v.DeleteMarker && v.Content == dfs.ContentHash(sha256.Sum256(v2)) && !bytes.Equal(getVersion(t, c, "b/big.bin", v.VersionID), v2) {
			t.Fatal("v2 does not read back after a full collection")
		}
	}

	// Purged, v2's own chunks go; v1's stay for b/moved.bin.
	for _, v := range vs {
		if _, err := c.DeleteVersion(ctx, "b/big.bin", v.VersionID); err != nil {
			t.Fatal(err)
		}
	}
	if vs, err := c.Versions(ctx, "b/big.bin"); err != nil || len(vs) != 0 {
		t.Fatalf("versions after purge: %+v, %v", vs, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for diskBytes(t, cl) != d1 {
		if time.Now().After(deadline) {
			var buf bytes.Buffer
			_, gerr := c.Get(ctx, "b/moved.bin", &buf, client.GetOptions{})
			f, ferr := c.Fsck(ctx, "", true)
			t.Fatalf("%d bytes on the datanodes after purge and collection, want %d (v1 alone); get moved: %v; fsck %+v %v", diskBytes(t, cl), d1, gerr, f, ferr)
		}
		if _, err := c.RunGC(ctx, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !bytes.Equal(getVersion(t, c, "b/moved.bin", ""), v1) {
		t.Fatal("the moved file does not read back after collection")
	}
}
