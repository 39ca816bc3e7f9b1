package meta_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
	"github.com/dfs-store/dfs/internal/meta"
)

func versionsOf(t *testing.T, s *meta.Store, path string) []dfs.Version {
	t.Helper()
	l, err := s.ListVersions(context.Background(), path, true, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return l.Versions
}

// An overwrite and a delete keep the file they replace as an earlier
// version (the content keeps its count, so collection keeps it), listed
// newest first with a delete marker; deleting a version drops its
// reference; the current one's id brings back the one before.
func TestVersionsKeptOnOverwriteAndDelete(t *testing.T) {
	s := newStore(t)
	s.SetDefaultRetention(time.Hour)
	ctx := context.Background()
	c1, c2 := content(chunks(2, 100, 70), "v1"), selfContent("v2")
	f1, _ := commit(t, s, "b/x", c1)
	f2, _ := commit(t, s, "b/x", c2)
	if f1.VersionID == "" || f1.VersionID <= f2.VersionID {
		t.Fatalf("version ids %q then %q: want the newer to sort first", f1.VersionID, f2.VersionID)
	}
	if err := s.DeleteFile(ctx, "b/x"); err != nil {
		t.Fatal(err)
	}
	vs := versionsOf(t, s, "b/x")
	if len(vs) != 3 || !vs[0].DeleteMarker || !vs[0].Latest || vs[1].Content != c2.Hash || vs[2].Content != c1.Hash || vs[1].Latest || vs[2].Latest {
		t.Fatalf("versions %+v: want a delete marker, then v2, then v1", vs)
	}
	if vs[1].VersionID != f2.VersionID || vs[2].VersionID != f1.VersionID || vs[1].Expires.IsZero() {
		t.Fatalf("versions %+v: want the ids the commits returned, with an expiry", vs)
	}
	if _, err := s.GetFile(ctx, "b/x"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("the deleted path reads %v", err)
	}
	recount(t, s)
	if st, err := s.CollectContents(ctx, meta.Fence{}, 0); err != nil || st.Deleted != 0 {
		t.Fatalf("collection with both contents held by versions: %+v, %v", st, err)
	}
	v, err := s.GetVersion(ctx, "b/x", f1.VersionID)
	if err != nil || v.Content != c1.Hash || v.Size != c1.Size {
		t.Fatalf("version 1: %+v, %v", v, err)
	}
	if _, err := s.GetVersion(ctx, "b/x", "00000000000000000000"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("a version that is not there: %v", err)
	}
	if _, err := s.GetVersion(ctx, "b/x", "../etc"); !errors.Is(err, dfs.ErrInvalid) {
		t.Fatalf("a malformed version id: %v", err)
	}

	// Restore v1 (a commit of its content), then delete the restored
	// current version by id: v1's content stays as the earlier version,
	// and the newest earlier one is the delete marker, so the path stays
	// deleted.
	r, _, err := s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: "b/x"}, Content: dfs.Content{Hash: c1.Hash, Size: c1.Size}, DedupAny: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetFile(ctx, "b/x"); err != nil || got.Content != c1.Hash || got.VersionID != r.VersionID {
		t.Fatalf("restored: %+v, %v", got, err)
	}
	recount(t, s)
	// Dropping the delete marker by id, then the current one: v2 comes back.
	if _, err := s.DeleteVersion(ctx, "b/x", vs[0].VersionID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteVersion(ctx, "b/x", r.VersionID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetFile(ctx, "b/x"); err != nil || got.Content != c2.Hash || got.VersionID != f2.VersionID {
		t.Fatalf("after deleting the current version: %+v, %v; want v2 back", got, err)
	}
	vs = versionsOf(t, s, "b/x")
	if len(vs) != 2 || !vs[0].Latest || vs[0].Content != c2.Hash || vs[1].Content != c1.Hash {
		t.Fatalf("versions %+v: want v2 (current), v1", vs)
	}
	recount(t, s)
	if _, err := s.DeleteVersion(ctx, "b/x", f1.VersionID); err != nil {
		t.Fatal(err)
	}
	recount(t, s)
	if st, err := s.CollectContents(ctx, meta.Fence{}, 0); err != nil || st.Deleted != 1 {
		t.Fatalf("collection after v1's last version went: %+v, %v; want 1 content deleted", st, err)
	}
	if _, err := s.DeleteVersion(ctx, "b/x", f1.VersionID); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("deleting a version twice: %v", err)
	}
}

// A suspended bucket keeps nothing; an enabled one keeps versions until
// purged (no expiry key); the default follows the store's retention.
func TestVersioningPerBucket(t *testing.T) {
	s := newStore(t)
	s.SetDefaultRetention(time.Hour)
	ctx := context.Background()
	if err := s.SetVersioning(ctx, "off", meta.Versioning{Mode: api.Versioning_VERSIONING_SUSPENDED}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVersioning(ctx, "keep", meta.Versioning{Mode: api.Versioning_VERSIONING_ENABLED}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"off", "keep", "dflt"} {
		commit(t, s, b+"/f", selfContent(b+"1"))
		commit(t, s, b+"/f", selfContent(b+"2"))
	}
	if n := len(versionsOf(t, s, "off/f")); n != 1 {
		t.Fatalf("suspended bucket: %d versions, want 1 (the current)", n)
	}
	if vs := versionsOf(t, s, "keep/f"); len(vs) != 2 || !vs[1].Expires.IsZero() {
		t.Fatalf("enabled bucket: %+v, want 2 versions, the earlier one without expiry", vs)
	}
	if vs := versionsOf(t, s, "dflt/f"); len(vs) != 2 || vs[1].Expires.IsZero() {
		t.Fatalf("default bucket: %+v, want 2 versions, the earlier one expiring", vs)
	}
	if n := keyCount(t, s.Schema().ExpiryPrefix()); n != 1 {
		t.Fatalf("%d expiry keys, want 1 (the default bucket's version)", n)
	}
	v, keep, d, err := s.GetVersioning(ctx, "keep")
	if err != nil || v.Mode != api.Versioning_VERSIONING_ENABLED || !keep || d != 0 {
		t.Fatalf("versioning of keep: %+v %v %v %v", v, keep, d, err)
	}
	recount(t, s)
}

// Expiry drops only versions that are due, reading only due keys, and
// their contents become candidates.
func TestVersionsExpire(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	s.SetDefaultRetention(time.Minute)
	c1 := content(chunks(2, 100, 71), "e1")
	commit(t, s, "b/e", c1)
	commit(t, s, "b/e", selfContent("e2"))
	if err := s.DeleteFile(ctx, "b/e"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ExpireVersions(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("expiry before anything is due: %d, %v", n, err)
	}
	n, err := s.ExpireVersions(ctx, time.Now().Add(2*time.Minute))
	if err != nil || n != 3 {
		t.Fatalf("expiry when all are due: %d, %v; want 3 (two files, one marker)", n, err)
	}
	if vs := versionsOf(t, s, "b/e"); len(vs) != 0 {
		t.Fatalf("versions left: %+v", vs)
	}
	if k := keyCount(t, s.Schema().ExpiryPrefix()); k != 0 {
		t.Fatalf("%d expiry keys left", k)
	}
	recount(t, s)
	if st, err := s.CollectContents(ctx, meta.Fence{}, 0); err != nil || st.Deleted != 2 {
		t.Fatalf("collection after expiry: %+v, %v; want both contents deleted", st, err)
	}
}

// A rename moves the file in one transaction: the source is gone (kept as
// a version where its bucket keeps them), the destination holds the
// content, and counts agree; if_absent refuses an occupied destination.
func TestRename(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c := content(chunks(3, 100, 72), "mv")
	commit(t, s, "b/src", c)
	commit(t, s, "b/taken", selfContent("other"))
	if _, err := s.Rename(ctx, "b/src", "b/taken", true); !errors.Is(err, dfs.ErrPrecondition) {
		t.Fatalf("rename onto a file with if_absent: %v", err)
	}
	f, err := s.Rename(ctx, "b/src", "b/dst", false)
	if err != nil || f.Content != c.Hash || f.Path != "b/dst" {
		t.Fatalf("rename: %+v, %v", f, err)
	}
	if _, err := s.GetFile(ctx, "b/src"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("source after rename: %v", err)
	}
	if _, err := s.Rename(ctx, "b/src", "b/x", false); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("rename of a missing file: %v", err)
	}
	recount(t, s)
	s.SetDefaultRetention(time.Hour)
	if _, err := s.Rename(ctx, "b/dst", "b/taken", false); err != nil {
		t.Fatal(err)
	}
	if vs := versionsOf(t, s, "b/dst"); len(vs) != 2 || !vs[0].DeleteMarker || vs[1].Content != c.Hash {
		t.Fatalf("source's versions: %+v; want a marker and the file", vs)
	}
	if vs := versionsOf(t, s, "b/taken"); len(vs) != 2 || vs[0].Content != c.Hash {
		t.Fatalf("destination's versions: %+v; want the moved file, then the replaced one", vs)
	}
	recount(t, s)
}

// Counts agree with a recount after commits, overwrites, deletes, renames,
// version deletes and expiry from several writers at once.
func TestVersionCountsAgreeWithRecount(t *testing.T) {
	s := newStore(t)
	s.SetDefaultRetention(time.Hour)
	ctx := context.Background()
	var contents []dfs.Content
	for i := range 4 {
		contents = append(contents, content(chunks(2, 100, uint64(200+i%2)), fmt.Sprint("vm", i)), selfContent(fmt.Sprint("vs", i)))
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 11))
			for range 40 {
				path := fmt.Sprint("b/p", r.IntN(6))
				var err error
				switch r.IntN(5) {
				case 0:
					err = s.DeleteFile(ctx, path)
				case 1:
					_, err = s.Rename(ctx, path, fmt.Sprint("b/p", r.IntN(6)), false)
				case 2:
					var l meta.VersionListing
					if l, err = s.ListVersions(ctx, path, true, "", "", 0); err == nil && len(l.Versions) > 0 {
						_, err = s.DeleteVersion(ctx, path, l.Versions[r.IntN(len(l.Versions))].VersionID)
					}
				default:
					_, _, err = s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: path}, Content: contents[r.IntN(len(contents))], QueueJob: true})
				}
				if err != nil && !errors.Is(err, dfs.ErrNotFound) && !errors.Is(err, dfs.ErrInvalid) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	recount(t, s)
	if _, err := s.ExpireVersions(ctx, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	recount(t, s)
	if k := keyCount(t, s.Schema().VersionsPrefix()); k != 0 {
		t.Fatalf("%d versions left after all expired", k)
	}
}

// Listing pages through the versions of many paths in order, each path's
// newest first and marked latest once, whatever the page size.
func TestListVersionsPages(t *testing.T) {
	s := newStore(t)
	s.SetDefaultRetention(time.Hour)
	ctx := context.Background()
	var want []string
	for i := range 7 {
		p := fmt.Sprintf("b/k%d", i)
		for j := range i % 3 {
			commit(t, s, p, selfContent(fmt.Sprint(p, j)))
		}
		f, _ := commit(t, s, p, selfContent(fmt.Sprint(p, "last")))
		if i == 3 {
			if err := s.DeleteFile(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		_ = f
	}
	all, err := s.ListVersions(ctx, "b/", false, "", "", 1000)
	if err != nil || all.Truncated {
		t.Fatal(err, all.Truncated)
	}
	for _, v := range all.Versions {
		want = append(want, v.Path+"/"+v.VersionID+fmt.Sprint(v.Latest))
	}
	for _, size := range []int{1, 2, 3, 5} {
		var got []string
		key, ver := "", ""
		for {
			l, err := s.ListVersions(ctx, "b/", false, key, ver, size)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range l.Versions {
				got = append(got, v.Path+"/"+v.VersionID+fmt.Sprint(v.Latest))
			}
			if !l.Truncated {
				break
			}
			key, ver = l.NextKey, l.NextVersion
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("pages of %d:\n%v\nwant\n%v", size, got, want)
		}
	}
	latest := 0
	for _, v := range all.Versions {
		if v.Latest {
			latest++
		}
	}
	if latest != 7 || len(all.Versions) != 7+6+1 {
		t.Fatalf("%d versions, %d latest: %+v", len(all.Versions), latest, all.Versions)
	}
}

// A fresh cluster's first collection builds the counts (its layout
// version is not written yet): earlier versions must count as the paths
// do, or a content held only by versions would be collected, and one held
// by a path and versions lose a reference to each purge.
func TestMigrateCountsVersions(t *testing.T) {
	s := newStore(t)
	s.SetDefaultRetention(time.Hour)
	ctx := context.Background()
	c1, c2 := content(chunks(2, 100, 95), "mv1"), content(chunks(2, 100, 96), "mv2")
	commit(t, s, "b/f", c1)
	commit(t, s, "b/f", c2)
	commit(t, s, "b/g", c1)
	if err := s.DeleteFile(ctx, "b/f"); err != nil {
		t.Fatal(err)
	}
	if f, err := s.Format(ctx); err != nil || f != "" {
		t.Fatalf("a fresh store's layout version %q, %v", f, err)
	}
	if _, err := s.Migrate(ctx, meta.Fence{}); err != nil {
		t.Fatal(err)
	}
	recount(t, s)
	if st, err := s.CollectContents(ctx, meta.Fence{}, 0); err != nil || st.Deleted != 0 {
		t.Fatalf("collection after the counts were built: %+v, %v; want nothing deleted (versions hold both contents)", st, err)
	}
}
