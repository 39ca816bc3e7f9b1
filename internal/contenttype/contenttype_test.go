package contenttype

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// mp4Head is the start of an MP4 file as ffmpeg writes it: an ftyp box
// naming its brands.
var mp4Head = append([]byte("\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"), make([]byte, 600)...)

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"clip.mp4", []byte("not even video"), "video/mp4"}, // the name decides first
		{"CLIP.MP4", nil, "video/mp4"},
		{"song.flac", nil, "audio/flac"},
		{"notes", []byte("plain words\n"), "text/plain; charset=utf-8"},
		{"clip", mp4Head, "video/mp4"},
		{"page", []byte("<!DOCTYPE html><p>hi"), "text/html; charset=utf-8"},
		{"blob", []byte{0, 1, 2, 3, 0xff, 0xfe}, ""},
		{"empty", nil, ""},
	} {
		got, r := Detect(tc.name, bytes.NewReader(tc.body))
		if got != tc.want {
			t.Errorf("Detect(%q): %q, want %q", tc.name, got, tc.want)
		}
		b, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(b, tc.body) {
			t.Errorf("Detect(%q) reader gave %d bytes, %v; want the %d bytes given", tc.name, len(b), err, len(tc.body))
		}
	}
}

// A body that fails within its first bytes keeps its error for whoever
// reads it: a cut upload must not look like a short file.
func TestDetectKeepsTheError(t *testing.T) {
	for _, cut := range []error{errors.New("connection reset"), io.ErrUnexpectedEOF} {
		_, r := Detect("x", io.MultiReader(strings.NewReader("abc"), errReader{cut}))
		b, err := io.ReadAll(r)
		if string(b) != "abc" || !errors.Is(err, cut) {
			t.Errorf("a body failing with %v: read %q, %v; want abc and the body's error", cut, b, err)
		}
	}
}
