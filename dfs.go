// Package dfs holds the vocabulary of the dfs distributed file store: the names
// of things (hashes, paths, node ids), the records the system keeps about them,
// and the small interfaces between its roles. Implementations live in their own
// packages; a reader should be able to learn the system from this page.
//
// A file is cut into content-defined chunks. Each chunk is named by the SHA-256
// of its bytes and kept on several datanodes (three by default). The bytes of a
// whole file are described by a content record, named by the SHA-256 of the
// whole file; a path points at a content record. Identical bytes are therefore
// stored once, whether they repeat across files or inside one file.
//
// Metadata (paths, contents, the node registry) lives in etcd. Coordinators
// place new chunks and know, from the datanodes' own reports, which nodes hold
// which chunk; that location map is soft state and never persisted. Clients
// move chunk bytes straight to and from datanodes over HTTP.
package dfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Hash is a SHA-256 digest. It names a chunk (the hash of the chunk's bytes)
// or a content (the hash of a whole file's bytes, what sha256sum prints).
type Hash [sha256.Size]byte

// ChunkHash names a chunk: the SHA-256 of its bytes.
type ChunkHash = Hash

// ContentHash names a content: the SHA-256 of a whole file's bytes.
type ContentHash = Hash

// Sum returns the SHA-256 of b.
func Sum(b []byte) Hash { return sha256.Sum256(b) }

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Short returns the first 12 hex digits, for logs and messages.
func (h Hash) Short() string { return h.String()[:12] }

// IsZero reports whether h is the zero value (no hash).
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText encodes the hash as hex, so JSON carries readable hashes.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash decodes a 64-digit hex SHA-256. Upper-case digits are accepted.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("%w: %q: want %d hex digits, got %d", ErrBadHash, clip(s), 2*len(h), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%w: %q: %v", ErrBadHash, clip(s), err)
	}
	return h, nil
}

// HashFromBytes converts a 32-byte slice (as carried in protobuf) to a Hash.
func HashFromBytes(b []byte) (Hash, error) {
	var h Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("%w: want %d bytes, got %d", ErrBadHash, len(h), len(b))
	}
	copy(h[:], b)
	return h, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// NodeID names a datanode. It is chosen when the node first starts and kept in
// its data directory, so it survives restarts and address changes.
type NodeID string

// Errors that callers may test for with errors.Is. Implementations wrap them
// with the name of the thing concerned.
var (
	ErrNotFound     = errors.New("not found")
	ErrInvalid      = errors.New("invalid argument")
	ErrBadHash      = errors.New("malformed hash")
	ErrBadPath      = errors.New("invalid path")
	ErrHashMismatch = errors.New("hash mismatch")
	ErrNoSpace      = errors.New("no space left")
	ErrUnavailable  = errors.New("unavailable")
	ErrConflict     = errors.New("conflict")
	// ErrPrecondition: a conditional write found the path not as its
	// condition required. It is also an ErrConflict.
	ErrPrecondition = fmt.Errorf("%w: precondition failed", ErrConflict)
	// ErrFenced: a leader-only action carried a leader term older than
	// the newest known, so a deposed leader's action was refused.
	ErrFenced = errors.New("fenced: a newer leader term exists")
	// ErrNotLeader: the action needs the leader coordinator.
	ErrNotLeader = errors.New("not the leader coordinator")
	// ErrDenied: the caller is not authenticated, or not allowed to do
	// what it asked.
	ErrDenied = errors.New("access denied")
	// ErrUnauthenticated: the caller did not prove who it is (no key, or
	// a wrong one). It is also an ErrDenied.
	ErrUnauthenticated = fmt.Errorf("%w: not authenticated", ErrDenied)
)

// MaxPathLen is the longest path, in bytes, that dfs stores.
const MaxPathLen = 1024

// CleanPath validates a user-supplied path and returns its canonical form.
// Paths are flat names with '/' separators, as in S3: a leading '/' is
// dropped; empty names, NUL bytes and other control characters, invalid
// UTF-8, empty segments and '.' or
// '..' segments are rejected, so a path can never address anything outside
// its own name. A trailing '/' is rejected because it would name a directory,
// and directories are only prefixes.
func CleanPath(p string) (string, error) {
	orig := p
	p = strings.TrimPrefix(p, "/")
	switch {
	case p == "":
		return "", fmt.Errorf("%w: empty path", ErrBadPath)
	case len(p) > MaxPathLen:
		return "", fmt.Errorf("%w: %d bytes, longer than %d", ErrBadPath, len(p), MaxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return "", fmt.Errorf("%w: %q contains a NUL byte", ErrBadPath, clip(orig))
	case !utf8.ValidString(p):
		return "", fmt.Errorf("%w: %q is not valid UTF-8", ErrBadPath, clip(orig))
	case strings.IndexFunc(p, isControl) >= 0:
		return "", fmt.Errorf("%w: %q contains a control character", ErrBadPath, clip(orig))
	case strings.HasSuffix(p, "/"):
		return "", fmt.Errorf("%w: %q ends with '/'", ErrBadPath, clip(orig))
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return "", fmt.Errorf("%w: %q has an empty segment", ErrBadPath, clip(orig))
		case ".", "..":
			return "", fmt.Errorf("%w: %q has a %q segment", ErrBadPath, clip(orig), seg)
		}
	}
	return p, nil
}

// isControl reports the characters paths may not hold: C0 controls
// (newline, tab, …) and DEL, which break listings, logs and terminals.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// ChunkRef is one chunk of a content, in file order.
type ChunkRef struct {
	Hash ChunkHash `json:"hash"`
	Size int64     `json:"size"`
}

// Content describes the bytes of a whole file: its hash, size and ordered
// chunk list. Two files with the same bytes share one Content.
type Content struct {
	Hash    ContentHash `json:"sha256"`
	Size    int64       `json:"size"`
	Chunks  []ChunkRef  `json:"chunks"`
	Created time.Time   `json:"created"`
	// Layout names the chunk list (empty for a content of one chunk named
	// by its hash).
	Layout string `json:"-"`
	// Parts are set for a content put together from parts uploaded apart
	// (S3 multipart): each part's SHA-256 and size, in order. Hash is then
	// PartsHash(Parts), and each part begins at a chunk boundary.
	Parts []Part `json:"parts,omitempty"`
}

// Part is one part of a content put together from parts.
type Part struct {
	Hash ContentHash `json:"sha256"`
	Size int64       `json:"size"`
}

// CheckParts checks that the chunks of c, a content put together from
// parts, hash part by part to c.Parts: read writes a chunk's bytes. Each
// part must end at a chunk boundary. A mismatch wraps ErrHashMismatch.
func CheckParts(c Content, read func(ChunkRef, io.Writer) error) error {
	i := 0
	for n, p := range c.Parts {
		h := sha256.New()
		var size int64
		for size < p.Size && i < len(c.Chunks) {
			if err := read(c.Chunks[i], h); err != nil {
				return err
			}
			size += c.Chunks[i].Size
			i++
		}
		if size != p.Size {
			return fmt.Errorf("%w: content %s: part %d is %d bytes of chunks, not %d", ErrHashMismatch, c.Hash.Short(), n+1, size, p.Size)
		}
		if got := ContentHash(h.Sum(nil)); got != p.Hash {
			return fmt.Errorf("%w: content %s: part %d hashes to %s, not %s", ErrHashMismatch, c.Hash.Short(), n+1, got.Short(), p.Hash.Short())
		}
	}
	if i != len(c.Chunks) {
		return fmt.Errorf("%w: content %s: %d chunks after its last part", ErrHashMismatch, c.Hash.Short(), len(c.Chunks)-i)
	}
	return nil
}

// PartsHash names a content put together from parts: the SHA-256 of a
// fixed tag followed by each part's SHA-256 and its size (8 bytes, little
// endian). It is not the SHA-256 of the bytes: parts are uploaded in any
// order and in parallel, so the whole is hashed only afterwards, by the
// post-upload job (its "sha256" result). The tag keeps the name apart
// from every hash of bytes.
func PartsHash(parts []Part) ContentHash {
	h := sha256.New()
	h.Write([]byte("dfs parts v1\n"))
	var size [8]byte
	for _, p := range parts {
		h.Write(p.Hash[:])
		for i := range size {
			size[i] = byte(p.Size >> (8 * i))
		}
		h.Write(size[:])
	}
	return ContentHash(h.Sum(nil))
}

// FileInfo is what a path points at.
type FileInfo struct {
	Path        string      `json:"path"`
	Size        int64       `json:"size"`
	Content     ContentHash `json:"sha256"`
	ContentType string      `json:"content_type,omitempty"`
	Created     time.Time   `json:"created"`
	Modified    time.Time   `json:"modified"`
	// Layout is the chunk list the path was committed with (see
	// Content.Layout); empty if unknown.
	Layout string `json:"-"`
	// Attrs are named attributes kept with the file: S3's ETag, user
	// metadata and content headers.
	Attrs map[string]string `json:"attrs,omitempty"`
	// VersionID names this version of the path (see Version).
	VersionID string `json:"version_id,omitempty"`
}

// Version is one version of a path: the current file, an earlier file
// kept after an overwrite or a delete, or a delete marker (no content:
// the path was deleted then). A bucket keeps earlier versions for its
// retention (see docs/versions.md); the versions of a path sort newest
// first by VersionID.
type Version struct {
	FileInfo
	DeleteMarker bool      // the path was deleted at Modified
	Latest       bool      // what a read of the path gives: its current file, or the delete marker that says it is deleted
	Expires      time.Time // when the version is dropped; zero: kept until purged (or current)
}

// ValidVersionID reports whether id has the form of a version id: 20
// lower-case hex digits.
func ValidVersionID(id string) bool {
	if len(id) != 20 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Replica is one known copy of a chunk: the node holding it and where to
// fetch it.
type Replica struct {
	Node NodeID `json:"node"`
	Addr string `json:"addr"` // host:port of the node's HTTP data plane
}

// ChunkLocation is a chunk of a file together with the live nodes holding it.
type ChunkLocation struct {
	ChunkRef
	Offset   int64     `json:"offset"`
	Replicas []Replica `json:"replicas"`
	// Token is the capability token a GET of the chunk carries, from the
	// coordinator's lookup.
	Token string `json:"-"`
}

// NodeState is a datanode's state as the coordinator sees it.
type NodeState string

const (
	NodeAlive    NodeState = "alive"    // heartbeating
	NodeSuspect  NodeState = "suspect"  // missed a few heartbeats
	NodeDead     NodeState = "dead"     // silent past the dead-after timeout
	NodeDraining NodeState = "draining" // alive, its chunks moving away
	NodeDrained  NodeState = "drained"  // alive, holds nothing needed
)

// NodeInfo is a row of the node table.
type NodeInfo struct {
	ID            NodeID    `json:"id"`
	Addr          string    `json:"addr"`      // HTTP data plane
	GRPCAddr      string    `json:"grpc_addr"` // gRPC control
	Zone          string    `json:"zone,omitempty"`
	State         NodeState `json:"state"`
	Alive         bool      `json:"alive"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	CapacityBytes int64     `json:"capacity_bytes"`
	UsedBytes     int64     `json:"used_bytes"` // chunk bytes stored
	FreeBytes     int64     `json:"free_bytes"` // free space of its file system
	Chunks        int64     `json:"chunks"`
	// DrainRemaining counts, while the node drains, the chunks that still
	// need a copy elsewhere.
	DrainRemaining int64 `json:"drain_remaining"`
	// Scrub progress: chunks and bytes re-hashed since the node started,
	// copies found corrupt, and when the last full pass ended.
	ScrubbedChunks int64     `json:"scrubbed_chunks"`
	ScrubbedBytes  int64     `json:"scrubbed_bytes"`
	CorruptChunks  int64     `json:"corrupt_chunks"`
	LastScrubPass  time.Time `json:"last_scrub_pass,omitzero"`
	// Fencing: the newest leader term the node has seen (by number, as
	// the status shows terms; 0 for one older than the coordinator
	// remembers), and how many commands of deposed leaders it refused.
	LeaderTerm     int64 `json:"leader_term"`
	FencedCommands int64 `json:"fenced_commands"`
}

// ChunkStore keeps chunks on one datanode. Implementations must make a chunk
// visible only once its bytes are complete, verified and durable, so a crash
// at any point leaves either the whole chunk or nothing.
type ChunkStore interface {
	// Put stores the chunk h read from r. It reads r to EOF and fails with
	// ErrHashMismatch, storing nothing, if the bytes do not hash to h. Putting
	// a chunk that is already stored succeeds and leaves the stored copy.
	Put(ctx context.Context, h ChunkHash, r io.Reader) (size int64, err error)

	// Open returns the chunk's bytes for reading at any offset, and its
	// size. It fails with ErrNotFound if the chunk is not stored.
	Open(h ChunkHash) (ReadAtCloser, int64, error)

	// Stat returns the size of a stored chunk, or ErrNotFound.
	Stat(h ChunkHash) (int64, error)

	// Delete removes a chunk. Deleting a chunk that is not stored succeeds.
	Delete(h ChunkHash) error

	// Walk calls fn for every stored chunk, in no particular order, until fn
	// returns an error (which Walk returns). It must be cheap, reading what
	// the store keeps in memory rather than the disk: a datanode walks its
	// store at each registration with each coordinator, and throughout
	// scrubbing. fn may call the store's methods; chunks stored or deleted
	// during a Walk may or may not be seen.
	Walk(ctx context.Context, fn func(h ChunkHash, size int64) error) error

	// Usage returns the number of chunks stored and their total size.
	Usage() (chunks, bytes int64)

	// Free returns the bytes still available for chunks and the capacity of
	// the underlying storage.
	Free() (free, capacity int64, err error)
}

// ReadAtCloser is a chunk opened for reading.
type ReadAtCloser interface {
	io.ReaderAt
	io.Closer
}

// ChunkObserver hears of chunks appearing on and vanishing from a store. A
// datanode uses it to tell the coordinators.
type ChunkObserver interface {
	ChunkAdded(h ChunkHash, size int64)
	ChunkRemoved(h ChunkHash)
}
