package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
	"github.com/dfs-store/dfs/client/clienttest"
)

func newClient(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Coordinators: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// walk collects what Entries yields, marking directories with a trailing
// "(dir)".
func walk(t *testing.T, c *client.Client, o client.ListOptions) []string {
	t.Helper()
	var got []string
	for e, err := range c.Entries(context.Background(), o) {
		if err != nil {
			t.Fatalf("walk %+v: %v", o, err)
		}
		if e.Dir != (e.File.Path == "") {
			t.Errorf("entry %q: Dir %v with file %+v", e.Path, e.Dir, e.File)
		}
		if !e.Dir && e.File.Path != e.Path {
			t.Errorf("entry %q holds file %q", e.Path, e.File.Path)
		}
		s := e.Path
		if e.Dir {
			s += " (dir)"
		}
		got = append(got, s)
	}
	return got
}

func TestEntriesWalksEveryPageInOrder(t *testing.T) {
	var paths []string
	for i := range 25 {
		paths = append(paths, fmt.Sprintf("big/f%03d", i))
	}
	paths = append(paths, "big/sub/x", "big/sub/y", "big/t/z", "big", "bigger", "other/a")
	fake, addr := clienttest.Start(t, paths)
	c := newClient(t, addr)

	got := walk(t, c, client.ListOptions{Prefix: "big/", Limit: 4})
	want := slices.Sorted(slices.Values(paths))
	want = slices.DeleteFunc(want, func(p string) bool { return !strings.HasPrefix(p, "big/") })
	if !slices.Equal(got, want) {
		t.Fatalf("walk big/ in pages of 4:\n got %v\nwant %v", got, want)
	}
	if p := fake.Pages(); p != 7 { // 28 entries: 7 full pages, the last not truncated
		t.Errorf("walked %d pages, want 7", p)
	}

	// With a delimiter, a folder comes once, in its place among the files,
	// even where it spans a page boundary.
	got = walk(t, c, client.ListOptions{Prefix: "big/", Delimiter: "/", Limit: 5})
	want = want[:25]
	want = append(want, "big/sub/ (dir)", "big/t/ (dir)")
	if !slices.Equal(got, want) {
		t.Fatalf("walk big/ with delimiter:\n got %v\nwant %v", got, want)
	}
	got = walk(t, c, client.ListOptions{Delimiter: "/", Limit: 1})
	if fmt.Sprint(got) != "[big big/ (dir) bigger other/ (dir)]" {
		t.Fatalf("walk the root in pages of 1: %v", got)
	}

	// StartAfter is where the walk begins; an empty prefix walks nothing.
	if got := walk(t, c, client.ListOptions{Prefix: "big/", StartAfter: "big/f022", Limit: 2}); fmt.Sprint(got) != "[big/f023 big/f024 big/sub/x big/sub/y big/t/z]" {
		t.Fatalf("walk after big/f022: %v", got)
	}
	if got := walk(t, c, client.ListOptions{Prefix: "none/"}); len(got) != 0 {
		t.Fatalf("walk of an empty prefix: %v", got)
	}
}

func TestEntriesStopsWhenTheConsumerStops(t *testing.T) {
	var paths []string
	for i := range 100 {
		paths = append(paths, fmt.Sprintf("d/%03d", i))
	}
	fake, addr := clienttest.Start(t, paths)
	c := newClient(t, addr)
	n := 0
	for e, err := range c.Entries(context.Background(), client.ListOptions{Prefix: "d/", Limit: 10}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if e.Path == "d/012" {
			break
		}
	}
	if n != 13 {
		t.Errorf("saw %d entries before stopping, want 13", n)
	}
	if p := fake.Pages(); p != 2 {
		t.Errorf("asked for %d pages to stop in the second, want 2", p)
	}
}

func TestEntriesYieldsAnErrorOnceAndStops(t *testing.T) {
	var paths []string
	for i := range 10 {
		paths = append(paths, fmt.Sprintf("d/%03d", i))
	}
	fake, addr := clienttest.Start(t, paths)
	fake.Gate(func(ctx context.Context, page int) error {
		if page == 2 {
			return fmt.Errorf("%w: etcd is gone", dfs.ErrUnavailable)
		}
		return nil
	})
	c := newClient(t, addr)
	var got []string
	var errs []error
	for e, err := range c.Entries(context.Background(), client.ListOptions{Prefix: "d/", Limit: 3}) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, e.Path)
	}
	if fmt.Sprint(got) != "[d/000 d/001 d/002]" {
		t.Errorf("entries before the failed page: %v", got)
	}
	if len(errs) != 1 || !errors.Is(errs[0], dfs.ErrUnavailable) {
		t.Errorf("errors: %v, want one ErrUnavailable", errs)
	}
	if p := fake.Pages(); p != 2 {
		t.Errorf("asked for %d pages, want 2 (none after the failure)", p)
	}

	// Bad input: a prefix that is not UTF-8 fails before any request.
	for _, err := range c.Entries(context.Background(), client.ListOptions{Prefix: "\xff"}) {
		if !errors.Is(err, dfs.ErrBadPath) {
			t.Errorf("prefix \\xff: %v, want ErrBadPath", err)
		}
	}
}
