package gateway

import (
	"bytes"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// A response copied through pooledCopy carries the source's bytes exactly,
// however they are read, and takes no buffer of its own per response.
func TestPooledCopy(t *testing.T) {
	src := make([]byte, 300<<10+17)
	rand.New(rand.NewSource(1)).Read(src)
	for _, n := range []int64{0, 1, 64 << 10, 200 << 10, int64(len(src))} {
		rec := httptest.NewRecorder()
		got, err := pooledCopy{rec}.ReadFrom(io.LimitReader(bytes.NewReader(src), n))
		if err != nil || got != n || !bytes.Equal(rec.Body.Bytes(), src[:n]) {
			t.Fatalf("%d bytes: copied %d (%v), body %d bytes, equal %v", n, got, err, rec.Body.Len(), bytes.Equal(rec.Body.Bytes(), src[:n]))
		}
	}
	// Bytes allocated per copy: a few small wrappers, never the 32 KiB
	// buffer a copy without one makes (io.Copy here measures 32 KiB+).
	perCopy := func(copyTo func(io.Reader)) uint64 {
		copyTo(bytes.NewReader(src)) // the pool's first buffer
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 50 {
			copyTo(io.LimitReader(bytes.NewReader(src), 64<<10))
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / 50
	}
	w := discardWriter{io.Discard}
	plain := perCopy(func(r io.Reader) { io.Copy(struct{ io.Writer }{w}, r) })
	pooled := perCopy(func(r io.Reader) { pooledCopy{w}.ReadFrom(r) })
	t.Logf("bytes allocated per 64 KiB copy: %d plain, %d pooled", plain, pooled)
	if pooled > 4<<10 || plain < 32<<10 {
		t.Fatalf("bytes allocated per 64 KiB copy: %d through pooledCopy (want under 4 KiB), %d with io.Copy", pooled, plain)
	}
}

// discardWriter is a ResponseWriter that drops what it is given.
type discardWriter struct{ io.Writer }

func (discardWriter) Header() http.Header { return nil }
func (discardWriter) WriteHeader(int)     {}
