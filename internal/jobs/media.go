package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // formats image.DecodeConfig knows
	_ "image/jpeg"
	_ "image/png"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	mp4 "github.com/abema/go-mp4"
)

// Media reads media metadata: for MP4 and QuickTime (MOV) files the
// duration, the tracks with their codecs, and the video's resolution and
// frame rate; for PNG, JPEG and GIF images the format and dimensions. Only
// the boxes and headers it needs are read, by range reads, so the cost
// does not grow with the size of the media data. Other content gets
// format "none" and its sniffed MIME type.
type Media struct{}

func (Media) Name() string { return "media" }

// maxTableBox bounds a sample table box read whole (stts): a larger one is
// not read, and the frame rate is left out.
const maxTableBox = 16 << 20

func (Media) Process(ctx context.Context, c *Content) (map[string]string, error) {
	return probeMedia(ctx, c.ReaderAt(ctx), c.Size)
}

// probeMedia reads the metadata of the size bytes ra holds. A failure to
// read them (a datanode gone) is returned as it is, to be retried; only
// bytes that were read and make no sense are bad input.
func probeMedia(ctx context.Context, ra io.ReaderAt, size int64) (map[string]string, error) {
	rec := &readErrors{ra: ra}
	out, err := probeMediaAt(ctx, rec, size)
	if err != nil {
		if rerr := rec.first(); rerr != nil {
			return nil, fmt.Errorf("read content: %w", rerr)
		}
	}
	return out, err
}

// readErrors remembers the first error, other than the end of the data, of
// the reads made through it.
type readErrors struct {
	ra  io.ReaderAt
	mu  sync.Mutex
	err error
}

func (r *readErrors) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.ra.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		r.mu.Lock()
		if r.err == nil {
			r.err = err
		}
		r.mu.Unlock()
	}
	return n, err
}

func (r *readErrors) first() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func probeMediaAt(ctx context.Context, ra io.ReaderAt, size int64) (map[string]string, error) {
	head := make([]byte, min(512, size))
	if _, err := ra.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case isMP4(head, size):
		return probeMP4(io.NewSectionReader(ra, 0, size), size)
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")), bytes.HasPrefix(head, []byte("\xff\xd8\xff")),
		bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		cfg, format, err := image.DecodeConfig(io.NewSectionReader(ra, 0, size))
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, BadInput(fmt.Errorf("image header: %w", err))
		}
		return map[string]string{
			"format": format,
			"width":  strconv.Itoa(cfg.Width),
			"height": strconv.Itoa(cfg.Height),
		}, nil
	}
	return map[string]string{"format": "none", "mime": http.DetectContentType(head)}, nil
}

// isMP4 recognises an ISO base media file (MP4, MOV, M4A, 3GP): a first
// box of type ftyp or moov, or of another top-level type whose size fits
// the file (those names are too common to go by alone).
func isMP4(head []byte, size int64) bool {
	if len(head) < 8 {
		return false
	}
	switch string(head[4:8]) {
	case "ftyp", "moov":
		return true
	case "mdat", "wide", "free", "skip":
		n := int64(head[0])<<24 | int64(head[1])<<16 | int64(head[2])<<8 | int64(head[3])
		return n == 1 || (n >= 8 && n <= size)
	}
	return false
}

func probeMP4(r io.ReadSeeker, size int64) (map[string]string, error) {
	bad := func(format string, args ...any) error {
		return BadInput(fmt.Errorf("mp4: "+format, args...))
	}
	// Every top-level box must fit the file: a cut-off file is an error
	// however far in it was cut, not a shorter video.
	var top []string
	_, err := mp4.ReadBoxStructure(r, func(h *mp4.ReadHandle) (any, error) {
		bi := h.BoxInfo
		if bi.Offset+bi.Size > uint64(size) {
			return nil, fmt.Errorf("box %s at offset %d claims %d bytes, the file ends at %d: truncated", bi.Type, bi.Offset, bi.Size, size)
		}
		top = append(top, bi.Type.String())
		return nil, nil
	})
	if err != nil {
		return nil, bad("%v", err)
	}
	if !contains(top, "moov") {
		return nil, bad("no moov box (top-level boxes: %s): truncated or not a movie", strings.Join(top, ", "))
	}
	out := map[string]string{"format": "mp4"}
	ftyps, err := mp4.ExtractBoxWithPayload(r, nil, mp4.BoxPath{mp4.BoxTypeFtyp()})
	if err != nil {
		return nil, bad("ftyp: %v", err)
	}
	if len(ftyps) > 0 {
		f := ftyps[0].Payload.(*mp4.Ftyp)
		brand := strings.TrimSpace(string(f.MajorBrand[:]))
		out["brand"] = brand
		if brand == "qt" {
			out["format"] = "mov"
		}
	} else if contains(top, "wide") {
		out["format"] = "mov"
	}
	mvhds, err := mp4.ExtractBoxWithPayload(r, nil, mp4.BoxPath{mp4.BoxTypeMoov(), mp4.BoxTypeMvhd()})
	if err != nil {
		return nil, bad("mvhd: %v", err)
	}
	if len(mvhds) == 0 {
		return nil, bad("moov has no mvhd box")
	}
	mvhd := mvhds[0].Payload.(*mp4.Mvhd)
	if mvhd.Timescale == 0 {
		return nil, bad("mvhd: time scale 0")
	}
	dur := mvhd.GetDuration()
	out["duration_seconds"] = seconds(dur, mvhd.Timescale)

	traks, err := mp4.ExtractBox(r, nil, mp4.BoxPath{mp4.BoxTypeMoov(), mp4.BoxTypeTrak()})
	if err != nil {
		return nil, bad("trak: %v", err)
	}
	out["tracks"] = strconv.Itoa(len(traks))
	for i, trak := range traks {
		t, err := probeTrack(r, trak)
		if err != nil {
			return nil, bad("track %d: %v", i+1, err)
		}
		out["track."+strconv.Itoa(i+1)] = t.String()
		switch t.kind {
		case "video":
			if _, ok := out["video_codec"]; !ok {
				out["video_codec"] = t.codec
				out["width"] = strconv.Itoa(t.width)
				out["height"] = strconv.Itoa(t.height)
				if t.fps > 0 {
					out["frame_rate"] = strconv.FormatFloat(t.fps, 'f', 3, 64)
				}
			}
		case "audio":
			if _, ok := out["audio_codec"]; !ok {
				out["audio_codec"] = t.codec
			}
		}
	}
	return out, nil
}

type track struct {
	id            uint32
	kind, codec   string
	width, height int
	duration      string
	fps           float64
}

func (t track) String() string {
	s := fmt.Sprintf("%s %s", t.kind, t.codec)
	if t.kind == "video" {
		s += fmt.Sprintf(" %dx%d", t.width, t.height)
		if t.fps > 0 {
			s += fmt.Sprintf(" %.3ffps", t.fps)
		}
	}
	return s + " " + t.duration + "s"
}

func probeTrack(r io.ReadSeeker, trak *mp4.BoxInfo) (track, error) {
	var t track
	bs, err := mp4.ExtractBoxesWithPayload(r, trak, []mp4.BoxPath{
		{mp4.BoxTypeTkhd()},
		{mp4.BoxTypeMdia(), mp4.BoxTypeMdhd()},
		{mp4.BoxTypeMdia(), mp4.BoxTypeHdlr()},
	})
	if err != nil {
		return t, err
	}
	var timescale uint32
	for _, b := range bs {
		switch p := b.Payload.(type) {
		case *mp4.Tkhd:
			t.id = p.TrackID
			t.width, t.height = int(p.GetWidthInt()), int(p.GetHeightInt())
		case *mp4.Mdhd:
			timescale = p.Timescale
			if timescale == 0 {
				return t, errors.New("mdhd: time scale 0")
			}
			t.duration = seconds(p.GetDuration(), timescale)
		case *mp4.Hdlr:
			switch h := string(p.HandlerType[:]); h {
			case "vide":
				t.kind = "video"
			case "soun":
				t.kind = "audio"
			case "text", "sbtl", "subt":
				t.kind = "text"
			default:
				t.kind = strings.TrimSpace(h)
			}
		}
	}
	stbl := mp4.BoxPath{mp4.BoxTypeMdia(), mp4.BoxTypeMinf(), mp4.BoxTypeStbl()}
	entries, err := mp4.ExtractBox(r, trak, append(append(mp4.BoxPath{}, stbl...), mp4.BoxTypeStsd(), mp4.BoxTypeAny()))
	if err != nil {
		return t, fmt.Errorf("stsd: %w", err)
	}
	t.codec = "unknown"
	if len(entries) > 0 {
		t.codec = strings.TrimSpace(entries[0].Type.String())
	}
	if t.kind == "video" && timescale > 0 {
		stts, err := mp4.ExtractBox(r, trak, append(append(mp4.BoxPath{}, stbl...), mp4.BoxTypeStts()))
		if err != nil {
			return t, fmt.Errorf("stts: %w", err)
		}
		if len(stts) > 0 && stts[0].Size <= maxTableBox {
			bi := stts[0]
			if _, err := bi.SeekToPayload(r); err != nil {
				return t, err
			}
			var box mp4.Stts
			if _, err := mp4.Unmarshal(r, bi.Size-bi.HeaderSize, &box, bi.Context); err != nil {
				return t, fmt.Errorf("stts: %w", err)
			}
			var samples, ticks uint64
			for _, e := range box.Entries {
				samples += uint64(e.SampleCount)
				ticks += uint64(e.SampleCount) * uint64(e.SampleDelta)
			}
			if ticks > 0 {
				t.fps = float64(samples) * float64(timescale) / float64(ticks)
			}
		}
	}
	return t, nil
}

func seconds(d uint64, timescale uint32) string {
	return strconv.FormatFloat(float64(d)/float64(timescale), 'f', 3, 64)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
