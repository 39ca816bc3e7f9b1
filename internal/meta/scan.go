package meta

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Paged reads that cost O(page).
//
// etcd answers every range request with the number of keys in the whole
// range, and counts them to do so, whatever the limit: a scan that asks for
// [start, end of prefix) with a limit of 1000 counts every key left in the
// prefix on every page, so a full scan is quadratic. A pager bounds each
// request's range to a window [start, start+size), reading keys as
// big-endian fractions below the scanned prefix, and adapts the size from
// the count etcd reports and the keys it returns: a window that held many
// pages shrinks to the span of the page it gave, one that held few grows
// (at most fourfold, twofold when empty), and none crosses the end of its
// start's parent prefix by growing. The window needs nothing of the keys'
// alphabet: it serves hex names and arbitrary paths alike.
//
// Each request counts about a page of keys, except where keys cluster
// after empty key space: the request whose window grew across the gap
// counts the keys of the cluster it reached. Uniform names (hashes) have no
// such gaps; decimal names have one at every digit rollover, where a page
// may count up to about twice a unit of the next digit (measured: 11,000
// keys for a page of 1,000 among 50,000 sequential names; the first page of
// a prefix that starts with one long run of keys counts the run). Over a
// whole scan the keys counted stay a small multiple of the keys read,
// where an unbounded range counts N²/2 per page size.
//
// A listing of paths does better: a sample of the paths (one in
// SkipEvery, see Schema.Skip) is kept beside them, and a guided pager ends
// each window at a sample key, so that a window holds about as many keys
// as the marks it spans stand for, wherever the keys cluster; finding the
// marks counts the sample keys left in the scan, once per 16 marks. With
// no mark left, the adaptive window takes over for the few keys after the
// last one. The sample is a hint: a stale or missing mark changes what a
// window costs, never what the scan returns.
//
// Pages are not pinned to one revision: a scan sees each key as it was
// when its page was read, so a long scan never fails on compaction, and a
// key written or deleted during the scan may or may not be seen. No key is
// seen twice, and none that exists for the whole scan is missed.

// pager walks the keys in [start, end) a page at a time.
type pager struct {
	start string // next key to read
	end   string // end of the whole scan (exclusive); "\x00": no end
	floor int    // length of the scanned prefix: keys differ after it
	// The window's size is k units of 256^-depth (1 <= k < 256).
	depth int
	k     float64
	limit int64
	opts  []clientv3.OpOption
	get   func(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
	done  bool
	// counted is every key etcd counted, over every request.
	counted int64

	// guide, if set, returns up to n marks after key, in order: keys of
	// a sample of the scanned keys (see Schema.Skip), or nothing past the
	// scan's end. A window that ends at a mark holds about as many keys
	// as the sample skips, wherever the keys cluster.
	// It also returns how many keys etcd counted to find them.
	guide  func(ctx context.Context, after string, n int) ([]string, int64, error)
	every  int      // how many keys a mark stands for, on average
	marks  []string // marks after start, as the guide gave them
	noMore bool     // the guide has no marks after the last of marks
}

func newPager(kv clientv3.KV, prefix, start string, limit int, opts ...clientv3.OpOption) *pager {
	if limit <= 0 {
		limit = scanPage
	}
	if start < prefix {
		start = prefix
	}
	// The first window is small (the rest of start's last byte): it grows
	// over empty space, and a page that starts in the middle of a dense
	// range does not count the rest of it.
	p := &pager{start: start, end: clientv3.GetPrefixRangeEnd(prefix), floor: len(prefix),
		depth: max(len(start)-1, len(prefix)+1), k: 1, limit: int64(limit), opts: opts}
	p.get = func(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
		return kv.Get(ctx, key, opts...)
	}
	p.seek(start)
	return p
}

// window returns the end of the current window: start+size, cut to depth
// bytes, or the scan's end if that comes first; clamped if it stops short
// of that at the end of start's parent prefix.
func (p *pager) window() (end string, clamped bool) {
	if p.depth <= p.floor {
		return p.end, false
	}
	b := make([]byte, p.depth)
	copy(b, p.start) // zero-padded if start is shorter
	v := int(b[p.depth-1]) + int(p.k)
	var w string
	if v < 256 {
		b[p.depth-1] = byte(v)
		w = string(b)
	} else {
		// The window would cross into the next parent prefix: stop at
		// the parent's end. Keys are dense in some byte values and absent
		// from others (digits, letters), so the next parent may hold far
		// more keys than the stretch of this one the window has crossed.
		if p.depth-1 <= p.floor {
			return p.end, false
		}
		w = clientv3.GetPrefixRangeEnd(string(b[:p.depth-1]))
		if w == "\x00" {
			return p.end, false
		}
		clamped = true
	}
	if p.end != "\x00" && w > p.end {
		return p.end, false
	}
	return w, clamped
}

// resize multiplies the window's size by f.
func (p *pager) resize(f float64) {
	p.k *= f
	for p.k >= 256 && p.depth > p.floor {
		p.k /= 256
		p.depth--
	}
	for p.k < 1 {
		p.k *= 256
		p.depth++
	}
}

// span sets the window's size to the distance from first to last, to the
// byte where they differ.
func (p *pager) span(first, last string) {
	d := commonPrefix(first, last)
	if d < p.floor {
		return
	}
	var a, b byte
	if d < len(first) {
		a = first[d]
	}
	if d < len(last) {
		b = last[d]
	}
	p.depth, p.k = d+1, float64(max(1, int(b)-int(a)))
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// seek moves the scan to key, if that is ahead of where it is.
func (p *pager) seek(key string) {
	if key > p.start {
		p.start = key
	}
	if p.end != "\x00" && p.start >= p.end {
		p.done = true
	}
}

// resume goes on from key, which may be behind the keys last returned
// (the caller used only some of them).
func (p *pager) resume(key string) {
	if key < p.start {
		p.marks, p.noMore = nil, false
	}
	p.start = key
	p.done = p.end != "\x00" && (key >= p.end || key == "\x00")
}

// guided returns the mark that ends a window of about limit keys from
// start, if the guide knows one before end.
func (p *pager) guided(ctx context.Context, limit int64) (string, error) {
	j := int(limit-1)/p.every + 1 // marks spanned by a window of about limit keys
	i := 0
	for i < len(p.marks) && p.marks[i] <= p.start {
		i++
	}
	p.marks = p.marks[i:]
	if len(p.marks) < j && !p.noMore {
		after := p.start
		if len(p.marks) > 0 {
			after = p.marks[len(p.marks)-1]
		}
		n := max(16, j)
		more, counted, err := p.guide(ctx, after, n)
		if err != nil {
			return "", err
		}
		p.counted += counted
		for _, m := range more {
			if m > p.start {
				p.marks = append(p.marks, m)
			}
		}
		p.noMore = len(more) < n
	}
	if len(p.marks) == 0 {
		return "", nil
	}
	// Fewer marks than j left: the window ends at the last, and the
	// adaptive window finds the few keys after it.
	m := p.marks[min(j, len(p.marks))-1]
	if p.end != "\x00" && m >= p.end {
		return "", nil
	}
	return m, nil
}

// next returns the next keys in order: at most limit of them, or of max if
// that is less and above 0; none once the scan is over.
func (p *pager) next(ctx context.Context, max int64) ([]*mvccpb.KeyValue, error) {
	for !p.done {
		limit := p.limit
		if max > 0 && max < limit {
			limit = max
		}
		wend, clamped := p.window()
		guided := false
		if p.guide != nil {
			m, err := p.guided(ctx, limit)
			if err != nil {
				return nil, err
			}
			if m != "" {
				wend, clamped, guided = m, false, true
			}
		}
		resp, err := p.get(ctx, p.start, append([]clientv3.OpOption{clientv3.WithRange(wend), clientv3.WithLimit(limit)}, p.opts...)...)
		if err != nil {
			return nil, err
		}
		p.counted += resp.Count
		if resp.More && len(resp.Kvs) > 0 {
			first, last := string(resp.Kvs[0].Key), string(resp.Kvs[len(resp.Kvs)-1].Key)
			p.start = last + "\x00"
			if resp.Count > 2*limit {
				// The window held many pages: shrink it to what this
				// page spanned. Keys cluster, so the span says more than
				// the ratio of the counts.
				p.span(first, last)
			}
			return resp.Kvs, nil
		}
		// The window is exhausted.
		if wend == p.end {
			p.done = true
		} else {
			p.start = wend
			switch {
			case guided:
				// The mark, not the size, bounded the window.
			case resp.Count == 0 && clamped:
				// Only the end of the parent was left: the size says
				// nothing of the next parent's keys.
			case resp.Count == 0:
				p.resize(2)
			case resp.Count < limit/2:
				p.resize(min(4, float64(limit)/float64(resp.Count)))
			}
		}
		if len(resp.Kvs) > 0 {
			return resp.Kvs, nil
		}
	}
	return nil, nil
}

// nextBefore is next, reading no key at or after until ("": no bound).
// It returns none, with the scan not over, when no key lies before until.
func (p *pager) nextBefore(ctx context.Context, max int64, until string) ([]*mvccpb.KeyValue, error) {
	if until == "" || p.end != "\x00" && until >= p.end {
		return p.next(ctx, max)
	}
	if p.done || p.start >= until {
		return nil, nil
	}
	if p.guide != nil {
		// With no mark before until, the sample says few keys lie
		// before it: read them in one window.
		limit := p.limit
		if max > 0 && max < limit {
			limit = max
		}
		m, err := p.guided(ctx, limit)
		if err != nil {
			return nil, err
		}
		if m == "" || m >= until {
			resp, err := p.get(ctx, p.start, append([]clientv3.OpOption{clientv3.WithRange(until), clientv3.WithLimit(limit)}, p.opts...)...)
			if err != nil {
				return nil, err
			}
			p.counted += resp.Count
			if resp.More && len(resp.Kvs) > 0 {
				p.start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
			} else {
				p.seek(until)
			}
			return resp.Kvs, nil
		}
	}
	end := p.end
	p.end = until
	kvs, err := p.next(ctx, max)
	p.end = end
	if p.done && err == nil {
		// Every key before until is read: go on from there.
		p.done = false
		p.seek(until)
	}
	return kvs, err
}

// over reports whether the scan is over.
func (p *pager) over() bool { return p.done }

// ScanPrefix calls fn for every key under prefix after startAfter ("" for
// the first), in key order, reading at most limit keys per request (1000
// if limit <= 0). Each request's range is bounded so that etcd counts about
// one page of keys, not every key left under the prefix (see pager); pages
// are read at the latest revision, each on its own, so a scan of any length
// never fails on compaction. fn returning an error stops the scan with it.
//
// opts are added to each request: clientv3.WithSerializable,
// clientv3.WithKeysOnly, or clientv3.WithRev to read every page at one
// revision (the scan then fails once etcd compacts it); not WithRange or
// WithLimit.
func ScanPrefix(ctx context.Context, kv clientv3.KV, prefix, startAfter string, limit int, fn func(kv *mvccpb.KeyValue) error, opts ...clientv3.OpOption) error {
	start := prefix
	if startAfter != "" {
		start = startAfter + "\x00"
	}
	p := newPager(kv, prefix, start, limit, opts...)
	for {
		kvs, err := p.next(ctx, 0)
		if err != nil {
			return fmt.Errorf("scan %s: %w", prefix, etcdErr(err))
		}
		if len(kvs) == 0 {
			return nil
		}
		for _, kv := range kvs {
			if err := fn(kv); err != nil {
				return err
			}
		}
	}
}
