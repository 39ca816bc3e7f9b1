package gateway

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dfs-store/dfs"
)

func TestParsePath(t *testing.T) {
	for in, want := range map[string]string{
		"a.txt":                 "a.txt",
		"dir/sub/file":          "dir/sub/file",
		"with%20space":          "with space",
		"%E2%9C%93%2Fslash-ish": "✓/slash-ish",
		"..a/b..":               "..a/b..",
	} {
		got, err := ParsePath(in)
		if err != nil || got != want {
			t.Errorf("ParsePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "..", "a/..", "a/%2E%2E/b", "a/./b", "a%00", "a//b", "a/", "%", "%zz", "%ff", "a%0a", strings.Repeat("x", 1025), strings.Repeat("%41", 1025)} {
		if got, err := ParsePath(in); !errors.Is(err, dfs.ErrBadPath) {
			t.Errorf("ParsePath(%.40q) = %q, %v; want ErrBadPath", in, got, err)
		}
	}
}

// FuzzParsePath checks that whatever a URL holds, an accepted path is
// canonical and can name nothing outside itself.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"a", "a/b", "a/../b", "%2e%2e/x", "a%00b", "x%2Fy", "%", "//", "é/ü", strings.Repeat("a/", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			if !errors.Is(err, dfs.ErrBadPath) {
				t.Fatalf("ParsePath(%q): error %v is not ErrBadPath", s, err)
			}
			return
		}
		if len(p) == 0 || len(p) > dfs.MaxPathLen || !utf8.ValidString(p) || strings.ContainsRune(p, 0) {
			t.Fatalf("ParsePath(%q) accepted %q", s, p)
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("ParsePath(%q) = %q has segment %q", s, p, seg)
			}
		}
		if c, err := dfs.CleanPath(p); err != nil || c != p {
			t.Fatalf("ParsePath(%q) = %q, not canonical (%q, %v)", s, p, c, err)
		}
		// Escaping the result and parsing again gives it back.
		var esc []string
		for _, seg := range strings.Split(p, "/") {
			esc = append(esc, url.PathEscape(seg))
		}
		if q, err := ParsePath(strings.Join(esc, "/")); err != nil || q != p {
			t.Fatalf("round trip of %q: %q, %v", p, q, err)
		}
	})
}
