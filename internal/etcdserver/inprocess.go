package etcdserver

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy/adapter"
	"go.etcd.io/raft/v3"
	"google.golang.org/grpc/metadata"
)

// KV returns keys and values of this member called in-process: no socket,
// TLS or gRPC transport between a coordinator and the member it embeds (a
// metadata read through the member's own port cost about as much CPU in
// transport and TLS as in etcd's own work). It reaches only this member,
// which forwards writes to its leader as it does for any client, and it
// keeps etcd's promise to a request made with clientv3.WithRequireLeader:
// without a leader the request fails at once with rpctypes.ErrNoLeader
// rather than waiting out etcd's request timeout.
//
// Watches, leases and elections stay on a client of the member's port,
// where etcd also ends a watch whose member loses its leader.
func (s *Server) KV() clientv3.KV {
	return clientv3.NewKVFromKVClient(adapter.KvServerToKvClient(leaderKV{v3rpc.NewQuotaKVServer(s.e.Server), s.e.Server}), nil)
}

// leaderKV does for in-process calls what etcd's gRPC interceptor does for
// a request that requires a leader.
type leaderKV struct {
	pb.KVServer
	s *etcdserver.EtcdServer
}

func (k leaderKV) check(ctx context.Context) error {
	// The one key is looked up, not the whole metadata copied: this runs
	// on every metadata call.
	if v := metadata.ValueFromOutgoingContext(ctx, rpctypes.MetadataRequireLeaderKey); len(v) > 0 &&
		v[0] == rpctypes.MetadataHasLeader && k.s.Leader() == types.ID(raft.None) {
		return rpctypes.ErrGRPCNoLeader
	}
	return nil
}

// guarded calls f unless ctx requires a leader and the member has none.
func guarded[Req, Resp any](k leaderKV, ctx context.Context, r Req, f func(context.Context, Req) (Resp, error)) (Resp, error) {
	if err := k.check(ctx); err != nil {
		var zero Resp
		return zero, err
	}
	return f(ctx, r)
}

func (k leaderKV) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	return guarded(k, ctx, r, k.KVServer.Range)
}

func (k leaderKV) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	return guarded(k, ctx, r, k.KVServer.Put)
}

func (k leaderKV) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return guarded(k, ctx, r, k.KVServer.DeleteRange)
}

func (k leaderKV) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	return guarded(k, ctx, r, k.KVServer.Txn)
}

func (k leaderKV) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return guarded(k, ctx, r, k.KVServer.Compact)
}
