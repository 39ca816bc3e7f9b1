package meta

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// ChangeKind says what a Change is about.
type ChangeKind string

const (
	FileWritten ChangeKind = "file"         // a path was written or overwritten
	FileDeleted ChangeKind = "file_deleted" // a path was removed
	JobChanged  ChangeKind = "job"          // a processing job was queued or changed state
)

// Change is one change to the namespace or the job queue, as etcd's watch
// reports it.
type Change struct {
	Kind ChangeKind
	// File is the written record; for FileDeleted only Path is set.
	File dfs.FileInfo
	// Content and Job are set for JobChanged. Job is nil when the job record
	// was deleted (its content was collected).
	Content dfs.ContentHash
	Job     *api.JobRecord
	// Revision is etcd's revision of the change.
	Revision int64
}

// WatchChanges calls fn for every path written or deleted and every job
// changed from now on, in etcd's order, until ctx ends, fn fails, or the
// watch breaks (etcd compacted the revision it was at, or lost its
// leader). It returns the reason; ctx's error once ctx ends.
//
// One watch follows the range from contents/ to the end of jobs/, which
// holds the paths (files/), the pending jobs (jobs/), the finished ones (in
// the content records, contents/, or job-results/ before layout 4), and
// keys of no interest here (crefs/, gc/), which are skipped. The finish
// that moves a job from jobs/ into its content's record is one change, the
// finished record; a content deleted is a job change with no record.
//
// Records that do not decode are skipped rather than ending the watch: one
// bad key must not blind every watcher.
func (s *Store) WatchChanges(ctx context.Context, fn func(Change) error) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	w := s.cli.Watch(ctx, s.schema.ContentsPrefix(), clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.schema.JobsPrefix())))
	for {
		var wr clientv3.WatchResponse
		var ok bool
		select {
		case wr, ok = <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: watch ended", dfs.ErrUnavailable)
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("%w: watch: %v", dfs.ErrUnavailable, err)
		}
		// A finish deletes the pending key and writes the finished record
		// in one transaction, whose events come in one response: the
		// delete is no change of its own.
		var finished map[string]int64
		for _, ev := range wr.Events {
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			key := string(ev.Kv.Key)
			name, ok := strings.CutPrefix(key, s.schema.ResultsPrefix())
			if !ok {
				if name, ok = strings.CutPrefix(key, s.schema.ContentsPrefix()); ok {
					h, err := dfs.ParseHash(name)
					ok = err == nil && hasJob(h, ev.Kv.Value)
				}
			}
			if ok {
				if finished == nil {
					finished = map[string]int64{}
				}
				finished[name] = ev.Kv.ModRevision
			}
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				key := string(ev.Kv.Key)
				name, ok := strings.CutPrefix(key, s.schema.JobsPrefix())
				if !ok {
					name, ok = strings.CutPrefix(key, s.schema.ResultsPrefix())
				}
				if ok && finished[name] == ev.Kv.ModRevision {
					continue
				}
			}
			c, ok := s.change(ev)
			if !ok {
				continue
			}
			if err := fn(c); err != nil {
				return err
			}
		}
	}
}

// hasJob reports whether the content record val holds a finished job.
func hasJob(h dfs.ContentHash, val []byte) bool {
	j, err := ContentJob(h, val)
	return err == nil && j != nil
}

func (s *Store) change(ev *clientv3.Event) (Change, bool) {
	key := string(ev.Kv.Key)
	c := Change{Revision: ev.Kv.ModRevision}
	if strings.HasPrefix(key, s.schema.FilesPrefix()) {
		if ev.Type == clientv3.EventTypeDelete {
			c.Kind = FileDeleted
			c.File.Path = s.schema.PathOf(key)
			return c, true
		}
		f, err := s.fileFromKV(ev.Kv.Key, ev.Kv.Value)
		if err != nil {
			return c, false
		}
		c.Kind, c.File = FileWritten, f
		return c, true
	}
	decode := DecodeJob
	name, ok := strings.CutPrefix(key, s.schema.JobsPrefix())
	if !ok {
		name, ok = strings.CutPrefix(key, s.schema.ResultsPrefix())
	}
	if !ok {
		name, ok = strings.CutPrefix(key, s.schema.ContentsPrefix())
		decode = ContentJob
	}
	if !ok {
		return c, false // crefs/, gc/, format
	}
	h, err := dfs.ParseHash(name)
	if err != nil {
		return c, false // not a job or content record (a chunk page)
	}
	c.Kind, c.Content = JobChanged, h
	if ev.Type == clientv3.EventTypeDelete {
		return c, true
	}
	rec, err := decode(h, ev.Kv.Value)
	if err != nil || rec == nil {
		return c, false // a content written with no finished job: no job change
	}
	c.Job = rec
	return c, true
}

// ProcessingFromJob converts a job record to the API's processing state.
func ProcessingFromJob(j *api.JobRecord) *api.Processing {
	if j == nil {
		return nil
	}
	return &api.Processing{
		State:           j.State,
		Worker:          j.Worker,
		Attempts:        j.Attempts,
		Error:           j.Error,
		Results:         j.Results,
		QueuedUnixNano:  j.QueuedUnixNano,
		UpdatedUnixNano: j.UpdatedUnixNano,
		StartedUnixNano: j.StartedUnixNano,
		Path:            j.Path,
	}
}

// Time is when a change happened, as far as the records say.
func (c Change) Time() time.Time {
	switch {
	case c.Kind == FileWritten:
		return c.File.Modified
	case c.Job != nil && c.Job.UpdatedUnixNano != 0:
		return time.Unix(0, c.Job.UpdatedUnixNano)
	}
	return time.Now()
}
