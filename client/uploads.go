package client

import (
	"context"
	"fmt"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// Uploads in parts, as S3's multipart uploads: begin one with
// CreateUpload, stage each part with Stage and commit it with CommitPart
// (in any order, in parallel, again to replace it), then CompleteUpload
// commits the path as the chosen parts in order, reading nothing again;
// AbortUpload drops it. An upload left open is aborted by the cluster
// after its expiry (--multipart-expiry).

// Upload is an upload in parts that is open.
type Upload struct {
	ID          string
	Path        string
	Owner       string // the access key id that began it
	Initiated   time.Time
	ContentType string
	Attrs       map[string]string
}

func uploadFromAPI(u *api.Upload) Upload {
	return Upload{ID: u.GetId(), Path: u.GetPath(), Owner: u.GetOwner(), Initiated: time.Unix(0, u.GetInitiatedUnixNano()),
		ContentType: u.GetContentType(), Attrs: u.GetAttrs()}
}

// Part is a committed part of an upload.
type Part struct {
	Number   int
	Size     int64
	Content  dfs.ContentHash // the part's SHA-256
	Modified time.Time
	Attrs    map[string]string
}

// CreateUpload begins an upload in parts at path; contentType and attrs
// are the whole file's.
func (c *Client) CreateUpload(ctx context.Context, path, contentType string, attrs map[string]string) (Upload, error) {
	var resp *api.Upload
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.CreateUpload(ctx, &api.CreateUploadRequest{Path: path, ContentType: contentType, Attrs: attrs})
		return err
	})
	if err != nil {
		return Upload{}, fmt.Errorf("create upload at %s: %w", path, err)
	}
	return uploadFromAPI(resp), nil
}

// CommitPart commits the staged bytes as part number n (1 to 10000) of
// upload id, which must have been begun at the staged path. A part of that
// number committed before is replaced.
func (s *Staged) CommitPart(ctx context.Context, id string, n int) (PutResult, error) {
	s.req.UploadId, s.req.PartNumber = id, int32(n)
	res, err := s.Commit(ctx)
	if err != nil {
		return res, fmt.Errorf("part %d: %w", n, err)
	}
	return res, nil
}

// CompleteOptions tune the completion of an upload.
type CompleteOptions struct {
	// Attrs are added to those given at CreateUpload.
	Attrs map[string]string
	// IfAbsent and IfMatch are conditions, as in PutOptions.
	IfAbsent    bool
	IfMatch     string
	IfNoneMatch string
}

// CompleteUpload commits path as the given parts of upload id put
// together in that order (rising part numbers). The parts are dropped
// after.
func (c *Client) CompleteUpload(ctx context.Context, path, id string, parts []int, o CompleteOptions) (PutResult, error) {
	req := &api.CompleteUploadRequest{Path: path, UploadId: id, Attrs: o.Attrs, IfAbsent: o.IfAbsent, IfMatch: o.IfMatch, IfNoneMatch: o.IfNoneMatch}
	for _, n := range parts {
		req.PartNumbers = append(req.PartNumbers, int32(n))
	}
	var resp *api.CommitResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.CompleteUpload(ctx, req)
		return err
	})
	if err != nil {
		return PutResult{}, fmt.Errorf("complete upload %s: %w", id, err)
	}
	return PutResult{File: fileFromAPI(resp.File), Duplicate: resp.Duplicate}, nil
}

// AbortUpload drops upload id at path and its parts.
func (c *Client) AbortUpload(ctx context.Context, path, id string) error {
	err := c.call(ctx, func(cc api.CoordinatorClient) error {
		_, err := cc.AbortUpload(ctx, &api.AbortUploadRequest{Path: path, UploadId: id})
		return err
	})
	if err != nil {
		return fmt.Errorf("abort upload %s: %w", id, err)
	}
	return nil
}

// ListUploadsOptions select a page of open uploads.
type ListUploadsOptions struct {
	Prefix string // paths that begin with it
	// After (AfterPath, AfterID): the uploads of AfterPath with ids above
	// AfterID, or none of AfterPath if AfterID is empty, then those of
	// later paths. With AfterPrefix, none whose path begins with AfterPath.
	AfterPath, AfterID string
	AfterPrefix        bool
	Limit              int // at most 1000
}

// ListUploads lists open uploads by path and then id; more says whether
// others follow.
func (c *Client) ListUploads(ctx context.Context, o ListUploadsOptions) (ups []Upload, more bool, err error) {
	var resp *api.ListUploadsResponse
	err = c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.ListUploads(ctx, &api.ListUploadsRequest{Prefix: o.Prefix, AfterPath: o.AfterPath, AfterId: o.AfterID,
			AfterPrefix: o.AfterPrefix, Limit: int32(o.Limit)})
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("list uploads: %w", err)
	}
	for _, u := range resp.Uploads {
		ups = append(ups, uploadFromAPI(u))
	}
	return ups, resp.Truncated, nil
}

// ListParts returns upload id at path and up to limit of its committed
// parts numbered above after; more says whether others follow.
func (c *Client) ListParts(ctx context.Context, path, id string, after, limit int) (up Upload, parts []Part, more bool, err error) {
	var resp *api.ListPartsResponse
	err = c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.ListParts(ctx, &api.ListPartsRequest{Path: path, UploadId: id, After: int32(after), Limit: int32(limit)})
		return err
	})
	if err != nil {
		return Upload{}, nil, false, fmt.Errorf("list parts of %s: %w", id, err)
	}
	for _, p := range resp.Parts {
		h, _ := dfs.HashFromBytes(p.ContentHash)
		parts = append(parts, Part{Number: int(p.Number), Size: p.Size, Content: h, Modified: time.Unix(0, p.ModifiedUnixNano), Attrs: p.Attrs})
	}
	return uploadFromAPI(resp.Upload), parts, resp.Truncated, nil
}
