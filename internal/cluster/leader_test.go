package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dfs-store/dfs/internal/cluster"
	"github.com/dfs-store/dfs/internal/coordinator"
)

// Of several coordinators sharing one etcd, exactly one leads, and when it
// stops another takes over.
func TestOneLeaderAmongCoordinators(t *testing.T) {
	cl, _ := startCluster(t, func(c *cluster.Config) { c.Coordinator.ElectionTTL = time.Second })
	first := cl.Coordinator.Server
	eventually(t, 10*time.Second, func() error {
		if !first.IsLeader() {
			return fmt.Errorf("the only coordinator is not leader")
		}
		return nil
	})
	second, err := cluster.StartCoordinator(context.Background(), cluster.CoordinatorConfig{
		Listen:        "127.0.0.1:0",
		EtcdEndpoints: cl.Coordinator.Etcd.Endpoints(),
		Coordinator:   coordinator.Config{ElectionTTL: time.Second},
		Logger:        quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	// The second one stands by while the first leads.
	for range 20 {
		if second.Server.IsLeader() {
			t.Fatal("two leaders at once")
		}
		time.Sleep(10 * time.Millisecond) // sampling, not synchronisation
	}
	term := first.Term()
	first.Close() // stops the first coordinator's work and resigns
	eventually(t, 15*time.Second, func() error {
		if !second.Server.IsLeader() {
			return fmt.Errorf("no new leader after the first stopped")
		}
		return nil
	})
	if second.Server.Term() <= term {
		t.Fatalf("new leader's term %d is not after the old one's %d", second.Server.Term(), term)
	}
}
