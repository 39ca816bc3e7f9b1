package etcdserver

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestNeedsDefrag(t *testing.T) {
	for _, c := range []struct {
		size, inUse int64
		want        bool
	}{
		{1 << 30, 1 << 30, false},          // nothing free
		{1 << 30, 700 << 20, true},         // 324 MiB free, 32%
		{1 << 30, 800 << 20, false},        // 224 MiB free, but 22%
		{100 << 20, 10 << 20, true},        // 90 MiB free, 90%
		{80 << 20, 10 << 20, true},         // 70 MiB free
		{60 << 20, 0, false},               // all free, but under 64 MiB
		{0, 0, false},                      // empty
		{10 << 30, 10<<30 + 1, false},      // more in use than the file: no
		{10 << 30, 7<<30 + 512<<20, false}, // exactly 25% free is not more than 25%
	} {
		if got := needsDefrag(c.size, c.inUse, DefragFreeRatio, DefragFreeBytes); got != c.want {
			t.Errorf("size %d, in use %d: defrag %v, want %v", c.size, c.inUse, got, c.want)
		}
	}
}

// A member whose file is mostly free after compaction defragments itself
// online, and its file shrinks; one with little free space does nothing.
func TestMaybeDefragShrinksTheFile(t *testing.T) {
	srv, err := Start(context.Background(), Config{Dir: t.TempDir(), DefragCheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	stop := make(chan struct{})
	defer close(stop)
	if did, err := srv.MaybeDefrag(stop, 0.25, 1<<20); err != nil || did {
		t.Fatalf("defrag of a fresh member: %v, %v; want nothing done", did, err)
	}
	val := strings.Repeat("x", 64<<10)
	for i := range 400 { // 25 MiB
		if _, err := cli.Put(ctx, fmt.Sprint("k", i), val); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Delete(ctx, "k", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	before, _ := cli.Status(ctx, srv.Endpoints()[0])
	did, err := srv.MaybeDefrag(stop, 0.25, 1<<20)
	if err != nil || !did {
		t.Fatalf("defrag of a mostly free file (%d bytes, %d in use): %v, %v", before.DbSize, before.DbSizeInUse, did, err)
	}
	after, _ := cli.Status(ctx, srv.Endpoints()[0])
	t.Logf("file %d -> %d bytes (%d in use)", before.DbSize, after.DbSize, after.DbSizeInUse)
	if after.DbSize*2 > before.DbSize {
		t.Fatalf("file of %d bytes is %d after defragmentation", before.DbSize, after.DbSize)
	}
	// The member serves on.
	if _, err := cli.Put(ctx, "after", "v"); err != nil {
		t.Fatal(err)
	}
}
