package e2e

import (
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/store/storepb"
)

// TestPrometheusRemoteWritesIntoIngestAndStoreAPIReturnsTheSameSamples runs a real Prometheus
// that scrapes itself every second and remote-writes into a real `meridian ingest`; the samples
// read back over StoreAPI Series carry the region label and equal what Prometheus holds itself.
func TestPrometheusRemoteWritesIntoIngestAndStoreAPIReturnsTheSameSamples(t *testing.T) {
	ingest := startIngest(t, t.TempDir(), []string{`region="eu-west-1"`})
	promAddr := freeAddr(t)
	startPrometheus(t, promAddr, fmt.Sprintf(`
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['%s']
remote_write:
  - url: %s
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
`, promAddr, ingest.writeURL()))

	matchers := []storepb.LabelMatcher{
		{Type: storepb.LabelMatcher_EQ, Name: labels.MetricName, Value: "scrape_duration_seconds"},
		{Type: storepb.LabelMatcher_EQ, Name: "job", Value: "prometheus"},
	}
	var fromStore []seriesSamples
	require.Eventually(t, func() bool {
		fromStore = storeSeries(t, ingest.grpcAddr, 0, math.MaxInt64, matchers...)
		return len(fromStore) == 1 && len(fromStore[0].Samples) >= 5
	}, 60*time.Second, 500*time.Millisecond, "5 remote-written samples did not arrive")

	// Everything up to the newest sample the store holds has been sent (one series is sent in
	// order), so both sides must hold exactly the same samples up to it.
	upTo := fromStore[0].Samples[len(fromStore[0].Samples)-1].T
	fromStore = storeSeries(t, ingest.grpcAddr, 0, upTo, matchers...)
	fromProm := promRangeSamples(t, promAddr, `scrape_duration_seconds{job="prometheus"}`, time.Hour, upTo)
	require.Len(t, fromProm, 1)

	wantLabels := labels.NewBuilder(fromProm[0].Labels).Set("region", "eu-west-1").Labels()
	require.Equal(t, wantLabels, fromStore[0].Labels)
	require.Equal(t, fromProm[0].Samples, fromStore[0].Samples)
}

// TestIngestKeepsEveryAcknowledgedSampleAcrossKill9 writes batches that are acknowledged with
// 2xx, kills the process with SIGKILL, restarts it on the same directory and reads every
// acknowledged sample back through the StoreAPI.
func TestIngestKeepsEveryAcknowledgedSampleAcrossKill9(t *testing.T) {
	const (
		batches   = 20
		perSeries = 10
		nSeries   = 50
	)
	dir := t.TempDir()
	ingest := startIngest(t, dir, []string{"region=us-east-1", "replica=a"})

	start := time.Now().Add(-10 * time.Minute).UnixMilli()
	want := map[string][]sample{}
	for b := range batches {
		req := &prompb.WriteRequest{}
		for s := range nSeries {
			ls := labels.FromStrings(labels.MetricName, "durability_test", "series", fmt.Sprint(s))
			ts := prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil)}
			for i := range perSeries {
				smp := sample{T: start + int64(b*perSeries+i)*1000, V: float64(b*1000 + i*10 + s)}
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: smp.T, Value: smp.V})
				key := labels.NewBuilder(ls).Set("region", "us-east-1").Set("replica", "a").Labels().String()
				want[key] = append(want[key], smp)
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		code, msg := remoteWrite(t, ingest.writeURL(), req)
		require.Equal(t, http.StatusNoContent, code, "batch %d: %s", b, msg)
	}

	ingest.kill9(t)
	restarted := startIngest(t, dir, []string{"region=us-east-1", "replica=a"})

	got := map[string][]sample{}
	for _, s := range storeSeries(t, restarted.grpcAddr, 0, math.MaxInt64,
		storepb.LabelMatcher{Type: storepb.LabelMatcher_EQ, Name: labels.MetricName, Value: "durability_test"}) {
		got[s.Labels.String()] = append(got[s.Labels.String()], s.Samples...)
	}
	require.Len(t, got, nSeries)
	require.Equal(t, want, got)
	restarted.stop(t, 30*time.Second)
}
