package coordinator

import (
	"sync"

	"github.com/dfs-store/dfs"
)

// selfCache remembers contents that are one chunk named by their own hash
// and have no parts: every file small enough for one chunk. Such a content
// record is never rewritten — its chunk is its content, checked against
// its name by every datanode that stored it, so it cannot be forged and
// replaced — so a lookup of a file whose content is here needs no read of
// the content record: the chunk list follows from the file record alone.
// A content deleted by garbage collection may linger here, harmlessly:
// only a file record that refers to it leads to it, and a content is
// collected only when none does.
//
// It holds at most 2×selfCacheMax hashes in two generations: lookups hit
// either, and when the newer fills it becomes the older, the older
// dropped, so what is looked up stays and what is not ages out, without a
// list to keep in order.
type selfCache struct {
	mu       sync.Mutex
	cur, old map[dfs.ContentHash]int64 // hash → size
}

const selfCacheMax = 1 << 16

// get returns the size of content h if it is a known one-chunk content.
func (c *selfCache) get(h dfs.ContentHash) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if size, ok := c.cur[h]; ok {
		return size, true
	}
	size, ok := c.old[h]
	if ok {
		c.addLocked(h, size)
	}
	return size, ok
}

// add notes that content h is a one-chunk content of size bytes.
func (c *selfCache) add(h dfs.ContentHash, size int64) {
	c.mu.Lock()
	c.addLocked(h, size)
	c.mu.Unlock()
}

func (c *selfCache) addLocked(h dfs.ContentHash, size int64) {
	if c.cur == nil || len(c.cur) >= selfCacheMax {
		c.old, c.cur = c.cur, make(map[dfs.ContentHash]int64, 1024)
	}
	c.cur[h] = size
}

// isSelf reports whether c is a content the cache may hold.
func isSelf(c dfs.Content) bool {
	return len(c.Chunks) == 1 && c.Chunks[0].Hash == c.Hash && c.Chunks[0].Size == c.Size && len(c.Parts) == 0
}
