package query

import (
	"context"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/grpc/metadata"

	"github.com/meridian-obs/meridian/internal/labelindex"
)

// Bounds of one store's label cache: past either, it starts again empty.
const (
	maxLabelCacheEntries = 4096
	maxLabelCacheValues  = 1 << 20
)

// labelKey identifies a label request in the stores' label caches: the request as sent, and the
// one metric it is restricted to, if any (an equality matcher on __name__), whose answers hold
// while other metrics gain series.
type labelKey struct {
	request string
	metric  string
	scoped  bool
}

// newLabelKey builds the key of a request; an empty request (it could not be marshalled) is not
// cached.
func newLabelKey(kind byte, req interface{ Marshal() ([]byte, error) }, ms []*labels.Matcher) labelKey {
	b, err := req.Marshal()
	if err != nil {
		return labelKey{}
	}
	k := labelKey{request: string(kind) + string(b)}
	for _, m := range ms {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual && m.Value != "" {
			k.metric, k.scoped = m.Value, true
		}
	}
	return k
}

// labelCache keeps a store's label answers with the label index version the store read them at.
// An answer is used again only while the store's watcher says it holds; see package labelindex.
type labelCache struct {
	mu      sync.Mutex
	entries map[string]labelEntry
	values  int
}

type labelEntry struct {
	token  string
	key    labelKey
	values []string
}

// startWatch follows the store's label index until ctx is done or the store is removed. The
// caller holds StoreSet.mu.
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

// cachedLabels returns the answer kept for key if it still holds. The slice is shared: callers
// must not modify it.
func (r *storeRef) cachedLabels(key labelKey) ([]string, bool) {
	if r.watcher == nil || key.request == "" {
		return nil, false
	}
	return r.labels.get(key, r.watcher.Valid)
}

// keepLabels keeps an answer the store sent with its label index version (in header).
func (r *storeRef) keepLabels(key labelKey, header metadata.MD, values []string) {
	if r.watcher == nil || key.request == "" {
		return
	}
	if v := header.Get(labelindex.HeaderKey); len(v) == 1 && v[0] != "" {
		r.labels.put(labelEntry{token: v[0], key: key, values: values})
	}
}

// get returns the answer kept for key if valid says it holds; one that no longer does is
// dropped.
func (c *labelCache) get(key labelKey, valid func(token, metric string, scoped bool) bool) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key.request]
	if !ok {
		return nil, false
	}
	if !valid(e.token, e.key.metric, e.key.scoped) {
		delete(c.entries, key.request)
		c.values -= len(e.values)
		return nil, false
	}
	return e.values, true
}

// put keeps an answer, in place of any earlier one to the same request.
func (c *labelCache) put(e labelEntry) {
	if len(e.values) > maxLabelCacheValues {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[e.key.request]; ok {
		delete(c.entries, e.key.request)
		c.values -= len(old.values)
	}
	if c.entries == nil || len(c.entries) >= maxLabelCacheEntries || c.values+len(e.values) > maxLabelCacheValues {
		c.entries, c.values = map[string]labelEntry{}, 0
	}
	c.entries[e.key.request] = e
	c.values += len(e.values)
}
