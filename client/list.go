package client

import (
	"context"
	"fmt"
	"iter"

	"github.com/dfs-store/dfs"
)

// Entry is one entry of a listing: a file, or a common prefix (a
// directory) when the listing has a delimiter.
type Entry struct {
	// Path is the file's path, or the common prefix ending in the
	// delimiter.
	Path string
	// Dir marks a common prefix; File is then zero.
	Dir  bool
	File dfs.FileInfo
}

// Entries walks a listing entry by entry, in path order, asking the
// coordinator for one page (o.Limit entries, or its default) at a time and
// yielding each page's entries before asking for the next: memory holds
// one page whatever the listing's length, and a caller that stops early
// has asked for no page after the one it stopped in. o.StartAfter is where
// the walk begins.
//
// An error ends the walk: it is yielded once, with a zero Entry.
func (c *Client) Entries(ctx context.Context, o ListOptions) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		for {
			l, err := c.List(ctx, o)
			if err != nil {
				yield(Entry{}, err)
				return
			}
			for e := range l.Entries() {
				if !yield(e, nil) {
					return
				}
			}
			if !l.Truncated {
				return
			}
			if l.Next <= o.StartAfter {
				// A page that does not move forward would loop for ever.
				yield(Entry{}, fmt.Errorf("list %q: the page after %q ends at %q: the listing does not move forward", o.Prefix, o.StartAfter, l.Next))
				return
			}
			o.StartAfter = l.Next
		}
	}
}

// Entries is the page's common prefixes and files merged into one
// sequence in path order.
func (l Listing) Entries() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		fs, ps := l.Files, l.Prefixes
		for len(fs) > 0 || len(ps) > 0 {
			var e Entry
			if len(ps) > 0 && (len(fs) == 0 || ps[0] < fs[0].Path) {
				e = Entry{Path: ps[0], Dir: true}
				ps = ps[1:]
			} else {
				e = Entry{Path: fs[0].Path, File: fs[0]}
				fs = fs[1:]
			}
			if !yield(e) {
				return
			}
		}
	}
}
