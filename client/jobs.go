package client

import (
	"context"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// JobsOptions select jobs to list.
type JobsOptions struct {
	State dfs.JobState // "" for every state
	Limit int          // 0: no limit
}

// Jobs lists post-upload processing jobs, in content-hash order, asking
// the coordinator for them a page at a time.
func (c *Client) Jobs(ctx context.Context, o JobsOptions) ([]dfs.Processing, error) {
	var out []dfs.Processing
	after := ""
	for {
		req := &api.JobsRequest{State: string(o.State), StartAfter: after}
		if o.Limit > 0 {
			req.Limit = int32(min(o.Limit-len(out), 1000))
		}
		var resp *api.JobsResponse
		err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
			resp, err = cc.Jobs(ctx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, j := range resp.Jobs {
			h, err := dfs.HashFromBytes(j.ContentHash)
			if err != nil {
				return nil, err
			}
			out = append(out, *processingFromAPI(h, j.Processing))
		}
		if resp.NextStartAfter == "" || (o.Limit > 0 && len(out) >= o.Limit) {
			return out, nil
		}
		after = resp.NextStartAfter
	}
}

// StatProcessing returns a file's record and the processing state of its
// content (nil when the content has no job).
func (c *Client) StatProcessing(ctx context.Context, path string) (dfs.FileInfo, *dfs.Processing, error) {
	path, err := dfs.CleanPath(path) // see Stat
	if err != nil {
		return dfs.FileInfo{}, nil, err
	}
	var resp *api.StatResponse
	err = c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.Stat(ctx, &api.StatRequest{Path: path})
		return err
	})
	if err != nil {
		return dfs.FileInfo{}, nil, err
	}
	f := fileFromAPI(resp.File)
	return f, processingFromAPI(f.Content, resp.Processing), nil
}

func processingFromAPI(h dfs.ContentHash, p *api.Processing) *dfs.Processing {
	if p == nil {
		return nil
	}
	out := &dfs.Processing{
		Content:  h,
		Path:     p.Path,
		State:    dfs.JobState(p.State),
		Worker:   p.Worker,
		Attempts: int(p.Attempts),
		Error:    p.Error,
		Results:  p.Results,
	}
	if out.Results == nil {
		out.Results = map[string]string{}
	}
	for _, t := range []struct {
		dst *time.Time
		ns  int64
	}{{&out.Queued, p.QueuedUnixNano}, {&out.Started, p.StartedUnixNano}, {&out.Updated, p.UpdatedUnixNano}} {
		if t.ns != 0 {
			*t.dst = time.Unix(0, t.ns)
		}
	}
	return out
}
