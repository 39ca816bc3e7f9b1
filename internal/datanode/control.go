package datanode

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"time"

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

// never is after every modification time: deleting "unless modified since
// never" deletes unconditionally.
var never = time.Unix(0, math.MaxInt64)

// DeleteChunks removes chunks, each only if it was not written or touched
// at or after unless_modified_since (when set), and answers how many it
// actually removed: chunks not stored, or kept by the condition, do not
// count. The coordinators hear of the removals before it answers (or
// ReportWait passed).
func (c *control) DeleteChunks(ctx context.Context, req *api.DeleteChunksRequest) (*api.DeleteChunksResponse, error) {
	if err := c.n.terms.admit(req.Term, "delete chunks"); err != nil {
		c.n.log.Warn("refused a deposed leader's command", "err", err)
		return nil, rpc.ToStatus(fmt.Errorf("node %s: %w", c.n.id, err))
	}
	since := never
	if req.UnlessModifiedSinceUnixNano != 0 {
		since = time.Unix(0, req.UnlessModifiedSinceUnixNano)
	}
	hashes := make([]dfs.ChunkHash, len(req.Hashes))
	for i, b := range req.Hashes {
		h, err := dfs.HashFromBytes(b)
		if err != nil {
			return nil, rpc.ToStatus(err)
		}
		hashes[i] = h
	}
	var deleted int64
	var deletedHashes [][]byte
	var failed error
	for _, h := range hashes {
		ok, err := c.n.store.DeleteIfUnmodifiedSince(h, since)
		if ok {
			deleted++
			deletedHashes = append(deletedHashes, h[:])
		}
		if err != nil {
			failed = err
			break
		}
	}
	c.n.announce(ctx)
	if failed != nil {
		return nil, status.Errorf(codes.Internal, "node %s: %v (%d deleted before)", c.n.id, failed, deleted)
	}
	return &api.DeleteChunksResponse{Deleted: deleted, DeletedHashes: deletedHashes}, nil
}

// TouchChunks marks the chunks the node holds as in use now.
func (c *control) TouchChunks(ctx context.Context, req *api.TouchChunksRequest) (*api.TouchChunksResponse, error) {
	var touched int64
	for _, b := range req.Hashes {
		h, err := dfs.HashFromBytes(b)
		if err != nil {
			return nil, rpc.ToStatus(err)
		}
		ok, err := c.n.store.Touch(h)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "node %s: %v", c.n.id, err)
		}
		if ok {
			touched++
		}
	}
	return &api.TouchChunksResponse{Touched: touched}, nil
}

// VerifyChunk re-hashes a chunk now. A corrupt copy is quarantined and
// reported corrupt, and the coordinators hear of it before the answer (or
// ReportWait passed).
func (c *control) VerifyChunk(ctx context.Context, req *api.VerifyChunkRequest) (*api.VerifyChunkResponse, error) {
	h, err := dfs.HashFromBytes(req.Hash)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	present, ok, err := c.n.store.Verify(ctx, h)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("node %s: %w", c.n.id, err))
	}
	if present && !ok {
		c.n.quarantineCorrupt(h, "verify")
		c.n.announce(ctx)
	}
	return &api.VerifyChunkResponse{Present: present, Ok: ok}, nil
}

// ReplicateChunk copies a local chunk to the targets, as a chain. The bytes
// are hashed as they leave: a local copy that turns out corrupt is withheld
// at its last byte (so no target can take it), quarantined and reported, and
// the call fails with FailedPrecondition naming the cause.
func (c *control) ReplicateChunk(ctx context.Context, req *api.ReplicateChunkRequest) (*api.ReplicateChunkResponse, error) {
	h, err := dfs.HashFromBytes(req.Hash)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	if len(req.Targets) == 0 {
		return nil, status.Error(codes.InvalidArgument, "replicate: no targets")
	}
	if err := c.n.terms.admit(req.Term, "replicate chunk "+h.Short()); err != nil {
		c.n.log.Warn("refused a deposed leader's command", "err", err)
		return nil, rpc.ToStatus(fmt.Errorf("node %s: %w", c.n.id, err))
	}
	f, size, err := c.n.store.Open(h)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("replicate chunk %s: node %s: %w", h.Short(), c.n.id, err))
	}
	defer f.Close()
	chain := make([]dataplane.Hop, len(req.Targets))
	for i, t := range req.Targets {
		chain[i] = dataplane.Hop{ID: dfs.NodeID(t.Id), Addr: t.Addr}
	}
	body := newVerifyingReader(io.NewSectionReader(f, 0, size), h, size)
	// forward returns only once the transport has let go of body.
	res := c.n.forward(ctx, h, chain, body, size)
	if body.bad() {
		c.n.quarantineCorrupt(h, "replicate")
		c.n.announce(ctx)
		return nil, status.Errorf(codes.FailedPrecondition, "replicate chunk %s: node %s: local copy is corrupt (%v); quarantined",
			h.Short(), c.n.id, body.err)
	}
	if len(res.Stored) == 0 {
		return nil, status.Errorf(codes.Unavailable, "replicate chunk %s: stored nowhere: %v", h.Short(), res.Failed)
	}
	out := &api.ReplicateChunkResponse{}
	for _, id := range res.Stored {
		out.Stored = append(out.Stored, string(id))
	}
	return out, nil
}

// verifyingReader hashes a chunk's bytes as they are read. When the last
// byte is read and the bytes do not match the chunk's name, it returns an
// error instead of that last piece, so a receiver sees a cut-off body
// rather than a complete wrong one.
type verifyingReader struct {
	r    io.Reader
	want dfs.ChunkHash
	size int64
	hw   hash.Hash
	n    int64
	err  error // set once the bytes are known to be wrong
}

func newVerifyingReader(r io.Reader, want dfs.ChunkHash, size int64) *verifyingReader {
	return &verifyingReader{r: r, want: want, size: size, hw: sha256.New()}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	m, err := v.r.Read(p)
	v.hw.Write(p[:m])
	v.n += int64(m)
	if v.n >= v.size && (m > 0 || v.size == 0) {
		var got dfs.Hash
		v.hw.Sum(got[:0])
		if got != v.want {
			v.err = fmt.Errorf("%w: %d bytes hash to %s", dfs.ErrHashMismatch, v.n, got.Short())
			return 0, v.err
		}
	}
	if errors.Is(err, io.EOF) && v.n < v.size {
		return m, io.ErrUnexpectedEOF
	}
	return m, err
}

// bad reports whether the bytes read did not match the chunk's name. Call
// it once no one reads any more.
func (v *verifyingReader) bad() bool { return errors.Is(v.err, dfs.ErrHashMismatch) }
