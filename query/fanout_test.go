package query

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/store/labelpb"
	"github.com/thanos-io/thanos/pkg/store/storepb"

	"github.com/meridian-obs/meridian/internal/faultproxy"
	"github.com/meridian-obs/meridian/internal/storeapi"
)

var metricM = labels.MustNewMatcher(labels.MatchEqual, "__name__", "m")

// regionStore starts a store for region holding series m{i="0"}..m{i="<n-1>"} over [0, 10000].
func regionStore(t *testing.T, region string, n int) *testStore {
	t.Helper()
	st := startTestStore(t, labels.FromStrings("region", region), nil)
	var series []labels.Labels
	for i := range n {
		series = append(series, labels.FromStrings("__name__", "m", "i", string(rune('0'+i))))
	}
	appendFloats(t, st.db, 0, 10000, 1000, series...)
	return st
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

func TestFanoutPartialResponse(t *testing.T) {
	eu := regionStore(t, "eu-west-1", 2)
	us := regionStore(t, "us-east-1", 3)
	empty := startTestStore(t, labels.FromStrings("region", "ap-south-1"), nil)
	stopped := regionStore(t, "sa-east-1", 1)
	never := deadAddr(t)

	// The stopped store answered its first probe, so its region is known when it goes away.
	set := startStoreSet(t, StoreSetOptions{Endpoints: []string{eu.addr, us.addr, empty.addr, stopped.addr, never}})
	stopped.srv.Stop()

	for _, tc := range []struct {
		name       string
		endpoints  []string
		defPartial bool
		ctxPartial *bool
		wantSeries int
		wantWarns  []string // substrings, one per expected warning
		wantErr    []string // substrings of the error; empty: no error
	}{
		{
			name:       "store answering with no series is not missing",
			endpoints:  []string{eu.addr, empty.addr},
			defPartial: true,
			wantSeries: 2,
		},
		{
			name:       "down store with known region is a warning naming region and store",
			endpoints:  []string{eu.addr, us.addr, stopped.addr},
			defPartial: true,
			wantSeries: 5,
			wantWarns:  []string{`region "sa-east-1" (store ` + stopped.addr + `): unavailable: `},
		},
		{
			name:       "store never reached is a warning naming the store",
			endpoints:  []string{eu.addr, never},
			defPartial: true,
			wantSeries: 2,
			wantWarns:  []string{`store ` + never + `: unavailable: `},
		},
		{
			name:       "partial response off by request fails naming the store",
			endpoints:  []string{eu.addr, us.addr, stopped.addr},
			defPartial: true,
			ctxPartial: new(false),
			wantErr:    []string{"partial response disabled", `region "sa-east-1" (store ` + stopped.addr + `)`},
		},
		{
			name:       "partial response off by default fails naming the store",
			endpoints:  []string{eu.addr, never},
			defPartial: false,
			wantErr:    []string{"partial response disabled", "store " + never},
		},
		{
			name:       "partial response on by request overrides the default",
			endpoints:  []string{eu.addr, never},
			defPartial: false,
			ctxPartial: new(true),
			wantSeries: 2,
			wantWarns:  []string{"store " + never},
		},
		{
			name:       "every store down fails even with partial response",
			endpoints:  []string{stopped.addr, never},
			defPartial: true,
			wantErr:    []string{"no store answered (2 of 2 failed)", "sa-east-1", never},
		},
		{
			name:       "all stores answering gives no warning",
			endpoints:  []string{eu.addr, us.addr, empty.addr},
			defPartial: false,
			wantSeries: 5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := subset(t, set, tc.endpoints...)
			f := NewFanout(nil, prometheus.NewRegistry(), sub, FanoutOptions{PartialResponse: tc.defPartial, StoreResponseTimeout: 5 * time.Second})
			ctx := context.Background()
			if tc.ctxPartial != nil {
				ctx = WithPartialResponse(ctx, *tc.ctxPartial)
			}
			got, ws, err := selectAll(t, ctx, f, 0, 10000, metricM)
			if len(tc.wantErr) > 0 {
				require.Error(t, err)
				for _, s := range tc.wantErr {
					require.Contains(t, err.Error(), s)
				}
				return
			}
			require.NoError(t, err)
			require.Len(t, got, tc.wantSeries)
			for _, n := range got {
				require.Equal(t, 11, n, "samples per series")
			}
			require.Len(t, ws, len(tc.wantWarns), "warnings: %v", ws)
			for i, w := range tc.wantWarns {
				require.Contains(t, ws[i], w)
			}
		})
	}
}

// subset is a store set sharing the probed state of some of set's stores, so that table cases
// pick their stores without probing again.
func subset(t *testing.T, set *StoreSet, addrs ...string) *StoreSet {
	t.Helper()
	s, err := NewStoreSet(nil, nil, StoreSetOptions{})
	require.NoError(t, err)
	for _, a := range addrs {
		ref, ok := set.stores[a]
		require.True(t, ok, "store %s not in set", a)
		s.stores[a] = ref
	}
	return s
}

func TestFanoutSlowStoreAnswersWithinTimeout(t *testing.T) {
	eu := regionStore(t, "eu-west-1", 2)
	slow := regionStore(t, "us-east-1", 3)
	proxy, err := faultproxy.New("127.0.0.1:0", slow.addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })

	set := startStoreSet(t, StoreSetOptions{Endpoints: []string{eu.addr, proxy.Addr()}, ProbeInterval: time.Hour})
	proxy.SetDelay(5 * time.Second)

	const timeout = 2 * time.Second
	reg := prometheus.NewRegistry()
	f := NewFanout(nil, reg, set, FanoutOptions{PartialResponse: true, StoreResponseTimeout: timeout})

	// Two selectors in one query: both streams wait concurrently, so the answer is bounded by
	// one timeout, not one per selector.
	q, err := f.Querier(0, 10000)
	require.NoError(t, err)
	defer q.Close()
	start := time.Now()
	hints := &storage.SelectHints{Start: 0, End: 10000}
	a := q.Select(context.Background(), true, hints, metricM)
	b := q.Select(context.Background(), true, hints, metricM)
	for _, set := range []storage.SeriesSet{a, b} {
		n := 0
		for set.Next() {
			n++
		}
		require.NoError(t, set.Err())
		require.Equal(t, 2, n)
		ws := set.Warnings().AsErrors()
		require.Len(t, ws, 1)
		require.Equal(t, `region "us-east-1" (store `+proxy.Addr()+`): timed out after 2s`, ws[0].Error())
	}
	elapsed := time.Since(start)
	t.Logf("answer with one store delayed by 5s and a 2s store timeout: %s", elapsed)
	require.Less(t, elapsed, timeout+400*time.Millisecond, "answer must not wait for the slow store")
	require.Equal(t, 2.0, testutil.ToFloat64(f.metrics.failures.WithLabelValues(proxy.Addr(), "series", "timeout")))
}

func TestFanoutPrunesStoresByExternalLabelsAndTime(t *testing.T) {
	eu := regionStore(t, "eu-west-1", 2)
	// A store that holds [0, 1000] only and is down by query time: a warning shows it was called.
	old := startTestStore(t, labels.FromStrings("region", "us-east-1"), func() (int64, int64) { return 0, 1000 })
	set := startStoreSet(t, StoreSetOptions{Endpoints: []string{eu.addr, old.addr}, ProbeInterval: time.Hour})
	old.srv.Stop()
	f := NewFanout(nil, nil, set, FanoutOptions{PartialResponse: true})

	for _, tc := range []struct {
		name       string
		mint, maxt int64
		matchers   []*labels.Matcher
		wantCalled bool
		wantSeries int
	}{
		{"matching region and time calls the store", 0, 10000, []*labels.Matcher{metricM}, true, 2},
		{"region matcher excludes the store", 0, 10000, []*labels.Matcher{metricM, labels.MustNewMatcher(labels.MatchEqual, "region", "eu-west-1")}, false, 2},
		{"regex on region excludes the store", 0, 10000, []*labels.Matcher{metricM, labels.MustNewMatcher(labels.MatchRegexp, "region", "eu-.*")}, false, 2},
		{"negative matcher excludes the store", 0, 10000, []*labels.Matcher{metricM, labels.MustNewMatcher(labels.MatchNotEqual, "region", "us-east-1")}, false, 2},
		{"matcher on a series label does not prune", 0, 10000, []*labels.Matcher{metricM, labels.MustNewMatcher(labels.MatchEqual, "i", "0")}, true, 1},
		{"range after the store's data excludes it", 5000, 10000, []*labels.Matcher{metricM}, false, 2},
		{"range overlapping the store's data calls it", 1000, 10000, []*labels.Matcher{metricM}, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ws, err := selectAll(t, context.Background(), f, tc.mint, tc.maxt, tc.matchers...)
			require.NoError(t, err)
			require.Len(t, got, tc.wantSeries)
			if tc.wantCalled {
				require.Len(t, ws, 1)
				require.Contains(t, ws[0], old.addr)
			} else {
				require.Empty(t, ws)
			}
		})
	}

	t.Run("every store pruned is an empty answer, not an error", func(t *testing.T) {
		got, ws, err := selectAll(t, context.Background(), f, 0, 10000, metricM, labels.MustNewMatcher(labels.MatchEqual, "region", "nowhere"))
		require.NoError(t, err)
		require.Empty(t, got)
		require.Empty(t, ws)
	})
}

func TestFanoutDeduplicatesReplicas(t *testing.T) {
	a := startTestStore(t, labels.FromStrings("region", "eu-west-1", "replica", "a"), nil)
	b := startTestStore(t, labels.FromStrings("region", "eu-west-1", "replica", "b"), nil)
	s := labels.FromStrings("__name__", "m", "job", "api")
	// An HA pair: both replicas scraped the same series. (How gaps are filled is dedup's own
	// test; here the fan-out must hand the replicas to it as one label set.)
	appendFloats(t, a.db, 0, 10000, 1000, s)
	appendFloats(t, b.db, 0, 10000, 1000, s)
	set := startStoreSet(t, StoreSetOptions{Endpoints: []string{a.addr, b.addr}})
	f := NewFanout(nil, nil, set, FanoutOptions{ReplicaLabels: []string{"replica"}})

	got, ws, err := selectAll(t, context.Background(), f, 0, 10000, metricM)
	require.NoError(t, err)
	require.Empty(t, ws)
	require.Equal(t, map[string]int{`{__name__="m", job="api", region="eu-west-1"}`: 11}, got)

	got, _, err = selectAll(t, WithDedup(context.Background(), false), f, 0, 10000, metricM)
	require.NoError(t, err)
	require.Equal(t, map[string]int{
		`{__name__="m", job="api", region="eu-west-1", replica="a"}`: 11,
		`{__name__="m", job="api", region="eu-west-1", replica="b"}`: 11,
	}, got)
}

func TestFanoutStreamsSeriesSplitAcrossFramesAndChunks(t *testing.T) {
	// 1000 samples per series make several XOR chunks each; frames of at most 200 bytes make
	// the store send every series as several frames with the same labels.
	st := startTestStoreWithOptions(t, storeapi.Options{ExternalLabels: labels.FromStrings("region", "eu-west-1"), MaxFrameBytes: 200})
	appendFloats(t, st.db, 0, 999_000, 1000,
		labels.FromStrings("__name__", "m", "i", "0"), labels.FromStrings("__name__", "m", "i", "1"))
	set := startStoreSet(t, StoreSetOptions{Endpoints: []string{st.addr}})
	f := NewFanout(nil, nil, set, FanoutOptions{})

	for _, tc := range []struct {
		name       string
		mint, maxt int64
		want       int
	}{
		{"whole range", 0, 999_000, 1000},
		{"samples outside the range are hidden", 100_000, 199_999, 100},
		{"single sample", 500_000, 500_000, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := selectAll(t, context.Background(), f, tc.mint, tc.maxt, metricM)
			require.NoError(t, err)
			require.Equal(t, map[string]int{`{__name__="m", i="0", region="eu-west-1"}`: tc.want, `{__name__="m", i="1", region="eu-west-1"}`: tc.want}, got)
		})
	}

	t.Run("seek lands on the first sample at or after t", func(t *testing.T) {
		q, err := f.Querier(0, 999_000)
		require.NoError(t, err)
		defer q.Close()
		ss := q.Select(context.Background(), true, nil, metricM)
		require.True(t, ss.Next())
		it := ss.At().Iterator(nil)
		for _, ts := range []int64{0, 1, 250_500, 250_500, 999_000} {
			require.NotZero(t, it.Seek(ts))
			want := (ts + 999) / 1000 * 1000
			require.Equal(t, want, it.AtT())
			_, v := it.At()
			require.Equal(t, float64(want), v)
		}
		require.Zero(t, it.Seek(999_001))
	})
}

func TestFanoutLabelAPIs(t *testing.T) {
	eu := startTestStore(t, labels.FromStrings("region", "eu-west-1", "replica", "a"), nil)
	us := startTestStore(t, labels.FromStrings("region", "us-east-1", "replica", "a"), nil)
	appendFloats(t, eu.db, 0, 1000, 1000,
		labels.FromStrings("__name__", "up", "job", "api", "eu_only", "x"),
		labels.FromStrings("__name__", "requests", "job", "db"))
	appendFloats(t, us.db, 0, 1000, 1000,
		labels.FromStrings("__name__", "up", "job", "web"),
		labels.FromStrings("__name__", "requests", "job", "api"))
	never := deadAddr(t)
	set := startStoreSet(t, StoreSetOptions{Endpoints: []string{eu.addr, us.addr}})
	f := NewFanout(nil, nil, set, FanoutOptions{ReplicaLabels: []string{"replica"}, PartialResponse: true})

	q, err := f.Querier(0, 1000)
	require.NoError(t, err)
	defer q.Close()
	ctx := context.Background()

	names, ws, err := q.LabelNames(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, ws)
	require.Equal(t, []string{"__name__", "eu_only", "job", "region"}, names)

	names, _, err = q.LabelNames(ctx, nil, labels.MustNewMatcher(labels.MatchEqual, "region", "us-east-1"))
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "job", "region"}, names)

	names, _, err = q.LabelNames(WithDedup(ctx, false), nil)
	require.NoError(t, err)
	require.Contains(t, names, "replica")

	for _, tc := range []struct {
		name     string
		label    string
		hints    *storage.LabelHints
		matchers []*labels.Matcher
		want     []string
	}{
		{"values merged, sorted and deduplicated", "job", nil, nil, []string{"api", "db", "web"}},
		{"matchers pushed down", "job", nil, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")}, []string{"api", "web"}},
		{"matcher on external label prunes", "job", nil, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "region", "eu-west-1")}, []string{"api", "db"}},
		{"limit applies to the merged answer", "job", &storage.LabelHints{Limit: 2}, nil, []string{"api", "db"}},
		{"external label values", "region", nil, nil, []string{"eu-west-1", "us-east-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals, ws, err := q.LabelValues(ctx, tc.label, tc.hints, tc.matchers...)
			require.NoError(t, err)
			require.Empty(t, ws)
			require.Equal(t, tc.want, vals)
		})
	}

	t.Run("missing store is a warning, or an error without partial response", func(t *testing.T) {
		withDown := subset(t, set, eu.addr, us.addr)
		ref, err := withDown.newStoreRef(target{addr: never})
		require.NoError(t, err)
		withDown.stores[never] = ref
		f := NewFanout(nil, nil, withDown, FanoutOptions{PartialResponse: true, StoreResponseTimeout: 5 * time.Second})
		q, err := f.Querier(0, 1000)
		require.NoError(t, err)
		defer q.Close()

		vals, ws, err := q.LabelValues(ctx, "job", nil)
		require.NoError(t, err)
		require.Equal(t, []string{"api", "db", "web"}, vals)
		require.Len(t, ws, 1)
		require.Contains(t, ws.AsErrors()[0].Error(), "store "+never+": unavailable")

		_, _, err = q.LabelNames(WithPartialResponse(ctx, false), nil)
		require.ErrorContains(t, err, "store "+never)
		ref.conn.Close()
	})
}

func TestStoreErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		err  StoreError
		want string
	}{
		{StoreError{Store: "10.0.0.7:10901", Region: "eu-west-1", Err: errStoreTimeout{after: 2 * time.Second}}, `region "eu-west-1" (store 10.0.0.7:10901): timed out after 2s`},
		{StoreError{Store: "10.0.0.7:10901", Err: errStoreTimeout{after: time.Second}}, `store 10.0.0.7:10901: timed out after 1s`},
	} {
		require.Equal(t, tc.want, tc.err.Error())
		require.True(t, strings.HasSuffix(tc.err.Error(), tc.err.Err.Error()))
	}
}

func TestStoreSeriesSetStripsReplicaLabelsForStoresWithoutSupport(t *testing.T) {
	chunk := func(ts ...int64) []storepb.AggrChunk {
		c := chunkenc.NewXORChunk()
		app, err := c.Appender()
		require.NoError(t, err)
		for _, t := range ts {
			app.Append(t, float64(t))
		}
		return []storepb.AggrChunk{{MinTime: ts[0], MaxTime: ts[len(ts)-1], Raw: &storepb.Chunk{Type: storepb.Chunk_XOR, Data: c.Bytes()}}}
	}
	series := func(lset labels.Labels, ts ...int64) *storepb.Series {
		return &storepb.Series{Labels: labelpb.ZLabelsFromPromLabels(lset), Chunks: chunk(ts...)}
	}
	// Sorted with the replica label; "a" sorts before "replica", "z" after, so removing the
	// replica label changes the order: the store set must re-sort and merge.
	st := &storeStream{out: make(chan []*storepb.Series, 4)}
	st.out <- []*storepb.Series{
		series(labels.FromStrings("a", "1", "replica", "x"), 0, 1000),
		series(labels.FromStrings("a", "1", "replica", "y"), 2000, 3000),
		series(labels.FromStrings("replica", "x", "z", "1"), 0),
	}
	st.out <- []*storepb.Series{series(labels.FromStrings("a", "0", "replica", "y"), 0)}
	close(st.out)

	s := &storeSeriesSet{stream: st, mint: 0, maxt: 10000, mergeFn: storage.ChainedSeriesMerge, stripLabels: []string{"replica"}}
	var got []string
	var samples []int
	for s.Next() {
		got = append(got, s.At().Labels().String())
		n := 0
		for it := s.At().Iterator(nil); it.Next() != chunkenc.ValNone; {
			n++
		}
		samples = append(samples, n)
	}
	require.Equal(t, []string{`{a="0"}`, `{a="1"}`, `{z="1"}`}, got)
	require.Equal(t, []int{1, 4, 1}, samples)
}
