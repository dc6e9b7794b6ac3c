package storeapi

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/store/storepb"
)

// samplesOnly hides every method but Querier, so only the sample path can be used.
type samplesOnly struct {
	q storage.Queryable
}

func (s samplesOnly) Querier(mint, maxt int64) (storage.Querier, error) {
	return s.q.Querier(mint, maxt)
}

// readSamples reads every series of q directly, the reference for the round trips.
func readSamples(t *testing.T, q storage.Queryable) map[string]storedSeries {
	t.Helper()
	querier, err := q.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer querier.Close()
	set := querier.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	out := map[string]storedSeries{}
	for set.Next() {
		samples := iteratorSamples(t, set.At().Iterator(nil))
		lset := set.At().Labels().Copy()
		out[lset.String()] = storedSeries{lset: lset, samples: samples}
	}
	require.NoError(t, set.Err())
	return out
}

func TestFromQueryableRoundTripsSamples(t *testing.T) {
	promqlStorage := promqltest.LoadedStorage(t, `
load 1m
  http_requests_total{job="api"} 0+10x300
  http_requests_total{job="web"} 0+3x50 _x10 100+1x20
  request_duration_seconds{job="api"} {{schema:0 sum:1 count:2 buckets:[1 1]}}+{{schema:0 sum:3 count:4 buckets:[2 2]}}x200
  mixed{job="x"} 1 2 3 {{schema:0 sum:5 count:4 buckets:[1 2 1]}} {{schema:0 sum:6 count:5 buckets:[1 2 2]}} 4 5
`)
	t.Cleanup(func() { require.NoError(t, promqlStorage.Close()) })

	for _, tc := range []struct {
		name      string
		queryable storage.Queryable
		minSeries int
	}{
		{"promqltest storage with floats and float histograms", promqlStorage, 4},
		{"tsdb with floats, histograms and float histograms", newFixture(t).db, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := readSamples(t, tc.queryable)
			require.Len(t, want, tc.minSeries)
			client, _ := startServer(t, FromQueryable(samplesOnly{tc.queryable}), Options{ExternalLabels: euWest})
			got := querySeries(t, client, &storepb.SeriesRequest{
				MinTime: math.MinInt64, MaxTime: math.MaxInt64,
				Matchers: []storepb.LabelMatcher{matcher(storepb.LabelMatcher_RE, "__name__", ".+")},
			})
			require.Len(t, got, len(want))
			for _, s := range got {
				var stored *storedSeries
				for _, w := range want {
					if labels.Equal(withExternal(w.lset, euWest), s.lset) {
						stored = &w
					}
				}
				require.NotNil(t, stored, "unexpected series %s", s.lset)
				requireSamplesEqual(t, stored.samples, decodeChunks(t, s.chunks))
				requireChunksFollowSampleTypes(t, s.chunks)
			}
		})
	}
}

// requireChunksFollowSampleTypes checks the re-encoding: at most 120 samples a chunk, each
// chunk in the encoding of its samples.
func requireChunksFollowSampleTypes(t *testing.T, chks []storepb.AggrChunk) {
	t.Helper()
	for _, c := range chks {
		samples := decodeChunks(t, []storepb.AggrChunk{c})
		require.LessOrEqual(t, len(samples), 120)
		for _, s := range samples {
			switch {
			case s.h != nil:
				require.Equal(t, storepb.Chunk_HISTOGRAM, c.Raw.Type)
			case s.fh != nil:
				require.Equal(t, storepb.Chunk_FLOAT_HISTOGRAM, c.Raw.Type)
			default:
				require.Equal(t, storepb.Chunk_XOR, c.Raw.Type)
			}
		}
	}
}

// warningQueryable adds a warning to every Select.
type warningQueryable struct {
	storage.Queryable
	warning error
}

func (w warningQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := w.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return warningQuerier{Querier: q, warning: w.warning}, nil
}

type warningQuerier struct {
	storage.Querier
	warning error
}

func (w warningQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return warningSeriesSet{SeriesSet: w.Querier.Select(ctx, sortSeries, hints, ms...), warning: w.warning}
}

type warningSeriesSet struct {
	storage.SeriesSet
	warning error
}

func (w warningSeriesSet) Warnings() annotations.Annotations {
	return annotations.New().Add(w.warning)
}

func TestFromQueryablePassesWarningsThrough(t *testing.T) {
	f := newFixture(t)
	warning := errors.New(`region "us-east-1" (store 10.0.0.7:10901): unavailable`)
	client, _ := startServer(t, FromQueryable(warningQueryable{Queryable: f.db, warning: warning}), Options{ExternalLabels: euWest, ComponentType: "query"})

	frames, warnings, err := seriesFrames(t, client, &storepb.SeriesRequest{
		MinTime: math.MinInt64, MaxTime: math.MaxInt64,
		Matchers: []storepb.LabelMatcher{eq("__name__", "latency_seconds")},
	})
	require.NoError(t, err)
	require.Equal(t, []string{warning.Error()}, warnings)
	got := joinFrames(t, frames)
	require.Len(t, got, 1)
	requireSamplesEqual(t, histograms(headStart, 250), decodeChunks(t, got[0].chunks))
}
