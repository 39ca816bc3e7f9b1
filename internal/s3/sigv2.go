package s3

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AWS Signature Version 2: the older signature that some clients still
// send (boto3's presigned URLs when no signature version is configured,
// s3cmd with signature_v2). Its HMAC-SHA1 needs the secret itself, so the
// gateway asks a coordinator to sign the string it built (SignV2s); the
// secret stays there. A V2 request carries no hash of its body: its
// payload counts as unsigned.

// SignV2s returns the V2 signature (HMAC-SHA1) of a string to sign with
// the secret of access key id, or an error wrapping ErrUnknownKey.
type SignV2s func(ctx context.Context, id, stringToSign string) ([]byte, error)

// SignV2 is the V2 signature of stringToSign with secret.
func SignV2(secret, stringToSign string) []byte {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(stringToSign))
	return m.Sum(nil)
}

// IsV2 reports whether r is signed with Signature Version 2.
func IsV2(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Authorization"), "AWS ") || r.URL.Query().Has("AWSAccessKeyId")
}

// v2Subresources are the query parameters the V2 canonical resource keeps.
var v2Subresources = map[string]bool{
	"acl": true, "cors": true, "delete": true, "lifecycle": true, "location": true, "logging": true, "notification": true,
	"partNumber": true, "policy": true, "requestPayment": true, "tagging": true, "torrent": true, "uploadId": true,
	"uploads": true, "versionId": true, "versioning": true, "versions": true, "website": true, "restore": true,
	"response-cache-control": true, "response-content-disposition": true, "response-content-encoding": true,
	"response-content-language": true, "response-content-type": true, "response-expires": true,
}

// VerifyV2 checks the V2 signature of r, in its Authorization header or
// (presigned) in its query, at time now. resource is the request's
// canonical bucket and key ("/bucket/key"): the path for path style, the
// host's bucket and the path for virtual-hosted style.
func VerifyV2(ctx context.Context, r *http.Request, sign SignV2s, resource string, now time.Time) (*Auth, error) {
	q := r.URL.Query()
	var id, sig, date string
	presigned := q.Has("AWSAccessKeyId")
	if presigned {
		id, sig, date = q.Get("AWSAccessKeyId"), q.Get("Signature"), q.Get("Expires")
		exp, err := strconv.ParseInt(date, 10, 64)
		if id == "" || sig == "" || err != nil {
			return nil, fmt.Errorf("%w: want AWSAccessKeyId, Signature and Expires", ErrAuthQuery)
		}
		if now.After(time.Unix(exp, 0)) {
			return nil, ErrExpired
		}
		if time.Unix(exp, 0).Sub(now) > maxPresignedExpiry {
			return nil, fmt.Errorf("%w: expires more than 7 days ahead", ErrAuthQuery)
		}
	} else {
		cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "AWS ")
		i := strings.LastIndexByte(cred, ':')
		if !ok || i <= 0 || i == len(cred)-1 {
			return nil, ErrAuthHeader
		}
		id, sig = cred[:i], cred[i+1:]
		// x-amz-date, when given, stands for Date (which is then signed
		// empty).
		t, err := http.ParseTime(r.Header.Get("X-Amz-Date"))
		if err != nil {
			if t, err = http.ParseTime(r.Header.Get("Date")); err != nil {
				return nil, fmt.Errorf("%w: no valid Date or X-Amz-Date", ErrAuthHeader)
			}
			date = r.Header.Get("Date")
		}
		if d := now.Sub(t); d > maxSkew || d < -maxSkew {
			return nil, ErrSkewed
		}
	}
	want, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return nil, ErrSignature
	}
	got, err := sign(ctx, id, stringToSignV2(r, date, resource))
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(got, want) {
		return nil, ErrSignature
	}
	return &Auth{KeyID: id, Payload: UnsignedPayload, Presigned: presigned}, nil
}

// stringToSignV2 is V2's string to sign: method, Content-MD5, Content-Type,
// the date (Expires for a presigned URL), the x-amz- headers, and the
// canonical resource with its subresources.
func stringToSignV2(r *http.Request, date, resource string) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n")
	b.WriteString(r.Header.Get("Content-Md5") + "\n")
	b.WriteString(r.Header.Get("Content-Type") + "\n")
	b.WriteString(date + "\n")
	var amz []string
	vals := map[string][]string{}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-") {
			if _, ok := vals[lk]; !ok {
				amz = append(amz, lk)
			}
			for _, v := range vs {
				vals[lk] = append(vals[lk], strings.TrimSpace(v))
			}
		}
	}
	sort.Strings(amz)
	for _, k := range amz {
		b.WriteString(k + ":" + strings.Join(vals[k], ",") + "\n")
	}
	b.WriteString(resource)
	q := r.URL.Query()
	var subs []string
	for k := range q {
		if v2Subresources[k] {
			subs = append(subs, k)
		}
	}
	sort.Strings(subs)
	for i, k := range subs {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(k)
		if v := q.Get(k); v != "" {
			b.WriteString("=" + v)
		}
	}
	return b.String()
}
