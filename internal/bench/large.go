package bench

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/dfs-store/dfs/client"
)

// LargeResult is the large workload: one big file up and down.
type LargeResult struct {
	SizeBytes     int64   `json:"size_bytes"`
	UploadMiBps   float64 `json:"upload_mib_s"`
	DownloadMiBps float64 `json:"download_mib_s"`
	// The same with fsync off on the datanodes (only when bench starts its
	// own server).
	UploadNoSyncMiBps   float64 `json:"upload_nofsync_mib_s,omitempty"`
	DownloadNoSyncMiBps float64 `json:"download_nofsync_mib_s,omitempty"`
	// ServerPeakRSSBytes is the dfs server process's peak resident memory
	// over the fsync-on run.
	ServerPeakRSSBytes int64 `json:"server_peak_rss_bytes,omitempty"`
}

func newRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}

// randomReader yields n pseudo-random bytes, an AES-CTR keystream keyed by
// seed: the source of an upload costs about what reading a file in the
// page cache costs (a ChaCha8 source took a fifth of the bench process's
// CPU, on the same cores as the server it measures).
func randomReader(seed uint64, n int64) io.Reader {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 16-byte key is always valid
	}
	return io.LimitReader(keystream{cipher.NewCTR(block, make([]byte, aes.BlockSize))}, n)
}

type keystream struct{ s cipher.Stream }

func (k keystream) Read(p []byte) (int, error) {
	clear(p)
	k.s.XORKeyStream(p, p)
	return len(p), nil
}

// countingWriter counts bytes and reports progress.
type countingWriter struct {
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func runLarge(ctx context.Context, cfg Config) (*LargeResult, error) {
	res := &LargeResult{SizeBytes: cfg.Size}
	once := func(t *target, label string, seed uint64) (up, down float64, err error) {
		run := time.Now().UnixNano()
		path := fmt.Sprintf("bench/large-%d-%d", seed, run)
		fmt.Fprintf(cfg.Progress, "large (%s): upload %d MiB\n", label, cfg.Size>>20)
		start := time.Now()
		// Bytes new to the cluster on every run (an earlier run's file may
		// not be collected yet), of a length known beforehand as a file's.
		src := randomReader(seed<<32^uint64(run), cfg.Size)
		if _, err := t.client.Put(ctx, path, src, client.PutOptions{Size: cfg.Size}); err != nil {
			return 0, 0, err
		}
		up = mibPerSec(cfg.Size, time.Since(start))
		fmt.Fprintf(cfg.Progress, "large (%s): upload %.0f MiB/s; download\n", label, up)
		var w countingWriter
		start = time.Now()
		if _, err := t.client.Get(ctx, path, &w, client.GetOptions{}); err != nil {
			return 0, 0, err
		}
		down = mibPerSec(w.n, time.Since(start))
		if w.n != cfg.Size {
			return 0, 0, fmt.Errorf("downloaded %d bytes of %d", w.n, cfg.Size)
		}
		fmt.Fprintf(cfg.Progress, "large (%s): download %.0f MiB/s\n", label, down)
		if err := t.client.Delete(ctx, path); err != nil {
			return 0, 0, err
		}
		return up, down, nil
	}
	err := withCluster(ctx, cfg, false, func(t *target) error {
		var err error
		res.UploadMiBps, res.DownloadMiBps, err = once(t, "fsync on", 1)
		res.ServerPeakRSSBytes = t.peakRSS()
		return err
	})
	if err != nil || cfg.Coordinator != "" {
		return res, err
	}
	err = withCluster(ctx, cfg, true, func(t *target) error {
		var err error
		res.UploadNoSyncMiBps, res.DownloadNoSyncMiBps, err = once(t, "fsync off", 2)
		return err
	})
	return res, err
}
