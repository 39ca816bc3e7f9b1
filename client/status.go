package client

import (
	"context"

	"github.com/dfs-store/dfs/api"
)

// Status reports the control plane: the leader coordinator, every
// coordinator and whether it answers, and etcd's members and health.
func (c *Client) Status(ctx context.Context) (*api.StatusResponse, error) {
	var resp *api.StatusResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.Status(ctx, &api.StatusRequest{})
		return err
	})
	return resp, err
}
