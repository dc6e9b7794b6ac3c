package storeapi

import (
	"context"
	"math"
	"sync"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/info/infopb"
	"github.com/thanos-io/thanos/pkg/store/labelpb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
)

// The label-sets tests serve a TSDB whose series already carry their region, the way a
// querier's fan-out returns them, through a server that announces the regions' label sets.

var (
	regionA = labels.FromStrings("region", "a")
	regionB = labels.FromStrings("region", "b")
)

// Series of the querier fixture, as stored and as served.
const (
	upAPIA   = `{__name__="up", job="api", region="a", replica="r0"}`
	upDBA    = `{__name__="up", job="db", region="a", replica="r0"}`
	upAPIBr0 = `{__name__="up", job="api", region="b", replica="r0", zone="z1"}`
	upAPIBr1 = `{__name__="up", job="api", region="b", replica="r1", zone="z0"}`
	orphan   = `{__name__="up", job="api"}`
)

// newQuerierFixture is a TSDB holding series of two regions, two replicas of one of them whose
// order flips once the replica label is dropped, and one series without a region.
func newQuerierFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	f := &fixture{db: db, series: map[string]storedSeries{}}
	for i, s := range []string{upAPIA, upDBA, upAPIBr0, upAPIBr1, orphan} {
		lset, err := parser.ParseMetric(s)
		require.NoError(t, err)
		require.Equal(t, s, lset.String())
		f.add(t, lset, floats(headStart+int64(i), 50+i))
	}
	return f
}

// mutableLabelSets is a LabelSets option whose answer a test changes, as a store set's
// changes when stores come and go.
type mutableLabelSets struct {
	mu    sync.Mutex
	lsets []labels.Labels
}

func (m *mutableLabelSets) set(lsets ...labels.Labels) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lsets = lsets
}

func (m *mutableLabelSets) get() []labels.Labels {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lsets
}

func TestNewServerRequiresExactlyOneOfExternalLabelsAndLabelSets(t *testing.T) {
	f := newQuerierFixture(t)
	lsets := func() []labels.Labels { return []labels.Labels{regionA} }
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"external labels only", Options{ExternalLabels: euWest}, ""},
		{"label sets only", Options{LabelSets: lsets}, ""},
		{"label sets that are empty for now", Options{LabelSets: func() []labels.Labels { return nil }}, ""},
		{"both", Options{ExternalLabels: euWest, LabelSets: lsets}, "exclusive"},
		{"neither", Options{}, "external labels (at least the region) or label sets are required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewServer(f.db, tc.opts)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestInfoAnnouncesTheCurrentLabelSets(t *testing.T) {
	f := newQuerierFixture(t)
	lsets := &mutableLabelSets{}
	_, info := startServer(t, f.db, Options{
		LabelSets:     lsets.get,
		ComponentType: "query",
		TimeRange:     func() (int64, int64) { return 1000, 2000 },
	})
	for _, tc := range []struct {
		name  string
		lsets []labels.Labels
	}{
		{"no stores yet", nil},
		{"two regions", []labels.Labels{regionA, regionB}},
		{"a region with a replica label", []labels.Labels{regionA, labels.FromStrings("region", "b", "replica", "r1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lsets.set(tc.lsets...)
			resp, err := info.Info(context.Background(), &infopb.InfoRequest{})
			require.NoError(t, err)
			require.Equal(t, "query", resp.ComponentType)
			got := labelpb.ZLabelSetsToPromLabelSets(resp.LabelSets...)
			require.Len(t, got, len(tc.lsets))
			for i := range tc.lsets {
				require.Equal(t, tc.lsets[i], got[i])
			}
			require.NotNil(t, resp.Store)
			require.Equal(t, int64(1000), resp.Store.MinTime)
			require.Equal(t, int64(2000), resp.Store.MaxTime)
			require.True(t, resp.Store.SupportsWithoutReplicaLabels)
			require.Len(t, resp.Store.TsdbInfos, len(tc.lsets), "one TSDB per label set")
			for i, ti := range resp.Store.TsdbInfos {
				require.Equal(t, tc.lsets[i], ti.Labels.PromLabels())
				require.Equal(t, int64(1000), ti.MinTime)
				require.Equal(t, int64(2000), ti.MaxTime)
			}
		})
	}
}

func TestLabelSetsSeriesKeepTheirLabelsAndEveryMatcher(t *testing.T) {
	f := newQuerierFixture(t)
	q := &countingQueryable{ChunkQueryable: f.db}
	lsets := &mutableLabelSets{}
	client, _ := startServer(t, q, Options{LabelSets: lsets.get})
	up := eq("__name__", "up")

	for _, tc := range []struct {
		name         string
		lsets        []labels.Labels
		matchers     []storepb.LabelMatcher
		without      []string
		want         []string // served label sets, in order
		wantStored   []string // the stored series behind want
		wantNoQuerys bool
	}{
		{
			name:     "every series as stored",
			lsets:    []labels.Labels{regionA, regionB},
			matchers: []storepb.LabelMatcher{up},
			want:     []string{orphan, upAPIA, upAPIBr0, upAPIBr1, upDBA},
		},
		{
			name:     "matcher on a label-set name reaches the storage",
			lsets:    []labels.Labels{regionA, regionB},
			matchers: []storepb.LabelMatcher{up, eq("region", "a")},
			want:     []string{upAPIA, upDBA},
		},
		{
			name:     "only a label-set matcher",
			lsets:    []labels.Labels{regionA, regionB},
			matchers: []storepb.LabelMatcher{matcher(storepb.LabelMatcher_RE, "region", "b|c")},
			want:     []string{upAPIBr0, upAPIBr1},
		},
		{
			name:     "matchers on label-set and other names",
			lsets:    []labels.Labels{regionA, regionB},
			matchers: []storepb.LabelMatcher{up, matcher(storepb.LabelMatcher_RE, "region", "a|b"), eq("job", "db")},
			want:     []string{upDBA},
		},
		{
			name:         "no label set can match",
			lsets:        []labels.Labels{regionA, regionB},
			matchers:     []storepb.LabelMatcher{up, eq("region", "c")},
			wantNoQuerys: true,
		},
		{
			name:         "each label set contradicted by a different matcher",
			lsets:        []labels.Labels{regionA, regionB},
			matchers:     []storepb.LabelMatcher{matcher(storepb.LabelMatcher_NEQ, "region", "a"), matcher(storepb.LabelMatcher_NRE, "region", "b")},
			wantNoQuerys: true,
		},
		{
			name:     "a label set without the matcher's name may match",
			lsets:    []labels.Labels{regionA, labels.FromStrings("cluster", "c1")},
			matchers: []storepb.LabelMatcher{up, eq("region", "c")},
		},
		{
			name:     "an empty label set matches everything",
			lsets:    []labels.Labels{labels.EmptyLabels(), regionA},
			matchers: []storepb.LabelMatcher{up, eq("region", "b")},
			want:     []string{upAPIBr0, upAPIBr1},
		},
		{
			name:     "no label sets prune nothing",
			matchers: []storepb.LabelMatcher{up, eq("region", "b"), eq("zone", "z0")},
			want:     []string{upAPIBr1},
		},
		{
			name:       "dropped replica labels re-sort the series",
			lsets:      []labels.Labels{regionA, regionB},
			matchers:   []storepb.LabelMatcher{up, eq("region", "b")},
			without:    []string{"replica"},
			want:       []string{`{__name__="up", job="api", region="b", zone="z0"}`, `{__name__="up", job="api", region="b", zone="z1"}`},
			wantStored: []string{upAPIBr1, upAPIBr0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lsets.set(tc.lsets...)
			before := q.opened.Load()
			got := querySeries(t, client, &storepb.SeriesRequest{
				MinTime: math.MinInt64, MaxTime: math.MaxInt64,
				Matchers: tc.matchers, WithoutReplicaLabels: tc.without,
			})
			if tc.wantNoQuerys {
				require.Equal(t, before, q.opened.Load(), "storage was queried")
			} else {
				require.Equal(t, before+1, q.opened.Load(), "storage was not queried")
			}
			stored := tc.wantStored
			if stored == nil {
				stored = tc.want
			}
			require.Len(t, got, len(tc.want))
			for i, s := range got {
				require.Equal(t, tc.want[i], s.lset.String())
				requireSamplesEqual(t, f.series[stored[i]].samples, decodeChunks(t, s.chunks))
			}
		})
	}
}

func TestLabelSetsLabelCallsAddNothingAndPrune(t *testing.T) {
	f := newQuerierFixture(t)
	q := &countingQueryable{ChunkQueryable: f.db}
	client, _ := startServer(t, q, Options{LabelSets: func() []labels.Labels { return []labels.Labels{regionA, regionB} }})

	t.Run("names", func(t *testing.T) {
		for _, tc := range []struct {
			name         string
			matchers     []storepb.LabelMatcher
			without      []string
			want         []string
			wantNoQuerys bool
		}{
			{name: "the storage's names", want: []string{"__name__", "job", "region", "replica", "zone"}},
			{name: "matchers narrow the names", matchers: []storepb.LabelMatcher{eq("region", "a")}, want: []string{"__name__", "job", "region", "replica"}},
			{name: "replica label dropped", matchers: []storepb.LabelMatcher{eq("job", "db")}, without: []string{"replica"}, want: []string{"__name__", "job", "region"}},
			{name: "no label set can match", matchers: []storepb.LabelMatcher{eq("region", "c")}, wantNoQuerys: true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := q.opened.Load()
				resp, err := client.LabelNames(context.Background(), &storepb.LabelNamesRequest{
					End: math.MaxInt64, Matchers: tc.matchers, WithoutReplicaLabels: tc.without,
				})
				require.NoError(t, err)
				require.Equal(t, tc.want, resp.Names)
				require.Equal(t, tc.wantNoQuerys, before == q.opened.Load(), "storage queried: %v", !tc.wantNoQuerys)
			})
		}
	})

	t.Run("values", func(t *testing.T) {
		for _, tc := range []struct {
			name         string
			label        string
			matchers     []storepb.LabelMatcher
			without      []string
			want         []string
			wantNoQuerys bool
		}{
			{name: "a label-set name has the storage's values", label: "region", want: []string{"a", "b"}},
			{name: "with matchers", label: "region", matchers: []storepb.LabelMatcher{eq("job", "db")}, want: []string{"a"}},
			{name: "matcher on a label-set name reaches the storage", label: "zone", matchers: []storepb.LabelMatcher{eq("region", "a")}},
			{name: "dropped replica label", label: "replica", without: []string{"replica"}},
			{name: "no label set can match", label: "job", matchers: []storepb.LabelMatcher{matcher(storepb.LabelMatcher_NRE, "region", "a|b")}, wantNoQuerys: true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := q.opened.Load()
				resp, err := client.LabelValues(context.Background(), &storepb.LabelValuesRequest{
					Label: tc.label, End: math.MaxInt64, Matchers: tc.matchers, WithoutReplicaLabels: tc.without,
				})
				require.NoError(t, err)
				require.Equal(t, tc.want, resp.Values)
				if tc.wantNoQuerys {
					require.Equal(t, before, q.opened.Load(), "storage was queried")
				}
			})
		}
	})
}
