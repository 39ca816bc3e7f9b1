// Package s3 is dfs's S3 API: AWS Signature Version 4 checked on every
// request, and (as it grows) the operations S3 clients use, over dfs's one
// namespace (a bucket is a path's first segment).
//
// This file checks signatures. The secret of an access key never leaves the
// coordinators: the gateway asks for the key's signing key, which is derived
// from the secret for one day, region and service (SigV4's
// HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service),
// "aws4_request")), and checks requests with it.
package s3

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Payload hashes a request may declare in x-amz-content-sha256, besides
// the hex SHA-256 of its body.
const (
	UnsignedPayload          = "UNSIGNED-PAYLOAD"
	StreamingPayload         = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	StreamingPayloadTrailer  = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	StreamingUnsignedTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	algorithm                = "AWS4-HMAC-SHA256"
	maxSkew                  = 15 * time.Minute
	maxPresignedExpiry       = 7 * 24 * time.Hour
	amzDateFormat            = "20060102T150405Z"
	scopeDateFormat          = "20060102"
)

// SigningKeys returns the SigV4 signing key of access key id for a day
// (YYYYMMDD), region and service, or an error wrapping ErrUnknownKey.
type SigningKeys func(ctx context.Context, id, day, region, service string) ([]byte, error)

// Errors of signature checks, by S3 error code.
var (
	ErrUnknownKey        = errors.New("InvalidAccessKeyId: the access key id does not exist")
	ErrSignature         = errors.New("SignatureDoesNotMatch: the request signature does not match the one calculated")
	ErrSkewed            = errors.New("RequestTimeTooSkewed: the request time differs from the server's by more than 15 minutes")
	ErrExpired           = errors.New("AccessDenied: the presigned request has expired")
	ErrAuthHeader        = errors.New("AuthorizationHeaderMalformed: the authorization header is malformed")
	ErrAuthQuery         = errors.New("AuthorizationQueryParametersError: the presigned query is malformed")
	ErrMissingAuth       = errors.New("AccessDenied: the request is not signed")
	ErrUnsupportedAuth   = errors.New("InvalidRequest: only AWS Signature Version 4 (AWS4-HMAC-SHA256) is supported")
	ErrContentSHA256     = errors.New("XAmzContentSHA256Mismatch: the x-amz-content-sha256 value is not valid")
	ErrPayloadMismatch   = errors.New("XAmzContentSHA256Mismatch: the body does not hash to x-amz-content-sha256")
	ErrChunkSignature    = errors.New("SignatureDoesNotMatch: a chunk's signature does not match")
	ErrMalformedChunking = errors.New("IncompleteBody: the aws-chunked body is malformed or cut short")
)

// Auth is what a checked request's signature established.
type Auth struct {
	KeyID   string
	Region  string
	Payload string // x-amz-content-sha256: a hex SHA-256, or one of the constants above
	// For a streaming payload: the request's time, scope, signature (the
	// first chunk's "previous signature") and signing key.
	Time       time.Time
	Scope      string
	Signature  string
	SigningKey []byte
	Presigned  bool
}

// Verify checks the SigV4 signature of r, in its Authorization header or
// (presigned) in its query, at time now, for service "s3" in region (any
// region if empty).
func Verify(ctx context.Context, r *http.Request, keys SigningKeys, region string, now time.Time) (*Auth, error) {
	if r.URL.Query().Get("X-Amz-Algorithm") != "" {
		return verifyPresigned(ctx, r, keys, region, now)
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, ErrMissingAuth
	}
	if !strings.HasPrefix(h, algorithm+" ") {
		return nil, ErrUnsupportedAuth
	}
	fields := map[string]string{}
	for _, f := range strings.Split(strings.TrimPrefix(h, algorithm+" "), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			return nil, ErrAuthHeader
		}
		fields[k] = v
	}
	cred, signed, sig := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	if cred == "" || signed == "" || sig == "" {
		return nil, ErrAuthHeader
	}
	a, err := parseCredential(cred, region, ErrAuthHeader)
	if err != nil {
		return nil, err
	}
	t, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		if t, err = http.ParseTime(r.Header.Get("Date")); err != nil {
			return nil, fmt.Errorf("%w: no valid X-Amz-Date or Date", ErrAuthHeader)
		}
	}
	if t.Format(scopeDateFormat) != a.day {
		return nil, fmt.Errorf("%w: the credential's date is not the request's", ErrAuthHeader)
	}
	if d := now.Sub(t); d > maxSkew || d < -maxSkew {
		return nil, ErrSkewed
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if !validPayload(payload) {
		return nil, fmt.Errorf("%w: %q", ErrContentSHA256, payload)
	}
	headers := strings.Split(signed, ";")
	if !sort.StringsAreSorted(headers) || !contains(headers, "host") {
		return nil, fmt.Errorf("%w: SignedHeaders must be sorted and include host", ErrAuthHeader)
	}
	canon := canonicalRequest(r, headers, canonicalQuery(r.URL.Query(), ""), payload)
	key, err := keys(ctx, a.id, a.day, a.region, a.service)
	if err != nil {
		return nil, err
	}
	want := signature(key, t, a.scope, canon)
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(sig))) {
		return nil, ErrSignature
	}
	return &Auth{KeyID: a.id, Region: a.region, Payload: payload, Time: t, Scope: a.scope, Signature: want, SigningKey: key}, nil
}

func verifyPresigned(ctx context.Context, r *http.Request, keys SigningKeys, region string, now time.Time) (*Auth, error) {
	q := r.URL.Query()
	if q.Get("X-Amz-Algorithm") != algorithm {
		return nil, ErrUnsupportedAuth
	}
	cred, signed, sig, date, exp := q.Get("X-Amz-Credential"), q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Signature"), q.Get("X-Amz-Date"), q.Get("X-Amz-Expires")
	if cred == "" || signed == "" || sig == "" || date == "" || exp == "" {
		return nil, ErrAuthQuery
	}
	a, err := parseCredential(cred, region, ErrAuthQuery)
	if err != nil {
		return nil, err
	}
	t, err := time.Parse(amzDateFormat, date)
	if err != nil || t.Format(scopeDateFormat) != a.day {
		return nil, fmt.Errorf("%w: X-Amz-Date", ErrAuthQuery)
	}
	secs, err := strconv.ParseInt(exp, 10, 64)
	if err == nil && secs < 1 {
		return nil, ErrExpired // expired as it was made
	}
	if err != nil || time.Duration(secs)*time.Second > maxPresignedExpiry {
		return nil, fmt.Errorf("%w: X-Amz-Expires must be 1 to 604800 seconds", ErrAuthQuery)
	}
	if t.Sub(now) > maxSkew {
		return nil, ErrSkewed
	}
	if now.After(t.Add(time.Duration(secs) * time.Second)) {
		return nil, ErrExpired
	}
	headers := strings.Split(signed, ";")
	if !sort.StringsAreSorted(headers) || !contains(headers, "host") {
		return nil, fmt.Errorf("%w: X-Amz-SignedHeaders must be sorted and include host", ErrAuthQuery)
	}
	payload := UnsignedPayload
	if v := q.Get("X-Amz-Content-Sha256"); v != "" {
		payload = v
	} else if v := r.Header.Get("X-Amz-Content-Sha256"); v != "" && contains(headers, "x-amz-content-sha256") {
		payload = v
	}
	canon := canonicalRequest(r, headers, canonicalQuery(q, "X-Amz-Signature"), payload)
	key, err := keys(ctx, a.id, a.day, a.region, a.service)
	if err != nil {
		return nil, err
	}
	want := signature(key, t, a.scope, canon)
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(sig))) {
		return nil, ErrSignature
	}
	return &Auth{KeyID: a.id, Region: a.region, Payload: payload, Time: t, Scope: a.scope, Signature: want, SigningKey: key, Presigned: true}, nil
}

type credential struct {
	id, day, region, service, scope string
}

// parseCredential reads "ID/YYYYMMDD/region/s3/aws4_request".
func parseCredential(s, region string, malformed error) (credential, error) {
	p := strings.Split(s, "/")
	if len(p) != 5 || p[0] == "" || p[4] != "aws4_request" || len(p[1]) != 8 {
		return credential{}, fmt.Errorf("%w: Credential %q", malformed, s)
	}
	if p[3] != "s3" {
		return credential{}, fmt.Errorf("%w: service %q, want s3", malformed, p[3])
	}
	if region != "" && p[2] != region {
		return credential{}, fmt.Errorf("%w: region %q is wrong; expecting %q", malformed, p[2], region)
	}
	return credential{id: p[0], day: p[1], region: p[2], service: p[3], scope: strings.Join(p[1:], "/")}, nil
}

func validPayload(p string) bool {
	switch p {
	case UnsignedPayload, StreamingPayload, StreamingPayloadTrailer, StreamingUnsignedTrailer:
		return true
	}
	if len(p) != 64 {
		return false
	}
	_, err := hex.DecodeString(p)
	return err == nil
}

// canonicalRequest is SigV4's canonical form of r.
func canonicalRequest(r *http.Request, headers []string, query, payload string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(uriEncode(r.URL.Path, false))
	b.WriteByte('\n')
	b.WriteString(query)
	b.WriteByte('\n')
	for _, h := range headers {
		b.WriteString(h)
		b.WriteByte(':')
		b.WriteString(headerValue(r, h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(headers, ";"))
	b.WriteByte('\n')
	b.WriteString(payload)
	return b.String()
}

// headerValue is a signed header's canonical value: its values trimmed,
// inner runs of spaces made one, joined by commas.
func headerValue(r *http.Request, name string) string {
	var vals []string
	switch name {
	case "host":
		vals = []string{r.Host}
	case "content-length":
		if r.ContentLength >= 0 && r.Header.Get("Content-Length") == "" {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		} else {
			vals = r.Header.Values(name)
		}
	case "transfer-encoding":
		// The server takes Transfer-Encoding out of the header.
		vals = r.Header.Values(name)
		if len(vals) == 0 && len(r.TransferEncoding) > 0 {
			vals = []string{strings.Join(r.TransferEncoding, ",")}
		}
	default:
		vals = r.Header.Values(name)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

// canonicalQuery sorts and encodes q, leaving out skip.
func canonicalQuery(q url.Values, skip string) string {
	type kv struct{ k, v string }
	var all []kv
	for k, vs := range q {
		if k == skip {
			continue
		}
		for _, v := range vs {
			all = append(all, kv{uriEncode(k, true), uriEncode(v, true)})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].k != all[j].k {
			return all[i].k < all[j].k
		}
		return all[i].v < all[j].v
	})
	parts := make([]string, len(all))
	for i, x := range all {
		parts[i] = x.k + "=" + x.v
	}
	return strings.Join(parts, "&")
}

// uriEncode is SigV4's URI encoding: every byte but A-Z a-z 0-9 - _ . ~
// as %XX, and '/' too unless it is a path's.
func uriEncode(s string, slash bool) string {
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		case c == '/' && !slash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&15])
		}
	}
	if b.Len() == 0 && !slash {
		return "/"
	}
	return b.String()
}

// signature is the hex HMAC of the string to sign of a canonical request.
func signature(key []byte, t time.Time, scope, canon string) string {
	sum := sha256.Sum256([]byte(canon))
	sts := algorithm + "\n" + t.UTC().Format(amzDateFormat) + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	return hex.EncodeToString(hmacSHA256(key, sts))
}

func hmacSHA256(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// SigningKey derives the SigV4 signing key of secret for a day, region
// and service. Only the holder of the secret (a coordinator) calls it.
func SigningKey(secret, day, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), day)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
