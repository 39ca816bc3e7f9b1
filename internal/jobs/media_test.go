package jobs

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r *bytes.Reader
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

func fixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/tiny.mp4")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMediaMP4(t *testing.T) {
	b := fixture(t)
	cr := &countingReader{r: bytes.NewReader(b)}
	r, err := probeMedia(context.Background(), cr, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	// What ffprobe reports for the fixture (see testdata/README.md).
	want := map[string]string{
		"format": "mp4", "width": "160", "height": "120", "video_codec": "avc1", "audio_codec": "mp4a",
		"tracks": "2", "frame_rate": "25.000",
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, r[k], v, r)
		}
	}
	d, err := strconv.ParseFloat(r["duration_seconds"], 64)
	if err != nil || d < 1.99 || d > 2.05 {
		t.Errorf("duration_seconds = %q, want 2.0", r["duration_seconds"])
	}
	if !strings.HasPrefix(r["track.1"], "video avc1 160x120") || !strings.HasPrefix(r["track.2"], "audio mp4a") {
		t.Errorf("tracks: %q, %q", r["track.1"], r["track.2"])
	}
	// The media data (mdat, most of the file) is skipped, not read.
	if n := cr.n.Load(); n > int64(len(b))/3 {
		t.Errorf("read %d of %d bytes to probe; the sample data should be skipped", n, len(b))
	}
}

func TestMediaTruncatedMP4(t *testing.T) {
	b := fixture(t)
	for _, n := range []int{len(b) - 1, len(b) - 2000, len(b) / 2, 100, 12} {
		cut := b[:n]
		_, err := probeMedia(context.Background(), bytes.NewReader(cut), int64(len(cut)))
		var bad *badInput
		if err == nil || !errors.As(err, &bad) {
			t.Errorf("cut to %d bytes: err = %v, want a final (bad input) error", n, err)
			continue
		}
		if !strings.Contains(err.Error(), "mp4") {
			t.Errorf("cut to %d bytes: error %q does not say what failed", n, err)
		}
	}
}

func TestMediaImages(t *testing.T) {
	img := image.NewPaletted(image.Rect(0, 0, 37, 21), color.Palette{color.Black, color.White})
	enc := map[string]func(*bytes.Buffer) error{
		"png":  func(b *bytes.Buffer) error { return png.Encode(b, img) },
		"jpeg": func(b *bytes.Buffer) error { return jpeg.Encode(b, img, nil) },
		"gif":  func(b *bytes.Buffer) error { return gif.Encode(b, img, nil) },
	}
	for format, fn := range enc {
		var b bytes.Buffer
		if err := fn(&b); err != nil {
			t.Fatal(err)
		}
		r, err := probeMedia(context.Background(), bytes.NewReader(b.Bytes()), int64(b.Len()))
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if r["format"] != format || r["width"] != "37" || r["height"] != "21" {
			t.Errorf("%s: got %v, want %s 37x21", format, r, format)
		}
		// A header cut short is an error, not a guess.
		cut := b.Bytes()[:12]
		if _, err := probeMedia(context.Background(), bytes.NewReader(cut), int64(len(cut))); err == nil {
			t.Errorf("%s cut to 12 bytes: no error", format)
		}
	}
}

func TestMediaOther(t *testing.T) {
	for _, data := range []string{"hello, world\n", "", "\x00\x00\x00\x08ftypxx"} {
		r, err := probeMedia(context.Background(), strings.NewReader(data), int64(len(data)))
		if data == "\x00\x00\x00\x08ftypxx" {
			// Looks like a movie and is not one: an error that says so.
			if err == nil {
				t.Errorf("%q: no error, got %v", data, r)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		if r["format"] != "none" {
			t.Errorf("%q: format %q, want none", data, r["format"])
		}
	}
}
