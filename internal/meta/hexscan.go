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
	end := clientv3.GetPrefixRangeEnd(prefix)
	start := prefix
	if startAfter != "" {
		start = prefix + startAfter + "\x00"
	}
	width := uint64(1) << 52 // 1/4096 of the space; grows fast when sparse
	var rev int64
	for start < end {
		wEnd := end
		if lo, ok := hexPos(start[len(prefix):]); ok {
			if hi, carry := bits.Add64(lo, width, 0); carry == 0 {
				wEnd = prefix + fmt.Sprintf("%016x", hi)
			}
		}
		resp, err := kv.Get(ctx, start, clientv3.WithRange(wEnd), clientv3.WithLimit(int64(page)))
		if err != nil {
			return rev, fmt.Errorf("scan %s: %w", prefix, etcdErr(err))
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, item := range resp.Kvs {
			more, err := fn(item)
			if err != nil || !more {
				return rev, err
			}
		}
		count := uint64(max(resp.Count, 1))
		if resp.More && len(resp.Kvs) > 0 {
			// The window held more than a page: go on after the last key
			// read, in a window as much smaller as it was too full.
			start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
			width = max(1, scale(width, uint64(page), count))
			continue
		}
		start = wEnd
		if resp.Count == 0 {
			width = scale(width, 16, 1)
		} else {
			width = scale(width, min(uint64(page), 16*count), count)
		}
	}
	return rev, nil
}

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
