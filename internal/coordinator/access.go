package coordinator

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/meta"
	"github.com/dfs-store/dfs/internal/pki"
	"github.com/dfs-store/dfs/internal/rpc"
	"github.com/dfs-store/dfs/internal/s3"
)

// keyCacheTTL is how long a key read from etcd is used before it is read
// again: a deleted key or a revoked grant stops working within it.
const keyCacheTTL = 2 * time.Second

// keyCache holds access keys read from etcd for keyCacheTTL.
type keyCache struct {
	mu   sync.Mutex
	keys map[string]cachedKey
}

type cachedKey struct {
	rec *api.AccessKeyRecord
	p   *access.Principal // who the key is, made once per read
	at  time.Time
}

// forgetAll drops every key, after a change to many.
func (c *keyCache) forgetAll() {
	c.mu.Lock()
	c.keys = nil
	c.mu.Unlock()
}

// forget drops id, so a change this coordinator made is seen at once.
func (c *keyCache) forget(id string) {
	c.mu.Lock()
	delete(c.keys, id)
	c.mu.Unlock()
}

// accessKey returns key id and who it is, from the cache while fresh.
func (s *Server) accessKey(ctx context.Context, id string) (*api.AccessKeyRecord, *access.Principal, error) {
	now := time.Now()
	s.keys.mu.Lock()
	ck, ok := s.keys.keys[id]
	s.keys.mu.Unlock()
	if ok && now.Sub(ck.at) < keyCacheTTL {
		return ck.rec, ck.p, nil
	}
	rec, err := s.meta.AccessKey(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	p := principalOf(rec)
	s.keys.mu.Lock()
	if s.keys.keys == nil || len(s.keys.keys) >= maxCachedKeys {
		s.keys.keys = map[string]cachedKey{}
	}
	s.keys.keys[id] = cachedKey{rec: rec, p: p, at: now}
	s.keys.mu.Unlock()
	return rec, p, nil
}

// maxCachedKeys bounds the key cache.
const maxCachedKeys = 10000

// principalOf turns an access key's record into who the caller is.
func principalOf(rec *api.AccessKeyRecord) *access.Principal {
	p := &access.Principal{KeyID: rec.Id, Name: rec.Name, Admin: rec.Admin, Grants: map[string]access.Rights{}}
	for b, r := range rec.Grants {
		p.Grants[b] = access.Rights(r)
	}
	return p
}

type principalKey struct{}

// secure reports whether callers must prove who they are: the cluster
// runs with certificates.
func (s *Server) secure() bool { return s.cfg.TLS != nil }

// caller returns who made the call. On a cluster run with --insecure
// everyone is admin.
func (s *Server) caller(ctx context.Context) *access.Principal {
	if p, ok := ctx.Value(principalKey{}).(*access.Principal); ok {
		return p
	}
	if !s.secure() {
		return &access.Principal{Name: "insecure", Admin: true}
	}
	return nil
}

// denied is the error of a caller not allowed to do something.
func denied(p *access.Principal, format string, args ...any) error {
	return status.Errorf(codes.PermissionDenied, "%s may not %s", p.Who(), fmt.Sprintf(format, args...))
}

// may checks that the caller holds want on path's bucket. A bucket that
// does not exist (no record, no file) is NotFound rather than denied, as S3
// answers NoSuchBucket to anyone: bucket names are the cluster's, not
// secrets of the keys that hold them.
func (s *Server) may(ctx context.Context, path string, want access.Rights) error {
	p := s.caller(ctx)
	if p.Can(path, want) {
		return nil
	}
	bucket := access.Bucket(path)
	if bucket != "" && !s.bucketExists(ctx, bucket) {
		return status.Errorf(codes.NotFound, "bucket %q: not found", bucket)
	}
	return denied(p, "%s %q: it holds no %s right on bucket %q (dfs bucket allow)", verb(want), path, want, bucket)
}

// bucketExists reports whether bucket has a record or holds a file. An
// error reading counts as existing: the caller is then denied, as before.
func (s *Server) bucketExists(ctx context.Context, bucket string) bool {
	if _, err := s.meta.GetBucket(ctx, bucket); !errors.Is(err, dfs.ErrNotFound) {
		return true
	}
	l, err := s.meta.List(ctx, bucket+"/", "/", "", 1)
	if err != nil || len(l.Files) > 0 || len(l.Prefixes) > 0 {
		return true
	}
	_, err = s.meta.GetFile(ctx, bucket)
	return !errors.Is(err, dfs.ErrNotFound)
}

func verb(r access.Rights) string {
	switch r {
	case access.Read:
		return "read"
	case access.Write:
		return "write"
	}
	return "manage"
}

// The calls by how much they need. Calls that name a path check the path's
// bucket themselves; so do SetGrant (admin or the bucket's owner) and
// Events (filtered by read rights).
var (
	registryPrefix = "/" + api.Registry_ServiceDesc.ServiceName + "/"
	coordPrefix    = "/" + api.Coordinator_ServiceDesc.ServiceName + "/"
	accessPrefix   = "/" + api.Access_ServiceDesc.ServiceName + "/"
	adminCalls     = map[string]bool{
		coordPrefix + "LookupContent": true, coordPrefix + "Drain": true, coordPrefix + "Fsck": true,
		coordPrefix + "Jobs": true, coordPrefix + "RunGC": true,
		coordPrefix + "Undrain": true, coordPrefix + "RemoveNode": true,
		accessPrefix + "CreateKey": true, accessPrefix + "ListKeys": true, accessPrefix + "DeleteKey": true,
	}
	// monitorCalls read the cluster's state, no file: any caller.
	monitorCalls = map[string]bool{
		coordPrefix + "Nodes": true, coordPrefix + "Counters": true, coordPrefix + "Status": true,
		coordPrefix + "Events": true, accessPrefix + "WhoAmI": true,
		accessPrefix + "SigningKey": true, // checked in the handler: a gateway's certificate
		accessPrefix + "SignV2":     true, // likewise
	}
)

// authenticate finds who made a call (see package access) and checks the
// calls that need no path: admin calls need an admin, and a gateway acting
// for no one may only read the cluster's state.
func (s *Server) authenticate(ctx context.Context, method string) (context.Context, error) {
	if !s.secure() || strings.HasPrefix(method, registryPrefix) {
		return ctx, nil // the Registry service is for datanode certificates (rpc.RequireRole)
	}
	p, err := s.identify(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case adminCalls[method] && !p.Admin:
		return nil, denied(p, "call %s: it is for admins", method[strings.LastIndexByte(method, '/')+1:])
	case p.Monitor && !monitorCalls[method]:
		return nil, denied(p, "call %s: a gateway acting for no user reads only the cluster's state", method[strings.LastIndexByte(method, '/')+1:])
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

// identify returns who made a call, or an Unauthenticated error.
func (s *Server) identify(ctx context.Context) (*access.Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	one := func(k string) string {
		if v := md.Get(k); len(v) == 1 {
			return v[0]
		}
		return ""
	}
	if id := one(access.KeyIDHeader); id != "" {
		secret := one(access.SecretHeader)
		rec, p, err := s.knownKey(ctx, id)
		if err != nil {
			return nil, err
		}
		// Compare in constant time; a wrong secret and an unknown key
		// answer alike.
		if subtle.ConstantTimeCompare([]byte(secret), []byte(rec.Secret)) != 1 {
			return nil, status.Error(codes.Unauthenticated, "the access key id or secret is not valid")
		}
		return p, nil
	}
	peer, hasCert := rpc.Peer(ctx)
	if id := one(access.ActAsHeader); id != "" {
		if !hasCert || !peer.Holds(pki.RoleGateway) {
			return nil, status.Error(codes.PermissionDenied, "only a gateway's certificate may act for an access key")
		}
		_, p, err := s.knownKey(ctx, id)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
	if hasCert {
		switch {
		case peer.Client, peer.Holds(pki.RoleCoordinator), peer.Holds(pki.RoleWorker):
			return &access.Principal{Name: peer.Name, Admin: true}, nil
		case peer.Holds(pki.RoleGateway):
			return &access.Principal{Name: peer.Name, Monitor: true}, nil
		}
	}
	return nil, status.Error(codes.Unauthenticated, "no credentials: send an access key (DFS_ACCESS_KEY_ID and DFS_SECRET_ACCESS_KEY, "+
		"or the client configuration's; 'dfs key create' makes one)")
}

// knownKey returns key id, or an Unauthenticated error if there is none.
func (s *Server) knownKey(ctx context.Context, id string) (*api.AccessKeyRecord, *access.Principal, error) {
	if !access.ValidID(id) {
		return nil, nil, status.Error(codes.Unauthenticated, "the access key id or secret is not valid")
	}
	rec, p, err := s.accessKey(ctx, id)
	if err != nil {
		if errors.Is(err, dfs.ErrNotFound) {
			return nil, nil, status.Error(codes.Unauthenticated, "the access key id or secret is not valid")
		}
		return nil, nil, rpc.ToStatus(err)
	}
	return rec, p, nil
}

// AuthInterceptors check every call of the Coordinator and Access services
// (see authenticate).
func (s *Server) AuthInterceptors() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ctx, err := s.authenticate(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			ctx, err := s.authenticate(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			return h(srv, &withContext{ServerStream: ss, ctx: ctx})
		}),
	}
}

type withContext struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *withContext) Context() context.Context { return w.ctx }

// keyToAPI shows a key without its secret.
func keyToAPI(rec *api.AccessKeyRecord) *api.AccessKey {
	return &api.AccessKey{AccessKeyId: rec.Id, Name: rec.Name, Admin: rec.Admin, CreatedUnixNano: rec.CreatedUnixNano, Grants: rec.Grants}
}

// WhoAmI implements api.AccessServer.
func (s *Server) WhoAmI(ctx context.Context, req *api.WhoAmIRequest) (*api.AccessKey, error) {
	p := s.caller(ctx)
	if p.KeyID != "" {
		rec, _, err := s.accessKey(ctx, p.KeyID)
		if err != nil {
			return nil, rpc.ToStatus(err)
		}
		return keyToAPI(rec), nil
	}
	out := &api.AccessKey{AccessKeyId: p.KeyID, Name: p.Name, Admin: p.Admin, Certificate: p.KeyID == "", Grants: map[string]uint32{}}
	for b, r := range p.Grants {
		out.Grants[b] = uint32(r)
	}
	return out, nil
}

// CreateKey implements api.AccessServer.
func (s *Server) CreateKey(ctx context.Context, req *api.CreateKeyRequest) (*api.AccessKey, error) {
	name := strings.TrimSpace(req.Name)
	if name == "" || len(name) > 128 || strings.ContainsAny(name, "\x00\n\r") {
		return nil, status.Error(codes.InvalidArgument, "create key: a name of 1 to 128 characters on one line is required")
	}
	id, secret := access.NewKey()
	if req.AccessKeyId != "" || req.SecretAccessKey != "" {
		if !access.ValidID(req.AccessKeyId) {
			return nil, status.Errorf(codes.InvalidArgument, "import key: %q is not an access key id: want 3 to 128 letters, digits, '-' and '_'", req.AccessKeyId)
		}
		if err := access.CheckSecret(req.SecretAccessKey); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "import key %s: %v", req.AccessKeyId, err)
		}
		id, secret = req.AccessKeyId, req.SecretAccessKey
	}
	rec := &api.AccessKeyRecord{Id: id, Name: name, Secret: secret, Admin: req.Admin, CreatedUnixNano: time.Now().UnixNano()}
	if err := s.meta.CreateAccessKey(ctx, rec); err != nil {
		return nil, rpc.ToStatus(err)
	}
	s.log.Info("access key created", "key", id, "name", name, "admin", req.Admin, "by", s.caller(ctx).Who())
	out := keyToAPI(rec)
	out.SecretAccessKey = secret
	return out, nil
}

// ListKeys implements api.AccessServer.
func (s *Server) ListKeys(ctx context.Context, req *api.ListKeysRequest) (*api.ListKeysResponse, error) {
	recs, err := s.meta.AccessKeys(ctx)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	out := &api.ListKeysResponse{}
	for _, r := range recs {
		out.Keys = append(out.Keys, keyToAPI(r))
	}
	return out, nil
}

// DeleteKey implements api.AccessServer.
func (s *Server) DeleteKey(ctx context.Context, req *api.DeleteKeyRequest) (*api.DeleteKeyResponse, error) {
	if !access.ValidID(req.AccessKeyId) {
		return nil, status.Errorf(codes.InvalidArgument, "delete key: %q is not an access key id", req.AccessKeyId)
	}
	if err := s.meta.DeleteAccessKey(ctx, req.AccessKeyId); err != nil {
		return nil, rpc.ToStatus(err)
	}
	s.keys.forget(req.AccessKeyId)
	s.log.Info("access key deleted", "key", req.AccessKeyId, "by", s.caller(ctx).Who())
	return &api.DeleteKeyResponse{}, nil
}

// SetGrant implements api.AccessServer: an admin, or an owner of the
// bucket, sets what a key may do on it.
func (s *Server) SetGrant(ctx context.Context, req *api.SetGrantRequest) (*api.AccessKey, error) {
	if err := access.CheckBucket(req.Bucket); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if (req.Allow|req.Deny)&^uint32(access.All) != 0 {
		return nil, status.Errorf(codes.InvalidArgument, "grant: rights %#x: want a set of read 1, write 2, owner 4", req.Allow|req.Deny)
	}
	if !access.ValidID(req.AccessKeyId) {
		return nil, status.Errorf(codes.InvalidArgument, "grant: %q is not an access key id", req.AccessKeyId)
	}
	p := s.caller(ctx)
	if !p.Can(req.Bucket, access.Owner) {
		return nil, denied(p, "grant or revoke rights on bucket %q: that needs the bucket's owner right or an admin key", req.Bucket)
	}
	allow := access.Rights(req.Allow)
	if allow&access.Owner != 0 {
		allow |= access.Read | access.Write // an owner may do what it grants
	}
	var now access.Rights
	rec, err := s.meta.SetGrant(ctx, req.AccessKeyId, req.Bucket, func(old uint32) uint32 {
		now = (access.Rights(old) | allow) &^ access.Rights(req.Deny)
		return uint32(now)
	})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	s.keys.forget(req.AccessKeyId)
	s.log.Info("grant set", "key", req.AccessKeyId, "bucket", req.Bucket, "rights", now.String(), "by", p.Who())
	return keyToAPI(rec), nil
}

// SigningKey implements api.AccessServer: a gateway checks S3 signatures
// with keys derived from a secret it never sees.
func (s *Server) SigningKey(ctx context.Context, req *api.SigningKeyRequest) (*api.SigningKeyResponse, error) {
	p := s.caller(ctx)
	if !(p.Monitor || (p.Admin && p.KeyID == "")) {
		return nil, denied(p, "derive signing keys: that is for a gateway's certificate")
	}
	if len(req.Day) != 8 || strings.Trim(req.Day, "0123456789") != "" || req.Region == "" || len(req.Region) > 64 || req.Service == "" || len(req.Service) > 64 {
		return nil, status.Error(codes.InvalidArgument, "signing key: want a day YYYYMMDD, a region and a service")
	}
	if !access.ValidID(req.AccessKeyId) {
		return nil, status.Errorf(codes.NotFound, "access key %q: not found", req.AccessKeyId)
	}
	rec, _, err := s.accessKey(ctx, req.AccessKeyId)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &api.SigningKeyResponse{Key: s3.SigningKey(rec.Secret, req.Day, req.Region, req.Service)}, nil
}

// SignV2 implements api.AccessServer.
func (s *Server) SignV2(ctx context.Context, req *api.SignV2Request) (*api.SignV2Response, error) {
	p := s.caller(ctx)
	if !(p.Monitor || (p.Admin && p.KeyID == "")) {
		return nil, denied(p, "sign with a key: that is for a gateway's certificate")
	}
	if len(req.StringToSign) > 64<<10 {
		return nil, status.Error(codes.InvalidArgument, "sign: the string to sign passes 64 KiB")
	}
	if !access.ValidID(req.AccessKeyId) {
		return nil, status.Errorf(codes.NotFound, "access key %q: not found", req.AccessKeyId)
	}
	rec, _, err := s.accessKey(ctx, req.AccessKeyId)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &api.SignV2Response{Signature: s3.SignV2(rec.Secret, req.StringToSign)}, nil
}

func bucketToAPI(b meta.Bucket) *api.Bucket {
	return &api.Bucket{Name: b.Name, Owner: b.Owner, CreatedUnixNano: b.Created.UnixNano()}
}

// CreateBucket implements api.AccessServer: any key may make a bucket
// whose name is free, and owns it.
func (s *Server) CreateBucket(ctx context.Context, req *api.CreateBucketRequest) (*api.Bucket, error) {
	if err := access.CheckBucketName(req.Name); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p := s.caller(ctx)
	if p.KeyID == "" && !p.Admin {
		return nil, denied(p, "create a bucket")
	}
	b, err := s.meta.CreateBucket(ctx, req.Name, p.KeyID)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	s.keys.forgetAll()
	s.log.Info("bucket created", "bucket", b.Name, "by", p.Who())
	return bucketToAPI(b), nil
}

// DeleteBucket implements api.AccessServer.
func (s *Server) DeleteBucket(ctx context.Context, req *api.DeleteBucketRequest) (*api.DeleteBucketResponse, error) {
	if err := access.CheckBucket(req.Name); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p := s.caller(ctx)
	if !p.Can(req.Name, access.Owner) {
		if !s.bucketExists(ctx, req.Name) {
			return nil, status.Errorf(codes.NotFound, "bucket %q: not found", req.Name)
		}
		return nil, denied(p, "delete bucket %q: that needs its owner right or an admin key", req.Name)
	}
	if err := s.meta.DeleteBucket(ctx, req.Name); err != nil {
		return nil, rpc.ToStatus(err)
	}
	s.keys.forgetAll()
	s.log.Info("bucket deleted", "bucket", req.Name, "by", p.Who())
	return &api.DeleteBucketResponse{}, nil
}

// ListBuckets implements api.AccessServer.
func (s *Server) ListBuckets(ctx context.Context, req *api.ListBucketsRequest) (*api.ListBucketsResponse, error) {
	p := s.caller(ctx)
	bs, err := s.meta.Buckets(ctx)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	out := &api.ListBucketsResponse{}
	for _, b := range bs {
		if p.Can(b.Name, access.Read) || (p.KeyID != "" && b.Owner == p.KeyID) {
			out.Buckets = append(out.Buckets, bucketToAPI(b))
		}
	}
	return out, nil
}
