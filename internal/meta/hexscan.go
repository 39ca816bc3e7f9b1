package meta

import (
	"context"
	"fmt"
	"math/bits"
	"strconv"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ScanHex reads the keys under prefix whose names (what follows the
// prefix) are lowercase hex, such as content hashes, in key order after
// the name startAfter ("" for the first), and calls fn with each until fn
// says stop or returns an error. It returns the revision of its first
// read.
//
// etcd counts every key from a range's start to its end on each call, even
// with a limit, so reading a long prefix a page at a time over the whole
// remaining range costs the square of its length. ScanHex bounds each
// call's range instead: hex names spread evenly over their key space, so a
// window of that space holds a predictable number of keys, and each call
// asks for a window sized from the last call's count to hold about one
// page. Every call then counts O(page) keys whatever the prefix holds, an
// empty prefix costs a handful of calls, and nothing is pinned to one
// revision (a long scan outlives compaction; each page is current when it
// is read, so a key written during the scan may or may not be seen).
//
// Names that are not hex are still returned in order, but a window that
// starts at one spans the rest of the prefix.
func ScanHex(ctx context.Context, kv clientv3.KV, prefix, startAfter string, page int, fn func(*mvccpb.KeyValue) (more bool, err error)) (int64, error) {
	if page <= 0 {
		page = 1000
	}
	start := prefix
	if startAfter != "" {
		start = prefix + startAfter + "\x00"
	}
	// 1/4096 of the space; grows fast when sparse.
	h := newHexScan(prefix, start, 0, 1<<52, 16, page, func(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
		return kv.Get(ctx, key, opts...)
	})
	for {
		kvs, err := h.next(ctx, 0)
		if err != nil {
			return h.rev, fmt.Errorf("scan %s: %w", prefix, etcdErr(err))
		}
		if len(kvs) == 0 {
			return h.rev, nil
		}
		for _, item := range kvs {
			more, err := fn(item)
			if err != nil || !more {
				return h.rev, err
			}
		}
	}
}

// hexScan walks the keys under prefix from start in windows of the hex
// key space, each sized from the last one's count to hold about a page
// (see ScanHex).
type hexScan struct {
	prefix, start, end string
	// floor: the first window reaches at least to floor+width, wherever
	// it starts; keys before floor are expected to be few. grow: how
	// many times wider the window after an empty one is.
	floor, width, grow uint64
	page               int64
	get                func(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
	rev                int64 // of the first read
}

func newHexScan(prefix, start string, floor, width, grow uint64, page int, get func(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)) *hexScan {
	if start < prefix {
		start = prefix
	}
	return &hexScan{prefix: prefix, start: start, end: clientv3.GetPrefixRangeEnd(prefix),
		floor: floor, width: max(1, width), grow: grow, page: int64(page), get: get}
}

// next returns the next keys in order: at most a page of them, or limit
// if that is less and above 0; none once the scan is over.
func (h *hexScan) next(ctx context.Context, limit int64) ([]*mvccpb.KeyValue, error) {
	for h.start < h.end {
		page := h.page
		if limit > 0 && limit < page {
			page = limit
		}
		wEnd := h.end
		if lo, ok := hexPos(h.start[len(h.prefix):]); ok {
			if lo < h.floor {
				lo = h.floor
			}
			if hi, carry := bits.Add64(lo, h.width, 0); carry == 0 {
				wEnd = h.prefix + fmt.Sprintf("%016x", hi)
			}
		}
		h.floor = 0
		resp, err := h.get(ctx, h.start, clientv3.WithRange(wEnd), clientv3.WithLimit(page))
		if err != nil {
			return nil, err
		}
		if h.rev == 0 {
			h.rev = resp.Header.Revision
		}
		count := uint64(max(resp.Count, 1))
		if resp.More && len(resp.Kvs) > 0 {
			// The window held more than a page: go on after the last key
			// read, in a window as much smaller as it was too full.
			h.start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
			h.width = max(1, scale(h.width, uint64(page), count))
			return resp.Kvs, nil
		}
		h.start = wEnd
		if resp.Count == 0 {
			h.width = scale(h.width, h.grow, 1)
		} else {
			h.width = scale(h.width, min(uint64(page), 16*count), count)
		}
		if len(resp.Kvs) > 0 {
			return resp.Kvs, nil
		}
	}
	return nil, nil
}

// nextBefore is next, reading nothing if start is at or after until ("":
// no bound); a window may still run past until.
func (h *hexScan) nextBefore(ctx context.Context, limit int64, until string) ([]*mvccpb.KeyValue, error) {
	if until != "" && h.start >= until {
		return nil, nil
	}
	return h.next(ctx, limit)
}

// over reports whether the scan is over.
func (h *hexScan) over() bool { return h.start >= h.end }

// scale returns w*num/den, saturating at the largest width.
func scale(w, num, den uint64) uint64 {
	hi, lo := bits.Mul64(w, num)
	if hi >= den {
		return ^uint64(0)
	}
	q, _ := bits.Div64(hi, lo, den)
	return q
}

// hexPos returns the position in the hex key space at or before name:
// its first 16 hex digits (padded with zeros), or false if one of them is
// not a lowercase hex digit.
func hexPos(name string) (uint64, bool) {
	var digits [16]byte
	for i := range digits {
		digits[i] = '0'
		if i < len(name) {
			c := name[i]
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return 0, false
			}
			digits[i] = c
		}
	}
	p, err := strconv.ParseUint(string(digits[:]), 16, 64)
	return p, err == nil
}
