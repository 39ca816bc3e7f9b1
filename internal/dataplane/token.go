package dataplane

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dfs-store/dfs"
)

// Capability tokens. A client's chunk PUT or GET is served only with a
// token a coordinator made, after it checked the caller's rights, for that
// chunk (and, for a PUT, for the node it is sent to and the exact chain it
// forwards along), until a time: an HMAC-SHA256 under the cluster's token
// key, which the coordinators keep in etcd and give the datanodes when they
// register. Peers with a cluster certificate (datanodes forwarding a chain,
// coordinators' repairs, workers) need none.
//
// A token is base64url of: the key's id (1 byte), the expiry (8 bytes, unix
// seconds, big-endian) and the MAC (32 bytes). The MAC covers what the
// datanode sees in the request itself, so nothing else travels:
//
//	"PUT" | key id | expiry | chunk hash | node id | 0 | chain header
//	"GET" | key id | expiry | chunk hash
const TokenHeader = "X-Dfs-Token"

// TokenKey is the secret tokens are made with, and its id.
type TokenKey struct {
	ID     byte
	Secret []byte
}

// The lifetimes of tokens: a PUT is sent soon after its allocation; a GET
// token must last a download, which the coordinator sizes (see
// GetTokenLife).
const PutTokenLife = time.Hour

// GetTokenLife is how long the GET tokens of a file of size bytes last: an
// hour, plus the time the whole file takes at 10 MB/s.
func GetTokenLife(size int64) time.Duration {
	return time.Hour + time.Duration(size/10e6)*time.Second
}

const tokenLen = 1 + 8 + sha256.Size

func (k TokenKey) mac(op string, exp int64, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, k.Secret)
	var head [1 + 8]byte
	head[0] = k.ID
	binary.BigEndian.PutUint64(head[1:], uint64(exp))
	m.Write([]byte(op))
	m.Write(head[:])
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

func (k TokenKey) encode(exp int64, mac []byte) string {
	b := make([]byte, 0, tokenLen)
	b = append(b, k.ID)
	b = binary.BigEndian.AppendUint64(b, uint64(exp))
	b = append(b, mac...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// PutToken is the token for writing chunk h to node head, which forwards
// it along chain (the ChainHeader value, "" for none).
func (k TokenKey) PutToken(h dfs.Hash, head dfs.NodeID, chain string, exp time.Time) string {
	e := exp.Unix()
	return k.encode(e, k.mac("PUT", e, h[:], []byte(head), []byte{0}, []byte(chain)))
}

// GetToken is the token for reading chunk h from any node.
func (k TokenKey) GetToken(h dfs.Hash, exp time.Time) string {
	e := exp.Unix()
	return k.encode(e, k.mac("GET", e, h[:]))
}

// Errors of token checks.
var (
	ErrNoToken      = errors.New("no capability token: a chunk is read or written with the token the coordinator gave with its placement or lookup")
	ErrTokenInvalid = errors.New("capability token not valid for this request")
	ErrTokenExpired = errors.New("capability token expired: ask the coordinator again")
)

// Keys finds a token key by id (false if there is none).
type Keys func(id byte) (TokenKey, bool)

func decode(tok string, keys Keys, now time.Time) (TokenKey, int64, []byte, error) {
	if tok == "" {
		return TokenKey{}, 0, nil, ErrNoToken
	}
	// Strict: one token has one spelling (the last character's unused
	// bits must be zero).
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil || len(b) != tokenLen {
		return TokenKey{}, 0, nil, ErrTokenInvalid
	}
	k, ok := keys(b[0])
	if !ok {
		return TokenKey{}, 0, nil, fmt.Errorf("%w: unknown key %d", ErrTokenInvalid, b[0])
	}
	exp := int64(binary.BigEndian.Uint64(b[1:9]))
	if now.Unix() > exp {
		return TokenKey{}, 0, nil, ErrTokenExpired
	}
	return k, exp, b[9:], nil
}

// CheckPut checks a PUT's token: chunk h, sent to node self, forwarded
// along chain (the ChainHeader value as received).
func CheckPut(keys Keys, tok string, h dfs.Hash, self dfs.NodeID, chain string, now time.Time) error {
	k, exp, mac, err := decode(tok, keys, now)
	if err != nil {
		return err
	}
	if !hmac.Equal(mac, k.mac("PUT", exp, h[:], []byte(self), []byte{0}, []byte(chain))) {
		return ErrTokenInvalid
	}
	return nil
}

// CheckGet checks a GET's token for chunk h.
func CheckGet(keys Keys, tok string, h dfs.Hash, now time.Time) error {
	k, exp, mac, err := decode(tok, keys, now)
	if err != nil {
		return err
	}
	if !hmac.Equal(mac, k.mac("GET", exp, h[:])) {
		return ErrTokenInvalid
	}
	return nil
}
