package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
)

// Idle datanodes send no node event: their heartbeats go on and their
// disks' free space moves a little (something else writes there), and
// neither is news. The web UI's stream then carries what changed, not one
// event a second per node.
func TestIdleNodesSendNoNodeEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for several heartbeats of every node: runs without -short")
	}
	e := startEnv(t, "")
	s := e.events(t)
	s.waitCount(t, "node", 3)
	// Let the first rows settle: every node heartbeats once more.
	beats := func(n int) map[dfs.NodeID]dfs.NodeInfo {
		t.Helper()
		first := map[dfs.NodeID]time.Time{}
		seen := map[dfs.NodeID]map[time.Time]bool{}
		deadline := time.Now().Add(time.Minute)
		for {
			nodes, err := e.c.Nodes(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			done := len(nodes) == 3
			last := map[dfs.NodeID]dfs.NodeInfo{}
			for _, nd := range nodes {
				last[nd.ID] = nd
				if _, ok := first[nd.ID]; !ok {
					first[nd.ID] = nd.LastHeartbeat
					seen[nd.ID] = map[time.Time]bool{}
				}
				if nd.LastHeartbeat.After(first[nd.ID]) {
					seen[nd.ID][nd.LastHeartbeat] = true
				}
				done = done && len(seen[nd.ID]) >= n
			}
			if done {
				return last
			}
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d heartbeats of every node within a minute: %v", n, seen)
			}
			time.Sleep(50 * time.Millisecond) // poll interval
		}
	}
	before := beats(1)
	drain := func() []event {
		var out []event
		for {
			select {
			case ev := <-s.ch:
				if ev.kind == "node" {
					out = append(out, ev)
				}
			default:
				return out
			}
		}
	}
	drain()

	// Something else on the nodes' disk takes a little space.
	junk := filepath.Join(filepath.Dir(e.cl.Nodes[0].Store().(interface{ Dir() string }).Dir()), "junk")
	f, err := os.Create(junk)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 1<<20))
	f.Sync()
	f.Close()

	after := beats(3)
	moved := false
	for id, nd := range after {
		moved = moved || nd.FreeBytes != before[id].FreeBytes
	}
	if !moved {
		t.Fatalf("free space did not move on any node; the test shows nothing")
	}
	if evs := drain(); len(evs) > 0 {
		t.Fatalf("%d node events from idle nodes over three heartbeats, the first: %s", len(evs), fmt.Sprint(string(evs[0].data)))
	}

	// A node taking chunks is news at once.
	e.do(t, "PUT", "/api/v1/files/busy/a.bin", bytes.NewReader(make([]byte, 100<<10)))
	s.waitFor(t, "a node event with chunks", func(kind string, b []byte) bool {
		var n dfs.NodeInfo
		return kind == "node" && json.Unmarshal(b, &n) == nil && n.Chunks > 0
	})
}
