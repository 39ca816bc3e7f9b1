package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/api"
)

// statusOutput is what status --json prints.
type statusOutput struct {
	Leader       string              `json:"leader"`
	Term         int64               `json:"term"`
	Coordinators []coordinatorOutput `json:"coordinators"`
	Etcd         etcdOutput          `json:"etcd"`
	AnsweredBy   string              `json:"answered_by"`
	// Counters are chunk health as a coordinator keeps it (the leader's
	// when it answers); CountersError says why they are missing.
	Counters      *countersOutput `json:"counters,omitempty"`
	CountersError string          `json:"counters_error,omitempty"`
}

// countersOutput is the cluster's counters in status --json.
type countersOutput struct {
	From              string `json:"from"` // the coordinator that counted
	Cold              bool   `json:"cold"` // it has not heard every datanode since it started
	Files             int64  `json:"files"`
	Chunks            int64  `json:"chunks"`
	Copies            int64  `json:"copies"`
	Healthy           int64  `json:"healthy"`
	UnderReplicated   int64  `json:"under_replicated"`
	MissingRepairable int64  `json:"missing_repairable"`
	MissingLost       int64  `json:"missing_lost"`
	Corrupt           int64  `json:"corrupt"`
	OverReplicated    int64  `json:"over_replicated"`
	PendingRepair     int64  `json:"pending_repair"`
	Unplaceable       int64  `json:"unplaceable"` // below the factor, with no node to place a copy on
	PendingGC         int64  `json:"pending_gc"`
	Repaired          int64  `json:"repaired"`
	GarbageCollected  int64  `json:"garbage_collected"`
}

func countersFromAPI(r *api.CountersResponse) *countersOutput {
	return &countersOutput{From: r.Addr, Cold: r.Cold, Files: r.Files, Chunks: r.Chunks, Copies: r.Copies,
		Healthy: r.Healthy, UnderReplicated: r.UnderReplicated, MissingRepairable: r.MissingRepairable,
		MissingLost: r.MissingLost, Corrupt: r.Corrupt, OverReplicated: r.OverReplicated,
		PendingRepair: r.PendingRepair, Unplaceable: r.Unplaceable, PendingGC: r.PendingGc, Repaired: r.Repaired, GarbageCollected: r.GarbageCollected}
}

type coordinatorOutput struct {
	Addr   string `json:"addr"`
	Leader bool   `json:"leader"`
	Alive  bool   `json:"alive"`
	Term   int64  `json:"term,omitempty"`
	Error  string `json:"error,omitempty"`
}

type etcdOutput struct {
	Members []etcdMemberOutput `json:"members"`
	Healthy bool               `json:"healthy"`
	Error   string             `json:"error,omitempty"`
}

type etcdMemberOutput struct {
	Name       string   `json:"name"`
	ID         string   `json:"id"`
	ClientURLs []string `json:"client_urls"`
	PeerURLs   []string `json:"peer_urls"`
	Healthy    bool     `json:"healthy"`
	Leader     bool     `json:"leader"`
	Error      string   `json:"error,omitempty"`
}

func statusFromAPI(r *api.StatusResponse) statusOutput {
	out := statusOutput{Leader: r.Leader, Term: r.Term, AnsweredBy: r.Addr, Coordinators: []coordinatorOutput{}}
	for _, c := range r.Coordinators {
		out.Coordinators = append(out.Coordinators, coordinatorOutput{Addr: c.Addr, Leader: c.Leader, Alive: c.Alive, Term: c.Term, Error: c.Error})
	}
	out.Etcd.Members = []etcdMemberOutput{}
	if e := r.Etcd; e != nil {
		out.Etcd.Healthy, out.Etcd.Error = e.Healthy, e.Error
		for _, m := range e.Members {
			out.Etcd.Members = append(out.Etcd.Members, etcdMemberOutput{Name: m.Name, ID: fmt.Sprintf("%x", m.Id),
				ClientURLs: m.ClientUrls, PeerURLs: m.PeerUrls, Healthy: m.Healthy, Leader: m.Leader, Error: m.Error})
		}
	}
	return out
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the control plane: the leader, every coordinator, etcd's members and health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			out := statusFromAPI(r)
			if cr, err := c.Counters(cmd.Context()); err != nil {
				out.CountersError = err.Error()
			} else {
				out.Counters = countersFromAPI(cr)
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			leader := out.Leader
			if leader == "" {
				leader = "none (no coordinator holds the election; is etcd up with a quorum?)"
			} else {
				leader = fmt.Sprintf("%s (term %d)", leader, out.Term)
			}
			fmt.Printf("leader: %s\n\n", leader)
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "COORDINATOR\tROLE\tSTATE")
			for _, c := range out.Coordinators {
				role, state := "standby", "alive"
				if c.Leader {
					role = "leader"
				}
				if !c.Alive {
					role, state = "-", "unreachable: "+c.Error
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Addr, role, state)
			}
			tw.Flush()
			health := "healthy"
			if !out.Etcd.Healthy {
				health = "NOT HEALTHY: " + out.Etcd.Error
			}
			fmt.Printf("\netcd: %s\n", health)
			tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "MEMBER\tCLIENT URLS\tSTATE")
			for _, m := range out.Etcd.Members {
				state := "healthy"
				if m.Leader {
					state = "healthy, raft leader"
				}
				if !m.Healthy {
					state = "unhealthy: " + m.Error
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Name, strings.Join(m.ClientURLs, ","), state)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if k := out.Counters; k != nil {
				cold := ""
				if k.Cold {
					cold = " (not every datanode has reported to it yet: the counts may be short)"
				}
				fmt.Printf("\nchunks, as %s counts them%s:\n", k.From, cold)
				fmt.Printf("%s, %s, %s: %d healthy, %d under-replicated, %d missing (%d repairable, %d lost), %d corrupt, %d over-replicated\n",
					plural(int(k.Files), "file"), plural(int(k.Chunks), "chunk"), plural(int(k.Copies), "copy"), k.Healthy, k.UnderReplicated, k.MissingRepairable+k.MissingLost,
					k.MissingRepairable, k.MissingLost, k.Corrupt, k.OverReplicated)
				fmt.Printf("pending: %s to repair, %s of garbage; done since it started: %s repaired, %d collected\n",
					plural(int(k.PendingRepair), "chunk"), plural(int(k.PendingGC), "chunk"), plural(int(k.Repaired), "copy"), k.GarbageCollected)
				if k.Unplaceable > 0 {
					fmt.Printf("%s below the replication factor with no node to place a copy on: fewer datanodes take copies than it needs\n", plural(int(k.Unplaceable), "chunk"))
				}
			} else {
				fmt.Printf("\ncounters: %s\n", out.CountersError)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}
