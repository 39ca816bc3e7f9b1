package s3

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/signer"
)

var testSignV2 SignV2s = func(ctx context.Context, id, sts string) ([]byte, error) {
	if id != testID {
		return nil, ErrUnknownKey
	}
	return SignV2(testSecret, sts), nil
}

// serverSide turns a client's signed request into one as the server
// receives it.
func serverSide(t *testing.T, r *http.Request) *http.Request {
	t.Helper()
	s := httptest.NewRequest(r.Method, r.URL.String(), nil)
	for k, vs := range r.Header {
		s.Header[k] = vs
	}
	return s
}

// Signature Version 2, as minio-go's signer makes it, in a header and in a
// presigned URL: checks, and fails for a changed request, a wrong secret,
// an unknown key, an expired URL and a skewed clock.
func TestVerifyV2(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	mk := func(method, rawURL string, hdr map[string]string) http.Request {
		r, _ := http.NewRequest(method, rawURL, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		r.Header.Set("Date", now.UTC().Format(http.TimeFormat))
		return *r
	}
	// Header.
	r := signer.SignV2(mk("PUT", "http://h/bkt/a%20b/c.txt?uploadId=xyz&partNumber=3&other=1", map[string]string{
		"Content-Type": "text/plain", "X-Amz-Meta-Color": "blue", "Content-Md5": "1B2M2Y8AsgTpgAmY7PhCfg=="}), testID, testSecret, false)
	if a, err := VerifyV2(ctx, serverSide(t, r), testSignV2, "/bkt/a%20b/c.txt", now); err != nil || a.KeyID != testID || a.Payload != UnsignedPayload {
		t.Fatalf("header signature: %+v, %v", a, err)
	}
	changed := serverSide(t, r)
	changed.Header.Set("X-Amz-Meta-Color", "red")
	if _, err := VerifyV2(ctx, changed, testSignV2, "/bkt/a%20b/c.txt", now); !errors.Is(err, ErrSignature) {
		t.Fatalf("a header changed after signing: %v", err)
	}
	if _, err := VerifyV2(ctx, serverSide(t, r), testSignV2, "/bkt/other", now); !errors.Is(err, ErrSignature) {
		t.Fatalf("another resource: %v", err)
	}
	if _, err := VerifyV2(ctx, serverSide(t, r), testSignV2, "/bkt/a%20b/c.txt", now.Add(16*time.Minute)); !errors.Is(err, ErrSkewed) {
		t.Fatalf("a skewed clock: %v", err)
	}
	wrong := signer.SignV2(mk("GET", "http://h/bkt/k", nil), testID, "wrong-secret-wrong-secret-wrong-secret-w", false)
	if _, err := VerifyV2(ctx, serverSide(t, wrong), testSignV2, "/bkt/k", now); !errors.Is(err, ErrSignature) {
		t.Fatalf("a wrong secret: %v", err)
	}
	unknown := signer.SignV2(mk("GET", "http://h/bkt/k", nil), "DKNOBODY", testSecret, false)
	if _, err := VerifyV2(ctx, serverSide(t, unknown), testSignV2, "/bkt/k", now); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("an unknown key: %v", err)
	}
	// Presigned.
	p := signer.PreSignV2(mk("GET", "http://h/bkt/k?response-content-type=text/x", nil), testID, testSecret, 60, false)
	if _, err := VerifyV2(ctx, serverSide(t, p), testSignV2, "/bkt/k", now); err != nil {
		t.Fatalf("presigned: %v", err)
	}
	if _, err := VerifyV2(ctx, serverSide(t, p), testSignV2, "/bkt/k", now.Add(2*time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("presigned, expired: %v", err)
	}
	tampered := serverSide(t, p)
	tampered.URL.RawQuery += "&versionId=1"
	if _, err := VerifyV2(ctx, tampered, testSignV2, "/bkt/k", now); !errors.Is(err, ErrSignature) {
		t.Fatalf("presigned, a subresource added: %v", err)
	}
	for _, bad := range []string{"AWS ", "AWS nocolon", "AWS id:", "AWS :sig", "AWS id:!!notbase64"} {
		r := serverSide(t, signer.SignV2(mk("GET", "http://h/bkt/k", nil), testID, testSecret, false))
		r.Header.Set("Authorization", bad)
		if _, err := VerifyV2(ctx, r, testSignV2, "/bkt/k", now); err == nil {
			t.Fatalf("authorization %q accepted", bad)
		}
	}
}

func FuzzVerifyV2(f *testing.F) {
	f.Add("AWS "+testID+":c2ln", "/b/k", "acl&uploadId=1")
	f.Fuzz(func(t *testing.T, auth, path, query string) {
		r := httptest.NewRequest("GET", "http://h/", nil)
		r.URL.Path, r.URL.RawQuery = path, query
		r.Header.Set("Authorization", auth)
		r.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
		if a, err := VerifyV2(context.Background(), r, testSignV2, path, time.Now()); err == nil {
			t.Fatalf("a request signed by nobody checked: %+v", a)
		}
	})
}
