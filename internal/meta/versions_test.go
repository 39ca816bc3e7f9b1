package meta_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

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

// checkVersions checks path's versions, newest first: each want is the
// name of a selfContent or "marker". Ids sort newest first, a page of one
// version at a time sees every one, and the newest is Latest exactly when
// it is what a read of the path gives (the current file) or says (a delete
// marker: not found).
func checkVersions(t *testing.T, s *meta.Store, path string, want ...string) []dfs.Version {
	t.Helper()
	ctx := context.Background()
	vs := versionsOf(t, s, path)
	var got []string
	for _, v := range vs {
		name := "marker"
		if !v.DeleteMarker {
			name = "?"
			for _, w := range want {
				if w != "marker" && selfContent(w).Hash == v.Content {
					name = w
				}
			}
		}
		got = append(got, name)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("versions of %s: %v, want %v", path, got, want)
	}
	for i := 1; i < len(vs); i++ {
		if vs[i-1].VersionID >= vs[i].VersionID {
			t.Fatalf("versions of %s: id %s listed before %s: want the newest to sort first", path, vs[i-1].VersionID, vs[i].VersionID)
		}
	}
	var paged []string
	key, ver := "", ""
	for {
		l, err := s.ListVersions(ctx, path, true, key, ver, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range l.Versions {
			paged = append(paged, v.VersionID)
		}
		if !l.Truncated {
			break
		}
		key, ver = l.NextKey, l.NextVersion
	}
	var all []string
	for _, v := range vs {
		all = append(all, v.VersionID)
	}
	if fmt.Sprint(paged) != fmt.Sprint(all) {
		t.Fatalf("versions of %s by pages of one: %v, want %v", path, paged, all)
	}
	f, err := s.GetFile(ctx, path)
	for i, v := range vs {
		wantLatest := i == 0 && (v.DeleteMarker || err == nil && f.VersionID == v.VersionID)
		if v.Latest != wantLatest {
			t.Fatalf("versions of %s: version %d (%s) latest %v, want %v (the path reads %+v, %v)", path, i, got[i], v.Latest, wantLatest, f, err)
		}
	}
	if len(want) > 0 && want[0] == "marker" && !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("%s, deleted last, reads %+v, %v", path, f, err)
	}
	return vs
}

// racing returns a copy of s whose first write that checks what it read
// runs write just before it is sent: write lands first, and the racing
// one finds the path changed and tries again.
func racing(s *meta.Store, write func()) *meta.Store {
	var once sync.Once
	return s.Through(&meta.BeforeWrite{KV: s.KV(), Hook: func() { once.Do(write) }})
}

// A write that began before another on the same path but lands after it
// (its first attempt met the other's write) is the newest version: ids
// sort newest first whoever began first, so that pages go on after the
// right version and a delete's marker hides the file it deleted.
func TestRacingWritesKeepVersionsInOrder(t *testing.T) {
	s := newStore(t)
	s.SetDefaultRetention(time.Hour)
	ctx := context.Background()

	t.Run("commit", func(t *testing.T) {
		commit(t, s, "b/c", selfContent("c0"))
		_, _, err := racing(s, func() { commit(t, s, "b/c", selfContent("c2")) }).
			CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: "b/c"}, Content: selfContent("c1")})
		if err != nil {
			t.Fatal(err)
		}
		checkVersions(t, s, "b/c", "c1", "c2", "c0")
	})
	t.Run("delete", func(t *testing.T) {
		commit(t, s, "b/d", selfContent("d0"))
		marker, err := racing(s, func() { commit(t, s, "b/d", selfContent("d1")) }).Delete(ctx, "b/d", meta.DeleteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if vs := checkVersions(t, s, "b/d", "marker", "d1", "d0"); vs[0].VersionID != marker {
			t.Fatalf("delete returned marker %s, the newest version is %s", marker, vs[0].VersionID)
		}
	})
	t.Run("rename", func(t *testing.T) {
		commit(t, s, "b/src", selfContent("r0"))
		commit(t, s, "b/dst", selfContent("r1"))
		f, err := racing(s, func() { commit(t, s, "b/dst", selfContent("r2")) }).Rename(ctx, "b/src", "b/dst", false)
		if err != nil {
			t.Fatal(err)
		}
		if vs := checkVersions(t, s, "b/dst", "r0", "r2", "r1"); vs[0].VersionID != f.VersionID {
			t.Fatalf("rename returned version %s, the current one is %s", f.VersionID, vs[0].VersionID)
		}
		checkVersions(t, s, "b/src", "marker", "r0")
	})
	recount(t, s)
}

// A delete that marks an absent path (S3's DeleteObject in an enabled
// bucket) and meets a commit of the path deletes the committed file, and
// returns the id of a marker that exists.
func TestDeleteMarkAbsentMeetsCommit(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.SetVersioning(ctx, "b", meta.Versioning{Mode: api.Versioning_VERSIONING_ENABLED}); err != nil {
		t.Fatal(err)
	}
	marker, err := racing(s, func() { commit(t, s, "b/m", selfContent("m1")) }).Delete(ctx, "b/m", meta.DeleteOptions{MarkAbsent: true})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetVersion(ctx, "b/m", marker); err != nil || !v.DeleteMarker {
		t.Fatalf("the marker the delete returned: %+v, %v", v, err)
	}
	checkVersions(t, s, "b/m", "marker", "m1")
	recount(t, s)
}

// putMarkers writes delete markers of path with the given ids, as deletes
// would have left them (kept until purged).
func putMarkers(t *testing.T, s *meta.Store, path string, ids ...string) {
	t.Helper()
	for i := 0; i < len(ids); i += 128 {
		var ops []clientv3.Op
		for _, id := range ids[i:min(i+128, len(ids))] {
			val, err := proto.Marshal(&api.FileRecord{VersionId: id, DeleteMarker: true, ModifiedUnixNano: time.Now().UnixNano()})
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, clientv3.OpPut(s.Schema().Version(path, id), string(val)))
		}
		if _, err := etcd.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// A bucket with no record (one made by writing into it) cannot be
// deleted, and keeps its versions.
func TestDeleteBucketWithoutRecordKeepsVersions(t *testing.T) {
	s := newStore(t)
	s.SetDefaultRetention(time.Hour)
	ctx := context.Background()
	commit(t, s, "nb/f", selfContent("f1"))
	if err := s.DeleteFile(ctx, "nb/f"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBucket(ctx, "nb"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("delete of a bucket without a record: %v, want not found", err)
	}
	checkVersions(t, s, "nb/f", "marker", "f1")
}

// Deleting a bucket drops its versions without making any of them current
// again: a deleted file stays deleted, wherever the pages of the purge
// fall, and the counts agree.
func TestDeleteBucketPurgesWithoutRestoring(t *testing.T) {
	s := newStore(t)
	s.SetDefaultRetention(time.Hour)
	ctx := context.Background()
	if _, err := s.CreateBucket(ctx, "b", ""); err != nil {
		t.Fatal(err)
	}
	// 255 markers of paths before b/z: a page of 256 ends at b/z's
	// marker, with the version under it on the next page.
	for i := range 255 {
		putMarkers(t, s, fmt.Sprintf("b/a%03d", i), meta.VersionID(time.Now()))
	}
	c := content(chunks(2, 100, 301), "z1")
	commit(t, s, "b/z", c)
	if err := s.DeleteFile(ctx, "b/z"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBucket(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if f, err := s.GetFile(ctx, "b/z"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("a deleted file of a deleted bucket reads %+v, %v", f, err)
	}
	for _, p := range []string{s.Schema().VersionsPrefix(), s.Schema().ExpiryPrefix(), s.Schema().FilesPrefix()} {
		if n := keyCount(t, p); n != 0 {
			t.Fatalf("%d keys left under %s", n, p)
		}
	}
	if _, err := s.GetBucket(ctx, "b"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("the deleted bucket: %v", err)
	}
	recount(t, s)
	if st, err := s.CollectContents(ctx, meta.Fence{}, 0); err != nil || st.Deleted != 1 {
		t.Fatalf("collection after the purge: %+v, %v; want the file's content deleted", st, err)
	}
}

// A retention too long to express as an expiry time is refused, and one
// that a bucket record or the default asks for anyway keeps versions until
// purged instead of dropping them at once.
func TestLongRetentionKeepsVersions(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	const year = 365 * 24 * time.Hour
	for _, d := range []time.Duration{101 * year, 290 * year, -time.Second} {
		err := s.SetVersioning(ctx, "b", meta.Versioning{Mode: api.Versioning_VERSIONING_ENABLED, Retention: d})
		if !errors.Is(err, dfs.ErrInvalid) {
			t.Fatalf("versioning with a retention of %v: %v, want invalid", d, err)
		}
	}
	if err := s.SetVersioning(ctx, "b", meta.Versioning{Mode: api.Versioning_VERSIONING_ENABLED, Retention: 100 * year}); err != nil {
		t.Fatal(err)
	}
	// A record written without the check.
	val, err := proto.Marshal(&api.BucketRecord{Versioning: api.Versioning_VERSIONING_ENABLED, VersionRetentionSeconds: 300 * int64(year/time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.Put(ctx, s.Schema().Bucket("old"), string(val)); err != nil {
		t.Fatal(err)
	}
	s.SetDefaultRetention(250 * year)
	for _, b := range []string{"old", "dflt"} {
		commit(t, s, b+"/f", selfContent(b+"1"))
		commit(t, s, b+"/f", selfContent(b+"2"))
		if vs := checkVersions(t, s, b+"/f", b+"2", b+"1"); !vs[1].Expires.IsZero() {
			t.Fatalf("%s: the earlier version expires %v, want kept until purged", b, vs[1].Expires)
		}
	}
	if n, err := s.ExpireVersions(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("expiry: %d dropped, %v; want none", n, err)
	}
	if n := keyCount(t, s.Schema().ExpiryPrefix()); n != 0 {
		t.Fatalf("%d expiry keys", n)
	}
	checkVersions(t, s, "old/f", "old2", "old1")
}

// When the delete marker that is a path's newest version expires, the
// path stays deleted (nothing is made current again), and no version is
// listed as latest: the path reads as not found, as before.
func TestExpiredMarkerLeavesPathDeleted(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.SetVersioning(ctx, "b", meta.Versioning{Mode: api.Versioning_VERSIONING_ENABLED}); err != nil {
		t.Fatal(err)
	}
	commit(t, s, "b/f", selfContent("f0"))
	commit(t, s, "b/f", selfContent("f1"))
	commit(t, s, "b/f", selfContent("f2"))
	if err := s.SetVersioning(ctx, "b", meta.Versioning{Mode: api.Versioning_VERSIONING_ENABLED, Retention: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFile(ctx, "b/f"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ExpireVersions(ctx, time.Now().Add(2*time.Minute)); err != nil || n != 2 {
		t.Fatalf("expiry: %d, %v; want 2 (the marker and f2)", n, err)
	}
	vs := checkVersions(t, s, "b/f", "f1", "f0")
	l, err := s.ListVersions(ctx, "b/", false, "", "", 0)
	if err != nil || len(l.Versions) != 2 || l.Versions[0].Latest || l.Versions[1].Latest {
		t.Fatalf("listing of the bucket: %+v, %v; want f1 and f0, neither latest", l.Versions, err)
	}
	// Dropping the newest version of the deleted path leaves it deleted.
	if _, err := s.DeleteVersion(ctx, "b/f", vs[0].VersionID); err != nil {
		t.Fatal(err)
	}
	checkVersions(t, s, "b/f", "f0")
	recount(t, s)
}

// Reading versions makes etcd count about the keys of each page, not every
// version left after it: pages of one path's versions, pages across paths,
// deleting the current version of a path with many, a bucket's purge.
func TestVersionReadsAreBounded(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	const n, paths = 2000, 500
	ids := make([]string, n)
	for i := range ids {
		ids[i] = meta.VersionID(time.Now().Add(-time.Duration(i+1) * time.Minute))
	}
	putMarkers(t, s, "b/many", ids...)
	cur, _ := commit(t, s, "b/many", selfContent("cur"))
	for i := range paths {
		p := fmt.Sprintf("b/p%03d", i)
		putMarkers(t, s, p, meta.VersionID(time.Now()), meta.VersionID(time.Now().Add(-time.Hour)), meta.VersionID(time.Now().Add(-48*time.Hour)))
	}
	var c meta.ReadCounter
	cs := s.Counting(&c)
	walk := func(prefix string, exact bool, size int) int {
		t.Helper()
		seen, key, ver := 0, "", ""
		for {
			l, err := cs.ListVersions(ctx, prefix, exact, key, ver, size)
			if err != nil {
				t.Fatal(err)
			}
			seen += len(l.Versions)
			if !l.Truncated {
				return seen
			}
			key, ver = l.NextKey, l.NextVersion
		}
	}
	if got := walk("b/many", true, 100); got != n+1 {
		t.Fatalf("pages of b/many's versions saw %d, want %d", got, n+1)
	}
	t.Logf("one path: %d versions, %d ranges, %d keys counted", n+1, c.Ranges.Load(), c.Counted.Load())
	if got := c.Counted.Load(); got > 4*(n+1) {
		t.Fatalf("listing %d versions of one path by pages of 100 counted %d keys", n+1, got)
	}
	c.Counted.Store(0)
	c.Ranges.Store(0)
	total := n + 1 + 3*paths
	if got := walk("b/", false, 100); got != total {
		t.Fatalf("pages of b/'s versions saw %d, want %d", got, total)
	}
	t.Logf("bucket: %d versions, %d ranges, %d keys counted", total, c.Ranges.Load(), c.Counted.Load())
	if got := c.Counted.Load(); got > int64(4*total) {
		t.Fatalf("listing %d versions by pages of 100 counted %d keys", total, got)
	}
	c.Counted.Store(0)
	if _, err := cs.DeleteVersion(ctx, "b/many", cur.VersionID); err != nil {
		t.Fatal(err)
	}
	if got := c.Counted.Load(); got > 100 {
		t.Fatalf("deleting the current version of a path with %d versions counted %d keys", n, got)
	}
	if _, err := s.GetFile(ctx, "b/many"); !errors.Is(err, dfs.ErrNotFound) {
		t.Fatalf("b/many after its current version went: %v", err)
	}
	if _, err := s.CreateBucket(ctx, "b", ""); err != nil {
		t.Fatal(err)
	}
	c.Counted.Store(0)
	if err := cs.DeleteBucket(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got := c.Counted.Load(); got > int64(4*total) {
		t.Fatalf("purging %d versions counted %d keys", total, got)
	}
	if k := keyCount(t, s.Schema().VersionsPrefix()); k != 0 {
		t.Fatalf("%d versions left after the bucket went", k)
	}
}

// setVersion rewrites version id of path's record through change.
func setVersion(t *testing.T, s *meta.Store, path, id string, change func(val []byte) []byte) {
	t.Helper()
	key := s.Schema().Version(path, id)
	resp, err := etcd.Get(context.Background(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("version %s of %s: %v, %v", id, path, resp, err)
	}
	if _, err := etcd.Put(context.Background(), key, string(change(resp.Kvs[0].Value))); err != nil {
		t.Fatal(err)
	}
}

// A version whose record does not decode still expires when due, and its
// content loses the reference it held.
func TestUndecodableVersionExpires(t *testing.T) {
	s := newStore(t)
	s.SetDefaultRetention(time.Minute)
	ctx := context.Background()
	c := content(chunks(2, 100, 302), "u1")
	f1, _ := commit(t, s, "b/u", c)
	commit(t, s, "b/u", selfContent("u2"))
	setVersion(t, s, "b/u", f1.VersionID, func(val []byte) []byte { return append(val, 0xff) })
	if n, err := s.ExpireVersions(ctx, time.Now().Add(2*time.Minute)); err != nil || n != 1 {
		t.Fatalf("expiry: %d, %v; want 1", n, err)
	}
	if k := keyCount(t, s.Schema().VersionsPrefix()); k != 0 {
		t.Fatalf("%d versions left", k)
	}
	recount(t, s)
	if st, err := s.CollectContents(ctx, meta.Fence{}, 0); err != nil || st.Deleted != 1 {
		t.Fatalf("collection: %+v, %v; want the expired version's content deleted", st, err)
	}
}

// A bucket record that does not decode fails the writes that depend on
// it, rather than passing for the default.
func TestUndecodableBucketRecord(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	commit(t, s, "b/f", selfContent("f1"))
	if _, err := etcd.Put(ctx, s.Schema().Bucket("b"), "\xff"); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.CommitFile(ctx, meta.Commit{File: dfs.FileInfo{Path: "b/f"}, Content: selfContent("f2")})
	if err == nil || !strings.Contains(err.Error(), "bucket record b") {
		t.Fatalf("commit into a bucket whose record does not decode: %v", err)
	}
	if err := s.DeleteFile(ctx, "b/f"); err == nil || !strings.Contains(err.Error(), "bucket record b") {
		t.Fatalf("delete in a bucket whose record does not decode: %v", err)
	}
	if _, err := s.Rename(ctx, "b/f", "b/g", false); err == nil || !strings.Contains(err.Error(), "bucket record b") {
		t.Fatalf("rename in a bucket whose record does not decode: %v", err)
	}
	checkVersions(t, s, "b/f", "f1")
}

// Deleting the current version brings back the one before under its own
// id, even from a record that does not carry it.
func TestDeleteVersionRestoresUnderItsID(t *testing.T) {
	s := newStore(t)
	s.SetDefaultRetention(time.Hour)
	ctx := context.Background()
	f1, _ := commit(t, s, "b/r", selfContent("r1"))
	f2, _ := commit(t, s, "b/r", selfContent("r2"))
	setVersion(t, s, "b/r", f1.VersionID, func(val []byte) []byte {
		var rec api.FileRecord
		if err := proto.Unmarshal(val, &rec); err != nil {
			t.Fatal(err)
		}
		rec.VersionId = ""
		b, err := proto.Marshal(&rec)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
	if _, err := s.DeleteVersion(ctx, "b/r", f2.VersionID); err != nil {
		t.Fatal(err)
	}
	if vs := checkVersions(t, s, "b/r", "r1"); vs[0].VersionID != f1.VersionID {
		t.Fatalf("restored as version %s, want %s", vs[0].VersionID, f1.VersionID)
	}
	if k := keyCount(t, s.Schema().VersionsPrefix()); k != 0 {
		t.Fatalf("%d versions left besides the restored file", k)
	}
	recount(t, s)
}
