// Package disk keeps a datanode's chunks as files in one local directory. It
// implements dfs.ChunkStore.
//
// A chunk named by hash 3f2a9c… lives at dir/chunks/3f2/3f2a9c…: one level of
// 4096 fan-out directories by the first three hex digits, so ten million
// chunks (20 TB at the average chunk size) put about 2,500 files in each. One
// level rather than two keeps directory creation off the write path: a fresh
// store makes each directory once, after which a write costs no mkdir. Bytes are written first to a temporary file in dir/tmp,
// which is on the same file system, hashed as they arrive, and moved into place
// only once they match their name. Unless Options.NoSync is set, the file is
// fsynced before the rename and its directory after it, so a crash at any
// moment leaves either the whole verified chunk or no chunk; a temporary file
// left by a crash is removed by the next Open.
//
// A chunk file's modification time says when the chunk was last written or
// touched: a Put sets it to the moment the bytes were verified, and a Put of
// a chunk already stored sets it again (after verifying the incoming bytes),
// so garbage collection can delete a chunk "unless modified since" the time
// it decided the chunk was garbage (DeleteIfUnmodifiedSince) without racing
// an upload that came back to it.
//
// A chunk found corrupt is not deleted but moved aside to
// dir/quarantine/<hash>.<unix-nano> (Quarantine), for an operator to look at
// and remove; nothing in the store ever reads it again.
//
// A Store keeps an index of its chunks in memory (hash and size, see
// index.go), so Walk, Usage and lookups of absent chunks cost no disk access.
// Open builds it by one walk of the fan-out directories or, after a clean
// Close, loads it from dir/chunk-index, which Close writes with a checksum
// and Open deletes before the store takes any write: the file's presence is
// the mark of a clean shutdown, so after a crash the next Open walks again.
// Put, Delete, DeleteIfUnmodifiedSince and Quarantine keep the index exact.
//
// The Store assumes it is the only writer of its directory: one Store per
// directory, and no other process adding or removing chunk files while it
// runs. A chunk file that vanishes anyway (removed by hand) is never served:
// Open, Stat, Verify and Put find it missing, drop it from the index and
// tell the observer it was removed. A chunk file added by hand is not seen
// until a walk: delete dir/chunk-index while the store is stopped to make
// the next Open walk.
//
// Chunk files are created 0600 and directories 0700: chunks are the
// cluster's data, readable by the datanode's user alone.
package disk

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dfs-store/dfs"
)

// tempPrefix starts the name of a chunk file still being written. Such files
// sit beside the chunks and are removed by the next Open.
const tempPrefix = ".tmp-"

// bufSize is the copy buffer for Put: large enough that a 2 MiB chunk takes
// a couple of write calls, small enough to pool one per concurrent Put.
const bufSize = 1 << 20

// Options tune a Store.
type Options struct {
	// NoSync skips every fsync. Chunks may be lost or left partial by a
	// machine crash; use it only for benchmarks and throwaway tests.
	NoSync bool

	// Reserve is the free space, in bytes, that Put leaves on the file
	// system: a Put that would take free space below it fails with an error
	// wrapping dfs.ErrNoSpace. Free reports space net of the reserve.
	Reserve int64

	// Observer, if not nil, is told of chunks added and removed. See
	// Store.SetObserver.
	Observer dfs.ChunkObserver

	// SmallMax is the size of the largest chunk appended to a volume (see
	// volume.go) rather than kept in a file of its own: 0 means
	// DefaultSmallMax, a negative value keeps every chunk in a file. At
	// most MaxSmallMax.
	SmallMax int64
	// VolumeSize is the size at which a volume is sealed and the next
	// begun; 0 means DefaultVolumeSize.
	VolumeSize int64
	// CompactRatio is the share of a sealed volume's bytes that must be
	// dead before it is compacted; 0 means DefaultCompactRatio.
	CompactRatio float64
}

// Store is a dfs.ChunkStore on a local directory. It is safe for concurrent
// use.
type Store struct {
	dir        string
	chunks     string // dir/chunks
	tmp        string // dir/tmp
	quarantine string // dir/quarantine
	opts       Options

	obs atomic.Pointer[observerBox]

	// locks serialise the moment a chunk appears or vanishes, per shard of
	// the hash space, so the existence check, the rename or remove, the
	// counters and the observer call agree even when Puts and Deletes of the
	// same chunk race.
	locks [256]sync.Mutex

	idx index

	// closed is set by Close: changes are refused from then on, so the
	// index Close saves stays true. temps counts Puts that may hold a
	// temporary file; Close saves no index while one does, as the next
	// Open then walks and removes what it left.
	closed atomic.Bool
	temps  atomic.Int64

	openStats OpenStats

	// vols holds the small chunks; nil if every chunk is a file.
	vols *volumeSet
	// compaction runs under stop, and Close waits for it.
	stop      context.CancelFunc
	compactW  sync.WaitGroup
	compacted atomic.Int64 // volumes compacted
	compactMu sync.Mutex

	// dirMu serialises creating fan-out directories; dirMade remembers
	// those known to exist.
	dirMu   sync.Mutex
	dirMade [1 << 12]atomic.Bool
}

type observerBox struct{ o dfs.ChunkObserver }

var _ dfs.ChunkStore = (*Store)(nil)

// ErrClosed is wrapped by the errors of changes asked of a closed Store.
var ErrClosed = fmt.Errorf("chunk store closed: %w", dfs.ErrUnavailable)

// OpenStats says how Open learnt what the store holds.
type OpenStats struct {
	// Loaded is true if Open read the index the last clean Close saved,
	// false if it walked the chunk directories.
	Loaded bool
	// IndexErr says why a saved index was found but not used (damaged or
	// unreadable); empty if there was none or it was used.
	IndexErr string
	// Dirs is the number of fan-out directories the walk listed, and
	// Statted the number of files it statted; both 0 when Loaded.
	Dirs    int
	Statted int64
	// Chunks is the number of chunks found.
	Chunks   int64
	Duration time.Duration
	// Volumes is the number of volume files; TornBytes the bytes cut from
	// the newest volume's end after a crash (records never acknowledged);
	// DamagedBytes the bytes of volumes that held no readable record (a
	// torn tail, or rot found by the scan).
	Volumes      int
	TornBytes    int64
	DamagedBytes int64
}

// Open opens the store in dir, creating dir if needed. It loads the index
// saved by the last clean Close, or else walks the chunk directories, which
// also removes the temporary files a crash left behind.
func Open(dir string, opts Options) (*Store, error) {
	start := time.Now()
	s := &Store{
		dir:        dir,
		chunks:     filepath.Join(dir, "chunks"),
		tmp:        filepath.Join(dir, "tmp"),
		quarantine: filepath.Join(dir, "quarantine"),
		opts:       opts,
	}
	s.SetObserver(opts.Observer)
	dirs := []string{s.chunks, s.tmp, s.quarantine}
	if opts.SmallMax >= 0 {
		s.vols = &volumeSet{
			dir:      filepath.Join(dir, volumesDir),
			noSync:   opts.NoSync,
			maxSize:  cmp.Or(opts.VolumeSize, DefaultVolumeSize),
			smallMax: min(cmp.Or(opts.SmallMax, DefaultSmallMax), MaxSmallMax),
			vols:     map[uint32]*volume{},
			kick:     make(chan struct{}, 1),
		}
		s.vols.bufs.New = func() any {
			b := alignedBuf(recLen(s.vols.smallMax + 1))
			return &b
		}
		dirs = append(dirs, s.vols.dir)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open chunk store %s: %w", dir, err)
		}
	}
	if !opts.NoSync {
		if err := syncDir(dir); err != nil {
			return nil, fmt.Errorf("open chunk store %s: %w", dir, err)
		}
	}
	if err := s.clearTmp(); err != nil {
		return nil, fmt.Errorf("open chunk store %s: %w", dir, err)
	}
	loaded, found, err := s.loadIndex()
	if err != nil {
		s.openStats.IndexErr = err.Error()
	}
	if found {
		// From here on the store may change: the saved index would be
		// stale after a crash, so it must be gone before the first write.
		if err := s.dropSavedIndex(); err != nil {
			return nil, fmt.Errorf("open chunk store %s: %w", dir, err)
		}
	}
	if s.vols != nil {
		if err := s.openVolumes(); err != nil {
			s.vols.close()
			return nil, fmt.Errorf("open chunk store %s: %w", dir, err)
		}
		if loaded {
			if err := s.countLive(); err != nil {
				// The saved index names a record that is not there:
				// trust the disk instead.
				s.openStats.IndexErr = "saved index: " + err.Error()
				loaded = false
				for i := range indexShards {
					s.idx.setShard(i, nil)
				}
			}
		}
	}
	if !loaded {
		if err := s.walkDisk(); err != nil {
			s.closeVolumes()
			return nil, fmt.Errorf("open chunk store %s: %w", dir, err)
		}
		if s.vols != nil {
			if err := s.scanVolumes(context.Background()); err != nil {
				s.closeVolumes()
				return nil, fmt.Errorf("open chunk store %s: %w", dir, err)
			}
		}
	}
	if s.vols != nil {
		s.openStats.Volumes = len(s.vols.vols)
		ctx, cancel := context.WithCancel(context.Background())
		s.stop = cancel
		s.compactW.Go(func() { s.compactLoop(ctx) })
	}
	s.openStats.Loaded = loaded
	s.openStats.Chunks, _ = s.Usage()
	s.openStats.Duration = time.Since(start)
	return s, nil
}

// OpenStats says how Open learnt what the store holds.
func (s *Store) OpenStats() OpenStats { return s.openStats }

// quiesce ends compaction and waits for the changes in flight, once closed
// is set: any change that took its chunk's lock before closed was set ends
// before this loop passes its lock; any later one sees closed.
func (s *Store) quiesce() {
	if s.stop != nil {
		s.stop()
		s.compactW.Wait()
	}
	for i := range s.locks {
		s.locks[i].Lock()
		s.locks[i].Unlock()
	}
}

// Close saves the index to dir/chunk-index, so the next Open need not walk
// the disk, and refuses changes from then on (their errors wrap ErrClosed);
// reads still work. Close waits for changes in progress, but not for a Put
// still receiving its bytes: if one is, no index is saved and the next Open
// walks. Closing a closed Store does nothing.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.quiesce()
	if err := s.closeVolumes(); err != nil {
		return fmt.Errorf("close chunk store %s: %w", s.dir, err)
	}
	if s.temps.Load() > 0 {
		return nil
	}
	if err := s.saveIndex(); err != nil {
		return fmt.Errorf("close chunk store %s: %w", s.dir, err)
	}
	return nil
}

// clearTmp removes everything in dir/tmp: at Open no Put is in flight, so
// anything there was abandoned by a crash.
func (s *Store) clearTmp() error {
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return fmt.Errorf("clear temporaries: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(s.tmp, e.Name())); err != nil {
			return fmt.Errorf("clear temporaries: %w", err)
		}
	}
	return nil
}

// Dir returns the directory the store was opened on.
func (s *Store) Dir() string { return s.dir }

// SetObserver sets the observer told of chunks added and removed, replacing
// any earlier one; nil removes it. The observer is called synchronously once
// a change is visible (and, unless NoSync, durable), exactly once per actual
// change: a Put of a chunk already stored, or a Delete of one that is not,
// reports nothing. Calls for one chunk arrive in the order the changes
// happened. The observer may read the store but must not Put or Delete.
func (s *Store) SetObserver(o dfs.ChunkObserver) {
	if o == nil {
		s.obs.Store(nil)
		return
	}
	s.obs.Store(&observerBox{o})
}

func (s *Store) observer() dfs.ChunkObserver {
	if b := s.obs.Load(); b != nil {
		return b.o
	}
	return nil
}

// path returns where chunk h lives.
func (s *Store) path(h dfs.ChunkHash) string {
	x := h.String()
	return filepath.Join(s.chunks, x[0:3], x)
}

func (s *Store) lock(h dfs.ChunkHash) *sync.Mutex { return &s.locks[h[0]] }

// Put stores chunk h read from r; see dfs.ChunkStore. If r has a Len() int
// method (bytes.Reader, strings.Reader, bytes.Buffer), its length is checked
// against the free space before anything is written, and a chunk longer
// than a volume takes is read straight into its file (a length found
// wrong costs only the copy it would have saved).
func (s *Store) Put(ctx context.Context, h dfs.ChunkHash, r io.Reader) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), err)
	}
	// Counted before closed is read, as Close sets closed before it reads
	// the count: either this Put sees closed, or Close sees the Put.
	s.temps.Add(1)
	defer s.temps.Add(-1)
	if s.closed.Load() {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), ErrClosed)
	}
	if e, ok := s.idx.get(h); ok {
		if e.loc != 0 {
			return s.verifyStored(ctx, h, e.size, r)
		}
		fi, err := os.Stat(s.path(h))
		if err == nil {
			return s.verifyStored(ctx, h, fi.Size(), r)
		}
		if errors.Is(err, fs.ErrNotExist) {
			s.vanished(h)
		}
	}

	var need int64
	if l, ok := r.(interface{ Len() int }); ok {
		need = int64(l.Len())
	}
	if s.vols != nil && (need == 0 || need <= s.vols.smallMax) {
		// Read up to one byte more than a volume takes: a chunk that
		// ends within it goes to a volume, a longer one to a file.
		bp := s.vols.bufs.Get().(*[]byte)
		defer s.vols.bufs.Put(bp)
		buf := *bp
		n, err := fill(ctx, r, buf[recHeader:recHeader+s.vols.smallMax+1])
		switch {
		case err == io.EOF:
			return s.putSmall(h, buf, int64(n))
		case err != nil:
			return 0, fmt.Errorf("put chunk %s: %w", h.Short(), err)
		}
		r = io.MultiReader(bytes.NewReader(buf[recHeader:recHeader+n]), r)
	}
	if err := s.checkReserve(h, need); err != nil {
		return 0, err
	}

	// The temporary lives beside the chunk's final name: writers spread
	// over the 4096 fan-out directories instead of contending for one
	// temporary directory, and the rename stays within a directory.
	if err := s.makeFanout(h); err != nil {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), noSpace(err))
	}
	f, direct, err := createTemp(filepath.Dir(s.path(h)), tempPrefix+h.String())
	if errors.Is(err, fs.ErrNotExist) {
		// The fan-out directory was removed behind the store's back: make
		// it again.
		s.dirMade[shardOf(h)].Store(false)
		if err := s.makeFanout(h); err != nil {
			return 0, fmt.Errorf("put chunk %s: %w", h.Short(), noSpace(err))
		}
		f, direct, err = createTemp(filepath.Dir(s.path(h)), tempPrefix+h.String())
	}
	if err != nil {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), noSpace(err))
	}
	tmpName := f.Name()
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(tmpName)
		}
	}()

	hw := sha256.New()
	var w io.Writer = f
	var dw *directWriter
	if direct {
		dw = &directWriter{f: f}
		w = dw
	}
	n, err := stream(ctx, r, w, hw)
	if err == nil && dw != nil {
		err = dw.finish()
	}
	if err != nil {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), noSpace(err))
	}
	var got dfs.Hash
	hw.Sum(got[:0])
	if got != h {
		return 0, fmt.Errorf("put chunk %s: %w: %d bytes hash to %s", h.Short(), dfs.ErrHashMismatch, n, got.Short())
	}
	// Stamp the modification time from this process's clock rather than
	// leave the kernel's coarser one, so "written at or after t" holds
	// exactly for DeleteIfUnmodifiedSince; the fsync below makes it durable
	// with the bytes.
	now := time.Now()
	if err := os.Chtimes(tmpName, now, now); err != nil {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), err)
	}
	if !s.opts.NoSync {
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("put chunk %s: sync %s: %w", h.Short(), tmpName, noSpace(err))
		}
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), noSpace(err))
	}
	// The temporary now holds the chunk's blocks, so free space reflects
	// the write even when its size was not known beforehand.
	if err := s.checkReserve(h, 0); err != nil {
		return 0, err
	}

	keep = true
	size, err := s.commit(h, tmpName, n)
	if err != nil {
		os.Remove(tmpName)
		return 0, err
	}
	return size, nil
}

// verifyStored reads r to EOF and checks it against h, which is already
// stored with the given size. The stored copy stays; once the incoming bytes
// are verified it is touched, as the chunk is in use again.
func (s *Store) verifyStored(ctx context.Context, h dfs.ChunkHash, size int64, r io.Reader) (int64, error) {
	hw := sha256.New()
	n, err := stream(ctx, r, nil, hw)
	if err != nil {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), err)
	}
	var got dfs.Hash
	hw.Sum(got[:0])
	if got != h {
		return 0, fmt.Errorf("put chunk %s: %w: %d bytes hash to %s", h.Short(), dfs.ErrHashMismatch, n, got.Short())
	}
	l := s.lock(h)
	l.Lock()
	e, err := s.touchLocked(h)
	l.Unlock()
	if err != nil {
		return 0, err
	}
	if err := s.syncChunk(h, e); err != nil {
		return 0, err
	}
	return size, nil
}

// touchLocked sets chunk h's modification time to now. The caller holds h's
// lock, so a conditional delete sees the chunk either before the touch or
// after it. A chunk deleted while the incoming bytes were being checked is
// left deleted: the Put then took effect just before that Delete, which is
// what a Put followed at once by a Delete leaves too.
//
// It returns h's entry (its zero value if h is not indexed), which says
// what to sync.
func (s *Store) touchLocked(h dfs.ChunkHash) (indexEntry, error) {
	now := time.Now()
	e, ok := s.idx.get(h)
	if ok && e.loc != 0 {
		if err := s.touchRecord(e, now); err != nil {
			return e, fmt.Errorf("put chunk %s: touch: %w", h.Short(), err)
		}
		return e, nil
	}
	err := os.Chtimes(s.path(h), now, now)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return e, fmt.Errorf("put chunk %s: touch: %w", h.Short(), err)
	}
	return e, nil
}

// Touch marks chunk h as in use now (its modification time), so a
// conditional delete (DeleteIfUnmodifiedSince) keeps it. It reports whether
// the chunk is stored; a chunk that is not is not an error.
func (s *Store) Touch(h dfs.ChunkHash) (bool, error) {
	l := s.lock(h)
	l.Lock()
	defer l.Unlock()
	now := time.Now()
	if e, ok := s.idx.get(h); ok && e.loc != 0 {
		if err := s.touchRecord(e, now); err != nil {
			return false, fmt.Errorf("touch chunk %s: %w", h.Short(), err)
		}
		return true, s.syncChunk(h, e)
	}
	if err := os.Chtimes(s.path(h), now, now); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("touch chunk %s: %w", h.Short(), err)
	}
	if err := s.syncChunk(h, indexEntry{}); err != nil {
		return true, err
	}
	return true, nil
}

// syncChunk makes chunk h's touch durable: garbage collection trusts the
// modification time, so a crash must not roll it back. e is h's entry when
// it was touched, which says where it is.
func (s *Store) syncChunk(h dfs.ChunkHash, e indexEntry) error {
	if s.opts.NoSync {
		return nil
	}
	if e.loc != 0 {
		v := s.vols.get(e.loc.vol())
		if v == nil {
			return nil // compacted since: the copy carries the time, synced
		}
		defer v.release()
		if err := v.sync(); err != nil {
			return fmt.Errorf("put chunk %s: sync after touch: %w", h.Short(), err)
		}
		return nil
	}
	f, err := os.Open(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // deleted since the touch
	}
	if err != nil {
		return fmt.Errorf("put chunk %s: %w", h.Short(), err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("put chunk %s: sync after touch: %w", h.Short(), err)
	}
	return nil
}

// commit moves a verified temporary into place, unless a concurrent Put got
// there first (then the stored copy is touched instead), and accounts for
// the new chunk.
func (s *Store) commit(h dfs.ChunkHash, tmpName string, size int64) (int64, error) {
	l := s.lock(h)
	l.Lock()
	defer l.Unlock()

	if s.closed.Load() {
		os.Remove(tmpName)
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), ErrClosed)
	}
	if e, ok := s.idx.get(h); ok && e.loc != 0 {
		// A concurrent Put stored it in a volume.
		os.Remove(tmpName)
		if _, err := s.touchLocked(h); err != nil {
			return 0, err
		}
		return e.size, s.syncChunk(h, e)
	}
	final := s.path(h)
	fi, err := os.Lstat(final)
	if err == nil {
		os.Remove(tmpName)
		if _, err := s.touchLocked(h); err != nil {
			return 0, err
		}
		if err := s.syncChunk(h, indexEntry{}); err != nil {
			return 0, err
		}
		// A file the index did not know (put there by hand) is a chunk now.
		s.indexAdded(h, fi.Size())
		return fi.Size(), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), err)
	}
	if err := os.Rename(tmpName, final); err != nil {
		return 0, fmt.Errorf("put chunk %s: %w", h.Short(), noSpace(err))
	}
	if !s.opts.NoSync {
		if err := syncDir(filepath.Dir(final)); err != nil {
			// Not durable, so not stored: take it back.
			os.Remove(final)
			return 0, fmt.Errorf("put chunk %s: %w", h.Short(), noSpace(err))
		}
	}
	s.indexAdded(h, size)
	return size, nil
}

// indexAdded indexes chunk h, now on disk, and tells the observer if the
// index did not have it. An entry already there is a chunk whose file
// vanished and came back before anyone noticed: nothing changed for the
// observer. The caller holds h's lock.
func (s *Store) indexAdded(h dfs.ChunkHash, size int64) {
	if s.idx.add(h, size) {
		if o := s.observer(); o != nil {
			o.ChunkAdded(h, size)
		}
	}
}

// indexRemoved drops chunk h, no longer on disk, from the index and tells
// the observer if the index had it. The caller holds h's lock.
func (s *Store) indexRemoved(h dfs.ChunkHash) {
	if s.idx.remove(h) {
		if o := s.observer(); o != nil {
			o.ChunkRemoved(h)
		}
	}
}

// vanished handles chunk h's file found missing while the index has it:
// removed behind the store's back. If it is still missing under h's lock
// (not a Delete or Put racing), h leaves the index and the observer hears
// of it, so the coordinators stop sending readers here.
func (s *Store) vanished(h dfs.ChunkHash) {
	l := s.lock(h)
	l.Lock()
	defer l.Unlock()
	if _, err := os.Lstat(s.path(h)); errors.Is(err, fs.ErrNotExist) {
		s.indexRemoved(h)
	}
}

// makeFanout creates the directory of h's file and makes its entry
// durable. Directories are never removed, so once made they stay.
func (s *Store) makeFanout(h dfs.ChunkHash) error {
	idx := shardOf(h)
	if s.dirMade[idx].Load() {
		return nil
	}
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	if s.dirMade[idx].Load() {
		return nil
	}
	if err := mkdir(filepath.Join(s.chunks, h.String()[0:3])); err != nil {
		return err
	}
	if !s.opts.NoSync {
		if err := syncDir(s.chunks); err != nil {
			return err
		}
	}
	s.dirMade[idx].Store(true)
	return nil
}

func mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// checkReserve fails with dfs.ErrNoSpace if writing need more bytes would
// leave less than the reserve free.
func (s *Store) checkReserve(h dfs.ChunkHash, need int64) error {
	if s.opts.Reserve <= 0 {
		return nil
	}
	avail, _, err := s.statfs()
	if err != nil {
		return fmt.Errorf("put chunk %s: %w", h.Short(), err)
	}
	if avail-need < s.opts.Reserve {
		return fmt.Errorf("put chunk %s: %w: %s has %d bytes free, %d needed, %d reserved",
			h.Short(), dfs.ErrNoSpace, s.dir, avail, need, s.opts.Reserve)
	}
	return nil
}

// stream copies r to w (if not nil) and hw until EOF, checking ctx between
// reads. Read errors and write errors are told apart in the message.
func stream(ctx context.Context, r io.Reader, w io.Writer, hw hash.Hash) (int64, error) {
	bp := alignedPool.Get().(*[]byte)
	defer alignedPool.Put(bp)
	buf := *bp
	var n int64
	for {
		nr, rerr := fill(ctx, r, buf)
		if nr > 0 {
			hw.Write(buf[:nr])
			if w != nil {
				if _, err := w.Write(buf[:nr]); err != nil {
					return n, fmt.Errorf("write: %w", err)
				}
			}
			n += int64(nr)
		}
		switch {
		case rerr == io.EOF:
			return n, nil
		case rerr != nil:
			return n, rerr
		}
	}
}

// fill reads into buf until it is full, r reports an error (io.EOF
// included, returned as is), or ctx is done. Filling the buffer before
// writing keeps writes large when r delivers small pieces, as network
// bodies do.
func fill(ctx context.Context, r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		nn, err := r.Read(buf[n:])
		n += nn
		if err == io.EOF {
			return n, io.EOF
		}
		if err != nil {
			return n, fmt.Errorf("read: %w", err)
		}
	}
	return n, nil
}

// noSpace marks a file system's out-of-space errors as dfs.ErrNoSpace.
func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", dfs.ErrNoSpace, err)
	}
	return err
}

// Open returns chunk h for reading, and its size. The file stays readable
// after a concurrent Delete until it is closed.
func (s *Store) Open(h dfs.ChunkHash) (dfs.ReadAtCloser, int64, error) {
	e, ok := s.idx.get(h)
	if !ok {
		return nil, 0, fmt.Errorf("open chunk %s: %w", h.Short(), dfs.ErrNotFound)
	}
	if e.loc != 0 {
		return s.openRecord(h, e)
	}
	f, err := os.Open(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		s.vanished(h)
		return nil, 0, fmt.Errorf("open chunk %s: %w", h.Short(), dfs.ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open chunk %s: %w", h.Short(), err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("open chunk %s: %w", h.Short(), err)
	}
	return f, fi.Size(), nil
}

// Stat returns the size of chunk h, or an error wrapping dfs.ErrNotFound.
// A chunk the index lacks costs no disk access; one it has is checked on
// the disk, so a file removed by hand is reported missing.
func (s *Store) Stat(h dfs.ChunkHash) (int64, error) {
	e, ok := s.idx.get(h)
	if !ok {
		return 0, fmt.Errorf("stat chunk %s: %w", h.Short(), dfs.ErrNotFound)
	}
	if e.loc != 0 {
		return e.size, nil
	}
	fi, err := os.Stat(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		s.vanished(h)
		return 0, fmt.Errorf("stat chunk %s: %w", h.Short(), dfs.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("stat chunk %s: %w", h.Short(), err)
	}
	return fi.Size(), nil
}

// Delete removes chunk h. Deleting a chunk that is not stored succeeds.
func (s *Store) Delete(h dfs.ChunkHash) error {
	_, err := s.remove(h, nil)
	return err
}

// DeleteIfUnmodifiedSince removes chunk h unless it was written or touched
// (by a Put of the chunk already stored) at or after t, and reports whether
// it removed it. The check and the removal happen under the chunk's lock,
// and a Put stamps the time before it returns, so a chunk whose Put began at
// or after t and returned before this call is kept. A chunk that is not
// stored is not deleted, and that is not an error. The observer and the
// counters hear of a removal as from Delete.
func (s *Store) DeleteIfUnmodifiedSince(h dfs.ChunkHash, t time.Time) (deleted bool, err error) {
	return s.remove(h, func(mtime time.Time) bool { return mtime.Before(t) })
}

// ModTime returns when chunk h was last written or touched, or an error
// wrapping dfs.ErrNotFound.
func (s *Store) ModTime(h dfs.ChunkHash) (time.Time, error) {
	if e, ok := s.idx.get(h); ok && e.loc != 0 {
		v := s.vols.get(e.loc.vol())
		if v == nil {
			return time.Time{}, fmt.Errorf("chunk %s: %w", h.Short(), dfs.ErrNotFound)
		}
		defer v.release()
		return v.mtime(e.loc.off())
	}
	fi, err := os.Stat(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, fmt.Errorf("chunk %s: %w", h.Short(), dfs.ErrNotFound)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("chunk %s: %w", h.Short(), err)
	}
	return fi.ModTime(), nil
}

// remove deletes chunk h if it is stored and cond (if not nil) approves its
// file, and reports whether it did.
func (s *Store) remove(h dfs.ChunkHash, cond func(mtime time.Time) bool) (bool, error) {
	l := s.lock(h)
	l.Lock()
	defer l.Unlock()

	if s.closed.Load() {
		return false, fmt.Errorf("delete chunk %s: %w", h.Short(), ErrClosed)
	}
	if e, ok := s.idx.get(h); ok && e.loc != 0 {
		return s.removeRecord(h, e, cond)
	}
	final := s.path(h)
	fi, err := os.Lstat(final)
	if errors.Is(err, fs.ErrNotExist) {
		s.indexRemoved(h) // if it vanished behind the store's back
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete chunk %s: %w", h.Short(), err)
	}
	if cond != nil && !cond(fi.ModTime()) {
		return false, nil
	}
	if err := os.Remove(final); err != nil {
		return false, fmt.Errorf("delete chunk %s: %w", h.Short(), err)
	}
	// The chunk is gone from view whether or not the directory sync below
	// succeeds, so account for it first.
	s.indexRemoved(h)
	if !s.opts.NoSync {
		if err := syncDir(filepath.Dir(final)); err != nil {
			return true, fmt.Errorf("delete chunk %s: %w", h.Short(), err)
		}
	}
	return true, nil
}

// Quarantine moves chunk h out of the store, into
// dir/quarantine/<hash>.<unix-nano>, where nothing reads it as a chunk again
// and an operator may inspect it. Use it for a copy found corrupt: the bytes
// stay for a post-mortem while the store no longer holds the chunk. The
// observer and the counters hear of it as a removal. It fails with an error
// wrapping dfs.ErrNotFound if the chunk is not stored.
//
// Quarantine moves whatever file holds h now; a caller that verified the
// chunk before calling it races with a Delete and a fresh Put of the same
// chunk in between, which is harmless: the fresh copy is reported removed
// and repair copies it back.
func (s *Store) Quarantine(h dfs.ChunkHash) error {
	l := s.lock(h)
	l.Lock()
	defer l.Unlock()

	if s.closed.Load() {
		return fmt.Errorf("quarantine chunk %s: %w", h.Short(), ErrClosed)
	}
	if e, ok := s.idx.get(h); ok && e.loc != 0 {
		return s.quarantineRecord(h, e)
	}
	final := s.path(h)
	_, err := os.Lstat(final)
	if errors.Is(err, fs.ErrNotExist) {
		s.indexRemoved(h) // if it vanished behind the store's back
		return fmt.Errorf("quarantine chunk %s: %w", h.Short(), dfs.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("quarantine chunk %s: %w", h.Short(), err)
	}
	dst := filepath.Join(s.quarantine, fmt.Sprintf("%s.%d", h, time.Now().UnixNano()))
	if err := os.Rename(final, dst); err != nil {
		return fmt.Errorf("quarantine chunk %s: %w", h.Short(), err)
	}
	s.indexRemoved(h)
	if !s.opts.NoSync {
		for _, d := range []string{s.quarantine, filepath.Dir(final)} {
			if err := syncDir(d); err != nil {
				return fmt.Errorf("quarantine chunk %s: %w", h.Short(), err)
			}
		}
	}
	return nil
}

// Verify re-reads chunk h from the disk and checks that its bytes hash to
// its name. present is false if the chunk is not stored. A file the disk
// cannot read back (an I/O error) counts as present and not ok, as wrong
// bytes do; err is for checks that could not be made at all (ctx ended, the
// file could not be opened). The bytes are read around the page cache where
// the file system allows, so a copy rotting on the disk is found even while
// a good copy is cached, and scrubbing does not evict what readers use.
//
// A chunk the index lacks is not present, and costs no disk access; one
// whose file is missing is dropped from the index, as by Open.
func (s *Store) Verify(ctx context.Context, h dfs.ChunkHash) (present, ok bool, err error) {
	e, ok := s.idx.get(h)
	if !ok {
		if err := ctx.Err(); err != nil {
			return false, false, fmt.Errorf("verify chunk %s: %w", h.Short(), err)
		}
		return false, false, nil
	}
	if e.loc != 0 {
		return s.verifyRecord(ctx, h, e)
	}
	got, err := hashFile(ctx, s.path(h))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.vanished(h)
		return false, false, nil
	case errors.Is(err, syscall.EIO):
		return true, false, nil
	case err != nil:
		return false, false, fmt.Errorf("verify chunk %s: %w", h.Short(), err)
	}
	return true, got == h, nil
}

// Walk calls fn for every stored chunk, in hash order, until fn returns an
// error, which Walk returns. It reads the index, not the disk, and holds no
// lock while fn runs, so fn may call any method of the store. Chunks put or
// deleted during a Walk may or may not be seen.
func (s *Store) Walk(ctx context.Context, fn func(h dfs.ChunkHash, size int64) error) error {
	buf := make([]indexEntry, 0, 256)
	for i := range indexShards {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("walk chunks: %w", err)
		}
		buf = s.idx.snapshot(i, buf[:0])
		for _, e := range buf {
			if err := fn(e.h, e.size); err != nil {
				return err
			}
		}
	}
	return nil
}

// isFanoutName reports whether s names a fan-out directory: three
// lower-case hex digits.
func isFanoutName(s string) bool {
	return len(s) == 3 && isLowerHex(s[0]) && isLowerHex(s[1]) && isLowerHex(s[2])
}

func isLowerHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// Usage returns the number of chunks stored and their total size, from the
// index.
func (s *Store) Usage() (chunks, bytes int64) { return s.idx.usage() }

// Free returns the bytes Put may still use (the file system's space
// available to unprivileged users, less the reserve, never negative) and the
// file system's size.
func (s *Store) Free() (free, capacity int64, err error) {
	avail, capacity, err := s.statfs()
	if err != nil {
		return 0, 0, err
	}
	return max(avail-s.opts.Reserve, 0), capacity, nil
}

func (s *Store) statfs() (avail, capacity int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", s.dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

func chtimes(path string, t time.Time) error { return os.Chtimes(path, t, t) }

// syncDir fsyncs a directory, making the entries in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return d.Close()
}
