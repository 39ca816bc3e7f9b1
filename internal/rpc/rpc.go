// Package rpc holds what every gRPC endpoint of dfs shares: how connections
// are dialled and served, and how dfs errors cross the wire and come back as
// the same errors, so errors.Is(err, dfs.ErrNotFound) works on both sides.
package rpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
)

// MaxMessage bounds a gRPC message. Lookups of very long files are the
// largest messages dfs sends (about 60 bytes per chunk).
const MaxMessage = 256 << 20

// Dial returns a client connection to addr (host:port). Connections are
// made lazily and re-made after failures.
func Dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Reconnect within seconds to a peer that comes back (a restarted or
		// replaced coordinator), not after gRPC's default backoff of up to
		// two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: 3 * time.Second}),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn, nil
}

// NewServer returns a gRPC server with dfs's limits. Every call is logged at
// debug level, and every failed call at info level, one line each, with its
// method, duration and request id.
func NewServer(log *slog.Logger) *grpc.Server {
	if log == nil {
		log = slog.Default()
	}
	return grpc.NewServer(
		grpc.MaxRecvMsgSize(MaxMessage),
		grpc.MaxSendMsgSize(MaxMessage),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(logCalls(log)),
	)
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
