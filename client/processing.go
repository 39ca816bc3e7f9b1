package client

import (
	"context"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// StatWithJob returns a file's record and the processing state of its
// content, nil when the content has no job record.
func (c *Client) StatWithJob(ctx context.Context, path string) (dfs.FileInfo, *api.Processing, error) {
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
	return fileFromAPI(resp.File), resp.Processing, nil
}

// LocateContentWithJob is LocateContent that also returns the content's
// processing state, nil when the content has no job record.
func (c *Client) LocateContentWithJob(ctx context.Context, h dfs.ContentHash) (Location, *api.Processing, error) {
	var resp *api.LookupResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.LookupContent(ctx, &api.LookupContentRequest{ContentHash: h[:]})
		return err
	})
	if err != nil {
		return Location{}, nil, err
	}
	loc, err := locationFromAPI(resp)
	return loc, resp.Processing, err
}
