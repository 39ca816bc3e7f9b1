package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/dfs-store/dfs/client"
)

// DedupResult is the dedup workload: a data set stored in name order.
type DedupResult struct {
	Files         int     `json:"files"`
	ChunkSize     int     `json:"chunk_size"` // average (content-defined) and fixed
	LogicalBytes  int64   `json:"logical_bytes"`
	PhysicalBytes int64   `json:"physical_bytes"` // new chunk bytes stored (one copy)
	Ratio         float64 `json:"ratio"`
	// FixedPhysicalBytes and FixedRatio are the same data cut into fixed
	// chunks of ChunkSize, computed locally, for comparison.
	FixedPhysicalBytes int64   `json:"fixed_physical_bytes"`
	FixedRatio         float64 `json:"fixed_ratio"`
	UploadMiBps        float64 `json:"upload_mib_s"`
}

func datasetFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	if err == nil && len(files) == 0 {
		err = fmt.Errorf("no files under %s", dir)
	}
	return files, err
}

func runDedup(ctx context.Context, cfg Config, t *target) (*DedupResult, error) {
	files, err := datasetFiles(cfg.Dataset)
	if err != nil {
		return nil, err
	}
	res := &DedupResult{Files: len(files), ChunkSize: cfg.ChunkSize}
	c := t.client
	if cfg.ChunkSize != 2<<20 {
		cc := t.base
		cc.MinChunk, cc.AvgChunk, cc.MaxChunk = cfg.ChunkSize/4, cfg.ChunkSize, cfg.ChunkSize*4
		c, err = client.New(cc)
		if err != nil {
			return nil, err
		}
		defer c.Close()
	}
	run := time.Now().UnixNano()
	start := time.Now()
	for i, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return res, err
		}
		rel, _ := filepath.Rel(cfg.Dataset, p)
		r, err := c.Put(ctx, fmt.Sprintf("bench/dedup-%d/%s", run, filepath.ToSlash(rel)), f, client.PutOptions{})
		f.Close()
		if err != nil {
			return res, err
		}
		res.LogicalBytes += r.File.Size
		res.PhysicalBytes += r.SentBytes
		fmt.Fprintf(cfg.Progress, "dedup: %d/%d %s: %d of %d bytes new\n", i+1, len(files), rel, r.SentBytes, r.File.Size)
	}
	res.UploadMiBps = mibPerSec(res.LogicalBytes, time.Since(start))
	if res.PhysicalBytes > 0 {
		res.Ratio = float64(res.LogicalBytes) / float64(res.PhysicalBytes)
	}
	res.FixedPhysicalBytes, err = fixedChunkBytes(files, cfg.ChunkSize)
	if err != nil {
		return res, err
	}
	if res.FixedPhysicalBytes > 0 {
		res.FixedRatio = float64(res.LogicalBytes) / float64(res.FixedPhysicalBytes)
	}
	return res, nil
}

// fixedChunkBytes is the bytes a store with fixed-size chunks would keep
// for files: each file cut every size bytes, each distinct chunk once.
func fixedChunkBytes(files []string, size int) (int64, error) {
	seen := map[[32]byte]bool{}
	buf := make([]byte, size)
	var total int64
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return 0, err
		}
		for {
			n, err := io.ReadFull(f, buf)
			if n > 0 {
				h := sha256.Sum256(buf[:n])
				if !seen[h] {
					seen[h] = true
					total += int64(n)
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				f.Close()
				return 0, err
			}
		}
		f.Close()
	}
	return total, nil
}
