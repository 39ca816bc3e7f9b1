package gateway

import (
	"bytes"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
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
	// The copy reads into the pool's 64 KiB buffer, the same one from one
	// response to the next, not into a 32 KiB buffer made for each (what
	// io.Copy does). A collection may empty the pool between two copies,
	// so the buffer need only come back at least once in ten.
	seen := map[*byte]int{}
	for range 10 {
		rec := &recordingReader{r: io.LimitReader(bytes.NewReader(src), 64<<10)}
		pooledCopy{discardWriter{io.Discard}}.ReadFrom(rec)
		if rec.size != 64<<10 {
			t.Fatalf("read into a buffer of %d bytes, want the pool's 64 KiB", rec.size)
		}
		seen[rec.buf]++
	}
	if len(seen) == 10 {
		t.Fatal("every copy used a new buffer")
	}
}

// discardWriter is a ResponseWriter that drops what it is given.
type discardWriter struct{ io.Writer }

func (discardWriter) Header() http.Header { return nil }
func (discardWriter) WriteHeader(int)     {}

// recordingReader notes the buffer its first Read is given.
type recordingReader struct {
	r    io.Reader
	buf  *byte
	size int
}

func (r *recordingReader) Read(p []byte) (int, error) {
	if r.buf == nil && len(p) > 0 {
		r.buf, r.size = &p[0], len(p)
	}
	return r.r.Read(p)
}
