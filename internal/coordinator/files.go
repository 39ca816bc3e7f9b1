package coordinator

import (
	"context"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// fileCount is the number of paths in the namespace, kept from an etcd
// watch of the file records: counted once when the watch starts (etcd counts
// the prefix for us), then one more for each created path and one fewer for
// each deleted one. An overwrite is not a creation. A watch that breaks
// (etcd compacted past it, or lost its leader) is restarted with a recount.
type fileCount struct {
	files atomic.Int64
	known atomic.Bool // counted at least once
}

// countFiles keeps s.fc until the coordinator stops.
func (s *Server) countFiles() {
	defer s.wg.Done()
	cli := s.meta.Client()
	prefix := s.meta.Schema().FilesPrefix()
	for s.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Debug("count files", "err", err)
			}
			select {
			case <-s.ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		s.fc.files.Store(resp.Count)
		s.fc.known.Store(true)
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
		for wr := range cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			if wr.Err() != nil {
				s.log.Info("file count watch ended, counting again", "err", wr.Err())
				break
			}
			for _, ev := range wr.Events {
				switch {
				case ev.Type == clientv3.EventTypeDelete:
					s.fc.files.Add(-1)
				case ev.IsCreate():
					s.fc.files.Add(1)
				}
			}
		}
		wcancel()
	}
}
