package meta

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/dfs-store/dfs"
	"github.com/dfs-store/dfs/api"
)

// What garbage collection reads and deletes. The order matters: contents
// (with the revisions of their reference marks) are read before files, so
// a commit that points a path at a content after the contents were read
// changes the mark and makes the content's deletion fail, and a commit
// before is among the files read.

// ContentEntry is a content record as garbage collection sees it.
type ContentEntry struct {
	Content dfs.Content // Hash, Size, Created, Chunks
	ModRev  int64       // of the content record
	RefRev  int64       // of its reference mark; 0 if none
}

const scanPage = 1000

// scan reads every key under prefix at one revision, a page at a time.
func (s *Store) scan(ctx context.Context, prefix string, fn func(kv *keyValue) error) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	start := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(scanPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.kv.Get(ctx, start, opts...)
		if err != nil {
			return rev, fmt.Errorf("scan %s: %w", prefix, etcdErr(err))
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if err := fn(&keyValue{key: string(kv.Key), value: kv.Value, modRev: kv.ModRevision}); err != nil {
				return rev, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

type keyValue struct {
	key    string
	value  []byte
	modRev int64
}

// Contents returns every content record with its chunk list and the
// revision of its reference mark, and the key prefixes
// (…/contents/<sha256>/<layout>/) of chunk pages no content record names:
// pages a commit wrote before a transaction it never finished, or lost to a
// commit of another chunking of the same content.
func (s *Store) Contents(ctx context.Context) ([]ContentEntry, []string, error) {
	return s.contents(ctx)
}

// DeletePages deletes the pages under an orphan prefix, unless a content
// record naming them exists by now.
func (s *Store) DeletePages(ctx context.Context, f Fence, prefix string) (bool, error) {
	rest := strings.TrimPrefix(prefix, s.schema.ContentsPrefix())
	name, layout, ok := strings.Cut(strings.TrimSuffix(rest, "/"), "/")
	h, err := dfs.ParseHash(name)
	if !ok || err != nil || layout == "" {
		return false, fmt.Errorf("delete pages: bad prefix %q", prefix)
	}
	key := s.schema.Content(h)
	resp, err := s.kv.Get(ctx, key)
	if err != nil {
		return false, fmt.Errorf("delete pages of %s: %w", h.Short(), etcdErr(err))
	}
	if len(resp.Kvs) == 1 {
		var rec api.ContentRecord
		if proto.Unmarshal(resp.Kvs[0].Value, &rec) == nil && rec.Layout == layout {
			return false, nil // adopted meanwhile
		}
	}
	rev := int64(0)
	if len(resp.Kvs) == 1 {
		rev = resp.Kvs[0].ModRevision
	}
	txn, err := s.kv.Txn(ctx).
		If(append(f.cmps(), clientv3.Compare(clientv3.ModRevision(key), "=", rev))...).
		Then(clientv3.OpDelete(prefix, clientv3.WithPrefix())).Commit()
	if err != nil {
		return false, fmt.Errorf("delete pages of %s: %w", h.Short(), etcdErr(err))
	}
	if !txn.Succeeded {
		return false, s.fenced(ctx, f, "delete pages of "+h.Short())
	}
	return true, nil
}

func (s *Store) contents(ctx context.Context) ([]ContentEntry, []string, error) {
	refs := map[string]int64{}
	if _, err := s.scan(ctx, s.schema.RefsPrefix(), func(kv *keyValue) error {
		refs[strings.TrimPrefix(kv.key, s.schema.RefsPrefix())] = kv.modRev
		return nil
	}); err != nil {
		return nil, nil, err
	}
	var out []ContentEntry
	var paged []int
	layouts := map[string]string{} // content name -> its record's layout
	pageSets := map[string]bool{}  // "<name>/<layout>/" of every page
	_, err := s.scan(ctx, s.schema.ContentsPrefix(), func(kv *keyValue) error {
		name := strings.TrimPrefix(kv.key, s.schema.ContentsPrefix())
		if i := strings.Index(name, "/"); i >= 0 {
			if j := strings.Index(name[i+1:], "/"); j >= 0 {
				pageSets[name[:i+1+j+1]] = true
			}
			return nil // a chunk page
		}
		h, err := dfs.ParseHash(name)
		if err != nil {
			return nil
		}
		var rec api.ContentRecord
		if err := proto.Unmarshal(kv.value, &rec); err != nil {
			return fmt.Errorf("content %s: decode: %w", h.Short(), err)
		}
		layouts[name] = rec.Layout
		e := ContentEntry{Content: dfs.Content{Hash: h, Size: rec.Size, Created: time.Unix(0, rec.CreatedUnixNano)},
			ModRev: kv.modRev, RefRev: refs[name]}
		if rec.PageCount > 0 {
			paged = append(paged, len(out))
		} else if rec.Inline != nil {
			for i, b := range rec.Inline.Hashes {
				ch, err := dfs.HashFromBytes(b)
				if err != nil {
					return fmt.Errorf("content %s: %w", h.Short(), err)
				}
				e.Content.Chunks = append(e.Content.Chunks, dfs.ChunkRef{Hash: ch, Size: rec.Inline.Sizes[i]})
			}
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var orphans []string
	for set := range pageSets {
		name, layout, _ := strings.Cut(strings.TrimSuffix(set, "/"), "/")
		if l, ok := layouts[name]; !ok || l != layout {
			orphans = append(orphans, s.schema.ContentsPrefix()+set)
		}
	}
	for _, i := range paged {
		c, err := s.GetContent(ctx, out[i].Content.Hash)
		if err != nil {
			return nil, nil, err
		}
		out[i].Content.Chunks = c.Chunks
	}
	return out, orphans, nil
}

// ReferencedContents returns the content of every file.
func (s *Store) ReferencedContents(ctx context.Context) (map[dfs.Hash]int, error) {
	out := map[dfs.Hash]int{}
	_, err := s.scan(ctx, s.schema.FilesPrefix(), func(kv *keyValue) error {
		var rec api.FileRecord
		if err := proto.Unmarshal(kv.value, &rec); err != nil {
			return fmt.Errorf("file %q: decode: %w", s.schema.PathOf(kv.key), err)
		}
		h, err := dfs.HashFromBytes(rec.ContentHash)
		if err != nil {
			return fmt.Errorf("file %q: %w", rec.Path, err)
		}
		out[h]++
		return nil
	})
	return out, err
}

// DeleteContent deletes a content record, its pages, its job and its
// reference mark, unless the record or the mark changed since e was read.
// It reports whether it deleted.
func (s *Store) DeleteContent(ctx context.Context, f Fence, e ContentEntry) (bool, error) {
	h := e.Content.Hash
	key, ref := s.schema.Content(h), s.schema.Ref(h)
	cmps := append(f.cmps(), clientv3.Compare(clientv3.ModRevision(key), "=", e.ModRev))
	if e.RefRev == 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(ref), "=", 0))
	} else {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(ref), "=", e.RefRev))
	}
	resp, err := s.kv.Txn(ctx).If(cmps...).Then(
		clientv3.OpDelete(key),
		clientv3.OpDelete(key+"/", clientv3.WithPrefix()),
		clientv3.OpDelete(s.schema.Job(h)),
		clientv3.OpDelete(ref),
	).Commit()
	if err != nil {
		return false, fmt.Errorf("delete content %s: %w", h.Short(), etcdErr(err))
	}
	if !resp.Succeeded {
		return false, s.fenced(ctx, f, "delete content "+h.Short())
	}
	return true, nil
}
