package query

import (
	"context"
	"sync"

	"google.golang.org/grpc/metadata"

	"github.com/meridian-obs/meridian/internal/labelindex"
)

// Bounds of one store's label cache. It holds the answers of one label index version only, so
// these bound the variety of label calls, not the store's history.
const (
	maxLabelCacheEntries = 4096
	maxLabelCacheValues  = 1 << 20
)

// labelCache keeps a store's label answers (names or values of one request) with the label index
// version the store read them at. An answer is used again only while the store's watcher reports
// that version as current; see package labelindex.
type labelCache struct {
	mu      sync.Mutex
	version string
	entries map[string][]string
	values  int
}

// startWatch follows the store's label index version until ctx is done or the store is removed.
// The caller holds StoreSet.mu.
func (r *storeRef) startWatch(ctx context.Context) {
	if r.watcher == nil || r.cancelWatch != nil {
		return
	}
	ctx, r.cancelWatch = context.WithCancel(ctx)
	go r.watcher.Run(ctx)
}

func (r *storeRef) stopWatch() {
	if r.cancelWatch != nil {
		r.cancelWatch()
	}
}

// cachedLabels returns the answer kept for key if it was read at the store's current version.
// The slice is shared: callers must not modify it.
func (r *storeRef) cachedLabels(key string) ([]string, bool) {
	if r.watcher == nil || key == "" {
		return nil, false
	}
	return r.labels.get(key, r.watcher.Current())
}

// keepLabels keeps an answer the store sent with its label index version (in header).
func (r *storeRef) keepLabels(key string, header metadata.MD, values []string) {
	if r.watcher == nil || key == "" {
		return
	}
	if v := header.Get(labelindex.HeaderKey); len(v) == 1 {
		r.labels.put(key, v[0], values)
	}
}

// get returns the answer kept for key if it was read at version current.
func (c *labelCache) get(key, current string) ([]string, bool) {
	if current == "" {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != current {
		return nil, false
	}
	values, ok := c.entries[key]
	return values, ok
}

// put keeps the answer to key read at version. Answers of another version are dropped,
// whichever is newer: the cache serves one version, and a dropped answer is only asked again.
func (c *labelCache) put(key, version string, values []string) {
	if version == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[key]; ok && c.version == version {
		delete(c.entries, key)
		c.values -= len(old)
	}
	if c.version != version || len(c.entries) >= maxLabelCacheEntries || c.values+len(values) > maxLabelCacheValues {
		c.version, c.entries, c.values = version, map[string][]string{}, 0
	}
	if len(values) > maxLabelCacheValues {
		return
	}
	c.entries[key] = values
	c.values += len(values)
}
