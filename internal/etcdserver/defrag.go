package etcdserver

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Defragmentation. Periodic compaction frees the space of old revisions
// inside etcd's file but never gives it back: the file only grows, and
// etcd's quota counts the file. A member whose file holds much free space
// (more than DefragFreeRatio of it and more than DefragFreeBytes) rewrites
// it, online. Defragmenting blocks the member's reads and writes for the
// time it takes (about a second per GiB), so members take turns: each
// holds an etcd mutex (DefragLock) while it defragments, and only one
// member of a cluster is ever blocked.

const (
	// DefragLock is the mutex members take turns on.
	DefragLock = "/dfs-etcd/defrag"
	// DefragFreeRatio and DefragFreeBytes: a member defragments when its
	// file's free space exceeds both.
	DefragFreeRatio = 0.25
	DefragFreeBytes = 64 << 20
	// DefragCheck is how often a member looks at its file.
	DefragCheck = 10 * time.Minute
)

// needsDefrag reports whether a file of size bytes with inUse of them in
// use should be defragmented under the given thresholds.
func needsDefrag(size, inUse int64, ratio float64, minFree int64) bool {
	free := size - inUse
	return free > minFree && float64(free) > ratio*float64(size)
}

// defragLoop checks the member's file every check, and defragments it when
// needsDefrag says so. It returns when stop is closed.
func (s *Server) defragLoop(stop <-chan struct{}, check time.Duration, ratio float64, minFree int64) {
	defer s.wg.Done()
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if _, err := s.MaybeDefrag(stop, ratio, minFree); err != nil {
			s.log.Warn("etcd defragmentation", "err", err)
		}
	}
}

// MaybeDefrag defragments this member if its file holds more free space
// than ratio of it and minFree bytes, taking its turn on DefragLock. It
// reports whether it did.
func (s *Server) MaybeDefrag(stop <-chan struct{}, ratio float64, minFree int64) (bool, error) {
	be := s.e.Server.Backend()
	if !needsDefrag(be.Size(), be.SizeInUse(), ratio, minFree) {
		return false, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	cc := ClientConfig(s.Endpoints(), s.tls)
	cc.Context = ctx
	cli, err := clientv3.New(cc)
	if err != nil {
		return false, err
	}
	defer cli.Close()
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(30), concurrency.WithContext(ctx))
	if err != nil {
		return false, err
	}
	defer sess.Close()
	mu := concurrency.NewMutex(sess, DefragLock)
	if err := mu.Lock(ctx); err != nil {
		return false, err
	}
	defer mu.Unlock(context.Background())
	// Another member's turn may have taken a while: look again.
	size, inUse := be.Size(), be.SizeInUse()
	if !needsDefrag(size, inUse, ratio, minFree) {
		return false, nil
	}
	start := time.Now()
	if err := s.e.Server.Defragment(); err != nil {
		return false, err
	}
	s.log.Info("etcd defragmented", "member", s.e.Config().Name, "size_before", size, "in_use", inUse,
		"size_after", be.Size(), "took", time.Since(start).Round(time.Millisecond))
	return true, nil
}
