package rules

import (
	"context"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// samplesOf reads every sample of the series named name from the store, by labels.
func samplesOf(t *testing.T, s *Store, name string) map[string][]float64 {
	t.Helper()
	q, err := s.Querier(0, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, name))
	out := map[string][]float64{}
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			_, v := it.At()
			out[set.At().Labels().String()] = append(out[set.At().Labels().String()], v)
		}
	}
	require.NoError(t, set.Err())
	return out
}

func TestSelfRecorderWritesAScrapeOfTheRegistry(t *testing.T) {
	store, err := OpenStore(StoreOptions{Dir: t.TempDir(), ExternalLabels: labels.FromStrings("ruler", "global")})
	require.NoError(t, err)
	defer store.Close()
	reg := prometheus.NewRegistry()
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_query_store_healthy", Help: "h"}, []string{"store", "job"})
	hist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "meridian_query_seconds", Help: "h", Buckets: []float64{0.1, 1}})
	sum := prometheus.NewSummary(prometheus.SummaryOpts{Name: "meridian_query_summary_seconds", Help: "h", Objectives: map[float64]float64{0.5: 0.05}})
	reg.MustRegister(up, hist, sum)
	up.WithLabelValues("a:1", "inner").Set(1)
	up.WithLabelValues("b:1", "inner").Set(0)
	hist.Observe(0.5)
	sum.Observe(2)

	rec := newSelfRecorder(reg, store, "meridian-query", "q:9090", slog.New(slog.DiscardHandler))
	t0 := time.Now()
	require.NoError(t, rec.record(context.Background(), t0))
	up.DeleteLabelValues("b:1", "inner")
	require.NoError(t, rec.record(context.Background(), t0.Add(time.Second)))

	got := samplesOf(t, store, "meridian_query_store_healthy")
	require.Equal(t, []float64{1, 1}, got[`{__name__="meridian_query_store_healthy", exported_job="inner", instance="q:9090", job="meridian-query", ruler="global", store="a:1"}`],
		"a metric's own job label becomes exported_job")
	gone := got[`{__name__="meridian_query_store_healthy", exported_job="inner", instance="q:9090", job="meridian-query", ruler="global", store="b:1"}`]
	require.Len(t, gone, 2)
	require.Equal(t, 0.0, gone[0])
	require.True(t, value.IsStaleNaN(gone[1]), "a series gone from the registry gets a staleness marker")

	buckets := samplesOf(t, store, "meridian_query_seconds_bucket")
	require.Equal(t, []float64{0, 0}, buckets[`{__name__="meridian_query_seconds_bucket", instance="q:9090", job="meridian-query", le="0.1", ruler="global"}`])
	require.Equal(t, []float64{1, 1}, buckets[`{__name__="meridian_query_seconds_bucket", instance="q:9090", job="meridian-query", le="+Inf", ruler="global"}`])
	require.Len(t, samplesOf(t, store, "meridian_query_seconds_count"), 1)
	require.Len(t, samplesOf(t, store, "meridian_query_summary_seconds"), 1, "summary quantile")
	require.Len(t, samplesOf(t, store, "meridian_query_summary_seconds_sum"), 1)
	require.Equal(t, []float64{1, 1}, samplesOf(t, store, "up")[`{__name__="up", instance="q:9090", job="meridian-query", ruler="global"}`])

	require.True(t, rec.owns("meridian_query_seconds_bucket"))
	require.False(t, rec.owns("meridian_ingest_samples_received_total"), "not a family of this registry")
	require.False(t, rec.owns("up"))
	var _ storage.Appendable = store
}
