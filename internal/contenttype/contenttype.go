// Package contenttype decides the content type a file is stored with when
// its writer did not say: the CLI's put, a REST upload and an S3 PutObject
// without a Content-Type all come here, so the same bytes under the same
// name get the same type whichever way they arrived.
//
// The name's extension decides first, from a table of its own before the
// host's (mime.TypeByExtension reads /etc/mime.types, which differs from
// host to host, and Go's built-in table lacks video and audio types); when
// the extension says nothing, the first 512 bytes are sniffed as browsers
// do (http.DetectContentType). Bytes that say nothing either give "": the
// type is then left to the reader.
package contenttype

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"
)

// SniffLen is how many leading bytes Detect reads to sniff a type.
const SniffLen = 512

// known are the extensions whose type must not depend on the host's
// mime.types: the media and archive types users store most.
var known = map[string]string{
	".mp4": "video/mp4", ".m4v": "video/x-m4v", ".mov": "video/quicktime", ".webm": "video/webm",
	".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".ts": "video/mp2t",
	".m4a": "audio/mp4", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
	".wav": "audio/wav", ".flac": "audio/flac", ".aac": "audio/aac",
	".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif", ".webp": "image/webp",
	".avif": "image/avif", ".heic": "image/heic", ".svg": "image/svg+xml", ".ico": "image/vnd.microsoft.icon",
	".tif": "image/tiff", ".tiff": "image/tiff", ".bmp": "image/bmp",
	".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8", ".csv": "text/csv; charset=utf-8",
	".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
	".js": "text/javascript; charset=utf-8", ".json": "application/json", ".xml": "application/xml",
	".pdf": "application/pdf", ".zip": "application/zip", ".gz": "application/gzip", ".tgz": "application/gzip",
	".tar": "application/x-tar", ".zst": "application/zstd", ".xz": "application/x-xz", ".bz2": "application/x-bzip2",
	".7z": "application/x-7z-compressed", ".wasm": "application/wasm",
}

// ByName is the type a path's extension names, or "" if none is known.
func ByName(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if ext == "" {
		return ""
	}
	if t, ok := known[ext]; ok {
		return t
	}
	return mime.TypeByExtension(ext)
}

// Sniff is the type the leading bytes of a file show, or "" when they show
// nothing more than "some bytes".
func Sniff(head []byte) string {
	if len(head) == 0 {
		return ""
	}
	t := http.DetectContentType(head)
	if t == "application/octet-stream" {
		return ""
	}
	return t
}

// Detect is the type of a file named name whose bytes r holds: by the
// name's extension, else by sniffing r's first SniffLen bytes. It returns
// a reader that yields every byte of r, the sniffed ones included, and r's
// error, if reading them failed, in its turn.
func Detect(name string, r io.Reader) (string, io.Reader) {
	if t := ByName(name); t != "" {
		return t, r
	}
	// Not io.ReadFull: it reports a clean end after some bytes as
	// io.ErrUnexpectedEOF, as a body cut short reports itself.
	head := make([]byte, SniffLen)
	n := 0
	var err error
	for n < len(head) && err == nil {
		var k int
		k, err = r.Read(head[n:])
		n += k
	}
	head = head[:n]
	switch {
	case err == nil:
		return Sniff(head), io.MultiReader(bytes.NewReader(head), r)
	case err == io.EOF:
		// All of r is in head.
		return Sniff(head), bytes.NewReader(head)
	}
	// The body failed early: whoever reads on gets the bytes and then
	// the error, as from r itself.
	return "", io.MultiReader(bytes.NewReader(head), errReader{err})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
