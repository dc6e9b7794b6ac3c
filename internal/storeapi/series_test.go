package storeapi

import (
	"context"
	"errors"
	"io"
	"math"
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var euWest = labels.FromStrings("cluster", "c1", "region", "eu-west-1")

func TestSeriesReturnsMatchingSeriesWithExactSamples(t *testing.T) {
	f := newFixture(t)
	q := &countingQueryable{ChunkQueryable: f.db}
	client, _ := startServer(t, q, Options{ExternalLabels: euWest})

	api := `{__name__="http_requests_total", instance="a", job="api"}`
	apiB := `{__name__="http_requests_total", instance="b", job="api"}`
	web := `{__name__="http_requests_total", instance="a", job="web"}`
	hist := `{__name__="latency_seconds", job="api"}`
	fhist := `{__name__="latency_float_seconds", job="api"}`
	batch := `{__name__="batch_runs_total", job="batch", owner="team-x"}`
	misl := `{__name__="mislabelled", region="us-east-1"}`
	all := []string{api, apiB, web, hist, fhist, batch, misl}
	name := func(n string) storepb.LabelMatcher { return eq("__name__", n) }

	for _, tc := range []struct {
		name         string
		matchers     []storepb.LabelMatcher
		mint, maxt   int64
		want         []string // stored series, before external labels
		wantNoQuerys bool
	}{
		{
			name:     "equal matcher",
			matchers: []storepb.LabelMatcher{name("http_requests_total"), eq("job", "api")},
			want:     []string{api, apiB},
		},
		{
			name:     "not-equal matcher",
			matchers: []storepb.LabelMatcher{name("http_requests_total"), matcher(storepb.LabelMatcher_NEQ, "job", "api")},
			want:     []string{web},
		},
		{
			name:     "regexp matcher",
			matchers: []storepb.LabelMatcher{matcher(storepb.LabelMatcher_RE, "__name__", "latency_.*")},
			want:     []string{hist, fhist},
		},
		{
			name:     "not-regexp matcher",
			matchers: []storepb.LabelMatcher{name("http_requests_total"), matcher(storepb.LabelMatcher_NRE, "instance", "b|c")},
			want:     []string{api, web},
		},
		{
			name:     "matching external label is dropped before querying",
			matchers: []storepb.LabelMatcher{eq("region", "eu-west-1"), name("latency_seconds")},
			want:     []string{hist},
		},
		{
			name:     "only external label matchers select every series",
			matchers: []storepb.LabelMatcher{matcher(storepb.LabelMatcher_RE, "region", "eu-.*"), eq("cluster", "c1")},
			want:     all,
		},
		{
			name:     "external label overrides the series' own label of the same name",
			matchers: []storepb.LabelMatcher{eq("region", "eu-west-1"), name("mislabelled")},
			want:     []string{misl},
		},
		{
			name:         "contradicting external label answers empty without touching storage",
			matchers:     []storepb.LabelMatcher{eq("region", "us-east-1"), name("http_requests_total")},
			wantNoQuerys: true,
		},
		{
			name:         "contradicting negative external label matcher answers empty",
			matchers:     []storepb.LabelMatcher{matcher(storepb.LabelMatcher_NEQ, "cluster", "c1")},
			wantNoQuerys: true,
		},
		{
			name:     "time range before the head reads the block only",
			matchers: []storepb.LabelMatcher{matcher(storepb.LabelMatcher_RE, "job", ".+")},
			mint:     0, maxt: headStart - 1,
			want: []string{batch},
		},
		{
			name:     "time range within the head selects overlapping chunks",
			matchers: []storepb.LabelMatcher{name("http_requests_total")},
			mint:     headStart + 130*scrapeInterval, maxt: headStart + 140*scrapeInterval,
			want: []string{api, apiB, web},
		},
		{
			name:     "time range after the data returns nothing",
			matchers: []storepb.LabelMatcher{name("http_requests_total")},
			mint:     headStart + 400*scrapeInterval, maxt: headStart + 500*scrapeInterval,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mint, maxt := tc.mint, tc.maxt
			if mint == 0 && maxt == 0 {
				mint, maxt = math.MinInt64, math.MaxInt64
			}
			before := q.opened.Load()
			got := querySeries(t, client, &storepb.SeriesRequest{MinTime: mint, MaxTime: maxt, Matchers: tc.matchers})
			if tc.wantNoQuerys {
				require.Empty(t, got)
				require.Equal(t, before, q.opened.Load(), "storage was queried")
				return
			}

			var want []labels.Labels
			for _, key := range tc.want {
				want = append(want, withExternal(f.series[key].lset, euWest))
			}
			slices.SortFunc(want, labels.Compare)
			var gotLabels []labels.Labels
			for _, s := range got {
				gotLabels = append(gotLabels, s.lset)
			}
			require.Equal(t, want, gotLabels)

			for _, s := range got {
				stored := storedByFinal(t, f, s.lset, euWest)
				decoded := decodeChunks(t, s.chunks)
				for _, c := range s.chunks {
					require.True(t, c.MaxTime >= mint && c.MinTime <= maxt, "chunk [%d,%d] outside [%d,%d]", c.MinTime, c.MaxTime, mint, maxt)
				}
				// Chunks are not trimmed: within the range they hold exactly the appended samples,
				// and outside it only appended samples.
				requireSamplesEqual(t, inRange(stored.samples, mint, maxt), inRange(decoded, mint, maxt))
				requireSamplesEqual(t, inRange(stored.samples, decoded[0].t, decoded[len(decoded)-1].t), decoded)
			}
		})
	}
}

// storedByFinal finds the stored series that the store announces as final.
func storedByFinal(t *testing.T, f *fixture, final, ext labels.Labels) storedSeries {
	t.Helper()
	for _, s := range f.series {
		if labels.Equal(withExternal(s.lset, ext), final) {
			return s
		}
	}
	require.Failf(t, "unknown series", "%s", final)
	return storedSeries{}
}

func TestSeriesUsesEveryChunkEncoding(t *testing.T) {
	f := newFixture(t)
	client, _ := startServer(t, f.db, Options{ExternalLabels: euWest})

	got := querySeries(t, client, &storepb.SeriesRequest{
		MinTime: math.MinInt64, MaxTime: math.MaxInt64,
		Matchers: []storepb.LabelMatcher{eq("job", "api")},
	})
	encodings := map[string]map[storepb.Chunk_Encoding]int{}
	for _, s := range got {
		encodings[s.lset.Get("__name__")] = map[storepb.Chunk_Encoding]int{}
		for _, c := range s.chunks {
			encodings[s.lset.Get("__name__")][c.Raw.Type]++
		}
	}
	// 300 floats, 250 histograms and 130 float histograms take more than one chunk each.
	require.Len(t, encodings, 3)
	require.Greater(t, encodings["http_requests_total"][storepb.Chunk_XOR], 1)
	require.Len(t, encodings["http_requests_total"], 1)
	require.Greater(t, encodings["latency_seconds"][storepb.Chunk_HISTOGRAM], 1)
	require.Len(t, encodings["latency_seconds"], 1)
	require.Greater(t, encodings["latency_float_seconds"][storepb.Chunk_FLOAT_HISTOGRAM], 1)
	require.Len(t, encodings["latency_float_seconds"], 1)
}

func TestSeriesSortsByFinalLabels(t *testing.T) {
	db := newFixture(t)
	// In the storage {__name__="cfg"} sorts before {__name__="cfg", a="x"} (a prefix sorts
	// first); with region added, "a" < "region" puts the longer one first.
	db.add(t, labels.FromStrings("__name__", "cfg"), floats(headStart, 3))
	db.add(t, labels.FromStrings("__name__", "cfg", "a", "x"), floats(headStart, 3))
	// Ordered by replica in the storage, by y < z once replica is dropped.
	db.add(t, labels.FromStrings("__name__", "dup", "replica", "1", "z", "1"), floats(headStart, 3))
	db.add(t, labels.FromStrings("__name__", "dup", "replica", "2", "y", "1"), floats(headStart, 3))

	ext := labels.FromStrings("region", "eu-west-1", "replica", "r0")
	client, _ := startServer(t, db.db, Options{ExternalLabels: ext})

	for _, tc := range []struct {
		name    string
		without []string
		matcher storepb.LabelMatcher
		want    []labels.Labels
	}{
		{
			name:    "external labels reorder series",
			matcher: eq("__name__", "cfg"),
			want: []labels.Labels{
				labels.FromStrings("__name__", "cfg", "a", "x", "region", "eu-west-1", "replica", "r0"),
				labels.FromStrings("__name__", "cfg", "region", "eu-west-1", "replica", "r0"),
			},
		},
		{
			name:    "dropping replica labels reorders series",
			without: []string{"replica"},
			matcher: eq("__name__", "dup"),
			want: []labels.Labels{
				labels.FromStrings("__name__", "dup", "region", "eu-west-1", "y", "1"),
				labels.FromStrings("__name__", "dup", "region", "eu-west-1", "z", "1"),
			},
		},
		{
			name:    "external replica label overrides the series' replica",
			matcher: eq("__name__", "dup"),
			want: []labels.Labels{
				labels.FromStrings("__name__", "dup", "region", "eu-west-1", "replica", "r0", "y", "1"),
				labels.FromStrings("__name__", "dup", "region", "eu-west-1", "replica", "r0", "z", "1"),
			},
		},
		{
			name:    "dropping an external label that is not a series label",
			without: []string{"replica", "unknown"},
			matcher: eq("__name__", "cfg"),
			want: []labels.Labels{
				labels.FromStrings("__name__", "cfg", "a", "x", "region", "eu-west-1"),
				labels.FromStrings("__name__", "cfg", "region", "eu-west-1"),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := querySeries(t, client, &storepb.SeriesRequest{
				MinTime: math.MinInt64, MaxTime: math.MaxInt64,
				Matchers:             []storepb.LabelMatcher{tc.matcher},
				WithoutReplicaLabels: tc.without,
			})
			var gotLabels []labels.Labels
			for _, s := range got {
				gotLabels = append(gotLabels, s.lset)
				requireSamplesEqual(t, floats(headStart, 3), decodeChunks(t, s.chunks))
			}
			require.Equal(t, tc.want, gotLabels)
		})
	}
}

func TestSeriesSkipChunksReturnsLabelsOnly(t *testing.T) {
	f := newFixture(t)
	client, _ := startServer(t, f.db, Options{ExternalLabels: euWest})

	withChunks := querySeries(t, client, &storepb.SeriesRequest{
		MinTime: math.MinInt64, MaxTime: math.MaxInt64,
		Matchers: []storepb.LabelMatcher{matcher(storepb.LabelMatcher_RE, "job", "api|web")},
	})
	labelsOnly := querySeries(t, client, &storepb.SeriesRequest{
		MinTime: math.MinInt64, MaxTime: math.MaxInt64,
		Matchers:   []storepb.LabelMatcher{matcher(storepb.LabelMatcher_RE, "job", "api|web")},
		SkipChunks: true,
	})
	require.Len(t, labelsOnly, 5)
	require.Len(t, labelsOnly, len(withChunks))
	for i := range withChunks {
		require.NotEmpty(t, withChunks[i].chunks)
		require.Empty(t, labelsOnly[i].chunks)
		require.Equal(t, withChunks[i].lset, labelsOnly[i].lset)
	}
}

func TestSeriesLimitCapsTheNumberOfSeries(t *testing.T) {
	f := newFixture(t)
	client, _ := startServer(t, f.db, Options{ExternalLabels: euWest})
	for _, limit := range []int64{1, 2, 100} {
		got := querySeries(t, client, &storepb.SeriesRequest{
			MinTime: math.MinInt64, MaxTime: math.MaxInt64,
			Matchers: []storepb.LabelMatcher{eq("__name__", "http_requests_total")},
			Limit:    limit,
		})
		require.Len(t, got, int(min(limit, 3)), "limit %d", limit)
	}
}

func TestSeriesSplitsLargeSeriesIntoFramesWithTheSameLabels(t *testing.T) {
	f := newFixture(t)
	client, _ := startServer(t, f.db, Options{ExternalLabels: euWest, MaxFrameBytes: 1})
	frames, _, err := seriesFrames(t, client, &storepb.SeriesRequest{
		MinTime: math.MinInt64, MaxTime: math.MaxInt64,
		Matchers: []storepb.LabelMatcher{eq("__name__", "latency_seconds")},
	})
	require.NoError(t, err)
	require.Greater(t, len(frames), 1)
	for _, fr := range frames {
		require.Len(t, fr.Chunks, 1)
	}
	got := joinFrames(t, frames)
	require.Len(t, got, 1)
	requireSamplesEqual(t, histograms(headStart, 250), decodeChunks(t, got[0].chunks))
}

func TestSeriesShardsPartitionTheSeries(t *testing.T) {
	f := newFixture(t)
	client, _ := startServer(t, f.db, Options{ExternalLabels: euWest})
	req := func(shard *storepb.ShardInfo) *storepb.SeriesRequest {
		return &storepb.SeriesRequest{
			MinTime: math.MinInt64, MaxTime: math.MaxInt64,
			Matchers:   []storepb.LabelMatcher{matcher(storepb.LabelMatcher_RE, "__name__", ".+")},
			SkipChunks: true, ShardInfo: shard,
		}
	}
	all := querySeries(t, client, req(nil))
	seen := map[string]int{}
	for i := range int64(3) {
		for _, s := range querySeries(t, client, req(&storepb.ShardInfo{ShardIndex: i, TotalShards: 3, By: true, Labels: []string{"job"}})) {
			seen[s.lset.String()]++
		}
	}
	require.Len(t, seen, len(all))
	for _, s := range all {
		require.Equal(t, 1, seen[s.lset.String()], "%s", s.lset)
	}
}

func TestSeriesRejectsInvalidMatchers(t *testing.T) {
	f := newFixture(t)
	q := &countingQueryable{ChunkQueryable: f.db}
	client, _ := startServer(t, q, Options{ExternalLabels: euWest})
	for _, tc := range []struct {
		name string
		m    storepb.LabelMatcher
	}{
		{"invalid regexp", matcher(storepb.LabelMatcher_RE, "job", "(")},
		{"unknown matcher type", matcher(storepb.LabelMatcher_Type(42), "job", "api")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := seriesFrames(t, client, &storepb.SeriesRequest{
				MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: []storepb.LabelMatcher{tc.m},
			})
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			require.Zero(t, q.opened.Load())
		})
	}
}

func TestSeriesPassesRequestContextToStorage(t *testing.T) {
	f := newFixture(t)
	type key struct{}
	var seen []any
	q := &contextRecordingQueryable{ChunkQueryable: f.db, key: key{}, seen: &seen}
	client, _ := startServer(t, q, Options{
		ExternalLabels: euWest,
		RequestContext: func(ctx context.Context, partialResponseDisabled bool) context.Context {
			return context.WithValue(ctx, key{}, partialResponseDisabled)
		},
	})
	for _, req := range []*storepb.SeriesRequest{
		{PartialResponseDisabled: true},
		{PartialResponseStrategy: storepb.PartialResponseStrategy_ABORT},
		{PartialResponseStrategy: storepb.PartialResponseStrategy_WARN},
	} {
		req.MinTime, req.MaxTime = math.MinInt64, math.MaxInt64
		req.Matchers = []storepb.LabelMatcher{eq("__name__", "latency_seconds")}
		require.Len(t, querySeries(t, client, req), 1)
	}
	require.Equal(t, []any{true, true, false}, seen)
}

func TestSeriesBatchesSeriesWhenTheClientAsks(t *testing.T) {
	f := newFixture(t)
	client, _ := startServer(t, f.db, Options{ExternalLabels: euWest})
	all := []storepb.LabelMatcher{matcher(storepb.LabelMatcher_RE, "__name__", ".+")}
	unbatched := querySeries(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: all})
	require.Len(t, unbatched, 7)

	stream, err := client.Series(context.Background(), &storepb.SeriesRequest{
		MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: all, ResponseBatchSize: 3,
	})
	require.NoError(t, err)
	var frames []*storepb.Series
	var batches []int
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		require.Nil(t, resp.GetSeries(), "a client asking for batches gets only batches")
		frames = append(frames, resp.GetBatch().Series...)
		batches = append(batches, len(resp.GetBatch().Series))
	}
	require.Equal(t, []int{3, 3, 1}, batches)
	batched := joinFrames(t, frames)
	require.Len(t, batched, len(unbatched))
	for i := range unbatched {
		require.Equal(t, unbatched[i].lset, batched[i].lset)
		requireSamplesEqual(t, decodeChunks(t, unbatched[i].chunks), decodeChunks(t, batched[i].chunks))
	}
}
