package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/dfs-store/dfs"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// ClusterInfo is the cluster at a glance: its leader, its nodes, and the
// repair and garbage-collection counters.
type ClusterInfo struct {
	// Leader is the leader coordinator's address; LeaderError says why it
	// is unknown when it is empty.
	Leader       string            `json:"leader"`
	LeaderTerm   int64             `json:"leader_term,omitempty"`
	LeaderError  string            `json:"leader_error,omitempty"`
	Coordinators []CoordinatorInfo `json:"coordinators"`

	NodesTotal    int   `json:"nodes_total"`
	NodesAlive    int   `json:"nodes_alive"`
	CapacityBytes int64 `json:"capacity_bytes"`
	UsedBytes     int64 `json:"used_bytes"`
	ChunksStored  int64 `json:"chunks_stored"` // copies, over every node

	// From the counters a coordinator keeps as locations change (the
	// leader's when it answers; never a check of every file): distinct
	// chunks by health, and the work repair and GC still have.
	// CountersError says why they are missing; CountersCold that the
	// coordinator has not heard from every datanode since it started, so
	// its chunk counts may be short.
	Files             int64  `json:"files"`
	Chunks            int64  `json:"chunks"`
	Copies            int64  `json:"copies"`
	Healthy           int64  `json:"healthy"`
	UnderReplicated   int64  `json:"under_replicated"`
	Missing           int64  `json:"missing"` // repairable and lost
	MissingRepairable int64  `json:"missing_repairable"`
	MissingLost       int64  `json:"missing_lost"`
	Corrupt           int64  `json:"corrupt"`
	OverReplicated    int64  `json:"over_replicated"`
	PendingRepair     int64  `json:"pending_repair"`
	Unplaceable       int64  `json:"unplaceable"` // below the factor with no node to place a copy on (not pending repair)
	PendingGC         int64  `json:"pending_gc"`
	Repaired          int64  `json:"repaired"`
	GarbageCollected  int64  `json:"garbage_collected"`
	CountersFrom      string `json:"counters_from,omitempty"`
	CountersCold      bool   `json:"counters_cold,omitempty"`
	CountersError     string `json:"counters_error,omitempty"`

	Time time.Time `json:"time"`
}

// CoordinatorInfo is one coordinator as the Status call sees it.
type CoordinatorInfo struct {
	Addr   string `json:"addr"`
	Leader bool   `json:"leader"`
	Alive  bool   `json:"alive"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) nodes(ctx context.Context) ([]dfs.NodeInfo, error) {
	nodes, err := s.cl.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	return nodes, nil
}

func (s *Server) serveNodes(w http.ResponseWriter, r *http.Request) {
	nodes, err := s.nodes(r.Context())
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes})
}

func (s *Server) serveCluster(w http.ResponseWriter, r *http.Request) {
	ci, err := s.clusterInfo(r.Context(), time.Second)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, ci)
}

// clusterInfo reads the cluster's state, or returns the copy read less than
// maxAge ago, as many browsers may ask. Every part of it costs the same
// whatever the cluster holds: the node table, the control plane's status,
// and the coordinator's counters.
func (s *Server) clusterInfo(ctx context.Context, maxAge time.Duration) (*ClusterInfo, error) {
	s.clusterMu.Lock()
	defer s.clusterMu.Unlock()
	if s.clusterVal != nil && time.Since(s.clusterAt) < maxAge {
		return s.clusterVal, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nodes, err := s.nodes(ctx)
	if err != nil {
		return nil, err
	}
	ci := &ClusterInfo{NodesTotal: len(nodes), Coordinators: []CoordinatorInfo{}, Time: time.Now()}
	for _, n := range nodes {
		if n.Alive {
			ci.NodesAlive++
		}
		ci.CapacityBytes += n.CapacityBytes
		ci.UsedBytes += n.UsedBytes
		ci.ChunksStored += n.Chunks
	}
	if st, err := s.cl.Status(ctx); err != nil {
		ci.LeaderError = err.Error()
	} else {
		ci.Leader, ci.LeaderTerm = st.Leader, st.Term
		for _, c := range st.Coordinators {
			ci.Coordinators = append(ci.Coordinators, CoordinatorInfo{Addr: c.Addr, Leader: c.Leader, Alive: c.Alive, Error: c.Error})
		}
		if ci.Leader == "" {
			ci.LeaderError = "no leader elected"
		}
	}
	if k, err := s.cl.Counters(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		ci.CountersError = err.Error()
	} else {
		ci.Files, ci.Chunks, ci.Copies, ci.Healthy = k.Files, k.Chunks, k.Copies, k.Healthy
		ci.UnderReplicated, ci.Corrupt, ci.OverReplicated = k.UnderReplicated, k.Corrupt, k.OverReplicated
		ci.MissingRepairable, ci.MissingLost = k.MissingRepairable, k.MissingLost
		ci.Missing = k.MissingRepairable + k.MissingLost
		ci.PendingRepair, ci.PendingGC = k.PendingRepair, k.PendingGc
		ci.Unplaceable = k.Unplaceable
		ci.Repaired, ci.GarbageCollected = k.Repaired, k.GarbageCollected
		ci.CountersFrom, ci.CountersCold = k.Addr, k.Cold
	}
	s.metrics.setCluster(ci)
	s.clusterVal, s.clusterAt = ci, time.Now()
	return ci, nil
}
