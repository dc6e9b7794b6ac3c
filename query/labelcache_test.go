package query

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLabelCacheServesOneVersion(t *testing.T) {
	var c labelCache
	_, ok := c.get("k", "e.1")
	require.False(t, ok, "empty cache")

	c.put("k", "e.1", []string{"a", "b"})
	got, ok := c.get("k", "e.1")
	require.True(t, ok)
	require.Equal(t, []string{"a", "b"}, got)
	_, ok = c.get("k", "")
	require.False(t, ok, "no current version (store silent or gone): nothing is served")
	_, ok = c.get("k", "e.2")
	require.False(t, ok, "the store moved on")
	_, ok = c.get("other", "e.1")
	require.False(t, ok)

	c.put("k", "e.1", []string{"a"})
	require.Equal(t, 1, c.values, "a replaced answer is counted once")

	c.put("k2", "e.2", []string{"c"})
	_, ok = c.get("k", "e.1")
	require.False(t, ok, "answers of the old version are dropped when a new one arrives")
	got, ok = c.get("k2", "e.2")
	require.True(t, ok)
	require.Equal(t, []string{"c"}, got)

	c.put("k3", "", []string{"d"})
	_, ok = c.get("k3", "")
	require.False(t, ok, "an answer without a version is not kept")
}

func TestLabelCacheIsBounded(t *testing.T) {
	var c labelCache
	for i := range maxLabelCacheEntries {
		c.put(fmt.Sprint(i), "e.1", []string{"v"})
	}
	require.Len(t, c.entries, maxLabelCacheEntries)
	c.put("one more", "e.1", []string{"v"})
	require.Len(t, c.entries, 1, "a full cache starts again")

	c.put("big", "e.1", make([]string, maxLabelCacheValues-1))
	c.put("more", "e.1", []string{"v", "w"})
	require.Len(t, c.entries, 1, "values beyond the bound start the cache again")
	require.Equal(t, 2, c.values)

	c.put("huge", "e.1", make([]string, maxLabelCacheValues+1))
	_, ok := c.get("huge", "e.1")
	require.False(t, ok, "an answer larger than the bound is not kept")
}
