package gateway

import (
	"strconv"
	"strings"
	"testing"
)

// A subscriber that stops reading is dropped (its channel closed) rather
// than holding up the others; one that reads gets every message in order.
func TestHubDropsSlowSubscriber(t *testing.T) {
	h := newHub()
	slow, fast := h.subscribe(nil), h.subscribe(nil)
	got := 0
	for i := range 1000 {
		h.publish("n", map[string]int{"i": i})
		for len(fast) > 0 {
			msg := <-fast
			if want := `data: {"i":` + strconv.Itoa(got) + `}`; !strings.Contains(string(msg), want) {
				t.Fatalf("message %d: %q, want %s", got, msg, want)
			}
			got++
		}
	}
	if got != 1000 {
		t.Fatalf("the reading subscriber got %d of 1000 messages", got)
	}
	n := 0
	for range slow {
		n++
	}
	if n != cap(slow) {
		t.Fatalf("the slow subscriber got %d messages before it was dropped, want its buffer's %d", n, cap(slow))
	}
	if h.count() != 1 {
		t.Fatalf("%d subscribers left, want 1", h.count())
	}
	h.close()
	if _, ok := <-fast; ok {
		t.Fatal("close left a subscriber open")
	}
	if _, ok := <-h.subscribe(nil); ok {
		t.Fatal("a closed hub took a subscriber")
	}
}
