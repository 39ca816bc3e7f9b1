package cluster_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/dfs-store/dfs/client"
)

// Many small chunks through one upload slot pair: the splitter must hand
// over cut chunks before it waits for a buffer, or the pipeline stalls.
func TestPutManySmallChunksFewSlots(t *testing.T) {
	slow(t, "thousands of small chunks")
	cl, _ := startCluster(t, nil)
	for _, uploads := range []int{1, 2, 8} {
		c, err := cl.Client(client.Config{Uploads: uploads, Downloads: 1, MinChunk: 16 << 10, AvgChunk: 32 << 10, MaxChunk: 64 << 10, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		data := randomBytes(6<<20, int64(uploads))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		res, err := c.Put(ctx, "small-chunks", bytes.NewReader(data), client.PutOptions{})
		if err != nil {
			t.Fatalf("uploads=%d: %v", uploads, err)
		}
		if res.Chunks < 50 {
			t.Fatalf("uploads=%d: %d chunks, expected many small ones", uploads, res.Chunks)
		}
		var out bytes.Buffer
		if _, err := c.Get(ctx, "small-chunks", &out, client.GetOptions{}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("uploads=%d: bytes differ", uploads)
		}
	}
}
