package ingest

import (
	"context"
	"math"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/query"
)

// counterValue sums the counters called name in reg whose labels include want.
func counterValue(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			n := 0
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
					n++
				}
			}
			if n == len(want) {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// storeCalls is how many calls of a StoreAPI method the node served.
func storeCalls(t *testing.T, reg prometheus.Gatherer, method string) float64 {
	return counterValue(t, reg, "meridian_storeapi_requests_total", map[string]string{"method": method})
}

// standingVersion waits until the node's label index version stays the same for two of its
// checks in a row, and returns it.
func standingVersion(t *testing.T, n *Node) string {
	t.Helper()
	last := n.labels.Check()
	require.Eventually(t, func() bool {
		time.Sleep(2 * labelCheckInterval)
		now := n.labels.Check()
		stood := now == last
		last = now
		return stood
	}, 10*time.Second, time.Millisecond, "the label index version of %s kept moving", n.GRPCAddr())
	return last
}

// TestQuerierLabelCacheOverIngestNodes runs a querier's fan-out with its label cache over two
// real ingest nodes on loopback: answers are reused while a node's label index is unchanged, a
// write that creates a series is seen by the next call after the node's change reached the
// querier, answers for one metric outlive new series of others, and a node that stops is
// reported missing, not answered for from the cache.
func TestQuerierLabelCacheOverIngestNodes(t *testing.T) {
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	a, _ := runNode(t, testConfig(t), regA)
	cfgB := testConfig(t)
	cfgB.ExternalLabels = labels.FromStrings("region", "us-east-1")
	b, stopB := runNode(t, cfgB, regB)

	now := time.Now().UnixMilli()
	write := func(n *Node, handler string, ts int64) {
		t.Helper()
		code, msg := post(t, n.Handler(), rw1ContentType, rw1(t, series{
			labels:  lbls("__name__", "http_requests_total", "handler", handler),
			samples: samplesAt(ts, 1, 1),
		}))
		require.Equal(t, http.StatusNoContent, code, msg)
	}
	write(a, "/a", now)
	write(b, "/b", now)
	// The first samples set the heads' time ranges, a structural change that the nodes record
	// once more shortly after (labelindex's settle delay): wait until their versions stand.
	standingVersion(t, a)
	standingVersion(t, b)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set, err := query.NewStoreSet(nil, nil, query.StoreSetOptions{
		Endpoints:     []string{a.GRPCAddr(), b.GRPCAddr()},
		ProbeInterval: 50 * time.Millisecond,
		LabelCache:    true,
	})
	require.NoError(t, err)
	runDone := make(chan error, 1)
	go func() { runDone <- set.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-runDone)
	}()
	reg := prometheus.NewRegistry()
	f := query.NewFanout(nil, reg, set, query.FanoutOptions{PartialResponse: true, StoreResponseTimeout: 5 * time.Second})
	hits := func() float64 {
		return counterValue(t, reg, "meridian_query_label_cache_requests_total", map[string]string{"method": "label_values", "result": "hit"})
	}
	values := func(name string, ms ...*labels.Matcher) ([]string, annotations.Annotations) {
		t.Helper()
		q, err := f.Querier(math.MinInt64, math.MaxInt64)
		require.NoError(t, err)
		defer q.Close()
		vs, ws, err := q.LabelValues(ctx, name, nil, ms...)
		require.NoError(t, err)
		return vs, ws
	}
	handlers := func() []string {
		t.Helper()
		vs, ws := values("handler")
		require.Empty(t, ws)
		return vs
	}

	// Once the watchers follow both nodes, a repeated call is answered without calling them.
	require.Eventually(t, func() bool {
		before := hits()
		require.Equal(t, []string{"/a", "/b"}, handlers())
		return hits()-before == 2
	}, 10*time.Second, 10*time.Millisecond, "label values never answered from the cache")
	callsA, callsB := storeCalls(t, regA, "LabelValues"), storeCalls(t, regB, "LabelValues")
	for range 3 {
		require.Equal(t, []string{"/a", "/b"}, handlers())
	}
	require.Equal(t, callsA, storeCalls(t, regA, "LabelValues"), "node a called although its index did not change")
	require.Equal(t, callsB, storeCalls(t, regB, "LabelValues"), "node b called although its index did not change")

	// A new series on node a: its version moves before the write is acknowledged and is pushed
	// at once, reaching the querier within the loopback latency. Node b's answer stays cached.
	write(a, "/a2", now+1000)
	require.Eventually(t, func() bool {
		return slices.Equal(handlers(), []string{"/a", "/a2", "/b"})
	}, time.Second, time.Millisecond, "the new series never appeared")
	require.Equal(t, callsB, storeCalls(t, regB, "LabelValues"), "node b called although its index did not change")

	// A sample of an existing series leaves the version, and the cached answer, alone.
	handlers()
	callsA = storeCalls(t, regA, "LabelValues")
	write(a, "/a", now+2000)
	require.Equal(t, []string{"/a", "/a2", "/b"}, handlers())
	require.Equal(t, callsA, storeCalls(t, regA, "LabelValues"), "node a called after a sample of an existing series")

	// Values for one metric (what Grafana's label_values(metric, label) asks) hold while other
	// metrics gain series; values for any series do not.
	requests := labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "http_requests_total")
	for range 2 {
		vs, ws := values("handler", requests)
		require.Empty(t, ws)
		require.Equal(t, []string{"/a", "/a2", "/b"}, vs)
	}
	callsA = storeCalls(t, regA, "LabelValues")
	code, msg := post(t, a.Handler(), rw1ContentType, rw1(t, series{labels: lbls("__name__", "kube_pod_info", "pod", "p1"), samples: samplesAt(now, 1, 1)}))
	require.Equal(t, http.StatusNoContent, code, msg)
	vs, _ := values("handler", requests)
	require.Equal(t, []string{"/a", "/a2", "/b"}, vs)
	require.Equal(t, callsA, storeCalls(t, regA, "LabelValues"), "node a called for a metric that gained no series")
	require.Eventually(t, func() bool {
		require.Equal(t, []string{"/a", "/a2", "/b"}, handlers())
		return storeCalls(t, regA, "LabelValues") > callsA
	}, time.Second, time.Millisecond, "values for any series were answered from the cache after a new series")

	// Whether a node has a value of an external label depends on its samples in the range,
	// which the version does not follow: those calls always go to the nodes.
	callsA = storeCalls(t, regA, "LabelValues")
	for range 2 {
		regions, ws := values("region")
		require.Empty(t, ws)
		require.Equal(t, []string{"eu-west-1", "us-east-1"}, regions)
	}
	require.Equal(t, callsA+2, storeCalls(t, regA, "LabelValues"))

	// A node that stops is missing from the next answers, with its warning.
	stopB()
	require.Eventually(t, func() bool {
		vs, ws := values("handler")
		return slices.Equal(vs, []string{"/a", "/a2"}) && len(ws) == 1
	}, 2*time.Second, time.Millisecond, "the stopped node was still answered for")
	_, ws := values("handler")
	require.Len(t, ws, 1)
	for _, w := range ws {
		require.ErrorContains(t, w, `region "us-east-1"`)
	}
}

// TestNodeVersionsNewSeriesOnly checks what moves a node's label index version, also after a
// restart, when every series the node holds comes back from its WAL: new series do, samples of
// series the node already holds do not.
func TestNodeVersionsNewSeriesOnly(t *testing.T) {
	cfg := testConfig(t)
	now := time.Now().UnixMilli()
	write := func(n *Node, name string, ts int64) {
		t.Helper()
		code, msg := post(t, n.Handler(), rw1ContentType, rw1(t, series{labels: lbls("__name__", name, "job", "a"), samples: samplesAt(ts, 1, 1)}))
		require.Equal(t, http.StatusNoContent, code, msg)
	}
	first, stop := runNode(t, cfg, prometheus.NewRegistry())
	write(first, "kept", now)
	v := standingVersion(t, first)
	write(first, "kept", now+1000)
	require.Equal(t, v, first.labels.Check(), "a sample of a held series")
	write(first, "fresh", now+1000)
	require.NotEqual(t, v, first.labels.Check(), "a new series")
	stop()

	again, _ := runNode(t, cfg, prometheus.NewRegistry())
	v = standingVersion(t, again)
	write(again, "kept", now+2000)
	write(again, "fresh", now+2000)
	require.Equal(t, v, again.labels.Check(), "samples of series held before the restart")
	write(again, "newer", now+2000)
	require.NotEqual(t, v, again.labels.Check(), "a new series after the restart")
}
