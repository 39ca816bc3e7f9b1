package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"strconv"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

// Processor does one kind of post-upload work on a content. It must be
// idempotent: it reads the content and returns results, and changes nothing
// itself, so running it again (after a worker died, or lost its lock) is
// harmless. Results are stored with the job under "<name>.<key>".
type Processor interface {
	Name() string
	// Process returns the results for the content, or an error. An error
	// wrapped by BadInput is final (the content will never process: a
	// truncated video, say); any other is retried.
	Process(ctx context.Context, c *Content) (map[string]string, error)
}

// badInput marks an error that retrying cannot cure.
type badInput struct{ err error }

func (e *badInput) Error() string { return e.err.Error() }
func (e *badInput) Unwrap() error { return e.err }

// BadInput marks err as final: the job ends in error without a retry.
func BadInput(err error) error { return &badInput{err} }

// Content is a stored content as processors see it: its bytes, read from
// the datanodes through the SDK.
type Content struct {
	Hash dfs.ContentHash
	Size int64
	loc  client.Location
	cli  *client.Client
}

func openContent(ctx context.Context, cli *client.Client, h dfs.ContentHash) (*Content, error) {
	loc, err := cli.LocateContent(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("locate: %w", err)
	}
	return &Content{Hash: h, Size: loc.Size, loc: loc, cli: cli}, nil
}

// WriteTo streams the whole content to w, every chunk checked against its
// hash on the way.
func (c *Content) WriteTo(ctx context.Context, w io.Writer) error {
	return c.cli.Read(ctx, c.loc, w, client.GetOptions{})
}

// Chunks is the number of chunks of the content.
func (c *Content) Chunks() int { return len(c.loc.Chunks) }

// ReaderAt returns random access to the content by range reads: only the
// chunks a read touches are fetched, and the last few are kept, so reading
// a file's headers costs a few chunks, not the file.
func (c *Content) ReaderAt(ctx context.Context) io.ReaderAt {
	return &rangeReader{ctx: ctx, c: c}
}

// rangeReader reads a content a chunk at a time, keeping the two chunks
// read last (box headers of a video alternate between two places).
type rangeReader struct {
	ctx   context.Context
	c     *Content
	cache [2]struct {
		idx  int
		data []byte
	}
	next int
}

func (r *rangeReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at %d: negative offset", off)
	}
	chunks := r.c.loc.Chunks
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.c.Size {
			return n, io.EOF
		}
		i := sort.Search(len(chunks), func(i int) bool { return chunks[i].Offset+chunks[i].Size > pos })
		data, err := r.chunk(i)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], data[pos-chunks[i].Offset:])
	}
	return n, nil
}

func (r *rangeReader) chunk(i int) ([]byte, error) {
	for _, e := range r.cache {
		if e.data != nil && e.idx == i {
			return e.data, nil
		}
	}
	ch := r.c.loc.Chunks[i]
	slot := &r.cache[r.next]
	r.next = (r.next + 1) % len(r.cache)
	buf := slot.data[:0]
	if int64(cap(buf)) < ch.Size {
		buf = make([]byte, 0, ch.Size)
	}
	w := &appendWriter{buf: buf}
	if err := r.c.cli.Read(r.ctx, r.c.loc, w, client.GetOptions{Offset: ch.Offset, Length: ch.Size}); err != nil {
		slot.data = nil
		return nil, fmt.Errorf("read chunk %d: %w", i, err)
	}
	slot.idx, slot.data = i, w.buf
	return slot.data, nil
}

type appendWriter struct{ buf []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// Verify reads every chunk back from a replica (each checked against its
// own hash by the SDK) and checks the whole content against its name.
type Verify struct{}

func (Verify) Name() string { return "verify" }

// A content put together from parts (S3 multipart) is named by its parts'
// hashes (dfs.PartsHash); its job checks each part and the name, and is
// where the SHA-256 of its whole bytes is computed, once, off the upload's
// path: the "sha256" result.
func (Verify) Process(ctx context.Context, c *Content) (map[string]string, error) {
	if len(c.loc.Parts) > 0 {
		return verifyParts(ctx, c)
	}
	h := sha256.New()
	n := &countWriter{w: h}
	if err := c.WriteTo(ctx, n); err != nil {
		return nil, err
	}
	if n.n != c.Size {
		return nil, BadInput(fmt.Errorf("read %d bytes, the content record says %d", n.n, c.Size))
	}
	if got := dfs.Hash(h.Sum(nil)); got != c.Hash {
		return nil, BadInput(fmt.Errorf("%w: the stored chunks hash to %s, not %s", dfs.ErrHashMismatch, got, c.Hash))
	}
	return map[string]string{
		"sha256": c.Hash.String(),
		"bytes":  strconv.FormatInt(n.n, 10),
		"chunks": strconv.Itoa(c.Chunks()),
	}, nil
}

func verifyParts(ctx context.Context, c *Content) (map[string]string, error) {
	parts := c.loc.Parts
	if dfs.PartsHash(parts) != c.Hash {
		return nil, BadInput(fmt.Errorf("%w: content %s is not named by its parts", dfs.ErrHashMismatch, c.Hash.Short()))
	}
	// One pass over the bytes feeds the whole's hash and each part's.
	pw := &partsWriter{parts: parts, whole: sha256.New(), part: sha256.New()}
	err := c.WriteTo(ctx, pw)
	if err == nil {
		_, err = pw.Write(nil) // empty parts at the end
	}
	if err != nil {
		if errors.Is(err, dfs.ErrHashMismatch) {
			return nil, BadInput(err)
		}
		return nil, err
	}
	if pw.n != c.Size || pw.i != len(parts) {
		return nil, BadInput(fmt.Errorf("read %d bytes, the content record says %d", pw.n, c.Size))
	}
	return map[string]string{
		"sha256": hex.EncodeToString(pw.whole.Sum(nil)),
		"parts":  strconv.Itoa(len(parts)),
		"bytes":  strconv.FormatInt(pw.n, 10),
		"chunks": strconv.Itoa(c.Chunks()),
	}, nil
}

// partsWriter hashes a stream of parts: the whole, and each part checked
// against its SHA-256 where it ends.
type partsWriter struct {
	parts       []dfs.Part
	whole, part hash.Hash
	i           int   // the part being read
	in          int64 // its bytes read so far
	n           int64 // all bytes read
}

func (w *partsWriter) Write(p []byte) (int, error) {
	n := len(p)
	w.whole.Write(p)
	w.n += int64(len(p))
	for len(p) > 0 || (w.i < len(w.parts) && w.parts[w.i].Size == 0) {
		if w.i >= len(w.parts) {
			return 0, fmt.Errorf("%w: bytes after the last part", dfs.ErrHashMismatch)
		}
		k := min(int64(len(p)), w.parts[w.i].Size-w.in)
		w.part.Write(p[:k])
		w.in += k
		p = p[k:]
		if w.in == w.parts[w.i].Size {
			if got := dfs.ContentHash(w.part.Sum(nil)); got != w.parts[w.i].Hash {
				return 0, fmt.Errorf("%w: part %d hashes to %s, not %s", dfs.ErrHashMismatch, w.i+1, got.Short(), w.parts[w.i].Hash.Short())
			}
			w.part.Reset()
			w.i, w.in = w.i+1, 0
		}
	}
	return n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
