package client

import (
	"context"
	"fmt"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// VersionListOptions select a page of versions.
type VersionListOptions struct {
	// Prefix, or with Exact one path.
	Prefix string
	Exact  bool
	// Start after this version: with an empty VersionMarker, after every
	// version of KeyMarker.
	KeyMarker, VersionMarker string
	Limit                    int
}

// VersionListing is one page of versions.
type VersionListing struct {
	Versions                       []dfs.Version
	Truncated                      bool
	NextKeyMarker, NextVersionMark string
}

func versionFromAPI(v *api.FileVersion) dfs.Version {
	out := dfs.Version{FileInfo: fileFromAPI(v.File), DeleteMarker: v.DeleteMarker, Latest: v.Latest}
	if v.ExpiresUnixNano != 0 {
		out.Expires = time.Unix(0, v.ExpiresUnixNano)
	}
	return out
}

// ListVersions returns one page of the versions under a prefix (or of one
// path): by path, each path's newest first.
func (c *Client) ListVersions(ctx context.Context, o VersionListOptions) (VersionListing, error) {
	var resp *api.ListVersionsResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.ListVersions(ctx, &api.ListVersionsRequest{Prefix: o.Prefix, Exact: o.Exact,
			KeyMarker: o.KeyMarker, VersionMarker: o.VersionMarker, Limit: int32(o.Limit)})
		return err
	})
	if err != nil {
		return VersionListing{}, err
	}
	out := VersionListing{Truncated: resp.Truncated, NextKeyMarker: resp.NextKeyMarker, NextVersionMark: resp.NextVersionMarker}
	for _, v := range resp.Versions {
		out.Versions = append(out.Versions, versionFromAPI(v))
	}
	return out, nil
}

// Versions returns every version of path, newest first: the current file
// (if any), then the earlier versions and delete markers its bucket keeps.
func (c *Client) Versions(ctx context.Context, path string) ([]dfs.Version, error) {
	path, err := dfs.CleanPath(path)
	if err != nil {
		return nil, err
	}
	var out []dfs.Version
	o := VersionListOptions{Prefix: path, Exact: true}
	for {
		l, err := c.ListVersions(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("versions of %s: %w", path, err)
		}
		out = append(out, l.Versions...)
		if !l.Truncated {
			return out, nil
		}
		o.KeyMarker, o.VersionMarker = l.NextKeyMarker, l.NextVersionMark
	}
}

// DeleteVersion removes version id of path for good. Deleting the
// current file's version brings back the newest earlier one unless that
// is a delete marker.
func (c *Client) DeleteVersion(ctx context.Context, path, id string) (dfs.Version, error) {
	path, err := dfs.CleanPath(path)
	if err != nil {
		return dfs.Version{}, err
	}
	var resp *api.DeleteVersionResponse
	err = c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.DeleteVersion(ctx, &api.DeleteVersionRequest{Path: path, VersionId: id})
		return err
	})
	if err != nil {
		return dfs.Version{}, fmt.Errorf("delete version %s of %s: %w", id, path, err)
	}
	return versionFromAPI(resp.Deleted), nil
}

// Restore makes version id of path its current file again: a commit of
// that version's content, which sends no bytes. The file it replaces is
// kept as an earlier version as any overwrite's is.
func (c *Client) Restore(ctx context.Context, path, id string) (dfs.FileInfo, error) {
	loc, err := c.LocateVersion(ctx, path, id)
	if err != nil {
		return dfs.FileInfo{}, fmt.Errorf("restore %s: %w", path, err)
	}
	req := &api.CommitRequest{Path: loc.File.Path, ContentHash: hashBytes(dfs.Hash(loc.Content)), Size: loc.Size,
		ContentType: loc.File.ContentType, Attrs: loc.File.Attrs}
	for _, ch := range loc.Chunks {
		req.Chunks = append(req.Chunks, &api.ChunkSpec{Hash: hashBytes(ch.Hash), Size: ch.Size})
	}
	resp, err := c.commit(ctx, req)
	if err != nil {
		return dfs.FileInfo{}, fmt.Errorf("restore version %s of %s: %w", id, path, err)
	}
	return fileFromAPI(resp.File), nil
}

// RenameOptions qualify a rename.
type RenameOptions struct {
	// IfAbsent renames only if dst holds no file (else an error wrapping
	// dfs.ErrPrecondition).
	IfAbsent bool
}

// Rename moves the file at src to dst in one transaction: no byte is read
// or sent.
func (c *Client) Rename(ctx context.Context, src, dst string, o RenameOptions) (dfs.FileInfo, error) {
	src, err := dfs.CleanPath(src)
	if err != nil {
		return dfs.FileInfo{}, err
	}
	if dst, err = dfs.CleanPath(dst); err != nil {
		return dfs.FileInfo{}, err
	}
	var resp *api.CommitResponse
	err = c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.Rename(ctx, &api.RenameRequest{Src: src, Dst: dst, IfAbsent: o.IfAbsent})
		return err
	})
	if err != nil {
		return dfs.FileInfo{}, fmt.Errorf("move %s to %s: %w", src, dst, err)
	}
	return fileFromAPI(resp.File), nil
}

// Versioning is how a bucket keeps earlier versions of its paths.
type Versioning struct {
	// Mode is "default" (the cluster's retention), "enabled" (the
	// bucket's own Retention; 0: until purged) or "suspended" (none).
	Mode      string
	Retention time.Duration
	// Keeps says whether earlier versions are kept in effect, and
	// Retention then how long.
	Keeps bool
}

func versioningFromAPI(v *api.BucketVersioning) Versioning {
	return Versioning{Mode: v.Mode, Retention: time.Duration(v.RetentionSeconds) * time.Second, Keeps: v.Keeps}
}

// SetVersioning sets how bucket keeps earlier versions.
func (c *Client) SetVersioning(ctx context.Context, bucket string, v Versioning) (Versioning, error) {
	var resp *api.BucketVersioning
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.SetVersioning(ctx, &api.SetVersioningRequest{Bucket: bucket,
			Versioning: &api.BucketVersioning{Mode: v.Mode, RetentionSeconds: int64(v.Retention / time.Second)}})
		return err
	})
	if err != nil {
		return Versioning{}, fmt.Errorf("set versioning of %s: %w", bucket, err)
	}
	return versioningFromAPI(resp), nil
}

// GetVersioning returns how bucket keeps earlier versions.
func (c *Client) GetVersioning(ctx context.Context, bucket string) (Versioning, error) {
	var resp *api.BucketVersioning
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.GetVersioning(ctx, &api.GetVersioningRequest{Bucket: bucket})
		return err
	})
	if err != nil {
		return Versioning{}, fmt.Errorf("versioning of %s: %w", bucket, err)
	}
	return versioningFromAPI(resp), nil
}
