package datanode

import (
	"math"
	"testing"
	"time"
)

// A pass is paced to read what the store holds in nine tenths of the
// interval, within the limits, and never slower than minPace (chunks a
// second, and MiB a second: the pace of small chunks is set by the
// chunk budget, not by bytes).
func TestScrubPace(t *testing.T) {
	week := 7 * 24 * time.Hour
	for _, c := range []struct {
		name               string
		chunks, bytes      int64
		interval           time.Duration
		maxMiB, maxChunks  float64
		wantChunks, wantMB float64 // chunks/s, MiB/s
	}{
		{"a million small chunks over a week", 1e6, 4096e6, week, 20, 20, 1e6 / (0.9 * week.Seconds()), minPace}, // 7 KiB/s: the byte floor, 17 KiB/s, is above it
		{"held back by the chunk limit", 50e6, 200e9, week, 20, 20, 20, 200e9 / (0.9 * week.Seconds()) / (1 << 20)},
		{"held back by the byte limit", 10e6, 40e12, week, 20, 20, 10e6 / (0.9 * week.Seconds()), 20},
		{"a few chunks: no slower than minPace", 3, 3 << 10, week, 20, 20, minPace, minPace},
		{"a short interval asks for the limits", 1000, 1 << 30, time.Millisecond, 5, 10, 10, 5},
	} {
		s := newScrubber(nil, c.maxMiB, c.maxChunks, c.interval)
		gotChunks, gotBytes := s.pace(c.chunks, c.bytes)
		if math.Abs(gotChunks-c.wantChunks) > 1e-9*c.wantChunks || math.Abs(gotBytes/(1<<20)-c.wantMB) > 1e-9*c.wantMB {
			t.Errorf("%s: %.6f chunks/s, %.6f MiB/s; want %.6f, %.6f", c.name, gotChunks, gotBytes/(1<<20), c.wantChunks, c.wantMB)
		}
		if float64(s.chunkLim.Limit()) != gotChunks || float64(s.bytesLim.Limit()) != gotBytes {
			t.Errorf("%s: limiters at %v chunks/s, %v B/s; want what pace returned", c.name, s.chunkLim.Limit(), s.bytesLim.Limit())
		}
	}
}
