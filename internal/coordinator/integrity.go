package coordinator

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/internal/meta"
)

// Commit integrity. A client names the content it commits by the SHA-256 it
// claims for the whole file; the cluster has verified each chunk (a
// datanode stores a chunk only under its own hash), not the claim. So a
// commit whose hash is stored already points its path at the stored
// content only when that cannot hand anyone bytes they did not upload:
//
//   - the same chunk list: the same bytes, whatever the claim;
//   - another chunk list (another chunking of the same bytes, or a lie):
//     the coordinator reads the new chunk list back and hashes it; a
//     commit whose chunks do not hash to its claim is refused. Then it
//     reads the stored list: if it hashes to the claim the path shares it;
//     if not, the stored content was forged, and it is replaced by the new,
//     verified chunk list. Paths committed with the forged list remember
//     their list (FileRecord.layout) and no longer read.
//
// So an upload never dedups onto bytes that were not checked against its
// hash, and no commit can make another path read bytes its committer did
// not send. The check costs a read of the file, and happens only when one
// hash meets two chunk lists.

// verifyContent reads c's chunks in order from live replicas and checks
// that together they hash to c.Hash. It fails with dfs.ErrHashMismatch if
// they do not, and with dfs.ErrUnavailable if a chunk has no good copy to
// read (then nothing is known).
func (s *Server) verifyContent(ctx context.Context, c dfs.Content) error {
	if len(c.Chunks) == 1 && c.Chunks[0].Hash == c.Hash {
		return nil // one chunk named by the content's hash: the datanodes checked it
	}
	if len(c.Parts) > 0 {
		return s.verifyParts(ctx, c)
	}
	whole := sha256.New()
	for _, ch := range c.Chunks {
		if err := s.readChunk(ctx, ch, whole); err != nil {
			return err
		}
	}
	if got := dfs.ContentHash(whole.Sum(nil)); got != c.Hash {
		return fmt.Errorf("%w: the chunks of content %s hash to %s", dfs.ErrHashMismatch, c.Hash.Short(), got.Short())
	}
	return nil
}

// verifyParts checks a content put together from parts: its name is the
// hash of its parts' list, and each part's run of chunks hashes to the
// part's SHA-256.
func (s *Server) verifyParts(ctx context.Context, c dfs.Content) error {
	if dfs.PartsHash(c.Parts) != c.Hash {
		return fmt.Errorf("%w: content %s is not named by its parts", dfs.ErrHashMismatch, c.Hash.Short())
	}
	return dfs.CheckParts(c, func(ch dfs.ChunkRef, w io.Writer) error { return s.readChunk(ctx, ch, w) })
}

// readChunk writes chunk ch to w from the first live replica whose copy is
// good.
func (s *Server) readChunk(ctx context.Context, ch dfs.ChunkRef, w io.Writer) error {
	now := time.Now()
	s.mu.Lock()
	var addrs []string
	for _, id := range s.liveReplicasLocked(ch.Hash, now) {
		if n := s.nodes[id]; n != nil {
			addrs = append(addrs, n.rec.Addr)
		}
	}
	s.mu.Unlock()
	buf := make([]byte, 0, ch.Size)
	for _, addr := range addrs {
		b, err := s.fetch(ctx, addr, ch, buf)
		if err == nil {
			_, err = w.Write(b)
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Debug("verify content: chunk copy unreadable", "chunk", ch.Hash.Short(), "addr", addr, "err", err)
	}
	return fmt.Errorf("%w: chunk %s has no good copy to read", dfs.ErrUnavailable, ch.Hash.Short())
}

func (s *Server) fetch(ctx context.Context, addr string, ch dfs.ChunkRef, buf []byte) ([]byte, error) {
	scheme := "http://"
	if s.cfg.TLS != nil {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+addr+"/chunks/"+ch.Hash.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.dataClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, ch.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != ch.Size || dfs.Hash(sha256.Sum256(b)) != ch.Hash {
		return nil, fmt.Errorf("%w: the copy does not match its hash", dfs.ErrHashMismatch)
	}
	return append(buf[:0], b...), nil
}

// dataClient is the HTTP client the coordinator reads chunks with, with its
// node certificate (no capability token needed).
func (s *Server) dataClient() *http.Client {
	s.httpOnce.Do(func() {
		tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: 30 * time.Second}
		if s.cfg.TLS != nil {
			tr.TLSClientConfig = s.cfg.TLS.Clone()
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
		s.httpc = &http.Client{Transport: tr}
	})
	return s.httpc
}

// commitChecked commits c, settling a content hash that meets a second
// chunk list as the package doc says.
func (s *Server) commitChecked(ctx context.Context, c meta.Commit) (dfs.FileInfo, bool, error) {
	for attempt := 0; ; attempt++ {
		info, dup, err := s.meta.CommitFile(ctx, c)
		var lc *meta.LayoutConflict
		if !errors.As(err, &lc) || attempt >= 3 {
			return info, dup, err
		}
		s.log.Info("commit: a content hash with two chunk lists; reading both", "path", c.File.Path, "sha256", c.Content.Hash.Short())
		if err := s.verifyContent(ctx, c.Content); err != nil {
			if errors.Is(err, dfs.ErrHashMismatch) {
				s.log.Warn("commit refused: its chunks do not hash to the content hash it claims", "path", c.File.Path,
					"sha256", c.Content.Hash.Short(), "by", s.caller(ctx).Who())
				return info, false, fmt.Errorf("commit %s: %w", c.File.Path, err)
			}
			return info, false, fmt.Errorf("commit %s: check its chunks against its hash: %w", c.File.Path, err)
		}
		err = s.verifyContent(ctx, lc.Stored)
		switch {
		case err == nil:
			c.DedupAny = true // two chunkings of the same bytes
		case errors.Is(err, dfs.ErrHashMismatch):
			s.log.Warn("stored content is forged: its chunks do not hash to its name; replacing it with a verified upload's",
				"sha256", c.Content.Hash.Short(), "path", c.File.Path)
			if err := s.meta.ReplaceContent(ctx, c.Content, lc.Stored, lc.Revision); err != nil && !errors.Is(err, dfs.ErrConflict) {
				return info, false, fmt.Errorf("commit %s: replace the forged content: %w", c.File.Path, err)
			}
		default:
			return info, false, fmt.Errorf("commit %s: check the stored content %s: %w", c.File.Path, c.Content.Hash.Short(), err)
		}
	}
}

// errForged is a read of a path whose content was found forged.
func errForged(path string) error {
	return fmt.Errorf("%w: %s was committed with chunks that do not hash to its content hash (a forged commit); its content was replaced by a verified upload",
		dfs.ErrHashMismatch, path)
}
