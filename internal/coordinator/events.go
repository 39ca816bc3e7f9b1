package coordinator

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/access"
	"github.com/dfs-store/dfs/internal/meta"
)

// eventsState ends the Events streams when the coordinator stops. The zero
// value is ready to use.
type eventsState struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
}

func (e *eventsState) context() context.Context {
	e.once.Do(func() { e.ctx, e.cancel = context.WithCancel(context.Background()) })
	return e.ctx
}

// StopEvents ends every Events stream, so that a graceful stop of the gRPC
// server does not wait for watchers that never hang up on their own. New
// streams are refused from then on.
func (s *Server) StopEvents() {
	s.events.context()
	s.events.cancel()
}

// EventsOpenHeader is the header an Events stream sends once it is open. A
// refused stream has no headers of its own (gRPC's trailers-only answer),
// so a client tells the two apart by it.
const EventsOpenHeader = "dfs-events"

// Events implements api.CoordinatorServer: it streams paths written and
// deleted and processing jobs changing state, from an etcd watch on the
// files and jobs prefixes. Any coordinator serves it (the watch is etcd's,
// not the leader's); a client that loses its stream reconnects to any
// coordinator and re-reads what it shows, since changes made while it was
// away are not replayed.
func (s *Server) Events(req *api.EventsRequest, stream api.Coordinator_EventsServer) error {
	stop := s.events.context()
	if stop.Err() != nil {
		return status.Error(codes.Unavailable, "events: coordinator is stopping")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-stop.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	// Headers tell the client at once that the stream is open, before any
	// event: it can then fail over to another coordinator when this one
	// cannot serve.
	if err := stream.SendHeader(metadata.Pairs(EventsOpenHeader, "1")); err != nil {
		return err
	}
	// A key sees the paths it may read; a job event names a content, not
	// a path.
	p := s.caller(stream.Context())
	err := s.meta.WatchChanges(ctx, func(c meta.Change) error {
		if (c.Kind == meta.FileWritten || c.Kind == meta.FileDeleted) && !p.Monitor && !p.Can(c.File.Path, access.Read) {
			return nil
		}
		ev := &api.Event{Kind: string(c.Kind), UnixNano: c.Time().UnixNano()}
		switch c.Kind {
		case meta.FileWritten:
			ev.Path, ev.ContentHash, ev.Size = c.File.Path, c.File.Content[:], c.File.Size
		case meta.FileDeleted:
			ev.Path = c.File.Path
		case meta.JobChanged:
			ev.ContentHash = c.Content[:]
			ev.Processing = meta.ProcessingFromJob(c.Job)
		}
		return stream.Send(ev)
	})
	switch {
	case stop.Err() != nil:
		return status.Error(codes.Unavailable, "events: coordinator is stopping")
	case stream.Context().Err() != nil:
		return status.FromContextError(stream.Context().Err()).Err()
	}
	s.log.Info("events stream ended", "err", err)
	return status.Errorf(codes.Unavailable, "events: %v", err)
}
