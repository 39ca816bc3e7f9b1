package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

// A file keeps the attributes its commit gave it (S3's ETag and metadata
// will be kept so), set before the upload or once its bytes are read; a
// new version has its own; attributes past the bounds are refused and
// commit nothing.
func TestFileAttributes(t *testing.T) {
	_, c := startCluster(t, nil)
	ctx := context.Background()
	attrs := map[string]string{"etag": "5d41402abc4b2a76b9719d911017c592", "x-amz-meta-owner": "ünïcode ok"}
	if _, err := c.Put(ctx, "a/one", strings.NewReader("hello"), client.PutOptions{Attrs: attrs}); err != nil {
		t.Fatal(err)
	}
	fi, err := c.Stat(ctx, "a/one")
	if err != nil || !maps.Equal(fi.Attrs, attrs) {
		t.Fatalf("stat: %v, %v; want %v", fi.Attrs, err, attrs)
	}
	st, err := c.Stage(ctx, "a/one", strings.NewReader("hello again"), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.SetAttrs(map[string]string{"etag": "known-after-reading"})
	if _, err := st.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if fi, _ := c.Stat(ctx, "a/one"); len(fi.Attrs) != 1 || fi.Attrs["etag"] != "known-after-reading" {
		t.Fatalf("the new version's attributes: %v", fi.Attrs)
	}
	loc, err := c.Locate(ctx, "a/one")
	if err != nil || loc.File.Attrs["etag"] != "known-after-reading" {
		t.Fatalf("locate: %+v, %v", loc.File, err)
	}

	many := map[string]string{}
	for i := range 65 {
		many[fmt.Sprint("k", i)] = "v"
	}
	for name, bad := range map[string]map[string]string{
		"65 attributes":        many,
		"an upper-case name":   {"ETag": "x"},
		"a name with a space":  {"a b": "x"},
		"9 KiB of values":      {"big": strings.Repeat("x", 9<<10)},
		"a value not in UTF-8": {"k": "\xff"},
	} {
		_, err := c.Put(ctx, "a/bad", strings.NewReader("x"), client.PutOptions{Attrs: bad})
		if !errors.Is(err, dfs.ErrInvalid) {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	if _, err := c.Stat(ctx, "a/bad"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("a refused commit left a file: %v", err)
	}
}
