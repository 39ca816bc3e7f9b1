package client

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/rpc"
)

// GetOptions select part of a file and watch the transfer.
type GetOptions struct {
	// Offset and Length select a byte range; Length < 0 or 0 means to the end.
	Offset, Length int64
	// Progress, if set, is called with the bytes written so far.
	Progress func(done int64)
	// Version, if set, reads that earlier version of the path (see
	// Client.Versions).
	Version string
}

// Get writes the bytes of path (or the range o selects) to w, and returns
// the file's record. Every chunk is verified against its hash before a byte
// of it is written.
func (c *Client) Get(ctx context.Context, path string, w io.Writer, o GetOptions) (dfs.FileInfo, error) {
	ctx = rpc.WithRequestID(ctx)
	loc, err := c.LocateForRead(ctx, path, o.Version)
	if err != nil {
		return dfs.FileInfo{}, fmt.Errorf("get: %w", err)
	}
	if err := c.Read(ctx, loc, w, o); err != nil {
		return loc.File, fmt.Errorf("get %s: %w", path, err)
	}
	return loc.File, nil
}

// GetContent writes the bytes of a content (or a range of it) to w.
func (c *Client) GetContent(ctx context.Context, h dfs.ContentHash, w io.Writer, o GetOptions) error {
	loc, err := c.LocateContent(ctx, h)
	if err != nil {
		return fmt.Errorf("get content %s: %w", h.Short(), err)
	}
	if err := c.Read(ctx, loc, w, o); err != nil {
		return fmt.Errorf("get content %s: %w", h.Short(), err)
	}
	return nil
}

type fetched struct {
	buf *[]byte
	err error
}

// Read writes the bytes of a located file (or the range o selects) to w,
// fetching several chunks at once and writing them in order.
func (c *Client) Read(ctx context.Context, loc Location, w io.Writer, o GetOptions) error {
	if o.Offset < 0 || o.Offset > loc.Size {
		return fmt.Errorf("offset %d outside the file's %d bytes", o.Offset, loc.Size)
	}
	end := loc.Size
	if o.Length > 0 && o.Offset+o.Length < end {
		end = o.Offset + o.Length
	}
	// The chunks that overlap [Offset, end).
	var chunks []dfs.ChunkLocation
	for _, ch := range loc.Chunks {
		if ch.Offset+ch.Size > o.Offset && ch.Offset < end {
			chunks = append(chunks, ch)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	results := make([]chan fetched, len(chunks))
	for i := range results {
		results[i] = make(chan fetched, 1)
	}
	window := make(chan struct{}, c.cfg.Downloads)
	go func() {
		for i, ch := range chunks {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				buf, err := c.fetchChunk(ctx, ch, i)
				results[i] <- fetched{buf, err}
			}()
		}
	}()

	var written int64
	var err error
	for i, ch := range chunks {
		var f fetched
		select {
		case f = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if f.err != nil {
			err = f.err
			break
		}
		data := (*f.buf)[:ch.Size]
		lo := max(o.Offset-ch.Offset, 0)
		hi := min(end-ch.Offset, ch.Size)
		n, werr := w.Write(data[lo:hi])
		c.bufs.Put(f.buf)
		<-window
		written += int64(n)
		if werr != nil {
			err = werr
			break
		}
		if o.Progress != nil {
			o.Progress(written)
		}
	}
	// On error, fetches still in flight end with the cancelled context;
	// their buffers are left to the garbage collector.
	return err
}

// fetchChunk reads a whole chunk from one of its replicas and verifies it,
// trying the others in turn. Starting points are spread over the replicas
// so that the load of a download falls evenly on them. A replica whose
// bytes do not match the hash is reported to the coordinator.
func (c *Client) fetchChunk(ctx context.Context, ch dfs.ChunkLocation, i int) (*[]byte, error) {
	if len(ch.Replicas) == 0 {
		return nil, fmt.Errorf("chunk %s at offset %d: no live replica: %w", ch.Hash.Short(), ch.Offset, dfs.ErrUnavailable)
	}
	buf := c.bufs.Get(int(ch.Size))
	start := (i + rand.IntN(len(ch.Replicas))) % len(ch.Replicas)
	var local LocalNode
	if c.cfg.Local != nil {
		for k := range ch.Replicas {
			if ln := c.cfg.Local(ch.Replicas[(start+k)%len(ch.Replicas)].Node); ln != nil {
				start, local = (start+k)%len(ch.Replicas), ln
				break
			}
		}
	}
	var errs []string
	for k := range ch.Replicas {
		r := ch.Replicas[(start+k)%len(ch.Replicas)]
		var err error
		if k == 0 && local != nil {
			err = readLocal(local, r, ch.ChunkRef, (*buf)[:ch.Size])
		} else {
			err = c.fetchFrom(ctx, r, ch.ChunkRef, ch.Token, (*buf)[:ch.Size])
		}
		if err == nil {
			return buf, nil
		}
		if ctx.Err() != nil {
			c.bufs.Put(buf)
			return nil, ctx.Err()
		}
		if errors.Is(err, dfs.ErrHashMismatch) {
			c.reportBad(ch.Hash, r.Node, err.Error())
		}
		errs = append(errs, err.Error())
	}
	c.bufs.Put(buf)
	return nil, fmt.Errorf("chunk %s at offset %d: no replica could serve it: %s", ch.Hash.Short(), ch.Offset, strings.Join(errs, "; "))
}

func (c *Client) fetchFrom(ctx context.Context, r dfs.Replica, ref dfs.ChunkRef, token string, dst []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.scheme+r.Addr+"/chunks/"+ref.Hash.String(), nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set(dataplane.TokenHeader, token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("node %s: %w", r.Node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("node %s: %s: %s", r.Node, resp.Status, strings.TrimSpace(string(msg)))
	}
	if resp.ContentLength >= 0 && resp.ContentLength != ref.Size {
		return fmt.Errorf("node %s: %w: chunk %s is %d bytes there, want %d", r.Node, dfs.ErrHashMismatch, ref.Hash.Short(), resp.ContentLength, ref.Size)
	}
	if _, err := io.ReadFull(resp.Body, dst); err != nil {
		return fmt.Errorf("node %s: read chunk %s: %w", r.Node, ref.Hash.Short(), err)
	}
	if got := sha256.Sum256(dst); got != ref.Hash {
		return fmt.Errorf("node %s: %w: chunk %s reads back as %s", r.Node, dfs.ErrHashMismatch, ref.Hash.Short(), dfs.Hash(got).Short())
	}
	return nil
}

// readLocal reads a whole chunk from a datanode in this process into dst
// and verifies it.
func readLocal(ln LocalNode, r dfs.Replica, ref dfs.ChunkRef, dst []byte) error {
	f, size, err := ln.OpenLocal(ref.Hash)
	if err != nil {
		return fmt.Errorf("node %s: %w", r.Node, err)
	}
	defer f.Close()
	if size != ref.Size {
		return fmt.Errorf("node %s: %w: chunk %s is %d bytes there, want %d", r.Node, dfs.ErrHashMismatch, ref.Hash.Short(), size, ref.Size)
	}
	if n, err := f.ReadAt(dst, 0); n < len(dst) {
		return fmt.Errorf("node %s: read chunk %s: %d of %d bytes: %w", r.Node, ref.Hash.Short(), n, len(dst), err)
	}
	if got := sha256.Sum256(dst); got != ref.Hash {
		return fmt.Errorf("node %s: %w: chunk %s reads back as %s", r.Node, dfs.ErrHashMismatch, ref.Hash.Short(), dfs.Hash(got).Short())
	}
	return nil
}

func (c *Client) reportBad(h dfs.Hash, node dfs.NodeID, reason string) {
	c.log.Warn("corrupt chunk replica", "chunk", h.Short(), "node", node, "reason", reason)
	c.reports.Add(1)
	go func() {
		defer c.reports.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.call(ctx, func(cc api.CoordinatorClient) error {
			_, err := cc.ReportBadChunk(ctx, &api.ReportBadChunkRequest{Hash: h[:], Node: string(node), Reason: reason})
			return err
		})
	}()
}
