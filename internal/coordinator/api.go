package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/rpc"
)

// Allocate implements api.CoordinatorServer.
func (s *Server) Allocate(ctx context.Context, req *api.AllocateRequest) (*api.AllocateResponse, error) {
	if len(req.Chunks) > 10000 {
		return nil, status.Errorf(codes.InvalidArgument, "allocate: %d chunks in one request, at most 10000", len(req.Chunks))
	}
	specs := make([]dfs.ChunkRef, len(req.Chunks))
	for i, c := range req.Chunks {
		h, err := dfs.HashFromBytes(c.Hash)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "allocate chunk %d: %v", i, err)
		}
		if c.Size < 0 || c.Size > s.cfg.MaxChunkSize {
			return nil, status.Errorf(codes.InvalidArgument, "allocate chunk %s: size %d outside [0, %d]", h.Short(), c.Size, s.cfg.MaxChunkSize)
		}
		specs[i] = dfs.ChunkRef{Hash: h, Size: c.Size}
	}
	p := s.caller(ctx)
	if req.Path != "" {
		path, err := dfs.CleanPath(req.Path)
		if err != nil {
			return nil, rpc.ToStatus(fmt.Errorf("allocate: %w", err))
		}
		if err := s.may(ctx, path, access.Write); err != nil {
			return nil, err
		}
	} else if !p.CanAny(access.Write) {
		return nil, denied(p, "upload: it holds the write right on no bucket (dfs bucket allow)")
	}
	sid, err := s.touchSession(ctx, req.SessionId, ownerOf(p))
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	exclude := map[dfs.NodeID]bool{}
	for _, id := range req.Exclude {
		exclude[dfs.NodeID(id)] = true
	}

	resp, reused, err := s.allocate(sid, specs, exclude)
	if err != nil {
		return nil, err
	}
	s.touchCopies(ctx, reused)
	return resp, nil
}

// allocate decides the placement of each chunk, and returns the existing
// copies the upload will reuse, by node.
func (s *Server) allocate(sid string, specs []dfs.ChunkRef, exclude map[dfs.NodeID]bool) (*api.AllocateResponse, map[dfs.NodeID][]dfs.Hash, error) {
	resp := &api.AllocateResponse{SessionId: sid, MinReplicas: int32(s.cfg.MinReplicas)}
	reused := map[dfs.NodeID][]dfs.Hash{}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[sid]
	if ss != nil {
		// The session now refers to the chunks: garbage collection keeps
		// them while the session is open, and for a grace period after.
		// The limits are checked for the whole request before any of it is
		// taken, so a refused request leaves nothing behind.
		added := map[dfs.Hash]struct{}{}
		var bytes int64
		for _, c := range specs {
			if _, ok := ss.chunks[c.Hash]; ok {
				continue
			}
			if _, ok := added[c.Hash]; !ok {
				added[c.Hash] = struct{}{}
				bytes += c.Size
			}
		}
		n := len(added)
		switch {
		case n == 0:
		case len(ss.chunks)+n > s.cfg.MaxSessionChunks:
			return nil, nil, status.Errorf(codes.ResourceExhausted, "allocate: the session would have %d chunks, more than one upload may have (%d)", len(ss.chunks)+n, s.cfg.MaxSessionChunks)
		case keyOwned(ss.owner) && s.keyChunks[ss.owner]+n > s.cfg.MaxKeyChunks:
			return nil, nil, status.Errorf(codes.ResourceExhausted, "allocate: this key's open uploads would have %d chunks, more than one key may have (%d); try again when some have finished", s.keyChunks[ss.owner]+n, s.cfg.MaxKeyChunks)
		case s.pending+n > s.cfg.MaxPendingChunks:
			return nil, nil, status.Errorf(codes.ResourceExhausted, "allocate: %d chunks are allocated in open uploads, the most this coordinator holds; try again when some have finished", s.pending)
		case ss.bytes+bytes > s.cfg.MaxFileSize:
			return nil, nil, status.Errorf(codes.InvalidArgument, "allocate: the upload passes %d bytes, the largest file this cluster takes (--max-file-size)", s.cfg.MaxFileSize)
		}
		for h := range added {
			ss.chunks[h] = struct{}{}
		}
		ss.bytes += bytes
		s.pending += n
		s.keyChunks[ss.owner] += n
	}
	for _, c := range specs {
		s.touchLocked(c.Hash, now)
		live := s.goodReplicasLocked(c.Hash, now)
		if len(live) >= s.cfg.MinReplicas {
			for _, id := range live {
				reused[id] = append(reused[id], c.Hash)
			}
		}
		p := &api.Placement{Hash: c.Hash[:]}
		if len(live) >= s.cfg.Replicas {
			// Dedup: the chunk is fully replicated; send nothing.
			p.Have = true
			resp.Placements = append(resp.Placements, p)
			continue
		}
		chain := s.pickLocked(s.cfg.Replicas-len(live), c.Size, live, exclude, now)
		if len(live) >= s.cfg.MinReplicas {
			// Enough copies for a commit, but fewer than the replication
			// factor (a node is down, or an upload broke off midway): the
			// client tops the chunk up on nodes that lack it, as a best
			// effort (Need 0). With no such node, it is had as it is.
			if len(chain) == 0 {
				p.Have = true
			}
			for _, id := range chain {
				p.Chain = append(p.Chain, s.apiNodeLocked(id))
			}
			s.signPut(p, c.Hash, now)
			resp.Placements = append(resp.Placements, p)
			continue
		}
		if len(live)+len(chain) < s.cfg.MinReplicas {
			return nil, nil, rpc.ToStatus(fmt.Errorf("allocate chunk %s: %w", c.Hash.Short(),
				s.notEnoughNodesLocked(len(chain)+len(live), s.cfg.MinReplicas, c.Size, live, exclude, now)))
		}
		for _, id := range chain {
			p.Chain = append(p.Chain, s.apiNodeLocked(id))
		}
		p.Need = int32(max(1, s.cfg.MinReplicas-len(live)))
		s.signPut(p, c.Hash, now)
		resp.Placements = append(resp.Placements, p)
	}
	return resp, reused, nil
}

// signPut gives a placement with a chain the capability token of its PUT:
// for its chunk, its head and the rest of its chain.
func (s *Server) signPut(p *api.Placement, h dfs.Hash, now time.Time) {
	if s.tokens == nil || len(p.Chain) == 0 {
		return
	}
	hops := make([]dataplane.Hop, 0, len(p.Chain)-1)
	for _, n := range p.Chain[1:] {
		hops = append(hops, dataplane.Hop{ID: dfs.NodeID(n.Id), Addr: n.Addr})
	}
	p.Token = s.tokens.PutToken(h, dfs.NodeID(p.Chain[0].Id), dataplane.FormatChain(hops), now.Add(dataplane.PutTokenLife))
}

// touchCopies has the datanodes mark the copies an upload reuses as in use
// now. Garbage collection deletes a copy only if it was not touched within
// the grace period, so a reused chunk survives a collection run by any
// coordinator, not only this one (which also remembers the touch itself).
// A node that cannot be reached is skipped: its copy is then protected by
// this coordinator's memory alone.
func (s *Server) touchCopies(ctx context.Context, reused map[dfs.NodeID][]dfs.Hash) {
	if len(reused) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for id, hashes := range reused {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dn, err := s.control(id)
			if err != nil {
				return
			}
			req := &api.TouchChunksRequest{}
			for _, h := range hashes {
				req.Hashes = append(req.Hashes, h[:])
			}
			if _, err := dn.TouchChunks(ctx, req); err != nil {
				s.log.Debug("touch reused copies", "node", id, "err", err)
			}
		}()
	}
	wg.Wait()
}

// keyOwned reports whether a session's owner is an access key, whose
// sessions and chunks count against the per-key limits (a cluster
// certificate's count only against the coordinator's).
func keyOwned(owner string) bool { return !strings.HasPrefix(owner, "cert:") }

// ownerOf names who owns an upload session.
func ownerOf(p *access.Principal) string {
	if p.KeyID != "" {
		return p.KeyID
	}
	return "cert:" + p.Name
}

// touchSession opens a session for owner when id is empty, or adopts one
// opened by another coordinator (after a failover), and extends its
// expiry. A session is its owner's alone.
func (s *Server) touchSession(ctx context.Context, id, owner string) (string, error) {
	exp := time.Now().Add(s.cfg.SessionTTL)
	s.mu.Lock()
	ss, known := s.sessions[id]
	if known && ss.owner != owner {
		s.mu.Unlock()
		return "", status.Errorf(codes.PermissionDenied, "upload session %s belongs to another caller", id)
	}
	if known {
		ss.expires = exp
	}
	open, mine := len(s.sessions), s.keySessions[owner]
	s.mu.Unlock()
	if known {
		return id, nil
	}
	if open >= s.cfg.MaxSessions {
		return "", status.Errorf(codes.ResourceExhausted, "allocate: %d uploads are open on this coordinator, the most it holds; try again when some have finished", open)
	}
	if keyOwned(owner) && mine >= s.cfg.MaxKeySessions {
		return "", status.Errorf(codes.ResourceExhausted, "allocate: %d uploads of this key are open, the most one key may have; try again when some have finished", mine)
	}
	if id == "" {
		id = uuid.NewString()
	} else if _, err := uuid.Parse(id); err != nil {
		return "", fmt.Errorf("%w: session id %q: %v", dfs.ErrInvalid, id, err)
	}
	// A session lives in this coordinator's memory alone: what keeps its
	// chunks from garbage collection is the grace period of a chunk newly
	// written and the touch of one reused (touchCopies), both on the
	// datanodes, so no etcd write is spent on it.
	s.mu.Lock()
	if _, dup := s.sessions[id]; !dup {
		s.sessions[id] = &session{owner: owner, expires: exp, chunks: map[dfs.Hash]struct{}{}}
		s.keySessions[owner]++
	}
	s.mu.Unlock()
	return id, nil
}

// OpenSessions returns the number of upload sessions open on this
// coordinator.
func (s *Server) OpenSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// dropSessionLocked forgets an upload session and the chunks it held.
func (s *Server) dropSessionLocked(id string) {
	if ss := s.sessions[id]; ss != nil {
		s.pending -= len(ss.chunks)
		delete(s.sessions, id)
		if s.keyChunks[ss.owner] -= len(ss.chunks); s.keyChunks[ss.owner] <= 0 {
			delete(s.keyChunks, ss.owner)
		}
		if s.keySessions[ss.owner]--; s.keySessions[ss.owner] <= 0 {
			delete(s.keySessions, ss.owner)
		}
	}
}

// AbortSession implements api.CoordinatorServer.
func (s *Server) AbortSession(ctx context.Context, req *api.AbortSessionRequest) (*api.AbortSessionResponse, error) {
	p := s.caller(ctx)
	s.mu.Lock()
	if ss := s.sessions[req.SessionId]; ss != nil && ss.owner != ownerOf(p) && !p.Admin {
		s.mu.Unlock()
		return nil, status.Errorf(codes.PermissionDenied, "upload session %s belongs to another caller", req.SessionId)
	}
	s.dropSessionLocked(req.SessionId)
	s.mu.Unlock()
	return &api.AbortSessionResponse{}, nil
}

// Commit implements api.CoordinatorServer.
func (s *Server) Commit(ctx context.Context, req *api.CommitRequest) (*api.CommitResponse, error) {
	path, err := dfs.CleanPath(req.Path)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("commit: %w", err))
	}
	if err := s.may(ctx, path, access.Write); err != nil {
		return nil, err
	}
	ch, err := dfs.HashFromBytes(req.ContentHash)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "commit %s: content hash: %v", path, err)
	}
	if req.SessionId != "" {
		p := s.caller(ctx)
		s.mu.Lock()
		ss := s.sessions[req.SessionId]
		theirs := ss != nil && ss.owner != ownerOf(p)
		s.mu.Unlock()
		if theirs {
			return nil, status.Errorf(codes.PermissionDenied, "commit %s: upload session %s belongs to another caller", path, req.SessionId)
		}
	}
	if req.Size > s.cfg.MaxFileSize {
		return nil, status.Errorf(codes.InvalidArgument, "commit %s: %d bytes, more than the largest file this cluster takes (%d, --max-file-size)", path, req.Size, s.cfg.MaxFileSize)
	}
	content := dfs.Content{Hash: ch, Size: req.Size, Chunks: make([]dfs.ChunkRef, len(req.Chunks))}
	var sum int64
	for i, c := range req.Chunks {
		h, err := dfs.HashFromBytes(c.Hash)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "commit %s: chunk %d: %v", path, i, err)
		}
		if c.Size <= 0 || c.Size > s.cfg.MaxChunkSize {
			return nil, status.Errorf(codes.InvalidArgument, "commit %s: chunk %s: size %d outside [1, %d]", path, h.Short(), c.Size, s.cfg.MaxChunkSize)
		}
		content.Chunks[i] = dfs.ChunkRef{Hash: h, Size: c.Size}
		sum += c.Size
	}
	if sum != req.Size {
		return nil, status.Errorf(codes.InvalidArgument, "commit %s: chunks add up to %d bytes, file size is %d", path, sum, req.Size)
	}
	s.beginCommit(content.Chunks)
	defer s.endCommit(content.Chunks)
	if err := s.waitReplicas(ctx, content.Chunks); err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("commit %s: %w", path, err))
	}
	if err := checkAttrs(req.Attrs); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "commit %s: %v", path, err)
	}
	commit := meta.Commit{
		File:        dfs.FileInfo{Path: path, ContentType: req.ContentType, Attrs: req.Attrs},
		Content:     content,
		QueueJob:    true,
		IfAbsent:    req.IfAbsent,
		IfMatch:     req.IfMatch,
		IfNoneMatch: req.IfNoneMatch,
	}
	if req.UploadId != "" || req.PartNumber != 0 {
		// A part of an upload: no post-upload job of its own (the whole
		// gets one when it completes).
		if !meta.ValidUploadID(req.UploadId) {
			return nil, rpc.ToStatus(fmt.Errorf("commit %s: upload %q: %w", path, req.UploadId, meta.ErrNoUpload))
		}
		if req.PartNumber < 1 || req.PartNumber > meta.MaxParts {
			return nil, status.Errorf(codes.InvalidArgument, "commit %s: part number %d outside [1, %d]", path, req.PartNumber, meta.MaxParts)
		}
		commit.Upload, commit.Part, commit.QueueJob = &meta.Upload{Path: path, ID: req.UploadId}, int(req.PartNumber), false
	}
	info, dup, err := s.commitChecked(ctx, commit)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	if !dup && commit.Upload == nil && isSelf(content) {
		s.self.add(ch, content.Size) // the record this commit wrote
	}
	if req.SessionId != "" {
		s.mu.Lock()
		s.dropSessionLocked(req.SessionId)
		s.mu.Unlock()
	}
	s.log.Debug("committed", "path", path, "sha256", ch.Short(), "size", req.Size, "duplicate", dup)
	return &api.CommitResponse{File: fileToAPI(info), Duplicate: dup}, nil
}

// waitReplicas waits until every chunk has at least MinReplicas live copies
// known, or CommitWait passes. Datanodes report a chunk before they
// acknowledge its write, so the wait is normally zero; it covers a report
// that was delayed.
func (s *Server) waitReplicas(ctx context.Context, chunks []dfs.ChunkRef) error {
	deadline := time.NewTimer(s.cfg.CommitWait)
	defer deadline.Stop()
	expired := false
	for {
		s.mu.Lock()
		now := time.Now()
		var short dfs.Hash
		have := 0
		for _, c := range chunks {
			if n := len(s.goodReplicasLocked(c.Hash, now)); n < s.cfg.MinReplicas {
				short, have = c.Hash, n
				break
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if short.IsZero() {
			return nil
		}
		if expired {
			return fmt.Errorf("%w: chunk %s has %d known copies, need %d", dfs.ErrConflict, short, have, s.cfg.MinReplicas)
		}
		select {
		case <-changed:
		case <-deadline.C:
			expired = true // one last look, then give up
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func fileToAPI(f dfs.FileInfo) *api.FileInfo {
	return &api.FileInfo{
		Path:             f.Path,
		Size:             f.Size,
		ContentHash:      f.Content[:],
		ContentType:      f.ContentType,
		CreatedUnixNano:  f.Created.UnixNano(),
		ModifiedUnixNano: f.Modified.UnixNano(),
		Attrs:            f.Attrs,
		VersionId:        f.VersionID,
	}
}

// Bounds of a file's attributes.
const (
	maxAttrs      = 64
	maxAttrsBytes = 8 << 10
)

// checkAttrs refuses attributes past the bounds, or whose names are not
// lower-case printable ASCII or whose values are not valid UTF-8.
func checkAttrs(attrs map[string]string) error {
	if len(attrs) > maxAttrs {
		return fmt.Errorf("%d attributes, at most %d", len(attrs), maxAttrs)
	}
	total := 0
	for k, v := range attrs {
		total += len(k) + len(v)
		if k == "" || len(k) > 256 {
			return fmt.Errorf("attribute name %.40q: want 1 to 256 bytes", k)
		}
		for i := 0; i < len(k); i++ {
			if c := k[i]; c <= ' ' || c > '~' || (c >= 'A' && c <= 'Z') {
				return fmt.Errorf("attribute name %.40q: want lower-case printable ASCII", k)
			}
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("attribute %s: the value is not valid UTF-8", k)
		}
	}
	if total > maxAttrsBytes {
		return fmt.Errorf("attributes of %d bytes, at most %d", total, maxAttrsBytes)
	}
	return nil
}

// Lookup implements api.CoordinatorServer.
func (s *Server) Lookup(ctx context.Context, req *api.LookupRequest) (*api.LookupResponse, error) {
	path, err := dfs.CleanPath(req.Path)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	if err := s.may(ctx, path, access.Read); err != nil {
		return nil, err
	}
	info, err := s.fileVersion(ctx, path, req.VersionId)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	resp, err := s.lookupContent(ctx, info.Content, info.Layout, !req.WithoutProcessing)
	if errors.Is(err, errLayoutGone) {
		return nil, rpc.ToStatus(errForged(path))
	}
	if err != nil {
		return nil, err
	}
	resp.File = fileToAPI(info)
	return resp, nil
}

// LookupContent implements api.CoordinatorServer.
func (s *Server) LookupContent(ctx context.Context, req *api.LookupContentRequest) (*api.LookupResponse, error) {
	h, err := dfs.HashFromBytes(req.ContentHash)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return s.lookupContent(ctx, h, "", true)
}

// errLayoutGone: a path's content no longer has the chunk list the path
// was committed with.
var errLayoutGone = errors.New("the path's chunk list is gone")

// lookupContent finds content h's chunks and their replicas. With layout
// set, the content must still have that chunk list (see integrity.go).
func (s *Server) lookupContent(ctx context.Context, h dfs.ContentHash, layout string, withProcessing bool) (*api.LookupResponse, error) {
	var c dfs.Content
	size, known := int64(0), false
	if layout == "" {
		size, known = s.self.get(h)
	}
	if known {
		c = dfs.Content{Hash: h, Size: size, Chunks: []dfs.ChunkRef{{Hash: h, Size: size}}}
	} else {
		var err error
		c, err = s.meta.GetContent(ctx, h)
		if err == nil && layout != "" && c.Layout != layout {
			c, err = s.meta.GetContentFresh(ctx, h) // a replacement this member has not seen yet?
			if err == nil && c.Layout != layout {
				return nil, errLayoutGone
			}
		}
		if err != nil {
			return nil, rpc.ToStatus(err)
		}
		if isSelf(c) {
			s.self.add(h, c.Size)
		}
	}
	resp := &api.LookupResponse{ContentHash: h[:], Size: c.Size, Nodes: map[string]*api.Node{}}
	if withProcessing {
		resp.Processing = s.processing(ctx, h)
	}
	for _, p := range c.Parts {
		resp.PartSizes = append(resp.PartSizes, p.Size)
		resp.PartHashes = append(resp.PartHashes, p.Hash[:])
	}
	now := time.Now()
	getExp := now.Add(dataplane.GetTokenLife(c.Size))
	s.mu.Lock()
	defer s.mu.Unlock()
	var off int64
	for _, ch := range c.Chunks {
		loc := &api.ChunkLocation{Hash: ch.Hash[:], Size: ch.Size, Offset: off}
		if s.tokens != nil {
			loc.Token = s.tokens.GetToken(ch.Hash, getExp)
		}
		live := s.liveReplicasLocked(ch.Hash, now)
		if len(live) == 0 && s.coldLocked(now) {
			// Not every datanode has reported to this coordinator since it
			// started: another coordinator may know the copies.
			return nil, rpc.ToStatus(fmt.Errorf("%w: coordinator %s is starting: not every datanode has reported to it yet",
				dfs.ErrUnavailable, s.cfg.Addr))
		}
		for _, id := range live {
			loc.Nodes = append(loc.Nodes, string(id))
			if _, ok := resp.Nodes[string(id)]; !ok {
				resp.Nodes[string(id)] = s.apiNodeLocked(id)
			}
		}
		resp.Chunks = append(resp.Chunks, loc)
		off += ch.Size
	}
	return resp, nil
}

// Stat implements api.CoordinatorServer.
func (s *Server) Stat(ctx context.Context, req *api.StatRequest) (*api.StatResponse, error) {
	path, err := dfs.CleanPath(req.Path)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	if err := s.may(ctx, path, access.Read); err != nil {
		return nil, err
	}
	info, err := s.fileVersion(ctx, path, req.VersionId)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &api.StatResponse{File: fileToAPI(info), Processing: s.processing(ctx, info.Content)}, nil
}

// List implements api.CoordinatorServer.
func (s *Server) List(ctx context.Context, req *api.ListRequest) (*api.ListResponse, error) {
	prefix := req.Prefix
	if len(prefix) > 0 && prefix[0] == '/' {
		prefix = prefix[1:]
	}
	if len(prefix) > dfs.MaxPathLen {
		return nil, rpc.ToStatus(fmt.Errorf("%w: prefix longer than %d bytes", dfs.ErrBadPath, dfs.MaxPathLen))
	}
	p := s.caller(ctx)
	if p.Admin {
		l, err := s.meta.List(ctx, prefix, req.Delimiter, req.StartAfter, int(req.Limit))
		if err != nil {
			return nil, rpc.ToStatus(err)
		}
		return listingToAPI(l), nil
	}
	if strings.Contains(prefix, "/") {
		// One bucket: all of it or nothing.
		if err := s.may(ctx, prefix, access.Read); err != nil {
			return nil, err
		}
		l, err := s.meta.List(ctx, prefix, req.Delimiter, req.StartAfter, int(req.Limit))
		if err != nil {
			return nil, rpc.ToStatus(err)
		}
		return listingToAPI(l), nil
	}
	// Across buckets: only what the caller may read, read a bounded number
	// of pages at a time (the answer says where to go on).
	if !p.CanAny(access.Read) {
		return nil, denied(p, "list: it holds the read right on no bucket (dfs bucket allow)")
	}
	resp := &api.ListResponse{}
	after := req.StartAfter
	for range listPagesPerCall {
		l, err := s.meta.List(ctx, prefix, req.Delimiter, after, int(req.Limit))
		if err != nil {
			return nil, rpc.ToStatus(err)
		}
		for _, pre := range l.Prefixes {
			if p.Can(pre, access.Read) {
				resp.Prefixes = append(resp.Prefixes, pre)
			}
		}
		for _, f := range l.Files {
			if p.Can(f.Path, access.Read) {
				resp.Files = append(resp.Files, fileToAPI(f))
			}
		}
		resp.Truncated, resp.NextStartAfter, after = l.Truncated, l.Next, l.Next
		if !l.Truncated || len(resp.Files)+len(resp.Prefixes) > 0 {
			break
		}
	}
	return resp, nil
}

// listPagesPerCall bounds the pages one List call reads for a caller who
// may read only some of the buckets a listing spans.
const listPagesPerCall = 8

func listingToAPI(l meta.Listing) *api.ListResponse {
	resp := &api.ListResponse{Prefixes: l.Prefixes, Truncated: l.Truncated, NextStartAfter: l.Next}
	for _, f := range l.Files {
		resp.Files = append(resp.Files, fileToAPI(f))
	}
	return resp
}

// Delete implements api.CoordinatorServer. The content and its chunks stay
// until garbage collection finds nothing refers to them.
func (s *Server) Delete(ctx context.Context, req *api.DeleteRequest) (*api.DeleteResponse, error) {
	path, err := dfs.CleanPath(req.Path)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	if err := s.may(ctx, path, access.Write); err != nil {
		return nil, err
	}
	marker, err := s.meta.Delete(ctx, path, meta.DeleteOptions{MarkAbsent: req.MarkAbsent})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &api.DeleteResponse{MarkerVersionId: marker}, nil
}

// Nodes implements api.CoordinatorServer.
func (s *Server) Nodes(ctx context.Context, req *api.NodesRequest) (*api.NodesResponse, error) {
	resp := &api.NodesResponse{}
	s.mu.Lock()
	drain := make(map[dfs.NodeID]int64, len(s.heal.drainLeft))
	stats := make(map[dfs.NodeID]*api.NodeStats, len(s.nodes))
	for id, v := range s.heal.drainLeft {
		drain[id] = v
	}
	for id, n := range s.nodes {
		stats[id] = cloneStats(n.stats)
		// The term the node knows, as people number terms (leader.go); 0
		// for one older than this coordinator remembers.
		stats[id].LeaderTerm = s.terms.number(n.stats.LeaderTerm)
	}
	s.mu.Unlock()
	for _, n := range s.NodeTable() {
		var beat int64
		if !n.LastHeartbeat.IsZero() {
			beat = n.LastHeartbeat.UnixNano()
		}
		resp.Nodes = append(resp.Nodes, &api.NodeStatus{
			Node:                  &api.Node{Id: string(n.ID), Addr: n.Addr, GrpcAddr: n.GRPCAddr, Zone: n.Zone},
			State:                 string(n.State),
			LastHeartbeatUnixNano: beat,
			CapacityBytes:         n.CapacityBytes,
			UsedBytes:             n.UsedBytes,
			FreeBytes:             n.FreeBytes,
			Chunks:                n.Chunks,
			DrainRemaining:        drain[n.ID],
			Stats:                 stats[n.ID],
		})
	}
	return resp, nil
}

// ReportBadChunk implements api.CoordinatorServer: the copy no longer
// counts, so reads avoid it and repair can replace it.
func (s *Server) ReportBadChunk(ctx context.Context, req *api.ReportBadChunkRequest) (*api.ReportBadChunkResponse, error) {
	h, err := dfs.HashFromBytes(req.Hash)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	id := dfs.NodeID(req.Node)
	s.mu.Lock()
	if n := s.nodes[id]; n != nil {
		s.removeLocLocked(h, id, n)
	}
	s.mu.Unlock()
	s.log.Warn("bad chunk copy reported", "chunk", h.Short(), "node", id, "reason", req.Reason)
	// Have the node check its copy: a bad one is quarantined and repaired.
	if s.ctx.Err() == nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.verifyReported(h, id)
		}()
	}
	return &api.ReportBadChunkResponse{}, nil
}
