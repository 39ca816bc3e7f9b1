package client

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/rpc"
)

// eventsOpenHeader is coordinator.EventsOpenHeader (the client does not
// import the coordinator).
const eventsOpenHeader = "dfs-events"

// Kinds of Event.
const (
	EventFile        = "file"         // a path was written
	EventFileDeleted = "file_deleted" // a path was removed
	EventJob         = "job"          // a content's processing job changed state
)

// Event is a change in the cluster, as the coordinator's Events stream
// reports it.
type Event struct {
	Kind    string          `json:"kind"`
	Path    string          `json:"path,omitempty"`
	Content dfs.ContentHash `json:"sha256,omitzero"`
	Size    int64           `json:"size,omitempty"`
	// Processing is the job's new state, for EventJob; nil when the job
	// record was removed.
	Processing *dfs.Processing `json:"processing,omitempty"`
	Time       time.Time       `json:"time"`
}

// EventStream is an open stream of events from one coordinator.
type EventStream struct {
	stream api.Coordinator_EventsClient
	cancel context.CancelFunc
}

// Events opens a stream of changes from now on: paths written and deleted,
// processing jobs changing state. It tries each coordinator in turn until
// one accepts. The stream ends when ctx ends, Close is called, or the
// coordinator goes away; changes made before a new stream opens are not
// replayed, so a caller that reconnects should re-read what it shows.
func (c *Client) Events(ctx context.Context) (*EventStream, error) {
	var es *EventStream
	err := c.call(ctx, func(cc api.CoordinatorClient) error {
		sctx, cancel := context.WithCancel(ctx)
		s, err := cc.Events(sctx, &api.EventsRequest{})
		if err == nil {
			// The coordinator sends its open header at once: an
			// unreachable coordinator fails here, not later, and one that
			// refused the stream answered with no headers but a status,
			// which Recv returns.
			var md metadata.MD
			if md, err = s.Header(); err == nil && len(md.Get(eventsOpenHeader)) == 0 {
				if _, err = s.Recv(); err == nil {
					err = status.Error(codes.Internal, "events: the coordinator sent no open header")
				}
			}
		}
		if err != nil {
			cancel()
			return err
		}
		es = &EventStream{stream: s, cancel: cancel}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return es, nil
}

// Recv waits for the next event.
func (e *EventStream) Recv() (Event, error) {
	ev, err := e.stream.Recv()
	if err != nil {
		return Event{}, rpc.FromStatus(err)
	}
	out := Event{Kind: ev.Kind, Path: ev.Path, Size: ev.Size}
	if len(ev.ContentHash) > 0 {
		out.Content, _ = dfs.HashFromBytes(ev.ContentHash)
	}
	out.Processing = processingFromAPI(out.Content, ev.Processing)
	if ev.UnixNano != 0 {
		out.Time = time.Unix(0, ev.UnixNano)
	}
	return out, nil
}

// Close ends the stream.
func (e *EventStream) Close() { e.cancel() }
