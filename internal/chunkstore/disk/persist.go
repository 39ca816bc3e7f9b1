package disk

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dfs-store/dfs"
)

// The saved index, dir/chunk-index, is written by Close and read and
// deleted by Open:
//
//	magic    "dfs chunk index 2\n"
//	count    uint64, little-endian
//	entries  count × (32-byte hash, int64 size, uint64 loc), by hash
//	checksum SHA-256 of everything above
//
// loc is where the chunk is: 0 for a file, else its record in a volume
// (see volume.go). Format 1, written before volumes, has no loc; Open
// reads it too. 48 bytes a chunk: 48 MB for a million, read at Open in a
// fraction of a second where a walk stats a million files. A file that is
// short, long, out of order or fails its checksum is not used; Open walks
// instead.

const (
	indexFile    = "chunk-index"
	indexMagic   = "dfs chunk index 2\n"
	indexMagicV1 = "dfs chunk index 1\n"
	entrySize    = 32 + 8 + 8
	entrySizeV1  = 32 + 8
)

// loadIndex reads the saved index into s.idx. found says whether the file
// was there; loaded whether it was used. err says why a file that was there
// was not used.
func (s *Store) loadIndex() (loaded, found bool, err error) {
	f, err := os.Open(filepath.Join(s.dir, indexFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, true, fmt.Errorf("saved index: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, true, fmt.Errorf("saved index: %w", err)
	}
	if err := s.readIndex(f, fi.Size()); err != nil {
		for i := range indexShards {
			s.idx.setShard(i, nil)
		}
		return false, true, fmt.Errorf("saved index %s: %w", f.Name(), err)
	}
	return true, true, nil
}

func (s *Store) readIndex(f io.Reader, fileSize int64) error {
	sum := sha256.New()
	r := bufio.NewReaderSize(f, 1<<20)
	head := make([]byte, len(indexMagic)+8)
	if _, err := io.ReadFull(r, head); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	sum.Write(head)
	esize := 0
	switch string(head[:len(indexMagic)]) {
	case indexMagic:
		esize = entrySize
	case indexMagicV1:
		esize = entrySizeV1
	default:
		return errors.New("not a chunk index (bad magic)")
	}
	count := binary.LittleEndian.Uint64(head[len(indexMagic):])
	if want := int64(len(head)) + int64(count)*int64(esize) + sha256.Size; count > uint64(fileSize)/uint64(esize) || want != fileSize {
		return fmt.Errorf("%d bytes for %d entries", fileSize, count)
	}

	var (
		recBuf [entrySize]byte
		rec    = recBuf[:esize]
		prev   dfs.ChunkHash
		cur    []indexEntry // the entries of shard curSh, read so far
		curSh  = -1
		avg    = int(count/indexShards) + 1
	)
	flush := func() {
		if curSh >= 0 && len(cur) > 0 {
			// Its own slab, with room to grow, so no shard's inserts
			// move a neighbour's entries.
			s.idx.setShard(curSh, append(make([]indexEntry, 0, len(cur)+len(cur)/8+1), cur...))
			s.dirMade[curSh].Store(true) // it holds chunks, so it exists
		}
		cur = cur[:0]
	}
	cur = make([]indexEntry, 0, 2*avg)
	for i := uint64(0); i < count; i++ {
		if _, err := io.ReadFull(r, rec); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		sum.Write(rec)
		var e indexEntry
		copy(e.h[:], rec[:32])
		e.size = int64(binary.LittleEndian.Uint64(rec[32:40]))
		if e.size < 0 {
			return fmt.Errorf("entry %d: chunk %s: size %d", i, e.h.Short(), e.size)
		}
		if esize == entrySize {
			e.loc = loc(binary.LittleEndian.Uint64(rec[40:48]))
			if e.loc != 0 && s.vols == nil {
				return fmt.Errorf("entry %d: chunk %s is in a volume, and this store keeps none", i, e.h.Short())
			}
		}
		if i > 0 && bytes.Compare(prev[:], e.h[:]) >= 0 {
			return fmt.Errorf("entry %d: chunk %s out of order", i, e.h.Short())
		}
		prev = e.h
		if sh := shardOf(e.h); sh != curSh {
			flush()
			curSh = sh
		}
		cur = append(cur, e)
	}
	flush()
	want := sum.Sum(nil) // of everything before the checksum
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, got); err != nil {
		return fmt.Errorf("checksum: %w", err)
	}
	if !bytes.Equal(got, want) {
		return errors.New("checksum mismatch")
	}
	return nil
}

// dropSavedIndex deletes the saved index, durably: once the store changes,
// a crash must leave no index that disagrees with the disk.
func (s *Store) dropSavedIndex() error {
	if err := os.Remove(filepath.Join(s.dir, indexFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove saved index: %w", err)
	}
	if s.opts.NoSync {
		return nil
	}
	return syncDir(s.dir)
}

// saveIndex writes the index to dir/chunk-index: to a temporary, synced,
// then renamed into place.
func (s *Store) saveIndex() (err error) {
	final := filepath.Join(s.dir, indexFile)
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	sum := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)

	// The count heads the file, so take every shard first: Close has
	// stopped all changes, but count what is written, not what Usage said.
	shards := make([][]indexEntry, indexShards)
	var count uint64
	for i := range shards {
		shards[i] = s.idx.snapshot(i, nil)
		count += uint64(len(shards[i]))
	}
	w.WriteString(indexMagic)
	var rec [entrySize]byte
	binary.LittleEndian.PutUint64(rec[:8], count)
	w.Write(rec[:8])
	for _, es := range shards {
		for _, e := range es {
			copy(rec[:32], e.h[:])
			binary.LittleEndian.PutUint64(rec[32:40], uint64(e.size))
			binary.LittleEndian.PutUint64(rec[40:48], uint64(e.loc))
			w.Write(rec[:])
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	if _, err := f.Write(sum.Sum(nil)); err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	if !s.opts.NoSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("save index: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	if !s.opts.NoSync {
		if err := syncDir(s.dir); err != nil {
			return fmt.Errorf("save index: %w", err)
		}
	}
	return nil
}

// walkDisk builds the index from the chunk directories, removing the
// temporary files a crash left beside the chunks.
//
// The size of every chunk is needed (Usage, and the scrubber's byte
// budget), and a directory entry does not carry it, so every file is
// statted once: by fstatat relative to its open directory (what
// (*os.File).Readdir does), which spares resolving the whole path, with
// several fan-out directories listed at once so a cold disk has many
// requests in flight. A clean Close spares the walk altogether.
func (s *Store) walkDisk() error {
	d, err := os.Open(s.chunks)
	if err != nil {
		return fmt.Errorf("walk chunks: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("walk chunks: %w", err)
	}
	var leaves []int
	for _, name := range names {
		if !isFanoutName(name) {
			continue
		}
		i, _ := strconv.ParseUint(name, 16, 16)
		leaves = append(leaves, int(i))
	}

	var (
		next    atomic.Int64
		statted atomic.Int64
		errOnce sync.Once
		werr    error
		wg      sync.WaitGroup
	)
	workers := min(max(4*runtime.GOMAXPROCS(0), 8), 32)
	for range workers {
		wg.Go(func() {
			var buf []indexEntry
			for {
				k := int(next.Add(1)) - 1
				if k >= len(leaves) {
					return
				}
				i := leaves[k]
				es, n, err := s.walkLeaf(i, buf[:0])
				statted.Add(n)
				if err != nil {
					errOnce.Do(func() { werr = err })
					next.Store(int64(len(leaves))) // stop the others
					return
				}
				sortShard(es)
				s.idx.setShard(i, append([]indexEntry(nil), es...))
				s.dirMade[i].Store(true)
				buf = es
			}
		})
	}
	wg.Wait()
	s.openStats.Dirs = len(leaves)
	s.openStats.Statted = statted.Load()
	return werr
}

// walkLeaf lists fan-out directory i, appending its chunks to es. It
// returns how many files it statted. Files whose names are not a
// lower-case hash in their proper directory are not chunks and are skipped.
func (s *Store) walkLeaf(i int, es []indexEntry) ([]indexEntry, int64, error) {
	prefix := fmt.Sprintf("%03x", i)
	dir := filepath.Join(s.chunks, prefix)
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return es, 0, nil
	}
	if err != nil {
		return es, 0, fmt.Errorf("walk chunks: %w", err)
	}
	defer d.Close()
	infos, err := d.Readdir(-1)
	if err != nil {
		return es, int64(len(infos)), fmt.Errorf("walk chunks: %w", err)
	}
	for _, fi := range infos {
		name := fi.Name()
		if !fi.Mode().IsRegular() {
			continue
		}
		if strings.HasPrefix(name, tempPrefix) {
			os.Remove(filepath.Join(dir, name)) // a crash left it
			continue
		}
		if len(name) != 64 || name[:3] != prefix {
			continue
		}
		h, err := dfs.ParseHash(name)
		if err != nil || h.String() != name {
			continue
		}
		es = append(es, indexEntry{h: h, size: fi.Size()})
	}
	return es, int64(len(infos)), nil
}
