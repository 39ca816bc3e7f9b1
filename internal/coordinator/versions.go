package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/rpc"
)

// fileVersion returns the current file at path, or version id of it. A
// delete marker has no content to read: asking for one is an error
// wrapping dfs.ErrInvalid (S3: MethodNotAllowed).
func (s *Server) fileVersion(ctx context.Context, path, id string) (dfs.FileInfo, error) {
	if id == "" {
		return s.meta.GetFile(ctx, path)
	}
	v, err := s.meta.GetVersion(ctx, path, id)
	if err != nil {
		return dfs.FileInfo{}, err
	}
	if v.DeleteMarker {
		return dfs.FileInfo{}, fmt.Errorf("%w: version %s of %q is a delete marker", errDeleteMarker, id, path)
	}
	return v.FileInfo, nil
}

// errDeleteMarker: a read of a version that is a delete marker.
var errDeleteMarker = fmt.Errorf("%w: delete marker", dfs.ErrInvalid)

func versionToAPI(v dfs.Version) *api.FileVersion {
	out := &api.FileVersion{File: fileToAPI(v.FileInfo), DeleteMarker: v.DeleteMarker, Latest: v.Latest}
	if v.DeleteMarker {
		out.File.ContentHash = nil
	}
	if !v.Expires.IsZero() {
		out.ExpiresUnixNano = v.Expires.UnixNano()
	}
	return out
}

// ListVersions implements api.CoordinatorServer.
func (s *Server) ListVersions(ctx context.Context, req *api.ListVersionsRequest) (*api.ListVersionsResponse, error) {
	prefix := strings.TrimPrefix(req.Prefix, "/")
	if req.Exact {
		p, err := dfs.CleanPath(prefix)
		if err != nil {
			return nil, rpc.ToStatus(err)
		}
		prefix = p
	} else if len(prefix) > dfs.MaxPathLen {
		return nil, rpc.ToStatus(fmt.Errorf("%w: prefix longer than %d bytes", dfs.ErrBadPath, dfs.MaxPathLen))
	}
	if req.VersionMarker != "" && !dfs.ValidVersionID(req.VersionMarker) {
		return nil, status.Errorf(codes.InvalidArgument, "version marker %.40q: want 20 hex digits", req.VersionMarker)
	}
	// One bucket at a time, all of it or nothing.
	p := s.caller(ctx)
	if !p.Admin {
		if !req.Exact && !strings.Contains(prefix, "/") {
			return nil, denied(p, "list versions across buckets: give a prefix within one bucket")
		}
		if err := s.may(ctx, prefix, access.Read); err != nil {
			return nil, err
		}
	}
	l, err := s.meta.ListVersions(ctx, prefix, req.Exact, req.KeyMarker, req.VersionMarker, int(req.Limit))
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	resp := &api.ListVersionsResponse{Truncated: l.Truncated, NextKeyMarker: l.NextKey, NextVersionMarker: l.NextVersion}
	for _, v := range l.Versions {
		resp.Versions = append(resp.Versions, versionToAPI(v))
	}
	return resp, nil
}

// DeleteVersion implements api.CoordinatorServer.
func (s *Server) DeleteVersion(ctx context.Context, req *api.DeleteVersionRequest) (*api.DeleteVersionResponse, error) {
	path, err := dfs.CleanPath(req.Path)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	if err := s.may(ctx, path, access.Write); err != nil {
		return nil, err
	}
	v, err := s.meta.DeleteVersion(ctx, path, req.VersionId)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	s.log.Info("version deleted", "path", path, "version", req.VersionId, "by", s.caller(ctx).Who())
	return &api.DeleteVersionResponse{Deleted: versionToAPI(v)}, nil
}

// Rename implements api.CoordinatorServer. Moving a file needs the read
// and write rights on its path and the write right on the destination.
func (s *Server) Rename(ctx context.Context, req *api.RenameRequest) (*api.CommitResponse, error) {
	src, err := dfs.CleanPath(req.Src)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	dst, err := dfs.CleanPath(req.Dst)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	if err := s.may(ctx, src, access.Read|access.Write); err != nil {
		return nil, err
	}
	if err := s.may(ctx, dst, access.Write); err != nil {
		return nil, err
	}
	f, err := s.meta.Rename(ctx, src, dst, req.IfAbsent)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &api.CommitResponse{File: fileToAPI(f), Duplicate: true}, nil
}

func versioningToAPI(v meta.Versioning, keep bool, d time.Duration) *api.BucketVersioning {
	mode := "default"
	switch v.Mode {
	case api.Versioning_VERSIONING_ENABLED:
		mode = "enabled"
	case api.Versioning_VERSIONING_SUSPENDED:
		mode = "suspended"
	}
	return &api.BucketVersioning{Mode: mode, RetentionSeconds: int64(d / time.Second), Keeps: keep}
}

// SetVersioning implements api.CoordinatorServer: the bucket's owner right
// or an admin key.
func (s *Server) SetVersioning(ctx context.Context, req *api.SetVersioningRequest) (*api.BucketVersioning, error) {
	if err := access.CheckBucket(req.Bucket); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p := s.caller(ctx)
	if !p.Can(req.Bucket, access.Owner) {
		if !s.bucketExists(ctx, req.Bucket) {
			return nil, status.Errorf(codes.NotFound, "bucket %q: not found", req.Bucket)
		}
		return nil, denied(p, "set versioning of bucket %q: that needs its owner right or an admin key", req.Bucket)
	}
	var v meta.Versioning
	switch req.GetVersioning().GetMode() {
	case "default":
	case "enabled":
		v.Mode = api.Versioning_VERSIONING_ENABLED
		r := req.GetVersioning().GetRetentionSeconds()
		if max := int64(meta.MaxRetention / time.Second); r < 0 || r > max {
			return nil, status.Errorf(codes.InvalidArgument, "retention of %d s: want 0 (until purged) to %d (100 years)", r, max)
		}
		v.Retention = time.Duration(r) * time.Second
	case "suspended":
		v.Mode = api.Versioning_VERSIONING_SUSPENDED
	default:
		return nil, status.Errorf(codes.InvalidArgument, "versioning mode %.20q: want default, enabled or suspended", req.GetVersioning().GetMode())
	}
	if err := s.meta.SetVersioning(ctx, req.Bucket, v); err != nil {
		return nil, rpc.ToStatus(err)
	}
	s.log.Info("bucket versioning set", "bucket", req.Bucket, "mode", req.GetVersioning().GetMode(), "retention", v.Retention, "by", p.Who())
	return s.GetVersioning(ctx, &api.GetVersioningRequest{Bucket: req.Bucket})
}

// GetVersioning implements api.CoordinatorServer.
func (s *Server) GetVersioning(ctx context.Context, req *api.GetVersioningRequest) (*api.BucketVersioning, error) {
	if err := access.CheckBucket(req.Bucket); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.may(ctx, req.Bucket+"/", access.Read); err != nil {
		return nil, err
	}
	v, keep, d, err := s.meta.GetVersioning(ctx, req.Bucket)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return versioningToAPI(v, keep, d), nil
}

// versionLoop, on the leader, drops the versions whose retention is over.
// It reads only the expiry keys that are due.
func (s *Server) versionLoop() {
	defer s.wg.Done()
	every := time.Minute
	if r := s.cfg.VersionRetention; r > 0 && r/4 < every {
		every = max(r/4, 100*time.Millisecond)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		if !s.IsLeader() {
			continue
		}
		n, err := s.meta.ExpireVersions(s.ctx, time.Now())
		if err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("expire versions", "err", err)
		}
		if n > 0 {
			s.log.Info("versions expired", "dropped", n)
		}
	}
}
