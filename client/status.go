package client

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/rpc"
)

// Status reports the control plane: the leader coordinator, every
// coordinator and whether it answers, and etcd's members and health. It
// asks the first coordinator that answers, and probes the coordinators this
// client was given that the answer does not list (one that crashed long ago
// is no longer announced in etcd), so none it knows of is left out.
func (c *Client) Status(ctx context.Context) (*api.StatusResponse, error) {
	var resp *api.StatusResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) error {
		r, err := cc.Status(ctx, &api.StatusRequest{})
		resp = r
		return err
	})
	if err != nil {
		return nil, err
	}
	listed := map[string]bool{}
	for _, cs := range resp.Coordinators {
		listed[cs.Addr] = true
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, addr := range c.addrs {
		if listed[addr] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs := rpc.ProbeCoordinator(ctx, c.coords[i], addr)
			mu.Lock()
			resp.Coordinators = append(resp.Coordinators, cs)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.SortFunc(resp.Coordinators, func(a, b *api.CoordinatorStatus) int { return strings.Compare(a.Addr, b.Addr) })
	return resp, nil
}

// Leader returns the leader coordinator's address and term as the first
// coordinator that answers knows them ("" while there is none).
func (c *Client) Leader(ctx context.Context) (string, int64, error) {
	var resp *api.StatusResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) error {
		r, err := cc.Status(ctx, &api.StatusRequest{Local: true})
		resp = r
		return err
	})
	if err != nil {
		return "", 0, err
	}
	return resp.Leader, resp.Term, nil
}

// Counters returns the cluster's chunk-health counters, read in O(1) from
// a coordinator's memory: the leader's when it answers (it runs repair and
// garbage collection, so its work counts are the ones that move), or else
// the first coordinator's that answers. Every coordinator is asked at once;
// the leader's answer ends the wait, and no coordinator is waited for
// longer than a liveness probe.
func (c *Client) Counters(ctx context.Context) (*api.CountersResponse, error) {
	type answer struct {
		resp *api.CountersResponse
		err  error
	}
	ctx, cancel := context.WithTimeout(ctx, rpc.ProbeTimeout)
	defer cancel()
	answers := make(chan answer, len(c.coords))
	for _, cc := range c.coords {
		go func() {
			r, err := cc.Counters(ctx, &api.CountersRequest{})
			answers <- answer{r, err}
		}()
	}
	var first *api.CountersResponse
	var err error
	for range c.coords {
		a := <-answers
		switch {
		case a.err != nil:
			err = a.err
		case a.resp.Leader:
			return a.resp, nil
		case first == nil:
			first = a.resp
		}
	}
	if first != nil {
		return first, nil
	}
	if rpc.Unreachable(err) {
		return nil, fmt.Errorf("%w: no coordinator reachable at %s: %v", dfs.ErrUnavailable, strings.Join(c.cfg.Coordinators, ","), rpc.FromStatus(err))
	}
	return nil, rpc.FromStatus(err)
}
