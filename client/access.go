package client

import (
	"context"
	"sort"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/access"
)

// Rights on a bucket, a bit set: what AccessKey.Grants holds and SetGrant
// takes.
const (
	RightRead  = uint32(access.Read)  // stat, list and read files
	RightWrite = uint32(access.Write) // put and delete files
	RightOwner = uint32(access.Owner) // grant and revoke rights on the bucket
)

// AccessKey is an access key: an id, a name, and what it may do. Secret is
// set only by CreateKey.
type AccessKey struct {
	ID      string            `json:"access_key_id"`
	Secret  string            `json:"secret_access_key,omitempty"`
	Name    string            `json:"name"`
	Admin   bool              `json:"admin"`
	Created time.Time         `json:"created"`
	Grants  map[string]string `json:"grants"` // bucket -> "read,write,owner"
	// Certificate: WhoAmI was answered for a cluster certificate, not a
	// key.
	Certificate bool `json:"certificate,omitempty"`
	rights      map[string]uint32
}

// Rights returns the rights the key holds on bucket.
func (k AccessKey) Rights(bucket string) uint32 { return k.rights[bucket] }

// Buckets returns the buckets the key holds a grant on, sorted.
func (k AccessKey) Buckets() []string {
	out := make([]string, 0, len(k.rights))
	for b := range k.rights {
		out = append(out, b)
	}
	sort.Strings(out)
	return out
}

func keyFromAPI(a *api.AccessKey) AccessKey {
	k := AccessKey{ID: a.AccessKeyId, Secret: a.SecretAccessKey, Name: a.Name, Admin: a.Admin, Certificate: a.Certificate,
		Grants: map[string]string{}, rights: map[string]uint32{}}
	if a.CreatedUnixNano != 0 {
		k.Created = time.Unix(0, a.CreatedUnixNano)
	}
	for b, r := range a.Grants {
		k.Grants[b] = access.Rights(r).String()
		k.rights[b] = r
	}
	return k
}

// ActAs returns a context whose calls a gateway makes for the user of key
// id, whom it has authenticated itself (a signed-in user, a signed S3
// request). Only a gateway's certificate may act for a key.
func ActAs(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, access.ActAsHeader, id)
}

// WhoAmI says who the client is to the cluster and what it may do.
func (c *Client) WhoAmI(ctx context.Context) (AccessKey, error) {
	var resp *api.AccessKey
	err := c.try(ctx, func(k int) (err error) {
		resp, err = c.access[k].WhoAmI(ctx, &api.WhoAmIRequest{})
		return err
	})
	if err != nil {
		return AccessKey{}, err
	}
	return keyFromAPI(resp), nil
}

// CreateKey makes a new access key (an admin's call). The answer is the
// only one that carries the key's secret.
func (c *Client) CreateKey(ctx context.Context, name string, admin bool) (AccessKey, error) {
	return c.ImportKey(ctx, name, admin, "", "")
}

// ImportKey stores an access key made elsewhere (another store's, say)
// with its id and secret (an admin's call).
func (c *Client) ImportKey(ctx context.Context, name string, admin bool, id, secret string) (AccessKey, error) {
	var resp *api.AccessKey
	err := c.try(ctx, func(k int) (err error) {
		resp, err = c.access[k].CreateKey(ctx, &api.CreateKeyRequest{Name: name, Admin: admin, AccessKeyId: id, SecretAccessKey: secret})
		return err
	})
	if err != nil {
		return AccessKey{}, err
	}
	return keyFromAPI(resp), nil
}

// ListKeys lists the access keys, without secrets (an admin's call).
func (c *Client) ListKeys(ctx context.Context) ([]AccessKey, error) {
	var resp *api.ListKeysResponse
	err := c.try(ctx, func(k int) (err error) {
		resp, err = c.access[k].ListKeys(ctx, &api.ListKeysRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]AccessKey, 0, len(resp.Keys))
	for _, k := range resp.Keys {
		out = append(out, keyFromAPI(k))
	}
	return out, nil
}

// DeleteKey deletes an access key (an admin's call).
func (c *Client) DeleteKey(ctx context.Context, id string) error {
	return c.try(ctx, func(k int) error {
		_, err := c.access[k].DeleteKey(ctx, &api.DeleteKeyRequest{AccessKeyId: id})
		return err
	})
}

// SetGrant adds the rights allow to those key id holds on bucket and
// removes the rights deny: an admin's call, or the bucket's owner's.
func (c *Client) SetGrant(ctx context.Context, id, bucket string, allow, deny uint32) (AccessKey, error) {
	var resp *api.AccessKey
	err := c.try(ctx, func(k int) (err error) {
		resp, err = c.access[k].SetGrant(ctx, &api.SetGrantRequest{AccessKeyId: id, Bucket: bucket, Allow: allow, Deny: deny})
		return err
	})
	if err != nil {
		return AccessKey{}, err
	}
	return keyFromAPI(resp), nil
}

// WithKey returns a context whose calls are made with access key id and
// its secret, whatever the client's own credentials: a gateway passing on
// a request's key.
func WithKey(ctx context.Context, id, secret string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, access.KeyIDHeader, id, access.SecretHeader, secret)
}

// SigningKey derives access key id's AWS Signature Version 4 signing key
// for a day (YYYYMMDD), region and service: a gateway's call, to check S3
// requests without holding the secret.
func (c *Client) SigningKey(ctx context.Context, id, day, region, service string) ([]byte, error) {
	var resp *api.SigningKeyResponse
	err := c.try(ctx, func(k int) (err error) {
		resp, err = c.access[k].SigningKey(ctx, &api.SigningKeyRequest{AccessKeyId: id, Day: day, Region: region, Service: service})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Key, nil
}

// SignV2 returns the AWS Signature Version 2 (HMAC-SHA1) of stringToSign
// with the secret of access key id: a gateway's call.
func (c *Client) SignV2(ctx context.Context, id, stringToSign string) ([]byte, error) {
	var resp *api.SignV2Response
	err := c.try(ctx, func(k int) (err error) {
		resp, err = c.access[k].SignV2(ctx, &api.SignV2Request{AccessKeyId: id, StringToSign: stringToSign})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Signature, nil
}

// Bucket is a bucket made on purpose: by dfs bucket create, or S3's
// CreateBucket.
type Bucket struct {
	Name    string    `json:"name"`
	Owner   string    `json:"owner,omitempty"` // the access key that made it
	Created time.Time `json:"created"`
}

func bucketFromAPI(b *api.Bucket) Bucket {
	return Bucket{Name: b.Name, Owner: b.Owner, Created: time.Unix(0, b.CreatedUnixNano)}
}

// CreateBucket makes a bucket, which the client's key then owns.
func (c *Client) CreateBucket(ctx context.Context, name string) (Bucket, error) {
	var resp *api.Bucket
	err := c.try(ctx, func(k int) (err error) {
		resp, err = c.access[k].CreateBucket(ctx, &api.CreateBucketRequest{Name: name})
		return err
	})
	if err != nil {
		return Bucket{}, err
	}
	return bucketFromAPI(resp), nil
}

// DeleteBucket deletes an empty bucket and every key's rights on it.
func (c *Client) DeleteBucket(ctx context.Context, name string) error {
	return c.try(ctx, func(k int) error {
		_, err := c.access[k].DeleteBucket(ctx, &api.DeleteBucketRequest{Name: name})
		return err
	})
}

// ListBuckets lists the buckets made on purpose that the client may read.
func (c *Client) ListBuckets(ctx context.Context) ([]Bucket, error) {
	var resp *api.ListBucketsResponse
	err := c.try(ctx, func(k int) (err error) {
		resp, err = c.access[k].ListBuckets(ctx, &api.ListBucketsRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Bucket, 0, len(resp.Buckets))
	for _, b := range resp.Buckets {
		out = append(out, bucketFromAPI(b))
	}
	return out, nil
}
