// Package gateway is the HTTP face of dfs: a REST API under /api/v1, live
// events as server-sent events, Prometheus metrics, health checks, and the
// web UI, whose files are embedded in the binary. The gateway keeps no state
// of its own: it is a client of the cluster through the Go SDK, so any
// number of gateways can serve one cluster.
//
// Uploads stream: a body is cut into chunks as it arrives, and memory stays
// bounded whatever its size. Nothing is committed unless the whole body
// arrived; a body cut off halfway leaves the path's previous version intact.
//
// With an API token set, every mutating request (PUT, POST, DELETE) needs
// "Authorization: Bearer <token>", compared in constant time. Without one,
// Listen refuses any address but loopback unless told the exposure is
// intended.
package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/internal/dataplane"
)

// Config configures a gateway. Zero values take the defaults.
type Config struct {
	// Client reaches the cluster. The gateway does not close it.
	Client *client.Client
	// Keys: the cluster runs with certificates, and every API request
	// needs an access key (auth.go). Token is then unused.
	Keys bool
	// SessionTTL is how long a web UI sign-in lasts (default 12h).
	SessionTTL time.Duration
	// Token, if set, is required on every mutating request to a gateway
	// of a cluster run with --insecure.
	Token string
	// Public: the gateway serves other hosts' names too. Without it and
	// without a token, only requests naming a loopback host are served, so
	// a web page on another site cannot reach the gateway through a DNS
	// name it rebinds to 127.0.0.1.
	Public bool
	// NodePoll is how often the node table is read for node events
	// (default 1s); CounterPoll how often the cluster's repair and GC
	// counters are (default 5s).
	NodePoll, CounterPoll time.Duration
	// SearchScan bounds how many paths one search request reads (default
	// 10000), so that every request answers quickly however many paths
	// there are; the answer says where to go on.
	SearchScan int
	// SlowWindow is how long a client may take to send another
	// dataplane.MinRateBytes of a request body, or to take one write of a
	// response, before its connection is cut (default
	// dataplane.MinRateWindow).
	SlowWindow time.Duration
	Logger     *slog.Logger
}

// Server is a gateway: an http.Handler and the goroutines that feed its
// event stream. Close stops them.
type Server struct {
	cfg      Config
	cl       *client.Client
	log      *slog.Logger
	metrics  *metrics
	hub      *hub
	web      http.Handler
	origins  *http.CrossOriginProtection
	sessions webSessions

	clusterMu  sync.Mutex
	clusterAt  time.Time
	clusterVal *ClusterInfo

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a gateway over cfg.Client and starts its event feeds.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, errors.New("gateway: no cluster client")
	}
	if cfg.NodePoll <= 0 {
		cfg.NodePoll = time.Second
	}
	if cfg.CounterPoll <= 0 {
		cfg.CounterPoll = 5 * time.Second
	}
	if cfg.SearchScan <= 0 {
		cfg.SearchScan = defaultSearchScan
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:     cfg,
		cl:      cfg.Client,
		log:     cfg.Logger.With("role", "gateway"),
		metrics: newMetrics(),
		hub:     newHub(),
		web:     webHandler(),
		origins: http.NewCrossOriginProtection(),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(2)
	go s.relayEvents()
	go s.pollCluster()
	return s, nil
}

// Close stops the event feeds and ends every event stream.
func (s *Server) Close() error {
	s.cancel()
	s.hub.close()
	s.wg.Wait()
	return nil
}

// Listen opens addr for the gateway. Without a token it refuses an address
// that is not loopback unless public is set: an open gateway lets anyone
// who reaches it write and delete.
func Listen(addr, token string, public bool) (net.Listener, error) {
	if token == "" && !public && !IsLoopback(addr) {
		return nil, fmt.Errorf("gateway: refusing to listen on %s without an API token: set --api-token (or DFS_API_TOKEN), listen on 127.0.0.1, or pass --insecure-public to expose it anyway", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen %s: %w", addr, err)
	}
	return ln, nil
}

// IsLoopback reports whether a listen address reaches this host only. An
// empty host ("":8080) listens on every interface and is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serve serves the gateway on ln until ctx ends, then shuts down: requests
// in flight get a few seconds to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// HTTP/2 where ln serves TLS (a tls.Listener whose configuration
	// offers "h2", as the gateway's HTTPS does): a browser then sends every
	// request and event stream of all its tabs over one connection, where
	// HTTP/1.1 gives it six per host. Plain HTTP stays HTTP/1.1.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	hs := &http.Server{
		Handler:           s,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Event streams never end on their own: end them first.
	s.hub.close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	<-errc
	return nil
}

// ServeHTTP routes a request. Routing is by hand, on the raw path: the
// standard mux cleans paths and would redirect "a/../b" instead of
// refusing it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// Slow or stalled clients are cut: a body must keep arriving, and a
	// response keep being read.
	window := s.cfg.SlowWindow
	if window <= 0 {
		window = dataplane.MinRateWindow
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		r.Body = dataplane.MinRateBody(w, r, window)
	}
	w = dataplane.MinRateWriter(w, window)
	rw := &recorder{ResponseWriter: w, status: http.StatusOK}
	route := s.route(rw, r)
	d := time.Since(start)
	s.metrics.observe(r.Method, route, rw.status, d, rw.bytes)
	level := slog.LevelDebug
	if rw.status >= 500 {
		level = slog.LevelInfo
	}
	s.log.Log(r.Context(), level, "http", "method", r.Method, "path", clip(r.URL.EscapedPath()), "route", route,
		"status", rw.status, "bytes", rw.bytes, "duration", d, "remote", r.RemoteAddr)
}

func (s *Server) route(w *recorder, r *http.Request) string {
	p := r.URL.EscapedPath()
	if s.cfg.Token == "" && !s.cfg.Keys && !s.cfg.Public && !loopbackHost(r.Host) {
		writeError(w, http.StatusMisdirectedRequest, fmt.Errorf("this gateway serves loopback names only, not %q (start it with a token to serve others)", clip(r.Host)))
		return "wrong-host"
	}
	// A browser's cross-site request (a form on another site posting
	// here) is refused whatever the token: only the web UI itself, and
	// clients that are not browsers, may change things.
	if err := s.origins.Check(r); err != nil {
		writeError(w, http.StatusForbidden, fmt.Errorf("cross-origin request refused: %v", err))
		return "cross-origin"
	}
	if s.cfg.Keys && needsKey(p) {
		ctx, err := s.authenticate(r)
		if err != nil {
			unauthorized(w, err)
			return "unauthorized"
		}
		r = r.WithContext(ctx)
	} else if !s.cfg.Keys && r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dfs"`)
			writeError(w, http.StatusUnauthorized, errors.New("this gateway needs an API token: send Authorization: Bearer <token>"))
			return "unauthorized"
		}
	}
	switch {
	case strings.HasPrefix(p, "/api/v1/files/"):
		s.serveFile(w, r, strings.TrimPrefix(p, "/api/v1/files/"))
		return "files/{path}"
	case p == "/api/v1/files":
		methods(w, r, s.serveList, http.MethodGet, http.MethodHead)
		return "files"
	case strings.HasPrefix(p, "/api/v1/stat/"):
		methods(w, r, func(w http.ResponseWriter, r *http.Request) {
			s.serveStat(w, r, strings.TrimPrefix(p, "/api/v1/stat/"))
		}, http.MethodGet)
		return "stat/{path}"
	case strings.HasPrefix(p, "/api/v1/versions/"):
		s.serveVersions(w, r, strings.TrimPrefix(p, "/api/v1/versions/"))
		return "versions/{path}"
	case p == "/api/v1/upload":
		methods(w, r, s.serveUpload, http.MethodPost)
		return "upload"
	case strings.HasPrefix(p, "/api/v1/content/"):
		s.serveContent(w, r, strings.TrimPrefix(p, "/api/v1/content/"))
		return "content"
	case p == "/api/v1/nodes":
		methods(w, r, s.serveNodes, http.MethodGet)
		return "nodes"
	case p == "/api/v1/cluster":
		methods(w, r, s.serveCluster, http.MethodGet)
		return "cluster"
	case p == "/api/v1/session":
		s.serveSession(w, r)
		return "session"
	case p == "/api/v1/info":
		methods(w, r, s.serveInfo, http.MethodGet)
		return "info"
	case p == "/api/v1/events":
		methods(w, r, s.serveEvents, http.MethodGet)
		return "events"
	case p == "/healthz":
		methods(w, r, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}, http.MethodGet, http.MethodHead)
		return "healthz"
	case p == "/readyz":
		methods(w, r, s.serveReady, http.MethodGet, http.MethodHead)
		return "readyz"
	case p == "/metrics":
		methods(w, r, s.metrics.handler.ServeHTTP, http.MethodGet)
		return "metrics"
	case p == "/api" || strings.HasPrefix(p, "/api/"):
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, clip(p)))
		return "unknown"
	}
	methods(w, r, s.web.ServeHTTP, http.MethodGet, http.MethodHead)
	return "web"
}

// authorized reports whether a mutating request may proceed.
// loopbackHost reports whether a request's Host names this machine's
// loopback: localhost or a loopback address, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.cfg.Token)) == 1
}

func methods(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, allowed ...string) {
	for _, m := range allowed {
		if r.Method == m {
			h(w, r)
			return
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed here; use %s", r.Method, strings.Join(allowed, " or ")))
}

func (s *Server) serveInfo(w http.ResponseWriter, r *http.Request) {
	mode := "none"
	switch {
	case s.cfg.Keys:
		mode = "key"
	case s.cfg.Token != "":
		mode = "token"
	}
	writeJSON(w, http.StatusOK, map[string]any{"auth_required": mode != "none", "auth": mode, "max_path_bytes": dfs.MaxPathLen})
}

// serveReady answers 200 once the cluster answers and has a live datanode.
func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	nodes, err := s.cl.Nodes(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("not ready: %w", err))
		return
	}
	alive := 0
	for _, n := range nodes {
		if n.Alive {
			alive++
		}
	}
	if alive == 0 {
		writeError(w, http.StatusServiceUnavailable, errors.New("not ready: no live datanode"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "nodes_alive": alive})
}

// writeJSON writes v as the answer.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// writeError answers {"error": "...", "code": "..."} with status.
func writeError(w http.ResponseWriter, status int, err error) {
	if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		// Not "Basic": a browser would put up its own sign-in box over
		// the web UI's.
		w.Header().Set("WWW-Authenticate", `DFS-Key realm="dfs"`)
	}
	writeJSON(w, status, map[string]string{"error": err.Error(), "code": errorCode(status, err)})
}

// errorCode names the kind of an error for programs, the web UI among
// them, which say it in their own words: the message is for people
// reading logs and may carry the cluster's own wording.
func errorCode(status int, err error) string {
	switch {
	case errors.Is(err, dfs.ErrBadPath):
		return "bad_path"
	case errors.Is(err, dfs.ErrBadHash):
		return "bad_hash"
	}
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "denied"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusConflict:
		return "conflict"
	case http.StatusPreconditionFailed:
		return "precondition_failed"
	case http.StatusRequestedRangeNotSatisfiable:
		return "range_not_satisfiable"
	case http.StatusMisdirectedRequest:
		return "wrong_host"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusGatewayTimeout:
		return "timeout"
	case http.StatusInsufficientStorage:
		return "no_space"
	}
	if status >= 500 {
		return "internal"
	}
	return "bad_request"
}

// statusOf maps an error from the cluster to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, dfs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, dfs.ErrBadPath), errors.Is(err, dfs.ErrBadHash), errors.Is(err, dfs.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, dfs.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, dfs.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, dfs.ErrDenied):
		return http.StatusForbidden
	case errors.Is(err, dfs.ErrNoSpace):
		return http.StatusInsufficientStorage
	case errors.Is(err, dfs.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// recorder remembers the status and counts the bytes of an answer.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush passes through for event streams.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
