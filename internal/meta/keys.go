package meta

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/dfs-store/dfs"
)

// The etcd key schema of dfs. Every key lives under one versioned prefix,
// <root>/v1/, so a cluster can share an etcd with other users (or tests with
// each other) and a future layout can live beside this one.
//
//	<root>/v1/files/<path>                  FileRecord: what a path points at
//	<root>/v1/contents/<sha256>             ContentRecord: size, chunk list (inline
//	                                        when it fits one page), page count, and
//	                                        the finished post-upload job
//	<root>/v1/contents/<sha256>/<layout>/<page>
//	                                        ChunkPage: part of a long chunk list,
//	                                        written before the record that names it
//	<root>/v1/skip/<path>                   empty; for one path in SkipEvery, chosen by
//	                                        a hash of the path, written and deleted
//	                                        with the path: a sample of the paths
//	                                        that bounds each range of a listing
//	                                        (see pager)
//	<root>/v1/refs/<sha256>                 the number of paths pointing at the
//	                                        content (decimal), kept in the
//	                                        transaction of every commit, overwrite
//	                                        and delete; absent: 1 (most contents
//	                                        have one path and pay no key)
//	<root>/v1/crefs/<chunk>/<sha256>        a content's reference to a chunk
//	                                        (value: when written, unix ns); none
//	                                        for a content of one chunk whose hash
//	                                        is the content's: its record is that
//	                                        reference
//	<root>/v1/gc/contents/<sha256>          candidate: a content whose count fell
//	                                        to 0 (value: when, unix ns)
//	<root>/v1/gc/chunks/<chunk>             candidate: a chunk that may have lost
//	                                        its last reference (value: when)
//	<root>/v1/gc/crefs/<sha256>             a deleted content whose chunk
//	                                        references are being removed (value:
//	                                        how many are left)
//	<root>/v1/format                        the layout version ("2": reference
//	                                        counts; "3": and sample keys); absent
//	                                        on a cluster written before them,
//	                                        until the leader rebuilt them
//	<root>/v1/versions/<path>\x00<version> FileRecord: an earlier version of a
//	                                        path, or a delete marker; it holds
//	                                        a reference to its content as a
//	                                        path does (counted in refs/)
//	<root>/v1/version-expiry/<unix ns, 20 digits>/<path>\x00<version>
//	                                        empty: when the version is
//	                                        dropped; the leader reads only the
//	                                        keys that are due; none for a
//	                                        version kept until purged (or for
//	                                        longer than meta.MaxRetention)
//	<root>/v1/nodes/<node id>               NodeRecord: the datanode registry
//	<root>/v1/buckets/<name>                BucketRecord: a bucket made on purpose
//	<root>/v1/access-keys/<key id>          AccessKeyRecord: a user's access key, its
//	                                        secret and its grants per bucket
//	<root>/v1/token-key                     the key (id byte, then 32 random bytes) that
//	                                        capability tokens for the datanodes are
//	                                        made with: made by the first coordinator
//	<root>/v1/jobs/<sha256>                 JobRecord: post-upload processing still to
//	                                        do (queued, processing, to retry)
//	<root>/v1/job-results/<sha256>          JobRecord: a finished job, before layout 4
//	                                        (now in the content's record); the
//	                                        leader's migration empties it
//	<root>/v1/coordinators/<grpc addr>      empty; on the lease of a running
//	                                        coordinator, so the live ones can be listed
//	<root>/v1/election/coordinator          etcd election: the leader coordinator
//	                                        (value: its address, then its term number)
//	<root>/v1/leader-term                   the last leader's term number (decimal),
//	                                        counted by each new leader
//	<root>/v1/locks/<sha256>                etcd mutexes: a job's worker
//
// Values are protobuf messages from package api (meta.proto).
//
// Chunk locations are deliberately absent: coordinators rebuild them from the
// datanodes' reports. A commit writes a constant number of keys whatever the
// size of the file (at most one per page of 4096 chunks, and pages are written
// before the commit transaction), so it stays far below etcd's 128 operations
// per transaction and 1.5 MiB per request.
type Schema struct {
	root string // "<root>/v1/"
}

// DefaultRoot is the key root used when none is configured.
const DefaultRoot = "/dfs"

// NewSchema returns the schema under root (DefaultRoot if empty).
func NewSchema(root string) Schema {
	if root == "" {
		root = DefaultRoot
	}
	return Schema{root: strings.TrimSuffix(root, "/") + "/v1/"}
}

// Prefix is the versioned prefix that holds every key.
func (s Schema) Prefix() string { return s.root }

// FilesPrefix holds every path.
func (s Schema) FilesPrefix() string { return s.root + "files/" }

// File is the key of a path.
func (s Schema) File(path string) string { return s.FilesPrefix() + path }

// PathOf returns the path a file key names.
func (s Schema) PathOf(key string) string { return strings.TrimPrefix(key, s.FilesPrefix()) }

// SkipPrefix holds the sample of paths that guides listings.
func (s Schema) SkipPrefix() string { return s.root + "skip/" }

// Skip is the sample key of path; only paths for which Sampled holds
// have one.
func (s Schema) Skip(path string) string { return s.SkipPrefix() + path }

// SkipEvery is how many paths one sample key stands for, on average.
const SkipEvery = 512

// Sampled reports whether path has a sample key: one path in SkipEvery,
// by a hash of the path (FNV-1a, 64 bits, then MurmurHash3's finalizer so
// that the low bits depend on every bit), the same in every process and
// release.
func Sampled(path string) bool {
	h := fnv.New64a()
	h.Write([]byte(path))
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x%SkipEvery == 0
}

// VersionsPrefix holds the earlier versions of paths.
func (s Schema) VersionsPrefix() string { return s.root + "versions/" }

// PathVersions is the prefix of path's earlier versions. The NUL byte, which
// paths cannot hold, ends the path, so that the versions of "a" do not
// share a prefix with those of "a/b" or "ab".
func (s Schema) PathVersions(path string) string { return s.VersionsPrefix() + path + "\x00" }

// Version is the key of one earlier version of path.
func (s Schema) Version(path, id string) string { return s.PathVersions(path) + id }

// VersionOf returns the path and version id a version key names.
func (s Schema) VersionOf(key string) (path, id string, ok bool) {
	return strings.Cut(strings.TrimPrefix(key, s.VersionsPrefix()), "\x00")
}

// ExpiryPrefix holds the versions' expiry keys, by time.
func (s Schema) ExpiryPrefix() string { return s.root + "version-expiry/" }

// Expiry is the key that makes version id of path due at t.
func (s Schema) Expiry(t int64, path, id string) string {
	return fmt.Sprintf("%s%020d/%s\x00%s", s.ExpiryPrefix(), t, path, id)
}

// ExpiryBefore is the end of the range of expiry keys due before t.
func (s Schema) ExpiryBefore(t int64) string { return fmt.Sprintf("%s%020d", s.ExpiryPrefix(), t) }

// ContentsPrefix holds every content record and chunk page.
func (s Schema) ContentsPrefix() string { return s.root + "contents/" }

// Content is the key of a content record. Its pages share it as a prefix,
// so one prefix read returns the record and its pages together.
func (s Schema) Content(h dfs.ContentHash) string { return s.ContentsPrefix() + h.String() }

// ContentPage is the key of one page of a content's chunk list.
func (s Schema) ContentPage(h dfs.ContentHash, layout string, page int) string {
	return fmt.Sprintf("%s/%s/%06d", s.Content(h), layout, page)
}

// RefsPrefix holds the contents' reference counts.
func (s Schema) RefsPrefix() string { return s.root + "refs/" }

// Ref is the key of a content's reference count.
func (s Schema) Ref(h dfs.ContentHash) string { return s.RefsPrefix() + h.String() }

// CrefsPrefix holds the contents' references to chunks.
func (s Schema) CrefsPrefix() string { return s.root + "crefs/" }

// ChunkRefs is the prefix of every reference to chunk c.
func (s Schema) ChunkRefs(c dfs.Hash) string { return s.CrefsPrefix() + c.String() + "/" }

// ChunkRef is the key of content h's reference to chunk c.
func (s Schema) ChunkRef(c dfs.Hash, h dfs.ContentHash) string { return s.ChunkRefs(c) + h.String() }

// ContentCandidatesPrefix holds the contents whose count fell to 0.
func (s Schema) ContentCandidatesPrefix() string { return s.root + "gc/contents/" }

// ContentCandidate is the candidate key of content h.
func (s Schema) ContentCandidate(h dfs.ContentHash) string {
	return s.ContentCandidatesPrefix() + h.String()
}

// ChunkCandidatesPrefix holds the chunks that may be garbage.
func (s Schema) ChunkCandidatesPrefix() string { return s.root + "gc/chunks/" }

// ChunkCandidate is the candidate key of chunk c.
func (s Schema) ChunkCandidate(c dfs.Hash) string { return s.ChunkCandidatesPrefix() + c.String() }

// DeadContent marks a deleted content whose chunk references are still
// being removed.
func (s Schema) DeadContent(h dfs.ContentHash) string { return s.root + "gc/crefs/" + h.String() }

// Format holds the layout version.
func (s Schema) Format() string { return s.root + "format" }

// TokenKey is the key of the capability tokens' secret.
func (s Schema) TokenKey() string { return s.root + "token-key" }

// NodesPrefix holds the node registry.
func (s Schema) NodesPrefix() string { return s.root + "nodes/" }

// Node is the key of a datanode's record.
func (s Schema) Node(id dfs.NodeID) string { return s.NodesPrefix() + string(id) }

// BucketsPrefix holds the bucket records.
func (s Schema) BucketsPrefix() string { return s.root + "buckets/" }

// Bucket is the key of a bucket's record.
func (s Schema) Bucket(name string) string { return s.BucketsPrefix() + name }

// AccessKeysPrefix holds the access keys.
func (s Schema) AccessKeysPrefix() string { return s.root + "access-keys/" }

// AccessKey is the key of an access key's record.
func (s Schema) AccessKey(id string) string { return s.AccessKeysPrefix() + id }

// JobsPrefix holds post-upload processing jobs.
func (s Schema) JobsPrefix() string { return s.root + "jobs/" }

// Job is the key of a content's processing job.
func (s Schema) Job(h dfs.ContentHash) string { return s.JobsPrefix() + h.String() }

// ResultsPrefix held finished jobs before layout 4.
func (s Schema) ResultsPrefix() string { return s.root + "job-results/" }

// Result is the key of a content's finished job before layout 4.
func (s Schema) Result(h dfs.ContentHash) string { return s.ResultsPrefix() + h.String() }

// CoordinatorsPrefix holds the running coordinators.
func (s Schema) CoordinatorsPrefix() string { return s.root + "coordinators/" }

// Coordinator is the key a running coordinator keeps on its lease.
func (s Schema) Coordinator(addr string) string { return s.CoordinatorsPrefix() + addr }

// Election is the prefix coordinators campaign on.
func (s Schema) Election() string { return s.root + "election/coordinator" }

// LeaderTerm is the counter of leader terms (election.go).
func (s Schema) LeaderTerm() string { return s.root + "leader-term" }

// LocksPrefix holds the workers' job mutexes.
func (s Schema) LocksPrefix() string { return s.root + "locks/" }

// Lock is the mutex prefix of a content's job.
func (s Schema) Lock(h dfs.ContentHash) string { return s.LocksPrefix() + h.String() }
