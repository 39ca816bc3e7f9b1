package coordinator

import (
	"context"
	"errors"
	"fmt"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/rpc"
)

// jobsPage is the most jobs one Jobs answer carries.
const jobsPage = 1000

// Jobs implements api.CoordinatorServer: the post-upload processing jobs,
// optionally in one state, in content-hash order.
func (s *Server) Jobs(ctx context.Context, req *api.JobsRequest) (*api.JobsResponse, error) {
	switch dfs.JobState(req.State) {
	case "", dfs.JobQueued, dfs.JobProcessing, dfs.JobDone, dfs.JobError:
	default:
		return nil, rpc.ToStatus(fmt.Errorf("%w: jobs: state %q: want queued, processing, done or error", dfs.ErrInvalid, req.State))
	}
	if req.StartAfter != "" {
		if _, err := dfs.ParseHash(req.StartAfter); err != nil {
			return nil, rpc.ToStatus(fmt.Errorf("%w: jobs: start after: %v", dfs.ErrInvalid, err))
		}
	}
	// One page at a time, each reading a bounded number of records, so an
	// answer (and this coordinator's memory and time) does not grow with
	// the number of jobs stored. An answer may hold fewer jobs than asked
	// for, even none, and still name the next page.
	limit := int(req.Limit)
	if limit <= 0 || limit > jobsPage {
		limit = jobsPage
	}
	page, err := s.meta.Jobs(ctx, req.State, req.StartAfter, limit)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	resp := &api.JobsResponse{NextStartAfter: page.Next, Jobs: make([]*api.Job, 0, len(page.Jobs))}
	for _, r := range page.Jobs {
		resp.Jobs = append(resp.Jobs, &api.Job{ContentHash: r.ContentHash, Processing: meta.ProcessingFromJob(r)})
	}
	return resp, nil
}

// processing returns the state of a content's job, or nil when it has none
// (content committed before processing existed) or it cannot be read now:
// a lookup does not fail for want of its processing state.
func (s *Server) processing(ctx context.Context, h dfs.ContentHash) *api.Processing {
	rec, err := s.meta.GetJob(ctx, h)
	if err != nil {
		if !errors.Is(err, dfs.ErrNotFound) {
			s.log.Debug("read job", "sha256", h.Short(), "err", err)
		}
		return nil
	}
	return meta.ProcessingFromJob(rec)
}
