package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprintf("http://%s", l.Addr())
}

// The in-process KV reads and writes as a client of the port does; a
// member that lost its leader refuses at once a request that requires one
// (as etcd's gRPC server does), and still answers a serializable read with
// what it had.
func TestInProcessKV(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two etcd members")
	}
	peerA, peerB := freePort(t), freePort(t)
	initial := "a=" + peerA + ",b=" + peerB
	cfgs := []Config{
		{Dir: t.TempDir(), Name: "a", PeerURL: peerA, InitialCluster: initial, DefragCheck: -1},
		{Dir: t.TempDir(), Name: "b", PeerURL: peerB, InitialCluster: initial, DefragCheck: -1},
	}
	srvs := make([]*Server, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Add(1)
		go func() { defer wg.Done(); srvs[i], errs[i] = Start(context.Background(), c) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		defer srvs[i].Close()
	}
	ctx := context.Background()
	kv := srvs[0].KV()
	if _, err := kv.Put(clientv3.WithRequireLeader(ctx), "k", "v1"); err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(ClientConfig(srvs[1].Endpoints(), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if resp, err := cli.Get(ctx, "k"); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("the other member reads %v, %v; want v1", resp, err)
	}
	if _, err := cli.Put(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	if resp, err := kv.Get(ctx, "k"); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v2" {
		t.Fatalf("in-process linearizable read %v, %v; want v2", resp, err)
	}

	srvs[1].Close() // a alone is not a quorum of two
	deadline := time.Now().Add(30 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 20*time.Second)
		_, err := kv.Get(rctx, "k")
		cancel()
		if errors.Is(err, rpctypes.ErrNoLeader) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a read requiring a leader, with no quorum: %v; want %v", err, rpctypes.ErrNoLeader)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, write := range []func(context.Context) error{
		func(ctx context.Context) error { _, err := kv.Put(ctx, "k", "v3"); return err },
		func(ctx context.Context) error {
			_, err := kv.Txn(ctx).Then(clientv3.OpPut("k", "v3")).Commit()
			return err
		},
		func(ctx context.Context) error { _, err := kv.Delete(ctx, "k"); return err },
	} {
		if err := write(clientv3.WithRequireLeader(ctx)); !errors.Is(err, rpctypes.ErrNoLeader) {
			t.Errorf("a write requiring a leader, with no quorum: %v; want %v", err, rpctypes.ErrNoLeader)
		}
	}
	resp, err := kv.Get(ctx, "k", clientv3.WithSerializable())
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v2" {
		t.Fatalf("serializable read without a quorum: %v, %v; want v2", resp, err)
	}
}
