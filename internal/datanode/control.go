package datanode

import (
	"context"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/rpc"
)

// control implements the datanode's gRPC control API.
type control struct {
	api.UnimplementedDatanodeServer
	n *Node
}

func (c *control) Info(ctx context.Context, _ *api.InfoRequest) (*api.InfoResponse, error) {
	return &api.InfoResponse{Node: c.n.apiNode(), Stats: c.n.stats()}, nil
}

func (c *control) DeleteChunks(ctx context.Context, req *api.DeleteChunksRequest) (*api.DeleteChunksResponse, error) {
	var deleted int64
	for _, b := range req.Hashes {
		h, err := dfs.HashFromBytes(b)
		if err != nil {
			return nil, rpc.ToStatus(err)
		}
		if _, err := c.n.store.Stat(h); err != nil {
			continue
		}
		if err := c.n.store.Delete(h); err != nil {
			return nil, status.Errorf(codes.Internal, "delete chunk %s: %v", h.Short(), err)
		}
		deleted++
	}
	c.n.announce(ctx)
	return &api.DeleteChunksResponse{Deleted: deleted}, nil
}

// ReplicateChunk copies a local chunk to the targets, as a chain.
func (c *control) ReplicateChunk(ctx context.Context, req *api.ReplicateChunkRequest) (*api.ReplicateChunkResponse, error) {
	h, err := dfs.HashFromBytes(req.Hash)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	if len(req.Targets) == 0 {
		return nil, status.Error(codes.InvalidArgument, "replicate: no targets")
	}
	f, size, err := c.n.store.Open(h)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("replicate chunk %s: %w", h.Short(), err))
	}
	defer f.Close()
	chain := make([]dataplane.Hop, len(req.Targets))
	for i, t := range req.Targets {
		chain[i] = dataplane.Hop{ID: dfs.NodeID(t.Id), Addr: t.Addr}
	}
	res := c.n.forward(ctx, h, chain, io.NewSectionReader(f, 0, size), size)
	if len(res.Stored) == 0 {
		return nil, status.Errorf(codes.Unavailable, "replicate chunk %s: stored nowhere: %v", h.Short(), res.Failed)
	}
	out := &api.ReplicateChunkResponse{}
	for _, id := range res.Stored {
		out.Stored = append(out.Stored, string(id))
	}
	return out, nil
}
