package dataplane

import (
	"net"
	"slices"
	"strings"
	"testing"
)

func TestParseChain(t *testing.T) {
	good := map[string][]Hop{
		"":                           nil,
		"dn-1@10.0.0.1:9500":         {{"dn-1", "10.0.0.1:9500"}},
		"a@h1:1,b@h2:2":              {{"a", "h1:1"}, {"b", "h2:2"}},
		" a@h1:1 , b@[::1]:2 ":       {{"a", "h1:1"}, {"b", "[::1]:2"}},
		"dn-x@node.example.com:9500": {{"dn-x", "node.example.com:9500"}},
	}
	for in, want := range good {
		got, err := ParseChain(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseChain(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := []string{
		",", "a@h:1,", "@h:1", "a@", "a", "a@h:1@x", "a@h/x:1", "a@h:1?x", "a@h :1",
		"a@h", "a@:1", "a@h:", // not host:port
		strings.Repeat("a@h:1,", MaxChain) + "a@h:1",
	}
	for _, in := range bad {
		if got, err := ParseChain(in); err == nil {
			t.Errorf("ParseChain(%.40q) = %v; want an error", in, got)
		}
	}
	if _, err := ParseChain(strings.TrimSuffix(strings.Repeat("a@h:1,", MaxChain), ",")); err != nil {
		t.Errorf("chain of MaxChain nodes: %v", err)
	}
}

// FuzzParseChain checks that any header value either fails to parse or
// parses to a chain that is well formed and survives FormatChain.
func FuzzParseChain(f *testing.F) {
	for _, s := range []string{"", "a@h:1", "a@h1:1,b@h2:2", " a@h:1 ", "a@[::1]:9500", "a@h", "@", ",,", "a@b@c", "\u0085a@h:1\u00a0", "a b@h:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		chain, err := ParseChain(v)
		if err != nil {
			return
		}
		if len(chain) > MaxChain {
			t.Fatalf("%q: chain of %d nodes", v, len(chain))
		}
		for _, h := range chain {
			if h.ID == "" || strings.ContainsAny(string(h.ID), ",@") {
				t.Fatalf("%q: hop id %q", v, h.ID)
			}
			if _, port, err := net.SplitHostPort(h.Addr); err != nil || port == "" || strings.ContainsAny(h.Addr, ",/?#@ ") {
				t.Fatalf("%q: hop address %q is not host:port", v, h.Addr)
			}
		}
		again, err := ParseChain(FormatChain(chain))
		if err != nil || !slices.Equal(again, chain) {
			t.Fatalf("%q parses to %v, formats to %q, which parses to %v, %v", v, chain, FormatChain(chain), again, err)
		}
	})
}
