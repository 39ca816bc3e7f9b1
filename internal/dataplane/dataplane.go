// Package dataplane names the wire format of the datanodes' HTTP data plane,
// shared by the datanodes that serve it and the clients that call it:
//
//	PUT  /chunks/{sha256}   store a chunk; the body must hash to the name.
//	                        ChainHeader lists the nodes to forward it to.
//	                        200 answers a PutResult (JSON).
//	GET  /chunks/{sha256}   the chunk's bytes; Range requests supported.
//	HEAD /chunks/{sha256}   its size, without the bytes.
//
// Errors are JSON {"error": "..."} with a 4xx or 5xx status: 400 for a
// malformed name or bytes that do not match it, 404 for a chunk the node does
// not hold, 507 when the node has no space.
package dataplane

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/dfs-store/dfs"
)

// ChainHeader carries the rest of a replication chain on a chunk PUT:
// comma-separated id@host:port, in order. The receiving node forwards the
// bytes to the first and passes the rest along.
const ChainHeader = "X-Dfs-Chain"

// MaxChain is the longest chain a node accepts.
const MaxChain = 16

// PutResult is the body of a chunk PUT's answer: the nodes of the chain that
// stored the chunk durably, why the others did not, and which were never
// tried because a node before them in the chain could not pass the bytes on.
// A client places a chunk anew away from the Failed nodes only: the
// Unreached ones are not at fault.
type PutResult struct {
	Stored    []dfs.NodeID          `json:"stored"`
	Failed    map[dfs.NodeID]string `json:"failed,omitempty"`
	Unreached []dfs.NodeID          `json:"unreached,omitempty"`
}

// Hop is one node of a replication chain.
type Hop struct {
	ID   dfs.NodeID
	Addr string // host:port of its data plane
}

// ParseChain decodes a ChainHeader value.
func ParseChain(v string) ([]Hop, error) {
	if v == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > MaxChain {
		return nil, fmt.Errorf("chain of %d nodes is too long (at most %d)", len(parts), MaxChain)
	}
	out := make([]Hop, 0, len(parts))
	for _, part := range parts {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "@")
		if !ok || id == "" || addr == "" || strings.ContainsAny(addr, "/?#@ ") {
			return nil, fmt.Errorf("bad chain element %q: want id@host:port", part)
		}
		// A node forwards to the address as given: without a host or a
		// port it would reach some other service (port 80, or localhost).
		if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("bad chain element %q: want id@host:port", part)
		}
		out = append(out, Hop{dfs.NodeID(id), addr})
	}
	return out, nil
}

// FormatChain encodes a chain for ChainHeader.
func FormatChain(chain []Hop) string {
	parts := make([]string, len(chain))
	for i, h := range chain {
		parts[i] = string(h.ID) + "@" + h.Addr
	}
	return strings.Join(parts, ",")
}

// Body is the body of a chunk PUT that tells its sender when the HTTP
// transport has let go of it. A transport may go on reading a request body
// after Do has returned (when the peer answers before reading it all, as a
// node refusing a chunk for lack of space does) and closes the body once it
// stops. A sender must wait for Done before it reuses or releases what the
// body reads from.
type Body struct {
	r    io.Reader
	once sync.Once
	done chan struct{}
}

// NewBody returns a Body reading from r.
func NewBody(r io.Reader) *Body { return &Body{r: r, done: make(chan struct{})} }

func (b *Body) Read(p []byte) (int, error) { return b.r.Read(p) }

// Close marks the body as released; the transport calls it.
func (b *Body) Close() error {
	b.once.Do(func() { close(b.done) })
	return nil
}

// Done is closed once the body was closed. Every http.Client.Do closes the
// request body, on errors too, so after Do a sender may wait on Done.
func (b *Body) Done() <-chan struct{} { return b.done }
