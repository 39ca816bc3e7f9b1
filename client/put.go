package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/bufpool"
	"github.com/dfs-store/dfs/internal/chunker"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/rpc"
)

// PutOptions tune an upload.
type PutOptions struct {
	ContentType string
	// Attrs are named attributes to keep with the file (see
	// dfs.FileInfo.Attrs); Staged.SetAttrs sets those known only once
	// the bytes are read.
	Attrs map[string]string
	// Progress, if set, is called with the number of bytes of the source
	// handled so far (sent, or found already stored).
	Progress func(done int64)
	// IfAbsent commits only if the path holds no file; IfMatch only if
	// its file has this ETag (its "etag" attribute, or its content hash in
	// hex). Checked atomically with the commit; failing, the commit is an
	// error wrapping dfs.ErrPrecondition (dfs.ErrNotFound for IfMatch on
	// no file) and the chunks sent become garbage.
	IfAbsent bool
	IfMatch  string // "*": any file
	// IfNoneMatch commits only if the path holds no file with this ETag.
	IfNoneMatch string
	// Size, if above 0, is the source's length as far as the caller knows
	// it (an HTTP request's Content-Length): the upload's buffers are sized
	// to it. A source of another length is stored all the same.
	Size int64
}

// PutResult says what an upload did.
type PutResult struct {
	File dfs.FileInfo
	// Duplicate: the cluster already held this content.
	Duplicate bool
	// Chunks is the number of chunks of the file; NewChunks of them were
	// sent, carrying SentBytes.
	Chunks, NewChunks int
	SentBytes         int64
}

// maxPutAttempts bounds how often one chunk is placed anew after its chain
// failed.
const maxPutAttempts = 5

// pending is a chunk between the splitter and the datanodes.
type pending struct {
	ref   dfs.ChunkRef
	buf   *[]byte
	cost  int64 // of buf, in the client's upload memory
	chain []*api.Node
	need  int    // nodes of the chain that must store it
	token string // the PUT's capability token, for this chain
	// hashed is closed once ref.Hash is set; the buffer stays with the
	// pending until it is released.
	hashed chan struct{}
}

func (p *pending) data() []byte { return (*p.buf)[:p.ref.Size] }

// Put stores the bytes of r at path. Nothing is committed unless every byte
// was read and every new chunk is stored with enough replicas: a failed or
// cancelled Put leaves the path's previous version intact.
func (c *Client) Put(ctx context.Context, path string, r io.Reader, o PutOptions) (PutResult, error) {
	st, err := c.Stage(ctx, path, r, o)
	if err != nil {
		return PutResult{}, err
	}
	return st.Commit(ctx)
}

// Staged is an upload whose chunks are all stored but which is not
// committed yet: the path still shows its previous version. Its upload
// session keeps the chunks from garbage collection until Commit or Abort.
// Several uploads can be staged and then committed together, so that a
// batch cut off halfway commits none of them.
type Staged struct {
	c   *Client
	req *api.CommitRequest
	res PutResult
}

// Path is the staged upload's path.
func (s *Staged) Path() string { return s.req.Path }

// Commit makes the path point at the staged content.
func (s *Staged) Commit(ctx context.Context) (PutResult, error) {
	for k, v := range s.req.Attrs {
		// A string that is not UTF-8 cannot be sent; say so.
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			s.c.abort(s.req.SessionId)
			return s.res, fmt.Errorf("put %s: %w: attribute %q is not valid UTF-8", s.req.Path, dfs.ErrInvalid, k)
		}
	}
	resp, err := s.c.commit(ctx, s.req)
	if err != nil {
		s.c.abort(s.req.SessionId)
		return s.res, fmt.Errorf("put %s: commit: %w", s.req.Path, err)
	}
	res := s.res
	res.File = fileFromAPI(resp.File)
	res.Duplicate = resp.Duplicate
	return res, nil
}

// SetAttrs replaces the attributes the commit keeps with the file (known
// only once the bytes are read, as S3's ETag).
func (s *Staged) SetAttrs(attrs map[string]string) { s.req.Attrs = attrs }

// Abort drops the staged upload; its chunks become garbage.
func (s *Staged) Abort() { s.c.abort(s.req.SessionId) }

// Stage stores the bytes of r as Put does, but does not commit them.
func (c *Client) Stage(ctx context.Context, path string, r io.Reader, o PutOptions) (*Staged, error) {
	clean, err := dfs.CleanPath(path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(rpc.WithRequestID(ctx))
	defer cancel(nil)

	split, err := chunker.NewSized(r, c.chunks, o.Size, scanBudget{ctx, c.scanMem})
	if err != nil {
		return nil, err
	}
	// Chunks are copied out of the splitter as they are cut: its scan
	// buffer goes back to the pool when the source is read.
	defer split.Close()
	var (
		res     PutResult
		chunks  []*pending // every chunk of the file, in order
		done    atomic.Int64
		sent    atomic.Int64
		nsent   atomic.Int64
		session atomic.Value // string: the upload session, once opened
		wg      sync.WaitGroup
	)
	progress := func(n int64) {
		d := done.Add(n)
		if o.Progress != nil {
			o.Progress(d)
		}
	}
	session.Store("")
	// Buffers in flight are bounded: the splitter waits for a free slot.
	slots := make(chan struct{}, 2*c.cfg.Uploads)
	batches := make(chan []*pending, c.cfg.Uploads)
	work := make(chan *pending, 2*c.cfg.Uploads)
	release := func(p *pending) {
		c.bufs.Put(p.buf)
		c.chunkMem.give(p.cost)
		<-slots
	}

	// Upload workers.
	for range c.cfg.Uploads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				if ctx.Err() == nil {
					if err := c.putChunk(ctx, clean, session.Load().(string), p); err != nil {
						cancel(err)
					} else {
						sent.Add(p.ref.Size)
						nsent.Add(1)
						progress(p.ref.Size)
					}
				}
				release(p)
			}
		}()
	}

	// Allocator: asks the coordinator about batches of chunks, in order, and
	// hands new ones to the workers. A chunk repeated within the file is
	// sent once.
	allocDone := make(chan struct{})
	go func() {
		defer close(allocDone)
		defer close(work)
		seen := map[dfs.Hash]bool{}
		for batch := range batches {
			if ctx.Err() != nil {
				for _, p := range batch {
					<-p.hashed // the hasher still reads the buffer
					release(p)
				}
				continue
			}
			var ask []*pending
			for _, p := range batch {
				<-p.hashed
				if seen[p.ref.Hash] {
					progress(p.ref.Size)
					release(p)
					continue
				}
				seen[p.ref.Hash] = true
				ask = append(ask, p)
			}
			if len(ask) == 0 {
				continue
			}
			sid, placements, err := c.allocate(ctx, clean, session.Load().(string), ask, nil)
			if err != nil {
				cancel(err)
				for _, p := range ask {
					release(p)
				}
				continue
			}
			session.Store(sid)
			for i, p := range ask {
				if placements[i].Have {
					progress(p.ref.Size)
					release(p)
					continue
				}
				p.chain, p.need, p.token = placements[i].Chain, int(placements[i].Need), placements[i].Token
				work <- p
			}
		}
	}()

	// Splitter: this goroutine reads the source once, cutting and hashing.
	var splitErr error
	var batch []*pending
	flush := func() {
		if len(batch) > 0 {
			batches <- batch
			batch = nil
		}
	}
	for ctx.Err() == nil {
		ch, err := split.NextUnhashed()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			splitErr = fmt.Errorf("read source: %w", err)
			break
		}
		// Take a buffer slot. When none is free, hand over the chunks cut
		// so far first: they hold the slots this one waits for.
		select {
		case slots <- struct{}{}:
		default:
			flush()
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		// Take room in the client's upload memory the same way: the
		// chunks of other uploads hold it, and they are on their way.
		cost := int64(bufpool.Cap(len(ch.Data)))
		if !c.chunkMem.tryTake(cost) {
			flush()
			if err := c.chunkMem.take(ctx, cost); err != nil {
				<-slots
				break
			}
		}
		buf := c.bufs.Get(len(ch.Data))
		copy(*buf, ch.Data)
		// Chunks are hashed on other cores while the splitter reads on;
		// the allocator waits for each hash in order.
		p := &pending{ref: dfs.ChunkRef{Size: int64(len(ch.Data))}, buf: buf, cost: cost, hashed: make(chan struct{})}
		go func() {
			p.ref.Hash = sha256.Sum256(p.data())
			close(p.hashed)
		}()
		chunks = append(chunks, p)
		batch = append(batch, p)
		// Send a batch when it is full or when nothing is waiting to be
		// allocated, so the datanodes are never idle.
		if len(batch) >= 32 || len(batches) == 0 {
			flush()
		}
	}
	flush()
	close(batches)
	<-allocDone
	wg.Wait()

	if splitErr != nil {
		cancel(splitErr)
	}
	sid := session.Load().(string)
	if err := context.Cause(ctx); err != nil {
		c.abort(sid)
		// Name the path: the cause may come from any stage (the source, an
		// allocation, a chunk write) and only some of them know it.
		return nil, fmt.Errorf("put %s: %w", clean, err)
	}
	res.Chunks = len(chunks)
	res.NewChunks = int(nsent.Load())
	res.SentBytes = sent.Load()
	return &Staged{c: c, res: res, req: &api.CommitRequest{
		SessionId:   sid,
		Path:        clean,
		ContentHash: hashBytes(split.Sum()),
		Size:        split.Size(),
		Chunks:      specs(chunks),
		ContentType: o.ContentType,
		Attrs:       o.Attrs,
		IfAbsent:    o.IfAbsent,
		IfMatch:     o.IfMatch,
		IfNoneMatch: o.IfNoneMatch,
	}}, nil
}

func hashBytes(h dfs.Hash) []byte { return append([]byte(nil), h[:]...) }

func specs(chunks []*pending) []*api.ChunkSpec {
	out := make([]*api.ChunkSpec, len(chunks))
	for i, p := range chunks {
		out[i] = &api.ChunkSpec{Hash: hashBytes(p.ref.Hash), Size: p.ref.Size}
	}
	return out
}

func (c *Client) allocate(ctx context.Context, path, session string, ps []*pending, exclude []string) (string, []*api.Placement, error) {
	req := &api.AllocateRequest{SessionId: session, Exclude: exclude, Path: path}
	for _, p := range ps {
		req.Chunks = append(req.Chunks, &api.ChunkSpec{Hash: hashBytes(p.ref.Hash), Size: p.ref.Size})
	}
	var resp *api.AllocateResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.Allocate(ctx, req)
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("allocate: %w", err)
	}
	if len(resp.Placements) != len(ps) {
		return "", nil, fmt.Errorf("allocate: %d placements for %d chunks", len(resp.Placements), len(ps))
	}
	return resp.SessionId, resp.Placements, nil
}

func (c *Client) commit(ctx context.Context, req *api.CommitRequest) (*api.CommitResponse, error) {
	var resp *api.CommitResponse
	err := c.call(ctx, func(cc api.CoordinatorClient) (err error) {
		resp, err = cc.Commit(ctx, req)
		return err
	})
	return resp, err
}

func (c *Client) abort(session string) {
	if session == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.call(ctx, func(cc api.CoordinatorClient) error {
		_, err := cc.AbortSession(ctx, &api.AbortSessionRequest{SessionId: session})
		return err
	})
}

// putChunk writes one chunk along its chain. When too few nodes of the
// chain store it, the chunk is placed anew away from the nodes that failed.
func (c *Client) putChunk(ctx context.Context, path, session string, p *pending) error {
	var failed []string
	var lastErr error
	for attempt := 0; attempt < maxPutAttempts; attempt++ {
		if attempt > 0 {
			_, pl, err := c.allocate(ctx, path, session, []*pending{p}, failed)
			if err != nil {
				return fmt.Errorf("chunk %s: %w (after: %v)", p.ref.Hash.Short(), err, lastErr)
			}
			if pl[0].Have {
				return nil
			}
			p.chain, p.need, p.token = pl[0].Chain, int(pl[0].Need), pl[0].Token
		}
		if len(p.chain) == 0 {
			return fmt.Errorf("chunk %s: no datanode to write to", p.ref.Hash.Short())
		}
		res, err := c.sendChain(ctx, p)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if p.need == 0 {
			// A top-up of a chunk that already has enough copies: what
			// did not land is left to repair.
			if err != nil || len(res.Failed) > 0 {
				c.log.Debug("chunk top-up incomplete", "chunk", p.ref.Hash.Short(), "err", err, "failed", res.Failed)
			}
			return nil
		}
		if err == nil && len(res.Stored) >= max(p.need, 1) {
			return nil
		}
		if err != nil {
			lastErr = err
			failed = append(failed, p.chain[0].Id)
		} else {
			// Avoid the nodes that failed, not those the chain never
			// reached because of them.
			var msgs []string
			for id, msg := range res.Failed {
				failed = append(failed, string(id))
				msgs = append(msgs, fmt.Sprintf("%s: %s", id, msg))
			}
			if len(res.Unreached) > 0 {
				msgs = append(msgs, fmt.Sprintf("not reached: %v", res.Unreached))
			}
			lastErr = fmt.Errorf("stored on %d of %d nodes: %s", len(res.Stored), len(p.chain), strings.Join(msgs, "; "))
		}
		c.log.Debug("chunk write failed, placing again", "chunk", p.ref.Hash.Short(), "err", lastErr)
	}
	return fmt.Errorf("chunk %s: %d attempts failed, last: %w", p.ref.Hash.Short(), maxPutAttempts, lastErr)
}

func (c *Client) sendChain(ctx context.Context, p *pending) (dataplane.PutResult, error) {
	head := p.chain[0]
	url := c.scheme + head.Addr + "/chunks/" + p.ref.Hash.String()
	body := dataplane.NewBody(bytes.NewReader(p.data()))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, body)
	if err != nil {
		return dataplane.PutResult{}, err
	}
	// p's buffer is reused once the chunk is done with, so wait until the
	// transport has stopped reading it: a node that refuses the chunk
	// answers before reading it all, and the transport reads on until the
	// connection is torn down.
	defer func() { <-body.Done() }()
	req.ContentLength = p.ref.Size
	if p.token != "" {
		req.Header.Set(dataplane.TokenHeader, p.token)
	}
	if len(p.chain) > 1 {
		hops := make([]dataplane.Hop, 0, len(p.chain)-1)
		for _, n := range p.chain[1:] {
			hops = append(hops, dataplane.Hop{ID: dfs.NodeID(n.Id), Addr: n.Addr})
		}
		req.Header.Set(dataplane.ChainHeader, dataplane.FormatChain(hops))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return dataplane.PutResult{}, fmt.Errorf("node %s: %w", head.Id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return dataplane.PutResult{}, fmt.Errorf("node %s: %s: %s", head.Id, resp.Status, e.Error)
	}
	var res dataplane.PutResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&res); err != nil {
		return res, fmt.Errorf("node %s: decode answer: %w", head.Id, err)
	}
	return res, nil
}

// CopyOptions tune a copy.
type CopyOptions struct {
	// Replace gives the copy ContentType and Attrs instead of the
	// source's.
	Replace     bool
	ContentType string
	Attrs       map[string]string
	// Version, if set, copies that earlier version of src.
	Version string
}

// Copy makes dst point at src's content: no byte is read or sent, only a
// commit is made. The copy keeps src's content type and attributes unless
// o.Replace.
func (c *Client) Copy(ctx context.Context, src, dst string, o CopyOptions) (dfs.FileInfo, error) {
	dst, err := dfs.CleanPath(dst)
	if err != nil {
		return dfs.FileInfo{}, err
	}
	loc, err := c.LocateForRead(ctx, src, o.Version)
	if err != nil {
		return dfs.FileInfo{}, fmt.Errorf("copy %s: %w", src, err)
	}
	req := &api.CommitRequest{Path: dst, ContentHash: hashBytes(dfs.Hash(loc.Content)), Size: loc.Size,
		ContentType: loc.File.ContentType, Attrs: loc.File.Attrs}
	if o.Replace {
		req.ContentType, req.Attrs = o.ContentType, o.Attrs
	}
	for _, ch := range loc.Chunks {
		req.Chunks = append(req.Chunks, &api.ChunkSpec{Hash: hashBytes(ch.Hash), Size: ch.Size})
	}
	resp, err := c.commit(ctx, req)
	if err != nil {
		return dfs.FileInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return fileFromAPI(resp.File), nil
}
