package storeapi

import (
	"context"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var withReplica = labels.FromStrings("cluster", "c1", "region", "eu-west-1", "replica", "r0")

func TestLabelNames(t *testing.T) {
	f := newFixture(t)
	q := &countingQueryable{ChunkQueryable: f.db}
	client, _ := startServer(t, q, Options{ExternalLabels: withReplica})
	everything := []int64{math.MinInt64, math.MaxInt64}

	for _, tc := range []struct {
		name         string
		matchers     []storepb.LabelMatcher
		timeRange    []int64
		without      []string
		limit        int64
		want         []string
		wantNoQuerys bool
	}{
		{
			name:      "all names with external ones",
			timeRange: everything,
			want:      []string{"__name__", "cluster", "instance", "job", "owner", "region", "replica"},
		},
		{
			name:      "matchers narrow the names",
			matchers:  []storepb.LabelMatcher{eq("__name__", "latency_seconds")},
			timeRange: everything,
			want:      []string{"__name__", "cluster", "job", "region", "replica"},
		},
		{
			name:      "time range of the block only",
			timeRange: []int64{0, headStart - 1},
			want:      []string{"__name__", "cluster", "job", "owner", "region", "replica"},
		},
		{
			name:      "time range of the head only",
			timeRange: []int64{headStart, math.MaxInt64},
			want:      []string{"__name__", "cluster", "instance", "job", "region", "replica"},
		},
		{
			name:      "replica labels dropped",
			matchers:  []storepb.LabelMatcher{eq("__name__", "latency_seconds")},
			timeRange: everything,
			without:   []string{"replica"},
			want:      []string{"__name__", "cluster", "job", "region"},
		},
		{
			name:      "matching external label matcher",
			matchers:  []storepb.LabelMatcher{eq("region", "eu-west-1"), eq("job", "web")},
			timeRange: everything,
			want:      []string{"__name__", "cluster", "instance", "job", "region", "replica"},
		},
		{
			name:      "no matching series means no names, not even external ones",
			matchers:  []storepb.LabelMatcher{eq("job", "nonexistent")},
			timeRange: everything,
		},
		{
			name:      "limit",
			timeRange: everything,
			limit:     2,
			want:      []string{"__name__", "cluster"},
		},
		{
			name:         "contradicting external label answers empty without touching storage",
			matchers:     []storepb.LabelMatcher{eq("region", "us-east-1")},
			timeRange:    everything,
			wantNoQuerys: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := q.opened.Load()
			resp, err := client.LabelNames(context.Background(), &storepb.LabelNamesRequest{
				Start: tc.timeRange[0], End: tc.timeRange[1],
				Matchers: tc.matchers, WithoutReplicaLabels: tc.without, Limit: tc.limit,
			})
			require.NoError(t, err)
			require.Equal(t, tc.want, resp.Names)
			require.Empty(t, resp.Warnings)
			if tc.wantNoQuerys {
				require.Equal(t, before, q.opened.Load(), "storage was queried")
			}
		})
	}
}

func TestLabelValues(t *testing.T) {
	f := newFixture(t)
	q := &countingQueryable{ChunkQueryable: f.db}
	client, _ := startServer(t, q, Options{ExternalLabels: withReplica})
	everything := []int64{math.MinInt64, math.MaxInt64}

	for _, tc := range []struct {
		name         string
		label        string
		matchers     []storepb.LabelMatcher
		timeRange    []int64
		without      []string
		limit        int64
		want         []string
		wantNoQuerys bool
	}{
		{
			name: "storage label", label: "job", timeRange: everything,
			want: []string{"api", "batch", "web"},
		},
		{
			name: "storage label with matchers", label: "instance", timeRange: everything,
			matchers: []storepb.LabelMatcher{eq("job", "web")},
			want:     []string{"a"},
		},
		{
			name: "storage label in the block's time range", label: "job", timeRange: []int64{0, headStart - 1},
			want: []string{"batch"},
		},
		{
			name: "storage label in the head's time range", label: "job", timeRange: []int64{headStart, math.MaxInt64},
			want: []string{"api", "web"},
		},
		{
			name: "limit", label: "job", timeRange: everything, limit: 1,
			want: []string{"api"},
		},
		{
			name: "external label", label: "region", timeRange: everything,
			want: []string{"eu-west-1"},
		},
		{
			name: "external label overrides the series' own values", label: "region", timeRange: everything,
			matchers: []storepb.LabelMatcher{eq("__name__", "mislabelled")},
			want:     []string{"eu-west-1"},
		},
		{
			name: "external label with matchers matching no series", label: "region", timeRange: everything,
			matchers: []storepb.LabelMatcher{eq("job", "nonexistent")},
		},
		{
			name: "external label in a time range without data", label: "cluster",
			timeRange: []int64{headStart + 1000*scrapeInterval, headStart + 2000*scrapeInterval},
		},
		{
			name: "dropped replica label", label: "replica", timeRange: everything, without: []string{"replica"},
			wantNoQuerys: true,
		},
		{
			name: "contradicting external label answers empty without touching storage", label: "job", timeRange: everything,
			matchers:     []storepb.LabelMatcher{matcher(storepb.LabelMatcher_RE, "region", "us-.*")},
			wantNoQuerys: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := q.opened.Load()
			resp, err := client.LabelValues(context.Background(), &storepb.LabelValuesRequest{
				Label: tc.label, Start: tc.timeRange[0], End: tc.timeRange[1],
				Matchers: tc.matchers, WithoutReplicaLabels: tc.without, Limit: tc.limit,
			})
			require.NoError(t, err)
			require.Equal(t, tc.want, resp.Values)
			if tc.wantNoQuerys {
				require.Equal(t, before, q.opened.Load(), "storage was queried")
			}
		})
	}
}

func TestLabelCallsRejectInvalidRequests(t *testing.T) {
	f := newFixture(t)
	q := &countingQueryable{ChunkQueryable: f.db}
	client, _ := startServer(t, q, Options{ExternalLabels: euWest})
	bad := []storepb.LabelMatcher{matcher(storepb.LabelMatcher_NRE, "job", "[")}

	_, err := client.LabelNames(context.Background(), &storepb.LabelNamesRequest{End: math.MaxInt64, Matchers: bad})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	_, err = client.LabelValues(context.Background(), &storepb.LabelValuesRequest{Label: "job", End: math.MaxInt64, Matchers: bad})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	_, err = client.LabelValues(context.Background(), &storepb.LabelValuesRequest{End: math.MaxInt64})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Zero(t, q.opened.Load())
}
