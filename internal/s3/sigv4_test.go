package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/minio/minio-go/v7/pkg/signer"
)

const (
	testID     = "DKTESTTESTTESTTEST23"
	testSecret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3"
)

var testKeys SigningKeys = func(ctx context.Context, id, day, region, service string) ([]byte, error) {
	if id != testID {
		return nil, ErrUnknownKey
	}
	return SigningKey(testSecret, day, region, service), nil
}

func sdkSigner() *v4.Signer {
	return v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
}

var creds = aws.Credentials{AccessKeyID: testID, SecretAccessKey: testSecret}

// request makes a server-side request as a client would send it.
func request(t *testing.T, method, rawURL string, body []byte) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, rawURL, bytes.NewReader(body))
	return r
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Requests signed by the AWS SDK's own signer check, with awkward paths
// and queries; anything changed after signing, a wrong secret, a skewed
// clock or the wrong region does not.
func TestVerifyHeaderSignatures(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	body := []byte("hello, s3")
	sign := func(method, rawURL string, body []byte, at time.Time, secret string, mod func(*http.Request)) *http.Request {
		r := request(t, method, rawURL, body)
		r.Header.Set("X-Amz-Content-Sha256", hexSHA(body))
		r.Header.Set("Content-Type", "text/plain")
		if mod != nil {
			mod(r)
		}
		c := creds
		c.SecretAccessKey = secret
		if err := sdkSigner().SignHTTP(ctx, c, r, hexSHA(body), "s3", "us-east-1", at); err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, u := range []string{
		"http://127.0.0.1:9000/bucket/key.txt",
		"http://127.0.0.1:9000/bucket/a%20b/%C3%BC%2Bx%3D1.txt",
		"http://127.0.0.1:9000/bucket?list-type=2&prefix=a%20b%2F&delimiter=%2F&encoding-type=url",
		"http://127.0.0.1:9000/bucket/key?uploads",
		"http://localhost/",
	} {
		r := sign(http.MethodPut, u, body, now, testSecret, nil)
		a, err := Verify(ctx, r, testKeys, "us-east-1", now.Add(time.Minute))
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if a.KeyID != testID || a.Payload != hexSHA(body) || a.Region != "us-east-1" {
			t.Fatalf("%s: %+v", u, a)
		}
	}

	base := "http://127.0.0.1:9000/bucket/key.txt?x=1"
	for name, c := range map[string]struct {
		r    *http.Request
		at   time.Time
		want error
	}{
		"another path": {func() *http.Request {
			r := sign("PUT", base, body, now, testSecret, nil)
			r.URL.Path = "/bucket/other.txt"
			return r
		}(), now, ErrSignature},
		"another query": {func() *http.Request {
			r := sign("PUT", base, body, now, testSecret, nil)
			r.URL.RawQuery = "x=2"
			return r
		}(), now, ErrSignature},
		"another method": {func() *http.Request {
			r := sign("PUT", base, body, now, testSecret, nil)
			r.Method = "DELETE"
			return r
		}(), now, ErrSignature},
		"a signed header": {func() *http.Request {
			r := sign("PUT", base, body, now, testSecret, nil)
			r.Header.Set("Content-Type", "x/y")
			return r
		}(), now, ErrSignature},
		"another host": {func() *http.Request {
			r := sign("PUT", base, body, now, testSecret, nil)
			r.Host = "evil:9000"
			return r
		}(), now, ErrSignature},
		"the payload hash": {func() *http.Request {
			r := sign("PUT", base, body, now, testSecret, nil)
			r.Header.Set("X-Amz-Content-Sha256", hexSHA([]byte("x")))
			return r
		}(), now, ErrSignature},
		"a wrong secret":  {sign("PUT", base, body, now, "not-the-secret-not-the-secret-not-the-se", nil), now, ErrSignature},
		"16 minutes slow": {sign("PUT", base, body, now, testSecret, nil), now.Add(16 * time.Minute), ErrSkewed},
		"16 minutes fast": {sign("PUT", base, body, now, testSecret, nil), now.Add(-16 * time.Minute), ErrSkewed},
		"no payload hash": {func() *http.Request {
			r := sign("PUT", base, body, now, testSecret, nil)
			r.Header.Del("X-Amz-Content-Sha256")
			return r
		}(), now, ErrContentSHA256},
		"no signature": {request(t, "GET", base, nil), now, ErrMissingAuth},
		"signature v2": {func() *http.Request {
			r := request(t, "GET", base, nil)
			r.Header.Set("Authorization", "AWS "+testID+":abc")
			return r
		}(), now, ErrUnsupportedAuth},
		"a garbled header": {func() *http.Request {
			r := request(t, "GET", base, nil)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 nonsense")
			return r
		}(), now, ErrAuthHeader},
	} {
		if _, err := Verify(ctx, c.r, testKeys, "us-east-1", c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	// Another region, and an unknown key.
	r := request(t, "GET", base, nil)
	r.Header.Set("X-Amz-Content-Sha256", hexSHA(nil))
	sdkSigner().SignHTTP(ctx, creds, r, hexSHA(nil), "s3", "eu-west-1", now)
	if _, err := Verify(ctx, r, testKeys, "us-east-1", now); !errors.Is(err, ErrAuthHeader) || !strings.Contains(err.Error(), "us-east-1") {
		t.Errorf("another region: %v", err)
	}
	r = request(t, "GET", base, nil)
	r.Header.Set("X-Amz-Content-Sha256", hexSHA(nil))
	sdkSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: "DKNOBODYNOBODYNOBODY", SecretAccessKey: testSecret}, r, hexSHA(nil), "s3", "us-east-1", now)
	if _, err := Verify(ctx, r, testKeys, "us-east-1", now); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("an unknown key: %v", err)
	}
}

// A presigned URL made by the AWS SDK checks until it expires; changed, it
// does not.
func TestVerifyPresigned(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	r := request(t, "GET", "http://127.0.0.1:9000/bucket/a%20b.txt?X-Amz-Expires=600", nil)
	u, _, err := sdkSigner().PresignHTTP(ctx, creds, r, UnsignedPayload, "s3", "us-east-1", now)
	if err != nil {
		t.Fatal(err)
	}
	check := func(rawURL string, at time.Time) error {
		_, err := Verify(ctx, request(t, "GET", rawURL, nil), testKeys, "us-east-1", at)
		return err
	}
	if err := check(u, now.Add(5*time.Minute)); err != nil {
		t.Fatalf("presigned GET within its time: %v", err)
	}
	if err := check(u, now.Add(11*time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("presigned GET after expiry: %v", err)
	}
	tampered := strings.Replace(u, "a%20b.txt", "other.txt", 1)
	if err := check(tampered, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("presigned GET of another object: %v", err)
	}
	pu, _ := url.Parse(u)
	q := pu.Query()
	q.Set("X-Amz-Expires", "604801")
	pu.RawQuery = q.Encode()
	if err := check(pu.String(), now); !errors.Is(err, ErrAuthQuery) {
		t.Fatalf("an expiry past 7 days: %v", err)
	}
}

// Streaming uploads signed chunk by chunk (minio-go's signer), with and
// without trailers, and unsigned with a checksum trailer: the data reads
// back whole; a chunk changed, dropped or cut short fails.
func TestChunkedBodies(t *testing.T) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16+77) // several 64 KiB chunks
	now := time.Now().UTC()
	signed := func(trailer http.Header) (*http.Request, []byte) {
		r, _ := http.NewRequest("PUT", "http://127.0.0.1:9000/bucket/big.bin", bytes.NewReader(data))
		r.ContentLength = int64(len(data))
		r.Trailer = trailer
		r = signer.StreamingSignV4(r, testID, testSecret, "", "us-east-1", int64(len(data)), now, sha256Hasher{sha256.New()})
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		return r, raw
	}
	read := func(r *http.Request, raw []byte) ([]byte, http.Header, error) {
		srv := httptest.NewRequest(r.Method, r.URL.String(), bytes.NewReader(raw))
		srv.Header = r.Header.Clone()
		srv.Host = r.Host
		a, err := Verify(ctx, srv, testKeys, "us-east-1", now)
		if err != nil {
			return nil, nil, err
		}
		cr := NewChunkedReader(srv.Body, a, srv.Header.Get("X-Amz-Trailer"))
		out, err := io.ReadAll(cr)
		return out, cr.Trailer, err
	}
	r, raw := signed(nil)
	if got, _, err := read(r, raw); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a signed streaming body: %d bytes, %v", len(got), err)
	}
	// One byte of data changed, a chunk cut short, the body cut off.
	i := bytes.Index(raw, []byte("\r\n")) + 2 + 1000
	bad := bytes.Clone(raw)
	bad[i] ^= 1
	if _, _, err := read(r, bad); !errors.Is(err, ErrChunkSignature) {
		t.Errorf("a changed byte: %v", err)
	}
	if _, _, err := read(r, raw[:len(raw)/2]); !errors.Is(err, ErrMalformedChunking) {
		t.Errorf("a body cut off: %v", err)
	}
	// The first chunk dropped: the chain of signatures breaks.
	first := bytes.Index(raw, []byte("\r\n"))
	size := 64 << 10
	dropped := raw[first+2+size+2:]
	if _, _, err := read(r, dropped); !errors.Is(err, ErrChunkSignature) {
		t.Errorf("the first chunk dropped: %v", err)
	}

	// Signed, with a checksum trailer.
	r, raw = signed(http.Header{"X-Amz-Checksum-Crc32": []string{"AAAAAA=="}})
	got, tr, err := read(r, raw)
	if err != nil || !bytes.Equal(got, data) || tr.Get("x-amz-checksum-crc32") != "AAAAAA==" {
		t.Fatalf("signed with a trailer: %d bytes, trailer %v, %v", len(got), tr, err)
	}
	forged := bytes.Replace(raw, []byte("AAAAAA=="), []byte("BBBBBB=="), 1)
	if _, _, err := read(r, forged); !errors.Is(err, ErrChunkSignature) {
		t.Errorf("a changed trailer: %v", err)
	}

	// Unsigned chunks with a trailer (what aws CLI and boto3 send by default).
	ur, _ := http.NewRequest("PUT", "http://127.0.0.1:9000/bucket/big.bin", bytes.NewReader(data))
	ur.ContentLength = int64(len(data))
	trailer := http.Header{"X-Amz-Checksum-Crc32c": []string{"CCCCCC=="}}
	ur.Trailer = trailer
	ur.Header.Set("X-Amz-Content-Sha256", StreamingUnsignedTrailer)
	ur = signer.SignV4Trailer(*ur, testID, testSecret, "", "us-east-1", trailer) // wraps the body in unsigned chunks too
	uraw, err := io.ReadAll(ur.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, tr, err = read(ur, uraw)
	if err != nil || !bytes.Equal(got, data) || tr.Get("x-amz-checksum-crc32c") != "CCCCCC==" {
		t.Fatalf("unsigned with a trailer: %d bytes, trailer %v, %v", len(got), tr, err)
	}
}

// sha256Hasher is the hasher minio-go's streaming signer takes.
type sha256Hasher struct{ hash.Hash }

func (sha256Hasher) Close() {}

// Any body a client sends decodes without panicking or hanging, and an
// unsigned stream yields at most the bytes it holds.
func FuzzChunkedReader(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"), true)
	f.Add([]byte("5;chunk-signature=0000000000000000000000000000000000000000000000000000000000000000\r\nhello\r\n0\r\n\r\n"), false)
	f.Add([]byte("ffffffff\r\n"), false)
	f.Fuzz(func(t *testing.T, body []byte, trailer bool) {
		a := &Auth{Payload: StreamingUnsignedTrailer, SigningKey: []byte("k"), Scope: "20261203/us-east-1/s3/aws4_request"}
		declared := ""
		if trailer {
			declared = "x-amz-checksum-crc32"
		} else {
			a.Payload = StreamingPayload
		}
		n, _ := io.Copy(io.Discard, NewChunkedReader(bytes.NewReader(body), a, declared))
		if n > int64(len(body)) {
			t.Fatalf("read %d bytes from a body of %d", n, len(body))
		}
	})
}
