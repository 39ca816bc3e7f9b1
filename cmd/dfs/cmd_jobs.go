package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

// jobOutput is a row of jobs --json.
type jobOutput struct {
	SHA256   dfs.Hash          `json:"sha256"`
	State    dfs.JobState      `json:"state"`
	Worker   string            `json:"worker"`
	Attempts int               `json:"attempts"`
	Error    string            `json:"error"`
	Results  map[string]string `json:"results"`
}

func newJobsCmd(g *globals) *cobra.Command {
	var (
		state  string
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List post-upload processing jobs and their states",
		Long: `jobs lists the processing job of every content stored since processing
began: queued, processing (by which worker, since when), done (with the
processors' results) or error (with the message and the attempts made).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch dfs.JobState(state) {
			case "", dfs.JobQueued, dfs.JobProcessing, dfs.JobDone, dfs.JobError:
			default:
				return usagef("--state %q: want queued, processing, done or error", state)
			}
			if limit < 0 {
				return usagef("--limit %d: must not be negative", limit)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			list, err := c.Jobs(cmd.Context(), client.JobsOptions{State: dfs.JobState(state), Limit: limit})
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]jobOutput, 0, len(list))
				for _, j := range list {
					out = append(out, jobOutput{j.Content, j.State, j.Worker, j.Attempts, j.Error, j.Results})
				}
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			printf("%-12s  %-10s  %-24s  %8s  %-20s  %-30s  %s\n", "SHA256", "STATE", "WORKER", "ATTEMPTS", "UPDATED", "PATH", "RESULT")
			for _, j := range list {
				printf("%-12s  %-10s  %-24s  %8d  %-20s  %-30s  %s\n", j.Content.Short(), j.State, dash(j.Worker), j.Attempts,
					when(j.Updated), dash(j.Path), summary(&j))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&state, "state", "", "only jobs in this state: queued, processing, done or error")
	f.IntVar(&limit, "limit", 0, "list at most this many jobs (0: all)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// summary is one line about a job: its error, or its main results.
func summary(p *dfs.Processing) string {
	if p.State == dfs.JobError || (p.State != dfs.JobDone && p.Error != "") {
		return "error: " + p.Error
	}
	r := p.Results
	var parts []string
	if r["verify.sha256"] != "" {
		parts = append(parts, "verified")
	}
	if f := r["media.format"]; f != "" && f != "none" {
		m := f
		if w, h := r["media.width"], r["media.height"]; w != "" {
			m += fmt.Sprintf(" %sx%s", w, h)
		}
		if d := r["media.duration_seconds"]; d != "" {
			m += " " + d + "s"
		}
		parts = append(parts, m)
	}
	return strings.Join(parts, ", ")
}

// sortedKeys returns a map's keys in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fprintProcessing is the processing part of the human stat.
func fprintProcessing(w io.Writer, p *dfs.Processing) {
	line := string(p.State)
	if p.Worker != "" {
		line += " by " + p.Worker
	}
	if p.Attempts > 0 {
		line += fmt.Sprintf(", %d attempt(s)", p.Attempts)
	}
	fmt.Fprintf(w, "processing: %s\n", line)
	if p.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", p.Error)
	}
	for _, k := range sortedKeys(p.Results) {
		fmt.Fprintf(w, "  %-24s %s\n", k, p.Results[k])
	}
}
