package query

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/store/storepb"
)

func TestLabelKeyScopesToOneMetric(t *testing.T) {
	req := &storepb.LabelValuesRequest{Label: "handler"}
	eq := labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "http_requests_total")
	re := labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, "http_.*")
	code := labels.MustNewMatcher(labels.MatchEqual, "code", "500")

	k := newLabelKey('v', req, []*labels.Matcher{code, eq})
	require.True(t, k.scoped)
	require.Equal(t, "http_requests_total", k.metric)
	require.NotEmpty(t, k.request)
	for _, ms := range [][]*labels.Matcher{nil, {code}, {re}, {labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "")}} {
		require.False(t, newLabelKey('v', req, ms).scoped, "%v", ms)
	}
	require.NotEqual(t, newLabelKey('v', req, nil).request, newLabelKey('n', req, nil).request, "label names and values never share a key")
}

func TestLabelCacheKeepsWhatStillHolds(t *testing.T) {
	var c labelCache
	holds := map[string]bool{}
	valid := func(token, _ string, _ bool) bool { return holds[token] }
	k1 := labelKey{request: "k1"}
	k2 := labelKey{request: "k2", metric: "up", scoped: true}

	_, ok := c.get(k1, valid)
	require.False(t, ok, "empty cache")

	c.put(labelEntry{token: "e.1", key: k1, values: []string{"a", "b"}})
	c.put(labelEntry{token: "e.1", key: k2, values: []string{"c"}})
	holds["e.1"] = true
	got, ok := c.get(k1, valid)
	require.True(t, ok)
	require.Equal(t, []string{"a", "b"}, got)

	var asked []string
	_, ok = c.get(k2, func(token, metric string, scoped bool) bool {
		asked = append(asked, fmt.Sprint(token, metric, scoped))
		return true
	})
	require.True(t, ok)
	require.Equal(t, []string{"e.1uptrue"}, asked, "validity is asked with the entry's token and scope")

	holds["e.1"] = false
	_, ok = c.get(k1, valid)
	require.False(t, ok, "an answer that no longer holds is not served")
	require.Len(t, c.entries, 1, "and is dropped")
	require.Equal(t, 1, c.values)

	c.put(labelEntry{token: "e.2", key: k2, values: []string{"c", "d"}})
	require.Equal(t, 2, c.values, "a replaced answer is counted once")
}

func TestLabelCacheIsBounded(t *testing.T) {
	var c labelCache
	for i := range maxLabelCacheEntries {
		c.put(labelEntry{token: "e.1", key: labelKey{request: fmt.Sprint(i)}, values: []string{"v"}})
	}
	require.Len(t, c.entries, maxLabelCacheEntries)
	c.put(labelEntry{token: "e.1", key: labelKey{request: "one more"}, values: []string{"v"}})
	require.Len(t, c.entries, 1, "a full cache starts again")

	c.put(labelEntry{token: "e.1", key: labelKey{request: "big"}, values: make([]string, maxLabelCacheValues-1)})
	c.put(labelEntry{token: "e.1", key: labelKey{request: "more"}, values: []string{"v", "w"}})
	require.Len(t, c.entries, 1, "values beyond the bound start the cache again")
	require.Equal(t, 2, c.values)

	c.put(labelEntry{token: "e.1", key: labelKey{request: "huge"}, values: make([]string, maxLabelCacheValues+1)})
	_, ok := c.get(labelKey{request: "huge"}, func(string, string, bool) bool { return true })
	require.False(t, ok, "an answer larger than the bound is not kept")
}
