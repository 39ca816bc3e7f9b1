package datanode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/bufpool"
	"github.com/dfs-store/dfs/internal/dataplane"
	"github.com/dfs-store/dfs/internal/pki"
)

func (n *Node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /chunks/{hash}", n.putChunk)
	mux.HandleFunc("GET /chunks/{hash}", n.getChunk)
	mux.HandleFunc("HEAD /chunks/{hash}", n.getChunk)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	return mux
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (n *Node) putChunk(w http.ResponseWriter, r *http.Request) {
	h, err := dfs.ParseHash(r.PathValue("hash"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if r.ContentLength > MaxChunkSize {
		httpError(w, http.StatusRequestEntityTooLarge, "chunk %s: %d bytes, at most %d", h.Short(), r.ContentLength, MaxChunkSize)
		return
	}
	chain, err := dataplane.ParseChain(r.Header.Get(dataplane.ChainHeader))
	if err == nil {
		if len(chain) > 0 {
			n.waitRegistered(r.Context()) // what bounds a chain comes with it
		}
		err = n.checkChain(chain)
	}
	if errors.Is(err, errNoBound) {
		httpError(w, http.StatusServiceUnavailable, "chunk %s: %v", h.Short(), err)
		return
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "chunk %s: %v", h.Short(), err)
		return
	}
	if !n.capable(w, r, func(keys dataplane.Keys, tok string) error {
		return dataplane.CheckPut(keys, tok, h, n.id, r.Header.Get(dataplane.ChainHeader), time.Now())
	}) {
		return
	}
	body := http.MaxBytesReader(w, dataplane.MinRateBody(w, r, n.cfg.SlowWindow), MaxChunkSize)
	ctx := r.Context()

	outs := 1
	if len(chain) > 0 {
		outs = 2
	}
	f := newFanout(outs)
	type localResult struct{ err error }
	localDone := make(chan localResult, 1)
	go func() {
		var src io.Reader = f.outs[0]
		if r.ContentLength > 0 {
			// The store learns the length before it reads: a chunk too
			// large for a volume goes straight to its file, instead of
			// being read into a volume's buffer first and copied on.
			src = sized{src, r.ContentLength}
		}
		_, err := n.store.Put(ctx, h, src)
		f.outs[0].abandon()
		if err == nil {
			// Tell the coordinators while the nodes downstream still
			// write: each node of a chain announcing only after the
			// ones after it answered stacked one report round trip per
			// copy onto every write.
			n.announce(ctx)
		}
		localDone <- localResult{err}
	}()
	var downDone chan dataplane.PutResult
	if len(chain) > 0 {
		downDone = make(chan dataplane.PutResult, 1)
		go func() {
			res := n.forward(ctx, h, chain, f.outs[1], r.ContentLength)
			f.outs[1].abandon()
			downDone <- res
		}()
	}
	_, copyErr := f.copyFrom(body)
	local := <-localDone
	res := dataplane.PutResult{Failed: map[dfs.NodeID]string{}}
	if downDone != nil {
		res = <-downDone
		if res.Failed == nil {
			res.Failed = map[dfs.NodeID]string{}
		}
	}
	if copyErr != nil {
		// The client's body broke off: nothing here was stored, and the
		// downstream nodes saw the same truncated stream.
		httpError(w, http.StatusBadRequest, "chunk %s: reading body: %v", h.Short(), copyErr)
		return
	}
	if local.err != nil {
		if errors.Is(local.err, dfs.ErrHashMismatch) {
			httpError(w, http.StatusBadRequest, "%v", local.err)
			return
		}
		n.log.Warn("chunk write failed", "chunk", h.Short(), "err", local.err)
		res.Failed[n.id] = local.err.Error()
	} else {
		res.Stored = append([]dfs.NodeID{n.id}, res.Stored...)
	}
	if len(res.Stored) == 0 {
		code := http.StatusInternalServerError
		if errors.Is(local.err, dfs.ErrNoSpace) {
			code = http.StatusInsufficientStorage
		}
		httpError(w, code, "chunk %s: stored nowhere: %v", h.Short(), local.err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// sized is a body whose length is known from its request (the server
// holds the body to it): its Len is what the store sizes a write by.
type sized struct {
	io.Reader
	n int64
}

func (s sized) Len() int { return int(s.n) }

// forward sends the chunk to the next node of the chain, passing the rest
// of the chain along, and returns what the downstream nodes stored.
func (n *Node) forward(ctx context.Context, h dfs.Hash, chain []dataplane.Hop, body io.Reader, size int64) dataplane.PutResult {
	next := chain[0]
	// When next cannot be reached or refuses the chunk, only next failed:
	// the nodes after it never saw the bytes. Blaming them too would make
	// the client place the chunk anew away from healthy nodes, and fail
	// outright when too few are left.
	fail := func(err error) dataplane.PutResult {
		res := dataplane.PutResult{Failed: map[dfs.NodeID]string{next.ID: err.Error()}}
		for _, c := range chain[1:] {
			res.Unreached = append(res.Unreached, c.ID)
		}
		return res
	}
	tracked := dataplane.NewBody(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, n.scheme+next.Addr+"/chunks/"+h.String(), tracked)
	if err != nil {
		return fail(err)
	}
	req.ContentLength = size
	if len(chain) > 1 {
		req.Header.Set(dataplane.ChainHeader, dataplane.FormatChain(chain[1:]))
	}
	// The caller abandons or closes body once forward returns, so wait
	// until the transport has stopped reading it: a node that refuses the
	// chunk answers before it has read it all, and the transport then
	// reads on (racing with abandon) until the connection is torn down.
	defer func() { <-tracked.Done() }()
	resp, err := n.client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return fail(fmt.Errorf("%s: %s", resp.Status, e.Error))
	}
	var res dataplane.PutResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&res); err != nil {
		return fail(fmt.Errorf("decode answer: %w", err))
	}
	return res
}

func (n *Node) getChunk(w http.ResponseWriter, r *http.Request) {
	h, err := dfs.ParseHash(r.PathValue("hash"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if !n.capable(w, r, func(keys dataplane.Keys, tok string) error {
		return dataplane.CheckGet(keys, tok, h, time.Now())
	}) {
		return
	}
	f, size, err := n.store.Open(h)
	if errors.Is(err, dfs.ErrNotFound) {
		httpError(w, http.StatusNotFound, "chunk %s: not on node %s", h, n.id)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "chunk %s: %v", h.Short(), err)
		return
	}
	defer f.Close()
	defer dataplane.ResponseDeadline(w, size, n.cfg.SlowWindow)()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+h.String()+`"`)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	if r.Method == http.MethodGet && size > 0 && size <= wholeReadMax && plainGet(r) {
		// A small chunk is read with one read, not one per copy buffer:
		// volumes are read without read ahead (each record is a chunk of
		// its own), so each read would be a trip to the disk. A failed
		// read is an error response, not a short body.
		bp := wholeBufs.Get(int(size))
		defer wholeBufs.Put(bp)
		b := *bp
		if _, err := f.ReadAt(b, 0); err != nil {
			httpError(w, http.StatusInternalServerError, "chunk %s: %v", h.Short(), err)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Write(b)
		return
	}
	// An *os.File goes to ServeContent as it is, so the bytes travel by
	// sendfile(2) rather than through a user-space buffer.
	var content io.ReadSeeker = io.NewSectionReader(f, 0, size)
	if rs, ok := f.(io.ReadSeeker); ok {
		content = rs
	}
	http.ServeContent(w, r, "", time.Time{}, content)
}

// wholeReadMax is the largest chunk getChunk reads with one read.
const wholeReadMax = 1 << 20

// plainGet reports whether r asks for the whole chunk, unconditionally.
func plainGet(r *http.Request) bool {
	for _, k := range []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if _, ok := r.Header[k]; ok {
			return false
		}
	}
	return true
}

// wholeBufs holds the buffers of whole reads.
var wholeBufs bufpool.Pool

// checkChain refuses a chain that would send a chunk round in a loop (back
// to this node, or to a node twice) or to more nodes than the cluster keeps
// copies on.
// capable reports whether a chunk request may be served, answering it
// when not: a peer with a cluster certificate of a role that moves chunks
// (a datanode forwarding a chain or copying a repair, a coordinator, a
// worker) or the cluster's operator may; anyone else, a client or a
// gateway, needs a capability token that check accepts. On a cluster run
// with --insecure everyone may.
func (n *Node) capable(w http.ResponseWriter, r *http.Request, check func(dataplane.Keys, string) error) bool {
	if n.cfg.TLS == nil {
		return true
	}
	if p, ok := pki.PeerOf(r.TLS); ok && (p.Client || p.Holds(pki.RoleDatanode) || p.Holds(pki.RoleCoordinator) || p.Holds(pki.RoleWorker)) {
		return true
	}
	key := n.tokenKeys.Load()
	if key == nil && n.waitRegistered(r.Context()) {
		key = n.tokenKeys.Load()
	}
	if key == nil {
		httpError(w, http.StatusServiceUnavailable, "node %s has not registered with a coordinator yet: it cannot check capability tokens", n.id)
		return false
	}
	keys := func(id byte) (dataplane.TokenKey, bool) { return *key, id == key.ID }
	if err := check(keys, r.Header.Get(dataplane.TokenHeader)); err != nil {
		httpError(w, http.StatusForbidden, "%s %s: %v", r.Method, r.URL.Path, err)
		return false
	}
	return true
}

// errNoBound: a chain reached a node that has not registered yet, so does
// not know how long a chain may be. It forwards none until it does.
var errNoBound = errors.New("this node has not registered with a coordinator yet: it forwards no chain before it knows the replication factor")

func (n *Node) checkChain(chain []dataplane.Hop) error {
	seen := map[dfs.NodeID]bool{n.id: true}
	for _, hop := range chain {
		if seen[hop.ID] {
			return fmt.Errorf("the chain names node %s twice, or this node itself", hop.ID)
		}
		seen[hop.ID] = true
	}
	r := int(n.replicas.Load())
	if r == 0 && len(chain) > 0 {
		return errNoBound
	}
	if r > 0 && len(chain) > r-1 {
		return fmt.Errorf("a chain of %d more nodes: the cluster keeps %d copies, so at most %d", len(chain), r, r-1)
	}
	return nil
}
