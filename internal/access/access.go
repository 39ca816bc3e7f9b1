// Package access is dfs's one model of who may do what, shared by every
// interface (the coordinator's gRPC API, the REST gateway and web UI, and
// S3): a caller is a Principal, and a principal holds rights per bucket.
//
// A bucket is the first segment of a path ("photos" for "photos/2024/a.jpg";
// a path with no slash is its own bucket). Rights are read (stat, list,
// read), write (put, delete) and owner (grant and revoke others' rights on
// the bucket). An admin may do everything, including cluster operations and
// managing keys.
//
// Who a caller is comes from how it connected:
//
//   - an access key (an id and a secret) sent with the call: that key;
//   - a gateway's node certificate acting for a key it authenticated (the
//     user signed in, or signed an S3 request): that key;
//   - a coordinator's or worker's node certificate (they hold etcd's keys
//     already), or a client certificate made by the cluster's CA: admin;
//   - a gateway's node certificate acting for no one: it may read the
//     cluster's state (nodes, counters, status, events) and nothing else.
package access

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"net"
	"sort"
	"strings"
)

// The gRPC metadata that carries a caller's access key, and the key a
// gateway acts for.
const (
	KeyIDHeader  = "x-dfs-access-key-id"
	SecretHeader = "x-dfs-secret-access-key"
	ActAsHeader  = "x-dfs-act-as"
)

// Rights is a set of rights on a bucket.
type Rights uint32

// The rights.
const (
	Read  Rights = 1 << iota // stat, list and read files
	Write                    // put and delete files
	Owner                    // grant and revoke rights on the bucket
	All   = Read | Write | Owner
)

// String spells r as "read,write,owner" (or "none").
func (r Rights) String() string {
	var parts []string
	for _, x := range []struct {
		r    Rights
		name string
	}{{Read, "read"}, {Write, "write"}, {Owner, "owner"}} {
		if r&x.r != 0 {
			parts = append(parts, x.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// Principal is who a caller is.
type Principal struct {
	// KeyID is the access key's id; empty for a certificate.
	KeyID string
	// Name is the key's name, or the certificate's common name.
	Name string
	// Admin may do everything.
	Admin bool
	// Monitor may read the cluster's state (nodes, counters, status and
	// node events) but no file: a gateway acting for no one.
	Monitor bool
	// Grants are the rights by bucket.
	Grants map[string]Rights
}

// Bucket returns the bucket of path: its first segment.
func Bucket(path string) string {
	path = strings.TrimPrefix(path, "/")
	if i := strings.IndexByte(path, '/'); i >= 0 {
		return path[:i]
	}
	return path
}

// Can reports whether p holds every right of want on path's bucket.
func (p *Principal) Can(path string, want Rights) bool {
	if p == nil {
		return false
	}
	if p.Admin {
		return true
	}
	return p.Grants[Bucket(path)]&want == want
}

// CanAny reports whether p holds want on some bucket.
func (p *Principal) CanAny(want Rights) bool {
	if p == nil {
		return false
	}
	if p.Admin {
		return true
	}
	for _, r := range p.Grants {
		if r&want == want {
			return true
		}
	}
	return false
}

// Buckets returns the buckets on which p holds want, sorted.
func (p *Principal) Buckets(want Rights) []string {
	var out []string
	for b, r := range p.Grants {
		if r&want == want {
			out = append(out, b)
		}
	}
	sort.Strings(out)
	return out
}

// Who names p for messages: "key AKID (name)" or the certificate's name.
func (p *Principal) Who() string {
	if p == nil {
		return "an anonymous caller"
	}
	if p.KeyID != "" {
		return fmt.Sprintf("key %s (%s)", p.KeyID, p.Name)
	}
	return "certificate " + p.Name
}

// CheckBucket returns an error unless b is a usable bucket name: a path
// segment without a slash.
func CheckBucket(b string) error {
	if b == "" || b == "." || b == ".." || strings.ContainsAny(b, "/\x00") || len(b) > 255 {
		return fmt.Errorf("bucket %q: want one path segment (no slash), at most 255 bytes", b)
	}
	return nil
}

// CheckBucketName returns an error unless name may name a bucket made on
// purpose: S3's rules (3 to 63 lower-case letters, digits, '.' and '-',
// beginning and ending with a letter or digit, no "..", not an IP
// address), so that every bucket works through S3 too.
func CheckBucketName(name string) error {
	bad := func(why string) error { return fmt.Errorf("bucket name %q: %s", name, why) }
	if len(name) < 3 || len(name) > 63 {
		return bad("want 3 to 63 characters")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return bad("want lower-case letters, digits, '.' and '-'")
		}
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	if !alnum(name[0]) || !alnum(name[len(name)-1]) {
		return bad("want a letter or digit first and last")
	}
	if strings.Contains(name, "..") || strings.Contains(name, ".-") || strings.Contains(name, "-.") {
		return bad(`want no "..", ".-" or "-."`)
	}
	if net.ParseIP(name) != nil {
		return bad("an IP address is not a bucket name")
	}
	return nil
}

// IDLength and SecretLength are the lengths of a new key's id and secret.
const (
	IDLength     = 20
	SecretLength = 40
)

// NewKey returns a new access key id ("DK" and 18 letters and digits, like
// S3's key ids) and secret (40 characters of base64url), from crypto/rand.
func NewKey() (id, secret string) {
	var a [12]byte
	var b [30]byte
	rand.Read(a[:])
	rand.Read(b[:])
	id = "DK" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(a[:])[:IDLength-2]
	return id, base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidID reports whether id could be a key id: 3 to 128 letters, digits,
// '-' and '_' (dfs makes "DK" and 18 letters and digits; imported keys of
// other stores look alike), so a malformed one is refused before any
// lookup.
func ValidID(id string) bool {
	if len(id) < 3 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// CheckSecret returns an error unless secret may be a key's secret: 16 to
// 128 printable ASCII characters, no spaces.
func CheckSecret(secret string) error {
	if len(secret) < 16 || len(secret) > 128 {
		return fmt.Errorf("a secret access key has 16 to 128 characters, not %d", len(secret))
	}
	for _, c := range secret {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("a secret access key is printable ASCII without spaces")
		}
	}
	return nil
}
