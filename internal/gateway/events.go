package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

// Server-sent events. Each message has an event type and one JSON object:
//
//	hello         {time}                      first message of every stream,
//	                                          with the gateway's time
//	status        Status                      whether the cluster answers
//	file          {path, sha256, size, time}  a path was written
//	file_deleted  {path, time}
//	job           {sha256, processing, time}  a content's processing changed
//	node          NodeInfo                    a node's row changed
//	node_removed  {id}
//	cluster       ClusterInfo                 counters or leader changed
//	resync        {}                          events may have been missed
//	                                          (the coordinator stream was
//	                                          opened or reopened): re-read
//	                                          everything
//
// A subscriber too slow to keep up is dropped; its browser reconnects and
// re-reads the page, as after any reconnect.

// hub fans messages out to the event streams. It also keeps the state so
// far (the last message of each node, and of the cluster), which a new
// subscriber gets first: under the same lock as publishing, so none is
// missed between the two.
type hub struct {
	mu     sync.Mutex
	subs   map[chan []byte]func(path string) bool // what each may see of paths (nil: all)
	state  map[string][]byte
	closed bool
}

func newHub() *hub {
	return &hub{subs: map[chan []byte]func(string) bool{}, state: map[string][]byte{}}
}

// subscribe returns a channel of formatted messages, starting with the
// state so far, closed when the subscriber is dropped or the hub closes.
// Messages about a path are sent only if allow (when not nil) says so.
func (h *hub) subscribe(allow func(path string) bool) chan []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan []byte, 256+len(h.state))
	if h.closed {
		close(ch)
		return ch
	}
	keys := make([]string, 0, len(h.state))
	for k := range h.state {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ch <- h.state[k]
	}
	h.subs[ch] = allow
	return ch
}

// setState publishes msg and keeps it as the state of key; with a nil
// keep, key is dropped from the state.
func (h *hub) setState(key string, msg, keep []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if keep == nil {
		delete(h.state, key)
	} else {
		h.state[key] = keep
	}
	h.send(msg, nil)
}

func (h *hub) unsubscribe(ch chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

func message(kind string, v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return []byte(fmt.Sprintf("event: %s\ndata: %s\n\n", kind, data))
}

func (h *hub) publish(kind string, v any) { h.publishPath(kind, nil, v) }

// publishPath publishes a message about *path (if not nil): only the
// subscribers allowed to see the path get it.
func (h *hub) publishPath(kind string, path *string, v any) {
	msg := message(kind, v)
	if msg == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.send(msg, path)
}

func (h *hub) send(msg []byte, path *string) {
	for ch, allow := range h.subs {
		if path != nil && allow != nil && !allow(*path) {
			continue
		}
		select {
		case ch <- msg:
		default:
			delete(h.subs, ch)
			close(ch)
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}

func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	allow, err := s.readFilter(r.Context())
	if err != nil {
		s.clusterError(w, err)
		return
	}
	ch := s.hub.subscribe(allow)
	defer s.hub.unsubscribe(ch)
	w.WriteHeader(http.StatusOK)
	// The gateway's own time: a page measures from it how long ago what
	// follows (the state so far) last changed, whatever its own clock says.
	fmt.Fprintf(w, "retry: 2000\n%s", message("hello", map[string]any{"time": time.Now().UTC()}))
	if err := rc.Flush(); err != nil {
		return
	}
	s.metrics.sse.Inc()
	defer s.metrics.sse.Dec()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case msg, ok := <-ch:
			if !ok {
				return
			}
			// A client that stays connected but stops reading is dropped
			// rather than holding this handler forever.
			rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := w.Write(msg); err != nil {
				return
			}
		case <-keep.C:
			rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// relayEvents passes the coordinators' events on to the event streams,
// reconnecting (to any coordinator) when the stream breaks.
func (s *Server) relayEvents() {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	first := true
	for s.ctx.Err() == nil {
		es, err := s.cl.Events(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Debug("events: no coordinator stream, retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		// Changes made while there was no stream (before the first one,
		// too) are not replayed: tell the browsers to read again.
		if !first {
			s.log.Info("events: coordinator stream reconnected")
		}
		s.hub.publish("resync", struct{}{})
		first = false
		opened := time.Now()
		for {
			ev, err := es.Recv()
			if err != nil {
				if s.ctx.Err() == nil {
					s.log.Info("events: coordinator stream ended", "err", err)
				}
				break
			}
			s.publishEvent(ev)
		}
		es.Close()
		// A stream that ends at once (etcd without a leader) must not
		// make a busy loop of resyncs: back off unless it had lasted.
		if time.Since(opened) > 5*time.Second {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Server) publishEvent(ev client.Event) {
	switch ev.Kind {
	case client.EventFile:
		s.hub.publishPath(ev.Kind, &ev.Path, map[string]any{"path": ev.Path, "sha256": ev.Content, "size": ev.Size, "time": ev.Time})
	case client.EventFileDeleted:
		s.hub.publishPath(ev.Kind, &ev.Path, map[string]any{"path": ev.Path, "time": ev.Time})
	case client.EventJob:
		s.hub.publish(ev.Kind, map[string]any{"sha256": ev.Content, "processing": processingOf(ev.Processing), "time": ev.Time})
	}
}

// pollCluster reads the node table every NodePoll and the cluster's
// counters every CounterPoll, publishing what changed.
func (s *Server) pollCluster() {
	defer s.wg.Done()
	last := map[dfs.NodeID]dfs.NodeInfo{}
	var lastCluster *ClusterInfo
	tick := time.NewTicker(s.cfg.NodePoll)
	defer tick.Stop()
	var countersAt time.Time
	reach := reachability{}
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		nodes, err := s.nodes(ctx)
		if s.ctx.Err() == nil {
			if msg := reach.update(err, time.Now()); msg != nil {
				s.hub.setState("status", msg, msg)
			}
		}
		if err == nil {
			seen := map[dfs.NodeID]bool{}
			for _, n := range nodes {
				seen[n.ID] = true
				if old, ok := last[n.ID]; !ok || nodeChanged(old, n) {
					last[n.ID] = n
					msg := message("node", n)
					s.hub.setState("node/"+string(n.ID), msg, msg)
				}
			}
			for id := range last {
				if !seen[id] {
					delete(last, id)
					s.hub.setState("node/"+string(id), message("node_removed", map[string]any{"id": id}), nil)
				}
			}
		}
		if time.Since(countersAt) >= s.cfg.CounterPoll {
			countersAt = time.Now()
			if ci, err := s.clusterInfo(ctx, s.cfg.CounterPoll/2); err == nil {
				if lastCluster == nil || clusterChanged(*lastCluster, *ci) {
					msg := message("cluster", ci)
					s.hub.setState("cluster", msg, msg)
				}
				lastCluster = ci
			}
		}
		cancel()
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// reachability follows whether the cluster answers the gateway's poll, to
// tell the pages when that changes: a gateway that runs while no
// coordinator answers must not look live.
type reachability struct {
	known, reachable bool
	lastOK           time.Time
}

// Status is the "status" event: whether the cluster answers the gateway.
type Status struct {
	// Reachable: the last poll of the node table (every NodePoll) was
	// answered. When false, Code says why as API error codes do
	// ("unavailable", "timeout", ...), and LastOK is when it was last
	// answered (zero if never, since the gateway started).
	Reachable bool      `json:"reachable"`
	Code      string    `json:"code,omitempty"`
	Error     string    `json:"error,omitempty"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	Time      time.Time `json:"time"`
}

// update takes a poll's outcome and returns the status event to send, or
// nil if reachability did not change.
func (r *reachability) update(err error, now time.Time) []byte {
	ok := err == nil
	if ok {
		r.lastOK = now
	}
	if r.known && r.reachable == ok {
		return nil
	}
	r.known, r.reachable = true, ok
	st := Status{Reachable: ok, LastOK: r.lastOK, Time: now.UTC()}
	if !ok {
		code := statusOf(err)
		if code < 500 {
			code = http.StatusServiceUnavailable
		}
		st.Code, st.Error = errorCode(code, err), err.Error()
	}
	return message("status", st)
}

// nodeChanged reports a change of a datanode worth an event: its state,
// addresses or zone, its chunk count, corrupt copies, drain progress or
// fencing, or its space by at least spaceStep (a node's free space moves
// with everything else on its disk, every second, and is not news by the
// byte). Scrub progress and the heartbeat time alone are not news either,
// but the row is refreshed when the heartbeat shown is nodeRefresh old, so
// an idle node sends one event every nodeRefresh instead of one a second.
func nodeChanged(a, b dfs.NodeInfo) bool {
	if b.LastHeartbeat.Sub(a.LastHeartbeat) >= nodeRefresh || a.LastHeartbeat.Sub(b.LastHeartbeat) >= nodeRefresh {
		return true
	}
	if a.ID != b.ID || a.Addr != b.Addr || a.GRPCAddr != b.GRPCAddr || a.Zone != b.Zone ||
		a.State != b.State || a.Alive != b.Alive || a.Chunks != b.Chunks || a.CorruptChunks != b.CorruptChunks ||
		a.DrainRemaining != b.DrainRemaining || a.LeaderTerm != b.LeaderTerm || a.FencedCommands != b.FencedCommands ||
		a.LastHeartbeat.IsZero() != b.LastHeartbeat.IsZero() {
		return true
	}
	step := spaceStep(max(a.CapacityBytes, b.CapacityBytes))
	return moved(a.CapacityBytes, b.CapacityBytes, step) || moved(a.UsedBytes, b.UsedBytes, step) || moved(a.FreeBytes, b.FreeBytes, step)
}

// nodeRefresh is how old the heartbeat time an idle node's row shows may
// get before the row is sent again.
const nodeRefresh = 15 * time.Second

// spaceStep is the change of a node's space worth an event: 1% of its
// capacity (what a bar or a percentage shows), and at least 64 MiB. Less
// is the noise of a disk shared with other programs: hundreds of MiB come
// and go in seconds on a busy machine.
func spaceStep(capacity int64) int64 {
	return max(capacity/100, 64<<20)
}

func moved(a, b, step int64) bool { return a-b >= step || b-a >= step }

func clusterChanged(a, b ClusterInfo) bool {
	a.Time, b.Time = time.Time{}, time.Time{}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) != string(jb)
}
