package dataplane

import (
	"io"
	"net/http"
	"time"
)

// A transfer must keep moving: a peer that sends a request body, or reads a
// response, slower than MinRateBytes per window (by default
// MinRateWindow) has its connection cut, so slow or stalled clients cannot
// hold a server's connections and goroutines for ever.
const (
	MinRateBytes  = 64 << 10
	MinRateWindow = 30 * time.Second
)

// MinRateBody returns r's body, read under a connection read deadline that
// moves forward by window each time another MinRateBytes have arrived. A
// read past the deadline fails, and the server then drops the connection.
func MinRateBody(w http.ResponseWriter, r *http.Request, window time.Duration) io.ReadCloser {
	rc := http.NewResponseController(w)
	b := &minRateBody{ReadCloser: r.Body, rc: rc, window: window}
	b.extend()
	return b
}

type minRateBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	window time.Duration
	got    int64 // bytes since the deadline last moved
}

func (b *minRateBody) extend() {
	b.got = 0
	b.rc.SetReadDeadline(time.Now().Add(b.window))
}

func (b *minRateBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.got += int64(n)
	switch {
	case err == io.EOF:
		// The body is done: what the handler does next (a commit, a
		// forward) has no deadline of the client's making, and the
		// server's watch for a closed connection must not fire on it.
		b.rc.SetReadDeadline(time.Time{})
	case err != nil:
		// Past the deadline, or the connection broke: it stays cut.
	case b.got >= MinRateBytes:
		b.extend()
	}
	return n, err
}

// MinRateWriter wraps a response writer so that each write must finish
// within window: a client that stops reading (or reads a trickle) has its
// connection cut once the socket's buffers are full. Idle time between
// writes (an event stream's) costs nothing.
func MinRateWriter(w http.ResponseWriter, window time.Duration) http.ResponseWriter {
	return &minRateWriter{ResponseWriter: w, rc: http.NewResponseController(w), window: window}
}

type minRateWriter struct {
	http.ResponseWriter
	rc     *http.ResponseController
	window time.Duration
}

func (m *minRateWriter) Write(p []byte) (int, error) {
	m.rc.SetWriteDeadline(time.Now().Add(m.window))
	return m.ResponseWriter.Write(p)
}

func (m *minRateWriter) Flush() {
	m.rc.SetWriteDeadline(time.Now().Add(m.window))
	m.rc.Flush()
}

// Unwrap gives http.ResponseController the writer underneath.
func (m *minRateWriter) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// ResponseDeadline sets the connection's write deadline for a response of
// size bytes: the time to send it at MinRateBytes per window, plus one
// window. The returned function clears it again, for the connection's next
// request: call it when the response is done.
func ResponseDeadline(w http.ResponseWriter, size int64, window time.Duration) (clear func()) {
	d := window + time.Duration(size/MinRateBytes+1)*window
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(d))
	return func() { rc.SetWriteDeadline(time.Time{}) }
}
