package storeapi

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/info/infopb"
	"github.com/thanos-io/thanos/pkg/store/labelpb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestInfoAnnouncesExternalLabelsTimeRangeAndCapabilities(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name          string
		opts          Options
		wantMin       int64
		wantMax       int64
		wantComponent string
	}{
		{
			name: "time range from the storage",
			opts: Options{
				ExternalLabels: euWest, ComponentType: "receive",
				TimeRange: func() (int64, int64) { return f.db.Head().MinTime(), math.MaxInt64 },
			},
			wantMin: headStart, wantMax: math.MaxInt64, wantComponent: "receive",
		},
		{
			name:    "defaults announce an unbounded store",
			opts:    Options{ExternalLabels: euWest},
			wantMin: math.MinInt64, wantMax: math.MaxInt64, wantComponent: "store",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, info := startServer(t, f.db, tc.opts)
			resp, err := info.Info(context.Background(), &infopb.InfoRequest{})
			require.NoError(t, err)
			require.Equal(t, []labels.Labels{euWest}, labelpb.ZLabelSetsToPromLabelSets(resp.LabelSets...))
			require.Equal(t, tc.wantComponent, resp.ComponentType)
			require.NotNil(t, resp.Store)
			require.Equal(t, tc.wantMin, resp.Store.MinTime)
			require.Equal(t, tc.wantMax, resp.Store.MaxTime)
			require.True(t, resp.Store.SupportsWithoutReplicaLabels)
			require.True(t, resp.Store.SupportsSharding)
			require.Len(t, resp.Store.TsdbInfos, 1)
			require.Equal(t, euWest, resp.Store.TsdbInfos[0].Labels.PromLabels())
			require.Equal(t, tc.wantMin, resp.Store.TsdbInfos[0].MinTime)
			require.Equal(t, tc.wantMax, resp.Store.TsdbInfos[0].MaxTime)
		})
	}
}

func TestNewServerRejectsInvalidExternalLabels(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		ext  labels.Labels
	}{
		{"none", labels.EmptyLabels()},
		{"empty value", labels.FromStrings("region", "")},
		{"duplicate name", labels.New(labels.Label{Name: "region", Value: "a"}, labels.Label{Name: "region", Value: "b"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewServer(f.db, Options{ExternalLabels: tc.ext})
			require.Error(t, err)
		})
	}
}

// failingQueryable fails every call the way a broken storage would.
type failingQueryable struct{ err error }

func (f failingQueryable) ChunkQuerier(int64, int64) (storage.ChunkQuerier, error) {
	return failingQuerier(f), nil
}

type failingQuerier struct{ err error }

func (f failingQuerier) Select(context.Context, bool, *storage.SelectHints, ...*labels.Matcher) storage.ChunkSeriesSet {
	return storage.ErrChunkSeriesSet(f.err)
}

func (f failingQuerier) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, f.err
}

func (f failingQuerier) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, f.err
}

func (failingQuerier) Close() error { return nil }

func TestStorageErrorsKeepTheirMeaning(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		wantCode codes.Code
	}{
		{"storage failure is internal", errors.New("read block 01H: checksum mismatch"), codes.Internal},
		{"cancellation", context.Canceled, codes.Canceled},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, _ := startServer(t, failingQueryable{tc.err}, Options{ExternalLabels: euWest})
			_, _, err := seriesFrames(t, client, &storepb.SeriesRequest{
				MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: []storepb.LabelMatcher{eq("job", "api")},
			})
			require.Equal(t, tc.wantCode, status.Code(err), "%v", err)
			require.ErrorContains(t, err, tc.err.Error())

			_, err = client.LabelNames(context.Background(), &storepb.LabelNamesRequest{End: math.MaxInt64})
			require.Equal(t, tc.wantCode, status.Code(err), "%v", err)
			_, err = client.LabelValues(context.Background(), &storepb.LabelValuesRequest{Label: "job", End: math.MaxInt64})
			require.Equal(t, tc.wantCode, status.Code(err), "%v", err)
			_, err = client.LabelValues(context.Background(), &storepb.LabelValuesRequest{Label: "region", End: math.MaxInt64})
			require.Equal(t, tc.wantCode, status.Code(err), "%v", err)
		})
	}
}

func TestCancelledCallsAnswerCanceled(t *testing.T) {
	f := newFixture(t)
	srv, err := NewServer(f.db, Options{ExternalLabels: euWest})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err = srv.LabelNames(ctx, &storepb.LabelNamesRequest{End: math.MaxInt64, Matchers: []storepb.LabelMatcher{eq("job", "api")}})
	require.Equal(t, codes.Canceled, status.Code(err), "%v", err)
	_, err = srv.LabelValues(ctx, &storepb.LabelValuesRequest{Label: "instance", End: math.MaxInt64, Matchers: []storepb.LabelMatcher{eq("job", "api")}})
	require.Equal(t, codes.Canceled, status.Code(err), "%v", err)
}

func TestMetricsCountCallsByMethodAndCode(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	client, _ := startServer(t, f.db, Options{ExternalLabels: euWest, Registerer: reg})
	// A second server on the same registry shares the collectors instead of failing.
	_, err := NewServer(f.db, Options{ExternalLabels: euWest, Registerer: reg})
	require.NoError(t, err)

	querySeries(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: []storepb.LabelMatcher{eq("job", "api")}})
	_, _, err = seriesFrames(t, client, &storepb.SeriesRequest{Matchers: []storepb.LabelMatcher{matcher(storepb.LabelMatcher_RE, "job", "(")}})
	require.Error(t, err)
	_, err = client.LabelNames(context.Background(), &storepb.LabelNamesRequest{End: math.MaxInt64})
	require.NoError(t, err)

	requests, err := reg.Gather()
	require.NoError(t, err)
	require.NotEmpty(t, requests)
	m, err := newMetrics(reg)
	require.NoError(t, err)
	require.Equal(t, 1.0, promtestutil.ToFloat64(m.requests.WithLabelValues(methodSeries, codes.OK.String())))
	require.Equal(t, 1.0, promtestutil.ToFloat64(m.requests.WithLabelValues(methodSeries, codes.InvalidArgument.String())))
	require.Equal(t, 1.0, promtestutil.ToFloat64(m.requests.WithLabelValues(methodLabelNames, codes.OK.String())))
	require.Equal(t, 4.0, promtestutil.ToFloat64(m.seriesSent))
	require.Equal(t, 2, promtestutil.CollectAndCount(m.duration))
}
