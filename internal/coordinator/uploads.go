package coordinator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/rpc"
)

// Uploads in parts (S3 multipart); meta/uploads.go has the records. A
// part is staged and committed as a file is, into its upload; completing
// puts the parts' chunk lists together under a name made from the parts'
// hashes (dfs.PartsHash), so no byte is read again to complete, and the
// whole content's SHA-256 is computed by its post-upload job.

func uploadToAPI(r *api.UploadRecord) *api.Upload {
	return &api.Upload{Id: r.Id, Path: r.Path, Owner: r.Owner, InitiatedUnixNano: r.InitiatedUnixNano,
		ContentType: r.ContentType, Attrs: r.Attrs}
}

// CreateUpload implements api.CoordinatorServer.
func (s *Server) CreateUpload(ctx context.Context, req *api.CreateUploadRequest) (*api.Upload, error) {
	path, err := dfs.CleanPath(req.Path)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("create upload: %w", err))
	}
	if err := s.may(ctx, path, access.Write); err != nil {
		return nil, err
	}
	if err := checkAttrs(req.Attrs); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "create upload at %s: %v", path, err)
	}
	rec, err := s.meta.CreateUpload(ctx, path, ownerOf(s.caller(ctx)), req.ContentType, req.Attrs)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return uploadToAPI(rec), nil
}

// CompleteUpload implements api.CoordinatorServer.
func (s *Server) CompleteUpload(ctx context.Context, req *api.CompleteUploadRequest) (*api.CommitResponse, error) {
	path, err := dfs.CleanPath(req.Path)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("complete upload: %w", err))
	}
	if err := s.may(ctx, path, access.Write); err != nil {
		return nil, err
	}
	u := meta.Upload{Path: path, ID: req.UploadId}
	if !meta.ValidUploadID(u.ID) {
		return nil, rpc.ToStatus(fmt.Errorf("upload %q: %w", u.ID, meta.ErrNoUpload))
	}
	up, err := s.meta.GetUploadAny(ctx, u)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	if up.State == api.UploadRecord_COMPLETED {
		// Completed already: a completion sent again gets the answer the
		// first got, while the path still holds what it made.
		if f, err := s.meta.GetFile(ctx, path); err == nil && string(f.Content[:]) == string(up.ContentHash) {
			return &api.CommitResponse{File: fileToAPI(f), Duplicate: true}, nil
		}
		return nil, rpc.ToStatus(fmt.Errorf("upload %s of %s: %w", u.ID, path, meta.ErrNoUpload))
	}
	if up.State != api.UploadRecord_OPEN {
		return nil, rpc.ToStatus(fmt.Errorf("upload %s of %s: %w", u.ID, path, meta.ErrNoUpload))
	}
	if len(req.PartNumbers) == 0 || len(req.PartNumbers) > meta.MaxParts {
		return nil, status.Errorf(codes.InvalidArgument, "complete upload %s: %d parts named, want 1 to %d", u.ID, len(req.PartNumbers), meta.MaxParts)
	}
	numbers := make([]int, len(req.PartNumbers))
	for i, n := range req.PartNumbers {
		if n < 1 || n > meta.MaxParts || (i > 0 && n <= req.PartNumbers[i-1]) {
			return nil, status.Errorf(codes.InvalidArgument, "complete upload %s: part numbers must rise from 1 to %d; %d follows %v", u.ID, meta.MaxParts, n, req.PartNumbers[max(0, i-1)])
		}
		numbers[i] = int(n)
	}
	parts, err := s.meta.UploadPartsNumbered(ctx, u.ID, numbers)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("complete upload %s: %w", u.ID, err))
	}
	attrs := maps.Clone(up.Attrs)
	if attrs == nil {
		attrs = map[string]string{}
	}
	maps.Copy(attrs, req.Attrs)
	if err := checkAttrs(attrs); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "complete upload %s: %v", u.ID, err)
	}
	// The whole's chunk list is its parts' lists one after another.
	var content dfs.Content
	for _, p := range parts {
		pc, err := s.meta.GetContent(ctx, p.File.Content)
		if err != nil {
			return nil, rpc.ToStatus(fmt.Errorf("complete upload %s: part %d: %w", u.ID, p.Number, err))
		}
		content.Parts = append(content.Parts, dfs.Part{Hash: pc.Hash, Size: pc.Size})
		content.Chunks = append(content.Chunks, pc.Chunks...)
		content.Size += pc.Size
	}
	if content.Size > s.cfg.MaxFileSize {
		return nil, status.Errorf(codes.InvalidArgument, "complete upload %s: %d bytes, more than the largest file this cluster takes (%d, --max-file-size)", u.ID, content.Size, s.cfg.MaxFileSize)
	}
	content.Hash = dfs.PartsHash(content.Parts)
	s.beginCommit(content.Chunks)
	defer s.endCommit(content.Chunks)
	if err := s.waitReplicas(ctx, content.Chunks); err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("complete upload %s: %w", u.ID, err))
	}
	info, dup, err := s.commitChecked(ctx, meta.Commit{
		File:           dfs.FileInfo{Path: path, ContentType: up.ContentType, Attrs: attrs},
		Content:        content,
		QueueJob:       true,
		Upload:         &u,
		CompleteUpload: true,
		IfAbsent:       req.IfAbsent,
		IfMatch:        req.IfMatch,
		IfNoneMatch:    req.IfNoneMatch,
	})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	// The parts' references go; the whole holds its chunks now. What is
	// left undone here, the clean-up finishes.
	if err := s.meta.DropUpload(ctx, u); err != nil {
		s.log.Warn("complete upload: drop its parts", "upload", u.ID, "err", err)
	}
	s.log.Debug("upload completed", "path", path, "upload", u.ID, "parts", len(parts), "size", content.Size, "duplicate", dup)
	return &api.CommitResponse{File: fileToAPI(info), Duplicate: dup}, nil
}

// AbortUpload implements api.CoordinatorServer.
func (s *Server) AbortUpload(ctx context.Context, req *api.AbortUploadRequest) (*api.AbortUploadResponse, error) {
	path, err := dfs.CleanPath(req.Path)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("abort upload: %w", err))
	}
	if err := s.may(ctx, path, access.Write); err != nil {
		return nil, err
	}
	u := meta.Upload{Path: path, ID: req.UploadId}
	if !meta.ValidUploadID(u.ID) {
		return nil, rpc.ToStatus(fmt.Errorf("upload %q: %w", u.ID, meta.ErrNoUpload))
	}
	if err := s.meta.AbortUpload(ctx, u); err != nil {
		return nil, rpc.ToStatus(err)
	}
	if err := s.meta.DropUpload(ctx, u); err != nil {
		s.log.Warn("abort upload: drop its parts", "upload", u.ID, "err", err)
	}
	return &api.AbortUploadResponse{}, nil
}

// ListUploads implements api.CoordinatorServer.
func (s *Server) ListUploads(ctx context.Context, req *api.ListUploadsRequest) (*api.ListUploadsResponse, error) {
	if err := s.may(ctx, req.Prefix, access.Read); err != nil {
		return nil, err
	}
	limit := int(req.Limit)
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	ups, more, err := s.meta.ListUploads(ctx, req.Prefix, req.AfterPath, req.AfterId, req.AfterPrefix, limit)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	resp := &api.ListUploadsResponse{Truncated: more}
	for _, u := range ups {
		resp.Uploads = append(resp.Uploads, uploadToAPI(u))
	}
	return resp, nil
}

// ListParts implements api.CoordinatorServer.
func (s *Server) ListParts(ctx context.Context, req *api.ListPartsRequest) (*api.ListPartsResponse, error) {
	path, err := dfs.CleanPath(req.Path)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("list parts: %w", err))
	}
	if err := s.may(ctx, path, access.Read); err != nil {
		return nil, err
	}
	up, err := s.meta.GetUpload(ctx, meta.Upload{Path: path, ID: req.UploadId})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	limit := int(req.Limit)
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	parts, more, err := s.meta.UploadParts(ctx, up.Id, int(max(0, req.After)), limit)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	resp := &api.ListPartsResponse{Upload: uploadToAPI(up), Truncated: more}
	for _, p := range parts {
		resp.Parts = append(resp.Parts, &api.Part{Number: int32(p.Number), Size: p.File.Size, ContentHash: p.File.Content[:],
			ModifiedUnixNano: p.File.Modified.UnixNano(), Attrs: p.File.Attrs})
	}
	return resp, nil
}

// uploadLoop, on the leader, aborts uploads older than UploadExpiry and
// finishes the drops of completed and aborted ones that a stopped
// coordinator left.
func (s *Server) uploadLoop() {
	defer s.wg.Done()
	every := min(time.Hour, max(s.cfg.UploadExpiry/4, 100*time.Millisecond))
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
		n, err := s.meta.CleanUploads(s.ctx, time.Now().Add(-s.cfg.UploadExpiry))
		if err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("clean uploads", "err", err)
		}
		if n > 0 {
			s.log.Info("uploads cleaned", "dropped", n)
		}
	}
}
