package disk

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/dfs-store/dfs"
	"golang.org/x/sys/unix"
)

// Volumes hold the small chunks. A chunk file costs every Put a create, an
// fsync, a rename and a directory fsync, on each of the three nodes that
// take a copy, and the kernel's metadata work for each: for chunks of a
// few tens of KiB that, not the bytes, bounds how many a node takes per
// second. So a chunk of at most Options.SmallMax bytes is appended instead
// to the store's active volume, dir/volumes/<id>.vol, an append-only file
// of records, and concurrent Puts share their fsyncs (group commit): the
// first to finish its write starts an fdatasync that covers every record
// written before it began, the others wait for it or the next. A chunk is
// still acknowledged only once its bytes are verified and durable. Larger
// chunks keep a file each: for them the fsync is small beside the bytes,
// and direct I/O (see direct.go) writes them for less CPU than an append
// through the page cache.
//
// A record is a 64-byte header and the chunk's bytes, padded to 4 KiB:
//
//	0   magic "dfsV"
//	4   format, uint32 little-endian (1)
//	8   the chunk's SHA-256
//	40  size, uint64
//	48  CRC-32C of bytes 0..47
//	52  zero
//	56  modification time, int64 unix nanoseconds
//	64  the chunk's bytes
//
// The modification time sits outside the CRC: a Touch rewrites it in place
// (8 aligned bytes, which no disk tears) and syncs, as a chunk file's
// mtime is set and synced. Records are written with direct I/O where the
// file system allows (whole 4 KiB blocks, hence the padding: through the
// page cache the same bytes cost several times the CPU, see direct.go),
// each writer reserving its place under a lock and writing in parallel
// with the others; a record is acknowledged only after an fdatasync that
// began after its write ended. After a crash a record that was never
// acknowledged may be torn, with acknowledged ones after it. Only the
// newest volume can hold such records (a volume's writes end and it is
// synced before the next one is started), and Open, when the last run did
// not close cleanly, verifies every record of that volume against its hash,
// steps over what does not verify to the next good record, and cuts what
// follows the last one.
//
// Deleting a chunk in a volume appends its record's offset and the first 8
// bytes of its hash to <id>.del beside the volume, and the index forgets
// it. The deletes file is not synced at each delete: if a crash loses an
// entry, the chunk comes back, whole and verified, and is collected again
// as garbage; nothing that was kept is lost. A volume's dead bytes (the
// records deleted, and those a crash or a race left unindexed) are
// reclaimed by compaction, in the background: once at least
// Options.CompactRatio of a sealed volume is dead, its live records are
// appended to the active volume like new Puts (keeping their modification
// times), the index points at the copies under each chunk's lock, and the
// old volume is removed. Reads of a chunk opened before it moved keep the
// old file open until they close it. A crash during compaction leaves a
// record twice; Open keeps one and counts the other as dead.
//
// Records are located by the index: an entry's loc holds the volume id and
// the record's offset (see loc). Reading a chunk is a pread of the volume.

const (
	volumesDir = "volumes"
	volExt     = ".vol"
	delExt     = ".del"
	volMagic   = "dfsV"
	volFormat  = 1
	recHeader  = 64
	recAlign   = directAlign
	delEntry   = 16

	// DefaultSmallMax is the largest chunk kept in a volume when
	// Options.SmallMax is 0.
	DefaultSmallMax = 1 << 20
	// DefaultVolumeSize is the size past which a volume is sealed and the
	// next one started, when Options.VolumeSize is 0.
	DefaultVolumeSize = 1 << 30
	// DefaultCompactRatio is the share of dead bytes at which a sealed
	// volume is compacted, when Options.CompactRatio is 0.
	DefaultCompactRatio = 0.5

	// MaxSmallMax bounds Options.SmallMax, and the size a record header
	// may claim.
	MaxSmallMax = 16 << 20

	maxVolumeID = 1<<24 - 1
	maxOffset   = 1<<40 - 1
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// loc says where a chunk is: 0 for a file of its own, otherwise a volume id
// (top 24 bits, from 1) and the offset of its record (low 40 bits).
type loc uint64

func makeLoc(vol uint32, off int64) loc { return loc(uint64(vol)<<40 | uint64(off)) }
func (l loc) vol() uint32               { return uint32(l >> 40) }
func (l loc) off() int64                { return int64(l & maxOffset) }

// recLen is the length of the record of a chunk of size bytes.
func recLen(size int64) int64 { return (recHeader + size + recAlign - 1) &^ (recAlign - 1) }

// recHead is a record's header.
type recHead struct {
	h     dfs.ChunkHash
	size  int64
	mtime int64
}

func putHead(b []byte, rh recHead) {
	copy(b[0:4], volMagic)
	binary.LittleEndian.PutUint32(b[4:8], volFormat)
	copy(b[8:40], rh.h[:])
	binary.LittleEndian.PutUint64(b[40:48], uint64(rh.size))
	binary.LittleEndian.PutUint32(b[48:52], crc32.Checksum(b[0:48], crcTable))
	binary.LittleEndian.PutUint32(b[52:56], 0)
	binary.LittleEndian.PutUint64(b[56:64], uint64(rh.mtime))
}

// parseHead decodes a header; ok is false if b is not one (wrong magic,
// format or CRC, or a size no record can have).
func parseHead(b []byte, maxSize int64) (recHead, bool) {
	if string(b[0:4]) != volMagic || binary.LittleEndian.Uint32(b[4:8]) != volFormat ||
		binary.LittleEndian.Uint32(b[48:52]) != crc32.Checksum(b[0:48], crcTable) {
		return recHead{}, false
	}
	var rh recHead
	copy(rh.h[:], b[8:40])
	rh.size = int64(binary.LittleEndian.Uint64(b[40:48]))
	rh.mtime = int64(binary.LittleEndian.Uint64(b[56:64]))
	if rh.size < 0 || rh.size > maxSize {
		return recHead{}, false
	}
	return rh, true
}

// volume is one volume file.
type volume struct {
	id   uint32
	path string
	f    *os.File // reads, deletes' times, touches
	// wf writes records: f opened for direct I/O where the file system
	// allows, else f itself. Only the active volume has one.
	wf *os.File
	// writes counts appends still writing, which a roll waits for.
	writes sync.WaitGroup

	// refs counts the set's hold (while the volume is in it) and each
	// open reader's; the file closes when the last lets go.
	refs atomic.Int64
	// live is the bytes of the records the index points at; the rest of
	// the file is dead.
	live atomic.Int64
	// end is where the next record goes, and the volume's size. Only the
	// active volume grows, under volumeSet.wmu.
	end atomic.Int64
	// pending counts records appended whose writer has not yet indexed
	// them or given them up: compaction leaves the volume alone until
	// none is, or it would miss a record about to become live.
	pending atomic.Int64

	// Group commit: started and done count fdatasyncs; a writer whose
	// write ended when started was k waits for done > k.
	smu     sync.Mutex
	scond   *sync.Cond
	started uint64
	done    uint64
	syncing bool
	serr    error // a failed sync: the volume takes no more records

	dmu sync.Mutex
	del *os.File // the deletes file, opened at the first delete
}

func newVolume(id uint32, path string, f *os.File, end int64) *volume {
	v := &volume{id: id, path: path, f: f}
	advise(f, unix.FADV_RANDOM)
	v.scond = sync.NewCond(&v.smu)
	v.refs.Store(1)
	v.end.Store(end)
	return v
}

// advise tells the kernel how f will be read. A volume's records are
// separate chunks, each read whole on its own, so by default no read ahead:
// the kernel's read ahead would fetch the neighbours of every record read
// (measured: 2.5 times the bytes asked for under small gets) only to drop
// them. A failure costs only speed.
func advise(f *os.File, how int) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, how)
}

func (v *volume) delPath() string { return strings.TrimSuffix(v.path, volExt) + delExt }

// release lets go of one hold; the last closes the files.
func (v *volume) release() {
	if v.refs.Add(-1) == 0 {
		if v.wf != nil && v.wf != v.f {
			v.wf.Close()
		}
		v.f.Close()
		v.dmu.Lock()
		if v.del != nil {
			v.del.Close()
			v.del = nil
		}
		v.dmu.Unlock()
	}
}

// sync returns once everything written to the volume before the call is
// durable, sharing one fdatasync with concurrent callers.
func (v *volume) sync() error {
	v.smu.Lock()
	defer v.smu.Unlock()
	want := v.started + 1
	for v.done < want {
		if v.serr != nil {
			return v.serr
		}
		if v.syncing {
			v.scond.Wait()
			continue
		}
		v.syncing = true
		v.started++
		n := v.started
		v.smu.Unlock()
		err := syscall.Fdatasync(int(v.f.Fd()))
		v.smu.Lock()
		v.syncing = false
		if err != nil {
			v.serr = fmt.Errorf("sync volume %s: %w", v.path, noSpace(err))
		} else {
			v.done = n
		}
		v.scond.Broadcast()
	}
	return nil
}

func (v *volume) failed() bool {
	v.smu.Lock()
	defer v.smu.Unlock()
	return v.serr != nil
}

// readHead reads the header of the record at off.
func (v *volume) readHead(off int64) (recHead, error) {
	var b [recHeader]byte
	if _, err := v.f.ReadAt(b[:], off); err != nil {
		return recHead{}, fmt.Errorf("volume %s at %d: %w", v.path, off, err)
	}
	rh, ok := parseHead(b[:], MaxSmallMax)
	if !ok {
		return recHead{}, fmt.Errorf("volume %s at %d: not a record header", v.path, off)
	}
	return rh, nil
}

// mtime reads the modification time of the record at off.
func (v *volume) mtime(off int64) (time.Time, error) {
	var b [8]byte
	if _, err := v.f.ReadAt(b[:], off+56); err != nil {
		return time.Time{}, fmt.Errorf("volume %s at %d: %w", v.path, off, err)
	}
	return time.Unix(0, int64(binary.LittleEndian.Uint64(b[:]))), nil
}

// setMtime rewrites the modification time of the record at off.
func (v *volume) setMtime(off int64, t time.Time) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(t.UnixNano()))
	if _, err := v.f.WriteAt(b[:], off+56); err != nil {
		return fmt.Errorf("volume %s at %d: %w", v.path, off, err)
	}
	return nil
}

// markDead records that the record at off, of chunk h, is no longer live.
// wasLive says whether the index pointed at it, so its bytes leave the
// live count.
func (v *volume) markDead(off int64, h dfs.ChunkHash, size int64, wasLive bool) error {
	if wasLive {
		v.live.Add(-recLen(size))
	}
	v.dmu.Lock()
	defer v.dmu.Unlock()
	if v.del == nil {
		f, err := os.OpenFile(v.delPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("volume %s: deletes: %w", v.path, err)
		}
		v.del = f
	}
	var e [delEntry]byte
	binary.LittleEndian.PutUint64(e[0:8], uint64(off))
	copy(e[8:16], h[:8])
	if _, err := v.del.Write(e[:]); err != nil {
		return fmt.Errorf("volume %s: deletes: %w", v.path, noSpace(err))
	}
	return nil
}

// syncDel makes the deletes written so far durable.
func (v *volume) syncDel() error {
	v.dmu.Lock()
	defer v.dmu.Unlock()
	if v.del == nil {
		return nil
	}
	return v.del.Sync()
}

// readDeletes returns the offsets the deletes file marks dead, each with
// the hash prefix it names. A torn last entry is ignored.
func readDeletes(path string) (map[int64][8]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("deletes %s: %w", path, err)
	}
	m := make(map[int64][8]byte, len(b)/delEntry)
	for len(b) >= delEntry {
		var p [8]byte
		copy(p[:], b[8:16])
		m[int64(binary.LittleEndian.Uint64(b[0:8]))] = p
		b = b[delEntry:]
	}
	return m, nil
}

// volChunk is a chunk in a volume, open for reading.
type volChunk struct {
	v      *volume
	off    int64 // of the chunk's bytes in the file
	size   int64
	closed atomic.Bool
}

func (c *volChunk) ReadAt(p []byte, o int64) (int, error) {
	if o < 0 {
		return 0, fmt.Errorf("read chunk: negative offset %d", o)
	}
	if o >= c.size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := c.size - o; int64(want) > rest {
		want = int(rest)
	}
	n, err := c.v.f.ReadAt(p[:want], c.off+o)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	if errors.Is(err, io.EOF) && n < want {
		err = io.ErrUnexpectedEOF // the volume is shorter than the record
	}
	return n, err
}

func (c *volChunk) Close() error {
	if !c.closed.Swap(true) {
		c.v.release()
	}
	return nil
}

// volumeSet is a store's volumes.
type volumeSet struct {
	dir      string // dir/volumes
	noSync   bool
	maxSize  int64 // volume size at which the next is started
	smallMax int64

	mu   sync.RWMutex
	vols map[uint32]*volume

	// wmu serialises appends: records go to the active volume one at a
	// time, in offset order.
	wmu    sync.Mutex
	active *volume
	nextID uint32

	// kick wakes the compactor when a volume may have become worth
	// compacting.
	kick chan struct{}

	// bufs holds buffers for a record of the largest small chunk and one
	// byte more (see Put).
	bufs sync.Pool
}

func volName(id uint32) string { return fmt.Sprintf("%08x%s", id, volExt) }

// get returns volume id with a hold on it, or nil.
func (vs *volumeSet) get(id uint32) *volume {
	vs.mu.RLock()
	defer vs.mu.RUnlock()
	v := vs.vols[id]
	if v != nil {
		v.refs.Add(1)
	}
	return v
}

// list returns the volumes, by id, each with a hold.
func (vs *volumeSet) list() []*volume {
	vs.mu.RLock()
	defer vs.mu.RUnlock()
	out := make([]*volume, 0, len(vs.vols))
	for _, v := range vs.vols {
		v.refs.Add(1)
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *volume) int { return int(a.id) - int(b.id) })
	return out
}

// append writes record rec (a header and the chunk's bytes, padded) to the
// active volume, starting a new one if needed. It returns the record's
// location and its volume, held: the caller syncs it, indexes the record
// or marks it dead, then calls settled.
//
// rec's length must be a whole number of blocks (recLen), and rec must
// start on a block boundary in memory (alignedBuf) for direct I/O. Writers
// reserve their place one at a time and write at once: a record whose
// write fails leaves a hole of garbage, which Open steps over.
func (vs *volumeSet) append(rec []byte) (loc, *volume, error) {
	vs.wmu.Lock()
	v := vs.active
	if v == nil || v.failed() || (v.end.Load() > 0 && v.end.Load()+int64(len(rec)) > vs.maxSize) {
		var err error
		if v, err = vs.roll(); err != nil {
			vs.wmu.Unlock()
			return 0, nil, err
		}
	}
	off := v.end.Load()
	v.end.Store(off + int64(len(rec)))
	v.refs.Add(1)
	v.pending.Add(1)
	v.writes.Add(1)
	vs.wmu.Unlock()

	_, err := v.wf.WriteAt(rec, off)
	v.writes.Done()
	if err != nil {
		v.settled()
		return 0, nil, fmt.Errorf("volume %s: %w", v.path, noSpace(err))
	}
	return makeLoc(v.id, off), v, nil
}

// alignedBuf returns a buffer of n bytes (rounded up to whole blocks) that
// starts on a block boundary, as direct I/O needs.
func alignedBuf(n int64) []byte {
	n = (n + directAlign - 1) &^ (directAlign - 1)
	b := make([]byte, n+directAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	if off != 0 {
		off = directAlign - off
	}
	return b[off : off+int(n) : off+int(n)]
}

// settled ends what append began: the record is indexed or given up. It
// releases the hold append took.
func (v *volume) settled() {
	v.pending.Add(-1)
	v.release()
}

// roll seals the active volume, syncing it so that only the newest volume
// may ever hold unsynced records, and starts the next. The caller holds
// wmu.
func (vs *volumeSet) roll() (*volume, error) {
	if old := vs.active; old != nil {
		// Appends still writing end first: once sealed and synced, a
		// volume holds no record that could be torn.
		old.writes.Wait()
		if !vs.noSync {
			// A failed sync fails the waiters of the records it
			// covered; the volume keeps what was synced before.
			old.sync()
		}
		vs.active = nil
	}
	if vs.nextID > maxVolumeID {
		return nil, fmt.Errorf("volumes %s: out of volume ids", vs.dir)
	}
	id := vs.nextID
	path := filepath.Join(vs.dir, volName(id))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("new volume: %w", noSpace(err))
	}
	if !vs.noSync {
		// The file's name must be durable before a record in it is
		// acknowledged; fdatasync of the file does not cover it.
		if err := syncDir(vs.dir); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("new volume: %w", noSpace(err))
		}
	}
	vs.nextID++
	v := newVolume(id, path, f, 0)
	v.wf = f
	if df, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0); err == nil {
		v.wf = df
	}
	vs.mu.Lock()
	vs.vols[id] = v
	vs.mu.Unlock()
	vs.active = v
	return v, nil
}

// retire takes v out of the set and removes its files. Readers holding it
// keep reading the unlinked file until they close it.
func (vs *volumeSet) retire(v *volume) error {
	vs.mu.Lock()
	if vs.vols[v.id] != v {
		vs.mu.Unlock()
		return nil
	}
	delete(vs.vols, v.id)
	vs.mu.Unlock()
	err := os.Remove(v.path)
	if err2 := os.Remove(v.delPath()); err2 != nil && !errors.Is(err2, fs.ErrNotExist) && err == nil {
		err = err2
	}
	v.release()
	if err != nil {
		return fmt.Errorf("retire volume: %w", err)
	}
	return nil
}

// close syncs and closes the volumes; readers still holding one keep it
// open until they close.
func (vs *volumeSet) close() error {
	vs.wmu.Lock()
	defer vs.wmu.Unlock()
	vs.mu.Lock()
	vols := vs.vols
	vs.vols = map[uint32]*volume{}
	vs.mu.Unlock()
	var first error
	for _, v := range vols {
		if !vs.noSync {
			if err := v.sync(); err != nil && first == nil {
				first = err
			}
			if err := v.syncDel(); err != nil && first == nil {
				first = err
			}
		}
		v.release()
	}
	vs.active = nil
	return first
}

// wake tells the compactor to look.
func (vs *volumeSet) wake() {
	select {
	case vs.kick <- struct{}{}:
	default:
	}
}

// volumeIDs lists the volume files in dir, by id.
func volumeIDs(dir string) ([]uint32, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var ids []uint32
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, volExt) || len(name) != 8+len(volExt) {
			continue
		}
		id, err := strconv.ParseUint(name[:8], 16, 32)
		if err != nil || id == 0 || id > maxVolumeID {
			continue
		}
		ids = append(ids, uint32(id))
	}
	slices.Sort(ids)
	return ids, nil
}

// openVolumes opens every volume in dir/volumes. The index must be loaded
// already (from the saved index) or be filled by scan.
func (s *Store) openVolumes() error {
	vs := s.vols
	ids, err := volumeIDs(vs.dir)
	if err != nil {
		return err
	}
	vs.nextID = 1
	for _, id := range ids {
		path := filepath.Join(vs.dir, volName(id))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open volume: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("open volume: %w", err)
		}
		vs.vols[id] = newVolume(id, path, f, fi.Size())
		vs.nextID = id + 1
	}
	return nil
}

// countLive sets each volume's live bytes from the index, after it was
// loaded from the saved index, and checks that every entry's volume exists
// and holds its record.
func (s *Store) countLive() error {
	live := map[uint32]int64{}
	var bad error
	for i := range indexShards {
		for _, e := range s.idx.snapshot(i, nil) {
			if e.loc == 0 {
				continue
			}
			v := s.vols.vols[e.loc.vol()]
			if v == nil || e.loc.off()+recLen(e.size) > v.end.Load() {
				bad = fmt.Errorf("chunk %s: its record at %d in volume %d is not there", e.h.Short(), e.loc.off(), e.loc.vol())
				continue
			}
			live[e.loc.vol()] += recLen(e.size)
		}
	}
	for id, n := range live {
		s.vols.vols[id].live.Store(n)
	}
	return bad
}

// scanVolumes indexes the records of every volume, after a crash (no
// saved index): deleted records are skipped, a chunk found twice is kept
// once (the other copy marked dead), and the newest volume, which may hold
// records that were never synced, is verified record by record and cut
// after its last good one.
func (s *Store) scanVolumes(ctx context.Context) error {
	vs := s.vols
	ids := make([]uint32, 0, len(vs.vols))
	for id := range vs.vols {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for k, id := range ids {
		v := vs.vols[id]
		newest := k == len(ids)-1
		if err := s.scanVolume(ctx, v, newest); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) scanVolume(ctx context.Context, v *volume, newest bool) error {
	// The scan reads the volume front to back: read ahead for it.
	advise(v.f, unix.FADV_SEQUENTIAL)
	defer advise(v.f, unix.FADV_RANDOM)
	dels, err := readDeletes(v.delPath())
	if err != nil {
		return err
	}
	size := v.end.Load()
	var buf []byte
	lastGood := int64(0)
	searching := false
	type found struct {
		e     indexEntry
		mtime int64
	}
	var recs []found
	off := int64(0)
	for off+recHeader <= size {
		if err := ctx.Err(); err != nil {
			return err
		}
		// A header found while searching a damaged region counts only
		// if its bytes verify.
		rh, ok, err := s.readRecord(v, off, size, &buf, newest || searching)
		if err != nil {
			return err
		}
		if !ok {
			// Not a record here: torn, or rotten. Look for the next.
			s.openStats.DamagedBytes += recAlign
			searching = true
			off += recAlign
			continue
		}
		searching = false
		end := off + recLen(rh.size)
		if p, dead := dels[off]; !dead || p != [8]byte(rh.h[:8]) {
			recs = append(recs, found{indexEntry{h: rh.h, size: rh.size, loc: makeLoc(v.id, off)}, rh.mtime})
		}
		lastGood = end
		off = end
	}
	if searching || off < size {
		s.openStats.DamagedBytes += size - off
	}
	if newest && lastGood < size {
		if err := v.f.Truncate(lastGood); err != nil {
			return fmt.Errorf("volume %s: cut the torn tail: %w", v.path, err)
		}
		if !s.opts.NoSync {
			if err := v.f.Sync(); err != nil {
				return fmt.Errorf("volume %s: %w", v.path, err)
			}
		}
		s.openStats.TornBytes += size - lastGood
		v.end.Store(lastGood)
	}
	for _, r := range recs {
		e := r.e
		if old, ok := s.idx.get(e.h); ok {
			// Twice: a crash during compaction, or a delete whose entry
			// was lost before a fresh Put of the same chunk. The copy
			// touched last stays, so garbage collection, which trusts
			// the time, sees the latest use.
			keepOld := true
			if old.loc != 0 {
				ov := s.vols.vols[old.loc.vol()]
				if mt, err := ov.mtime(old.loc.off()); err == nil && mt.UnixNano() < r.mtime {
					keepOld = false
					if err := ov.markDead(old.loc.off(), old.h, old.size, true); err != nil {
						return err
					}
					s.idx.move(e.h, old.loc, e.loc)
					v.live.Add(recLen(e.size))
				}
			} else if fi, err := os.Stat(s.path(e.h)); err == nil && fi.ModTime().UnixNano() < r.mtime {
				// A file and a record: the file goes, the record stays.
				keepOld = false
				os.Remove(s.path(e.h))
				s.idx.move(e.h, 0, e.loc)
				v.live.Add(recLen(e.size))
			}
			if keepOld {
				if err := v.markDead(e.loc.off(), e.h, e.size, false); err != nil {
					return err
				}
			}
			continue
		}
		s.idx.addAt(e.h, e.size, e.loc)
		v.live.Add(recLen(e.size))
	}
	return nil
}

// hashRange returns the SHA-256 of n bytes of the volume from off.
func (v *volume) hashRange(ctx context.Context, off, n int64) (dfs.Hash, error) {
	bp := alignedPool.Get().(*[]byte)
	defer alignedPool.Put(bp)
	buf := *bp
	hw := sha256.New()
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return dfs.Hash{}, err
		}
		m := min(int64(len(buf)), n)
		k, err := v.f.ReadAt(buf[:m], off)
		hw.Write(buf[:k])
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return dfs.Hash{}, err
		}
		off += m
		n -= m
	}
	var sum dfs.Hash
	hw.Sum(sum[:0])
	return sum, nil
}

// readRecord reads and checks the header at off, and the bytes too if
// verify is set. ok is false if no good record starts there.
func (s *Store) readRecord(v *volume, off, size int64, buf *[]byte, verify bool) (recHead, bool, error) {
	var head [recHeader]byte
	if _, err := v.f.ReadAt(head[:], off); err != nil {
		return recHead{}, false, fmt.Errorf("volume %s at %d: %w", v.path, off, err)
	}
	rh, ok := parseHead(head[:], MaxSmallMax)
	if !ok || off+recLen(rh.size) > size {
		return recHead{}, false, nil
	}
	if verify {
		if int64(cap(*buf)) < rh.size {
			*buf = make([]byte, rh.size)
		}
		data := (*buf)[:rh.size]
		if _, err := v.f.ReadAt(data, off+recHeader); err != nil {
			return recHead{}, false, fmt.Errorf("volume %s at %d: %w", v.path, off, err)
		}
		if sha256.Sum256(data) != rh.h {
			return recHead{}, false, nil
		}
	}
	return rh, true, nil
}

// Locate says where chunk h's bytes lie under dir, the directory of a store
// (open or not): a chunk file, at offset 0, or a volume, at the offset of
// the chunk's first byte. It reads the disk, not a store's index, to reach
// a chunk's bytes from outside the store (an operator's inspection, a test
// that damages a copy). It fails with dfs.ErrNotFound if no live copy of h
// is there.
func Locate(dir string, h dfs.ChunkHash) (path string, off int64, err error) {
	errFound := errors.New("found")
	err = Scan(dir, func(c dfs.ChunkHash, p string, o, _ int64) error {
		if c == h {
			path, off = p, o
			return errFound
		}
		return nil
	})
	switch {
	case err == errFound:
		return path, off, nil
	case err != nil:
		return "", 0, err
	}
	return "", 0, fmt.Errorf("locate chunk %s: %w", h.Short(), dfs.ErrNotFound)
}

// Scan calls fn for every chunk stored under dir, the directory of a store
// (open or not), with where its bytes lie: a chunk file at offset 0, or a
// volume at the offset of its first byte. Like Locate it reads the disk,
// for what looks at a store from outside; records a volume's deletes file
// marks dead are skipped, and a chunk found twice is reported twice. fn's
// error stops the scan and is returned.
func Scan(dir string, fn func(h dfs.ChunkHash, path string, off, size int64) error) error {
	ents, err := os.ReadDir(filepath.Join(dir, "chunks"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() || !isFanoutName(e.Name()) {
			continue
		}
		leaf := filepath.Join(dir, "chunks", e.Name())
		files, err := os.ReadDir(leaf)
		if err != nil {
			return err
		}
		for _, f := range files {
			h, err := dfs.ParseHash(f.Name())
			if err != nil || h.String() != f.Name() || !f.Type().IsRegular() {
				continue
			}
			fi, err := f.Info()
			if err != nil {
				continue
			}
			if err := fn(h, filepath.Join(leaf, f.Name()), 0, fi.Size()); err != nil {
				return err
			}
		}
	}
	vdir := filepath.Join(dir, volumesDir)
	ids, err := volumeIDs(vdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := scanVolumeFile(filepath.Join(vdir, volName(id)), fn); err != nil {
			return err
		}
	}
	return nil
}

func scanVolumeFile(vp string, fn func(h dfs.ChunkHash, path string, off, size int64) error) error {
	dels, err := readDeletes(strings.TrimSuffix(vp, volExt) + delExt)
	if err != nil {
		return err
	}
	f, err := os.Open(vp)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	var head [recHeader]byte
	for o := int64(0); o+recHeader <= fi.Size(); {
		if _, err := f.ReadAt(head[:], o); err != nil {
			return err
		}
		rh, ok := parseHead(head[:], MaxSmallMax)
		if !ok || o+recLen(rh.size) > fi.Size() {
			o += recAlign
			continue
		}
		if p, dead := dels[o]; !dead || p != [8]byte(rh.h[:8]) {
			if err := fn(rh.h, vp, o+recHeader, rh.size); err != nil {
				return err
			}
		}
		o += recLen(rh.size)
	}
	return nil
}
