// Package rpc holds what every gRPC endpoint of dfs shares: how connections
// are dialled and served, and how dfs errors cross the wire and come back as
// the same errors, so errors.Is(err, dfs.ErrNotFound) works on both sides.
package rpc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/pki"
)

// MaxMessage bounds a gRPC message. Lookups of very long files are the
// largest messages dfs sends (about 60 bytes per chunk).
const MaxMessage = 256 << 20

// Dial returns a plain-text client connection to addr (host:port), for a
// cluster run with --insecure. Connections are made lazily and re-made
// after failures.
func Dial(addr string) (*grpc.ClientConn, error) { return DialTLS(addr, nil) }

// DialTLS returns a client connection to addr over TLS with tc, or in plain
// text if tc is nil.
func DialTLS(addr string, tc *tls.Config, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Reconnect within seconds to a peer that comes back (a restarted or
		// replaced coordinator), not after gRPC's default backoff of up to
		// two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: 3 * time.Second}),
	}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn, nil
}

// NewServer returns a plain-text gRPC server with dfs's limits (see
// NewServerTLS).
func NewServer(log *slog.Logger) *grpc.Server { return NewServerTLS(log, nil) }

// NewServerTLS returns a gRPC server with dfs's limits that serves TLS with
// tc, or plain text if tc is nil. Every call is logged at debug level, and
// every failed call at info level, one line each, with its method,
// duration and request id. Interceptors in opts run after the logging
// ones.
func NewServerTLS(log *slog.Logger, tc *tls.Config, opts ...grpc.ServerOption) *grpc.Server {
	if log == nil {
		log = slog.Default()
	}
	o := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessage),
		grpc.MaxSendMsgSize(MaxMessage),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(logCalls(log)),
	}
	if tc != nil {
		o = append(o, grpc.Creds(credentials.NewTLS(tc)))
	}
	return grpc.NewServer(append(o, opts...)...)
}

// Peer returns who called: the node or client certificate the caller
// presented over TLS, verified against the cluster's CA; false if the call
// came in plain text or without a certificate.
func Peer(ctx context.Context) (pki.Peer, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.Peer{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return pki.Peer{}, false
	}
	return pki.PeerOf(&ti.State)
}

// RequireRole returns interceptors that refuse every call whose caller's
// certificate does not hold role (one of roles), except the methods for
// which free returns true. Use them on a TLS server only.
func RequireRole(free func(method string) bool, roles ...string) []grpc.ServerOption {
	check := func(ctx context.Context, method string) error {
		if free != nil && free(method) {
			return nil
		}
		p, ok := Peer(ctx)
		if !ok {
			return status.Errorf(codes.Unauthenticated, "%s: a cluster certificate is required", method)
		}
		for _, r := range roles {
			if p.Holds(r) {
				return nil
			}
		}
		return status.Errorf(codes.PermissionDenied, "%s: the certificate of %s does not hold the %s role", method, p.Name, strings.Join(roles, " or "))
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// RequestIDKey is the gRPC metadata key that carries a request id.
const RequestIDKey = "x-request-id"

func logCalls(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		level := slog.LevelDebug
		if err != nil {
			level = slog.LevelInfo
			if st, ok := status.FromError(err); ok && st.Code() == codes.Internal {
				level = slog.LevelWarn
			}
		}
		if log.Enabled(ctx, level) {
			id := ""
			if md, ok := metadata.FromIncomingContext(ctx); ok {
				if v := md.Get(RequestIDKey); len(v) > 0 {
					id = v[0]
				}
			}
			log.Log(ctx, level, "rpc", "method", info.FullMethod, "request_id", id, "duration", time.Since(start), "err", err)
		}
		return resp, err
	}
}

// WithRequestID returns a context whose outgoing gRPC calls carry a fresh
// request id, so one client operation can be followed across the logs of
// every server it touches.
func WithRequestID(ctx context.Context) context.Context {
	var b [6]byte
	rand.Read(b[:])
	return metadata.AppendToOutgoingContext(ctx, RequestIDKey, hex.EncodeToString(b[:]))
}

// ToStatus converts a dfs error to a gRPC status error that keeps its
// meaning and its message.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, dfs.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, dfs.ErrBadPath), errors.Is(err, dfs.ErrBadHash), errors.Is(err, dfs.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, dfs.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, dfs.ErrNoSpace):
		code = codes.ResourceExhausted
	case errors.Is(err, dfs.ErrConflict), errors.Is(err, dfs.ErrHashMismatch), errors.Is(err, dfs.ErrFenced), errors.Is(err, dfs.ErrNotLeader):
		code = codes.FailedPrecondition
	case errors.Is(err, dfs.ErrDenied):
		code = codes.PermissionDenied
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// FromStatus converts a gRPC error back into a dfs error: the message is the
// server's, and errors.Is matches the dfs sentinel of its code.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var kind error
	switch st.Code() {
	case codes.NotFound:
		kind = dfs.ErrNotFound
	case codes.InvalidArgument:
		// A path the server rejects says so; other bad arguments are
		// just invalid.
		kind = dfs.ErrInvalid
		if strings.Contains(st.Message(), dfs.ErrBadPath.Error()) {
			kind = dfs.ErrBadPath
		}
	case codes.Unavailable:
		kind = dfs.ErrUnavailable
	case codes.ResourceExhausted:
		kind = dfs.ErrNoSpace
	case codes.FailedPrecondition:
		kind = dfs.ErrConflict
		if strings.Contains(st.Message(), dfs.ErrPrecondition.Error()) {
			kind = dfs.ErrPrecondition
		}
	case codes.PermissionDenied:
		kind = dfs.ErrDenied
	case codes.Unauthenticated:
		kind = dfs.ErrUnauthenticated
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", st.Message(), context.DeadlineExceeded)
	case codes.Canceled:
		return fmt.Errorf("%s: %w", st.Message(), context.Canceled)
	default:
		return errors.New(st.Message())
	}
	return &remoteError{msg: st.Message(), kind: kind}
}

// remoteError carries the server's message verbatim (it already names the
// cause) while matching its kind with errors.Is.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

// Unreachable reports whether err is a failure to reach the peer at all
// (no connection), as opposed to an answer from it. A server's own
// "unavailable" answers (too few datanodes, etcd down) are not.
func Unreachable(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	msg := st.Message()
	return strings.HasPrefix(msg, "connection error") || strings.Contains(msg, "transport: ") ||
		strings.Contains(msg, "name resolver") || strings.Contains(msg, "produced zero addresses")
}

// Retryable reports whether err is worth retrying elsewhere: the peer was
// unreachable or overloaded, not the request wrong.
func Retryable(err error) bool {
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
			return true
		}
		return false
	}
	return errors.Is(err, dfs.ErrUnavailable)
}
