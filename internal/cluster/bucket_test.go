package cluster_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/client"
)

// Buckets made on purpose: a key that makes one owns it and no other key
// sees it; a taken name, a name holding files, and a bad name are refused;
// only an empty bucket is deleted, and with it every key's rights, so the
// name made again starts with none.
func TestBuckets(t *testing.T) {
	cl, admin, _ := secureCluster(t, nil)
	ctx := context.Background()
	alice, _ := admin.CreateKey(ctx, "alice", false)
	bob, _ := admin.CreateKey(ctx, "bob", false)
	ac, bc := keyClient(t, cl, alice), keyClient(t, cl, bob)

	if _, err := ac.CreateBucket(ctx, "photos"); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Put(ctx, "photos/a.jpg", strings.NewReader("a"), client.PutOptions{}); err != nil {
		t.Fatalf("the owner writes in its bucket: %v", err)
	}
	bs, err := bc.ListBuckets(ctx)
	if err != nil || len(bs) != 0 {
		t.Fatalf("bob's buckets: %+v, %v; want none", bs, err)
	}
	_, err = bc.Stat(ctx, "photos/a.jpg")
	wantDenied(t, "bob reads alice's bucket", err)
	if _, err := bc.CreateBucket(ctx, "photos"); !errors.Is(err, dfs.ErrConflict) {
		t.Fatalf("bob makes alice's bucket again: %v", err)
	}
	if _, err := admin.Put(ctx, "media/x", strings.NewReader("x"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := bc.CreateBucket(ctx, "media"); !errors.Is(err, dfs.ErrConflict) {
		t.Fatalf("bob makes a bucket of files he may not touch: %v", err)
	}
	for _, bad := range []string{"ab", "Photos", "a..b", "-ab", "10.0.0.1", strings.Repeat("a", 64), "a/b"} {
		if _, err := ac.CreateBucket(ctx, bad); !errors.Is(err, dfs.ErrInvalid) {
			t.Errorf("bucket name %q: %v, want invalid", bad, err)
		}
	}
	bs, err = ac.ListBuckets(ctx)
	if err != nil || len(bs) != 1 || bs[0].Name != "photos" || bs[0].Owner != alice.ID {
		t.Fatalf("alice's buckets: %+v, %v", bs, err)
	}
	if _, err := ac.SetGrant(ctx, bob.ID, "photos", client.RightRead, 0); err != nil {
		t.Fatalf("the owner grants bob: %v", err)
	}

	// Only empty buckets go, and their rights with them.
	if err := ac.DeleteBucket(ctx, "photos"); !errors.Is(err, dfs.ErrConflict) {
		t.Fatalf("delete a bucket with files: %v", err)
	}
	wantDenied(t, "bob deletes alice's bucket", bc.DeleteBucket(ctx, "photos"))
	if err := ac.Delete(ctx, "photos/a.jpg"); err != nil {
		t.Fatal(err)
	}
	if err := ac.DeleteBucket(ctx, "photos"); err != nil {
		t.Fatalf("delete an empty bucket: %v", err)
	}
	for _, c := range []*client.Client{ac, bc} {
		k, err := c.WhoAmI(ctx)
		if err != nil || k.Rights("photos") != 0 {
			t.Fatalf("%s's rights on the deleted bucket: %v, %v", k.Name, k.Grants, err)
		}
	}
	// Made again by bob, it is bob's alone.
	if _, err := bc.CreateBucket(ctx, "photos"); err != nil {
		t.Fatal(err)
	}
	_, err = ac.List(ctx, client.ListOptions{Prefix: "photos/"})
	wantDenied(t, "alice lists bob's new bucket of her old name", err)
}
