package dataplane

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
)

// A token is good for the request it was made for, and for nothing else:
// another chunk, node, chain, operation, key or time is refused.
func TestTokens(t *testing.T) {
	k := TokenKey{ID: 1, Secret: []byte("0123456789abcdef0123456789abcdef")}
	other := TokenKey{ID: 1, Secret: []byte("another secret of thirty-two b.!")}
	keys := func(id byte) (TokenKey, bool) { return k, id == k.ID }
	now := time.Now()
	h, h2 := dfs.Sum([]byte("a")), dfs.Sum([]byte("b"))
	chain := FormatChain([]Hop{{ID: "dn-2", Addr: "10.0.0.2:9500"}, {ID: "dn-3", Addr: "10.0.0.3:9500"}})

	put := k.PutToken(h, "dn-1", chain, now.Add(time.Minute))
	if err := CheckPut(keys, put, h, "dn-1", chain, now); err != nil {
		t.Fatalf("the PUT it was made for: %v", err)
	}
	for name, err := range map[string]error{
		"another chunk":     CheckPut(keys, put, h2, "dn-1", chain, now),
		"another node":      CheckPut(keys, put, h, "dn-2", chain, now),
		"another chain":     CheckPut(keys, put, h, "dn-1", FormatChain([]Hop{{ID: "dn-2", Addr: "203.0.113.9:80"}}), now),
		"no chain":          CheckPut(keys, put, h, "dn-1", "", now),
		"a GET":             CheckGet(keys, put, h, now),
		"another key":       CheckPut(keys, other.PutToken(h, "dn-1", chain, now.Add(time.Minute)), h, "dn-1", chain, now),
		"an unknown key id": CheckPut(keys, TokenKey{ID: 2, Secret: k.Secret}.PutToken(h, "dn-1", chain, now.Add(time.Minute)), h, "dn-1", chain, now),
		"garbage":           CheckPut(keys, "not a token", h, "dn-1", chain, now),
		"a token cut short": CheckPut(keys, put[:len(put)-2], h, "dn-1", chain, now),
		"one byte changed":  CheckPut(keys, flip(put), h, "dn-1", chain, now),
	} {
		if !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("PUT token used for %s: %v, want ErrTokenInvalid", name, err)
		}
	}
	if err := CheckPut(keys, put, h, "dn-1", chain, now.Add(2*time.Minute)); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("an expired PUT token: %v", err)
	}
	if err := CheckPut(keys, "", h, "dn-1", chain, now); !errors.Is(err, ErrNoToken) {
		t.Errorf("no token: %v", err)
	}

	get := k.GetToken(h, now.Add(time.Minute))
	if err := CheckGet(keys, get, h, now); err != nil {
		t.Fatalf("the GET it was made for: %v", err)
	}
	if err := CheckGet(keys, get, h2, now); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("a GET token for another chunk: %v", err)
	}
	if err := CheckPut(keys, get, h, "dn-1", "", now); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("a GET token used for a PUT: %v", err)
	}
	if GetTokenLife(1<<40) < 30*time.Hour || GetTokenLife(0) != time.Hour {
		t.Errorf("GET token lives %v for 1 TiB, %v for nothing", GetTokenLife(1<<40), GetTokenLife(0))
	}
}

// flip changes one character in the middle of a token.
func flip(tok string) string {
	b := []byte(tok)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// What a token costs: one to make at allocation or lookup, one to check
// at the datanode, per chunk.
func BenchmarkTokens(b *testing.B) {
	k := TokenKey{ID: 1, Secret: []byte("0123456789abcdef0123456789abcdef")}
	keys := func(id byte) (TokenKey, bool) { return k, id == k.ID }
	h := dfs.Sum([]byte("a"))
	chain := FormatChain([]Hop{{ID: "dn-2", Addr: "10.0.0.2:9500"}, {ID: "dn-3", Addr: "10.0.0.3:9500"}})
	exp := time.Now().Add(time.Hour)
	b.Run("make-put", func(b *testing.B) {
		for b.Loop() {
			k.PutToken(h, "dn-1", chain, exp)
		}
	})
	tok := k.PutToken(h, "dn-1", chain, exp)
	b.Run("check-put", func(b *testing.B) {
		now := time.Now()
		for b.Loop() {
			if err := CheckPut(keys, tok, h, "dn-1", chain, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A token from the network is decoded without panicking, and no string an
// attacker makes up is accepted.
func FuzzTokens(f *testing.F) {
	k := TokenKey{ID: 1, Secret: []byte("0123456789abcdef0123456789abcdef")}
	keys := func(id byte) (TokenKey, bool) { return k, id == k.ID }
	h := dfs.Sum([]byte("a"))
	now := time.Unix(1_800_000_000, 0)
	f.Add(k.GetToken(h, now.Add(time.Hour)))
	f.Add(k.PutToken(h, "dn-1", "", now.Add(time.Hour)))
	f.Add("")
	f.Add("AQAAAABrSdIA")
	f.Fuzz(func(t *testing.T, tok string) {
		if tok == k.GetToken(h, time.Unix(decodeExp(tok), 0)) || tok == k.PutToken(h, "dn-1", "", time.Unix(decodeExp(tok), 0)) {
			return // a real token (the seeds)
		}
		if CheckGet(keys, tok, h, now) == nil || CheckPut(keys, tok, h, "dn-1", "", now) == nil {
			t.Fatalf("a made-up token %q was accepted", tok)
		}
	})
}

// decodeExp reads a token's expiry, or 0.
func decodeExp(tok string) int64 {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 9 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b[1:9]))
}
