package dfs_test

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dfs-store/dfs"
)

func TestCleanPath(t *testing.T) {
	good := map[string]string{
		"a":                                 "a",
		"/a":                                "a",
		"a/b/c.txt":                         "a/b/c.txt",
		"/dir/file":                         "dir/file",
		"a..b":                              "a..b", // dots inside a name are just a name
		".hidden/..x/x..":                   ".hidden/..x/x..",
		"caf\u00e9/\u65e5\u672c":            "caf\u00e9/\u65e5\u672c",
		"with space/and-dash_":              "with space/and-dash_",
		strings.Repeat("x", dfs.MaxPathLen): strings.Repeat("x", dfs.MaxPathLen),
		"/" + strings.Repeat("x", dfs.MaxPathLen): strings.Repeat("x", dfs.MaxPathLen),
	}
	for in, want := range good {
		got, err := dfs.CleanPath(in)
		if err != nil || got != want {
			t.Errorf("CleanPath(%.40q) = %.40q, %v; want %.40q", in, got, err, want)
		}
	}
	bad := []string{
		"", "/", "//", "//a", "a//b", "a/", "a/b/", ".", "..", "./a", "a/.", "../x", "a/../b", "a/..",
		"with\x00nul", "new\nline", "tab\there", "del\x7f", "\x00", "\xff", "a/\xc3", strings.Repeat("x", dfs.MaxPathLen+1),
	}
	for _, in := range bad {
		got, err := dfs.CleanPath(in)
		if !errors.Is(err, dfs.ErrBadPath) {
			t.Errorf("CleanPath(%.40q) = %.40q, %v; want ErrBadPath", in, got, err)
		}
	}
}

// FuzzCleanPath checks that whatever CleanPath accepts is a canonical,
// bounded, flat name that cannot step outside itself.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"a", "/a/b", "a/../b", "..", "a//b", "a\x00b", "a/./b", "\xff", "a..b", "/" + strings.Repeat("y", dfs.MaxPathLen)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := dfs.CleanPath(p)
		if err != nil {
			if !errors.Is(err, dfs.ErrBadPath) {
				t.Fatalf("CleanPath(%q): error %v does not wrap ErrBadPath", p, err)
			}
			return
		}
		switch {
		case got == "" || len(got) > dfs.MaxPathLen:
			t.Fatalf("CleanPath(%q) = %q: %d bytes", p, got, len(got))
		case strings.HasPrefix(got, "/") || strings.HasSuffix(got, "/") || strings.Contains(got, "//"):
			t.Fatalf("CleanPath(%q) = %q: stray slash", p, got)
		case strings.IndexByte(got, 0) >= 0 || !utf8.ValidString(got):
			t.Fatalf("CleanPath(%q) = %q: NUL or invalid UTF-8", p, got)
		case got != strings.TrimPrefix(p, "/"):
			t.Fatalf("CleanPath(%q) = %q: more changed than a leading slash", p, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("CleanPath(%q) = %q: has a %q segment", p, got, seg)
			}
		}
		if again, err := dfs.CleanPath(got); err != nil || again != got {
			t.Fatalf("CleanPath is not idempotent on %q: %q, %v", got, again, err)
		}
	})
}

func TestParseHash(t *testing.T) {
	h := dfs.Sum([]byte("hello"))
	if h != sha256.Sum256([]byte("hello")) {
		t.Fatal("Sum is not SHA-256")
	}
	s := h.String()
	if s != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" || h.Short() != s[:12] {
		t.Fatalf("String %q Short %q", s, h.Short())
	}
	for _, in := range []string{s, strings.ToUpper(s)} {
		got, err := dfs.ParseHash(in)
		if err != nil || got != h {
			t.Errorf("ParseHash(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", s[:63], s + "0", s[:63] + "g", " " + s[1:], s[:62] + "\xff\xff"} {
		if _, err := dfs.ParseHash(in); !errors.Is(err, dfs.ErrBadHash) {
			t.Errorf("ParseHash(%q): %v; want ErrBadHash", in, err)
		}
	}
	if (dfs.Hash{}).IsZero() != true || h.IsZero() {
		t.Error("IsZero")
	}
	if got, err := dfs.HashFromBytes(h[:]); err != nil || got != h {
		t.Errorf("HashFromBytes: %v, %v", got, err)
	}
	if _, err := dfs.HashFromBytes(h[:31]); !errors.Is(err, dfs.ErrBadHash) {
		t.Errorf("HashFromBytes of 31 bytes: %v", err)
	}

	// JSON carries hashes as hex.
	b, err := json.Marshal(dfs.ChunkRef{Hash: h, Size: 5})
	if err != nil || string(b) != `{"hash":"`+s+`","size":5}` {
		t.Fatalf("json: %s, %v", b, err)
	}
	var back dfs.ChunkRef
	if err := json.Unmarshal(b, &back); err != nil || back.Hash != h {
		t.Fatalf("json back: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"hash":"nothex"}`), &back); !errors.Is(err, dfs.ErrBadHash) {
		t.Fatalf("json of a bad hash: %v", err)
	}
}

func FuzzParseHash(f *testing.F) {
	h := dfs.Sum(nil)
	for _, s := range []string{h.String(), strings.ToUpper(h.String()), "", "zz", h.String()[:63] + "G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := dfs.ParseHash(s)
		if err != nil {
			if !errors.Is(err, dfs.ErrBadHash) {
				t.Fatalf("ParseHash(%q): %v does not wrap ErrBadHash", s, err)
			}
			return
		}
		if got.String() != strings.ToLower(s) {
			t.Fatalf("ParseHash(%q) = %s", s, got)
		}
	})
}
