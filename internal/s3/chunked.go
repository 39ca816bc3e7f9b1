package s3

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// The aws-chunked body of a streaming upload:
//
//	hex-size;chunk-signature=SIG\r\n DATA \r\n   (signed; unsigned: hex-size\r\n)
//	…
//	0;chunk-signature=SIG\r\n                  (the last, empty chunk)
//	x-amz-checksum-crc32:VALUE\r\n             (trailers, when declared)
//	x-amz-trailer-signature:SIG\r\n            (signed trailers)
//	\r\n
//
// Each chunk's signature chains from the previous one (the seed is the
// request's own signature) over the hash of its data, so no chunk can be
// dropped, reordered or changed.

// MaxChunkData bounds one aws-chunked chunk: a chunk is held in memory
// until its signature checks (clients send 64 KiB to 1 MiB).
const MaxChunkData = 16 << 20

// maxTrailerBytes bounds the trailer section.
const maxTrailerBytes = 16 << 10

// ChunkedReader reads the data of an aws-chunked body, checking each
// chunk's signature as it goes (when the payload is signed) and reading
// the trailers at the end. A chunk's data is released only once its
// signature checked, so what a reader gets was signed. Read returns
// io.EOF only after the final chunk and the trailers checked.
type ChunkedReader struct {
	r        *bufio.Reader
	auth     *Auth
	signed   bool
	trailers []string // declared in x-amz-trailer, lower case
	prev     string   // the previous signature
	buf      []byte   // the current chunk's data not yet read
	off      int
	done     bool
	err      error
	// Trailer holds the trailers read at the end.
	Trailer http.Header
}

// NewChunkedReader reads body as the aws-chunked body of a request checked
// into a (whose Payload is one of the streaming kinds); declared lists the
// trailers the request announced (its x-amz-trailer header).
func NewChunkedReader(body io.Reader, a *Auth, declared string) *ChunkedReader {
	c := &ChunkedReader{r: bufio.NewReaderSize(body, 64<<10), auth: a, prev: a.Signature, Trailer: http.Header{}}
	c.signed = a.Payload == StreamingPayload || a.Payload == StreamingPayloadTrailer
	for _, t := range strings.Split(declared, ",") {
		if t = strings.ToLower(strings.TrimSpace(t)); t != "" {
			c.trailers = append(c.trailers, t)
		}
	}
	return c
}

func (c *ChunkedReader) Read(p []byte) (int, error) {
	for c.off == len(c.buf) {
		if c.err != nil {
			return 0, c.err
		}
		if c.done {
			return 0, io.EOF
		}
		c.err = c.next()
	}
	n := copy(p, c.buf[c.off:])
	c.off += n
	return n, nil
}

// next reads and checks one chunk.
func (c *ChunkedReader) next() error {
	line, err := c.line()
	if err != nil {
		return err
	}
	sizeHex, ext, _ := strings.Cut(line, ";")
	size, err := strconv.ParseInt(strings.TrimSpace(sizeHex), 16, 64)
	if err != nil || size < 0 || size > MaxChunkData {
		return fmt.Errorf("%w: chunk size %q", ErrMalformedChunking, sizeHex)
	}
	var sig string
	if c.signed {
		var ok bool
		sig, ok = strings.CutPrefix(strings.TrimSpace(ext), "chunk-signature=")
		if !ok || len(sig) != 64 {
			return fmt.Errorf("%w: no chunk-signature", ErrMalformedChunking)
		}
	}
	if cap(c.buf) < int(size) {
		c.buf = make([]byte, size)
	}
	c.buf, c.off = c.buf[:size], 0
	if _, err := io.ReadFull(c.r, c.buf); err != nil {
		c.buf = c.buf[:0]
		return fmt.Errorf("%w: %v", ErrMalformedChunking, err)
	}
	if c.signed {
		sum := sha256.Sum256(c.buf)
		sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + c.auth.Time.UTC().Format(amzDateFormat) + "\n" + c.auth.Scope + "\n" + c.prev + "\n" +
			"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n" + hex.EncodeToString(sum[:])
		want := hex.EncodeToString(hmacSHA256(c.auth.SigningKey, sts))
		if !hmac.Equal([]byte(want), []byte(sig)) {
			c.buf = c.buf[:0]
			return ErrChunkSignature
		}
		c.prev = want
	}
	if size > 0 {
		// The data is followed by CRLF.
		if err := c.crlf(); err != nil {
			c.buf = c.buf[:0]
			return err
		}
		return nil
	}
	// The last chunk: trailers, then an empty line.
	if err := c.readTrailers(); err != nil {
		return err
	}
	c.done = true
	return nil
}

func (c *ChunkedReader) readTrailers() error {
	if len(c.trailers) == 0 {
		// The final chunk's CRLF ends the body (some clients send none).
		if b, err := c.r.Peek(2); err == nil && string(b) == "\r\n" {
			c.r.Discard(2)
		}
		return nil
	}
	tp := textproto.NewReader(bufio.NewReader(io.LimitReader(c.r, maxTrailerBytes)))
	var canon strings.Builder
	var trailerSig string
	signedTrailer := c.auth.Payload == StreamingPayloadTrailer
	complete := func() bool {
		return len(c.Trailer) == len(c.trailers) && (!signedTrailer || trailerSig != "")
	}
	for {
		line, err := tp.ReadLine()
		if err == io.EOF && complete() {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: trailers: %v", ErrMalformedChunking, err)
		}
		if line == "" {
			// Clients end a trailer line with "\n" or "\r\n", and may
			// leave a blank line before the signature: the section ends
			// with a blank line once everything is there.
			if complete() {
				break
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("%w: trailer %q", ErrMalformedChunking, line)
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if k == "x-amz-trailer-signature" {
			trailerSig = v
			continue
		}
		if !contains(c.trailers, k) {
			return fmt.Errorf("%w: trailer %s was not declared in x-amz-trailer", ErrMalformedChunking, k)
		}
		c.Trailer.Set(k, v)
		canon.WriteString(k + ":" + v + "\n")
	}
	for _, t := range c.trailers {
		if c.Trailer.Get(t) == "" {
			return fmt.Errorf("%w: declared trailer %s missing", ErrMalformedChunking, t)
		}
	}
	if signedTrailer {
		sum := sha256.Sum256([]byte(canon.String()))
		sts := "AWS4-HMAC-SHA256-TRAILER\n" + c.auth.Time.UTC().Format(amzDateFormat) + "\n" + c.auth.Scope + "\n" + c.prev + "\n" + hex.EncodeToString(sum[:])
		want := hex.EncodeToString(hmacSHA256(c.auth.SigningKey, sts))
		if !hmac.Equal([]byte(want), []byte(trailerSig)) {
			return fmt.Errorf("%w (trailer)", ErrChunkSignature)
		}
	}
	return nil
}

// line reads one CRLF-terminated line of at most 4 KiB.
func (c *ChunkedReader) line() (string, error) {
	var b []byte
	for {
		part, more, err := c.r.ReadLine()
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrMalformedChunking, err)
		}
		b = append(b, part...)
		if len(b) > 4096 {
			return "", fmt.Errorf("%w: a chunk header line is too long", ErrMalformedChunking)
		}
		if !more {
			return string(b), nil
		}
	}
}

func (c *ChunkedReader) crlf() error {
	b := make([]byte, 2)
	if _, err := io.ReadFull(c.r, b); err != nil || string(b) != "\r\n" {
		return fmt.Errorf("%w: no CRLF after a chunk's data", ErrMalformedChunking)
	}
	return nil
}
