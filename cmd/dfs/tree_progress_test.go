package main

import (
	"bytes"
	"sync"
	"testing"
)

// One display over a tree: files done of the total, and the bytes of
// every file, whether its transfer reported all of them or not, with
// several files in flight.
func TestTreeProgressCountsTheWholeTree(t *testing.T) {
	var out bytes.Buffer
	p := newTreeProgress("put", 3, 600, false, &out)
	if got := p.describe(); got != "put 0/3 files" {
		t.Fatalf("before: %q", got)
	}
	var wg sync.WaitGroup
	for i, size := range []int64{100, 200, 300} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			progress, finish := p.start(size)
			progress(size / 2)
			if i != 1 {
				progress(size)
			}
			finish("line\n")
		}()
	}
	wg.Wait()
	if got := p.describe(); got != "put 3/3 files" || p.bytes != 600 {
		t.Fatalf("after: %q, %d bytes; want 3/3 files and 600 bytes", got, p.bytes)
	}
	if out.String() != "line\nline\nline\n" {
		t.Errorf("lines: %q", out.String())
	}
}
