package bufpool

import "testing"

// Get gives the length asked for, in a buffer of its class's capacity;
// Put keeps buffers of a class's capacity only.
func TestGetPut(t *testing.T) {
	var p Pool
	for _, c := range []struct{ n, cap int }{
		{1, 64 << 10}, {64 << 10, 64 << 10}, {64<<10 + 1, 128 << 10}, {1 << 20, 1 << 20}, {8 << 20, 8 << 20}, {8<<20 + 1, 8<<20 + 1},
	} {
		b := p.Get(c.n)
		if len(*b) != c.n || cap(*b) != c.cap || Cap(c.n) != c.cap {
			t.Errorf("Get(%d): len %d cap %d, Cap %d; want cap %d", c.n, len(*b), cap(*b), Cap(c.n), c.cap)
		}
		p.Put(b)
	}
	b := p.Get(100 << 10)
	(*b)[0] = 7
	p.Put(b)
	if again := p.Get(90 << 10); len(*again) != 90<<10 || cap(*again) != 128<<10 {
		t.Errorf("a buffer from the pool: len %d cap %d", len(*again), cap(*again))
	}
	odd := make([]byte, 100<<10)
	p.Put(&odd) // not a class's capacity: dropped
	for range 10 {
		if g := p.Get(100 << 10); cap(*g) != 128<<10 {
			t.Fatalf("Get after Put of an odd-sized buffer: cap %d", cap(*g))
		}
	}
}
