package e2e

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// The ingest comparison: the same pre-encoded remote-write bodies go to `meridian ingest`,
// Prometheus's own receiver and Thanos Receive, with the same number of concurrent senders.
const (
	ingestSeries          = 10_000
	ingestSamplesPerSerie = 100 // 10k series x 100 = 1M samples
	ingestSenders         = 4
	ingestSeriesPerBody   = 250
	ingestStepsPerBody    = 10 // 2,500 samples per request
	// ingestRounds is how many times each receiver is fed (fresh process and TSDB each time,
	// alternating which goes first); the table shows the median round, as one round of a few
	// seconds on a shared machine is mostly noise.
	ingestRounds = 5
)

// ingestRun is what one receiver did with the payloads.
type ingestRun struct {
	samplesPerSec float64
	peakRSS       float64 // VmHWM after the load, bytes
	idleRSS       float64 // VmRSS before the load, bytes
	headSeries    float64
}

func (r ingestRun) rssPerSeries() float64 { return r.peakRSS / r.headSeries }

func benchIngest(b *testing.B, table *benchTable) {
	series := httpSeries([]int{0}, 22, 24)
	require.GreaterOrEqual(b, len(series), ingestSeries)
	series = series[:ingestSeries]
	start := time.Now().Add(-ingestSamplesPerSerie * benchScrapeInterval).Truncate(time.Minute).UnixMilli()
	plan := planBatches(series, ingestSenders, ingestSeriesPerBody, ingestStepsPerBody, ingestSamplesPerSerie, start)
	bodies := make([][][]byte, len(plan))
	richBodies := make([][][]byte, len(plan))
	var payloadBytes, richBytes, exemplars int
	for sh, batches := range plan {
		for _, wb := range batches {
			body := wb.encode(false)
			payloadBytes += len(body)
			bodies[sh] = append(bodies[sh], body)
			rich, n := encodeWithMetadataAndExemplars(wb)
			richBytes += len(rich)
			exemplars += n
			richBodies[sh] = append(richBodies[sh], rich)
		}
	}
	b.Logf("with metadata and exemplars: %d exemplars, %.1f MiB snappy", exemplars, float64(richBytes)/(1<<20))
	b.Logf("ingest payloads: %d series, %d samples, %d requests, %.1f MiB snappy", ingestSeries,
		ingestSeries*ingestSamplesPerSerie, ingestSeries*ingestSamplesPerSerie/(ingestSeriesPerBody*ingestStepsPerBody), float64(payloadBytes)/(1<<20))

	var mer, ref, thn, rich ingestRun
	var mers, refs, thns, richs []ingestRun
	for b.Loop() {
		mers, refs, thns, richs = nil, nil, nil, nil
		for round := range ingestRounds {
			feeds := []func(){
				func() {
					node := startIngest(b, b.TempDir(), []string{"region=eu-west-1"})
					mers = append(mers, feedReceiver(b, node.process, node.writeURL(), "http://"+node.httpAddr+"/metrics", bodies))
					node.stop(b, time.Minute)
				},
				func() {
					addr := freeAddr(b)
					prom := startPrometheus(b, addr, "global:\n  scrape_interval: 1m\n", "--web.enable-remote-write-receiver")
					refs = append(refs, feedReceiver(b, prom, "http://"+addr+"/api/v1/write", "http://"+addr+"/metrics", bodies))
					prom.stop(b, time.Minute)
				},
				func() {
					recv := startThanosReceive(b, b.TempDir(), "region=\"eu-west-1\"")
					thns = append(thns, feedReceiver(b, recv.process, recv.writeURL, "http://"+recv.httpAddr+"/metrics", bodies))
					recv.stop(b, time.Minute)
				},
				func() {
					node := startIngest(b, b.TempDir(), []string{"region=eu-west-1"})
					metricsURL := "http://" + node.httpAddr + "/metrics"
					richs = append(richs, feedReceiver(b, node.process, node.writeURL(), metricsURL, richBodies))
					got := scrapeMetrics(b, metricsURL, "meridian_ingest_exemplars_appended_total", "meridian_ingest_metadata_received_total")
					require.Equal(b, float64(exemplars), got["meridian_ingest_exemplars_appended_total"], "exemplars appended")
					require.Positive(b, got["meridian_ingest_metadata_received_total"], "metadata received")
					node.stop(b, time.Minute)
				},
			}
			// Each receiver (and meridian with the richer payloads) goes first, second, third
			// and fourth in turn, so that drift on the machine does not fall on one of them.
			for i := range feeds {
				feeds[(round+i)%len(feeds)]()
			}
		}
		b.Logf("samples/s per round: meridian %v, prometheus %v, thanos receive %v, meridian with metadata and exemplars %v",
			roundRates(mers), roundRates(refs), roundRates(thns), roundRates(richs))
		mer, ref, thn, rich = medianRun(mers), medianRun(refs), medianRun(thns), medianRun(richs)
	}

	b.ReportMetric(mer.samplesPerSec, "meridian-samples/s")
	b.ReportMetric(ref.samplesPerSec, "prometheus-samples/s")
	b.ReportMetric(thn.samplesPerSec, "thanos-samples/s")
	b.ReportMetric(mer.peakRSS/(1<<20), "meridian-peak-MiB")
	b.ReportMetric(ref.peakRSS/(1<<20), "prometheus-peak-MiB")
	b.ReportMetric(thn.peakRSS/(1<<20), "thanos-peak-MiB")
	b.ReportMetric(mer.rssPerSeries(), "meridian-B/series")
	b.ReportMetric(ref.rssPerSeries(), "prometheus-B/series")
	b.Logf("idle RSS before the load: meridian %s, prometheus %s, thanos receive %s", formatMiB(mer.idleRSS), formatMiB(ref.idleRSS), formatMiB(thn.idleRSS))

	name := fmt.Sprintf("ingest: samples/s (%dk series, %dM samples, %d senders, median of %d)", ingestSeries/1000, ingestSeries*ingestSamplesPerSerie/1_000_000, ingestSenders, ingestRounds)
	table.addRatio(name, mer.samplesPerSec, ref.samplesPerSec, formatRate, false, 1.0)
	table.add(benchRow{name: "ingest: peak RSS (VmHWM)", meridian: formatMiB(mer.peakRSS), reference: formatMiB(ref.peakRSS),
		ratio: fmt.Sprintf("%.2fx", mer.peakRSS/ref.peakRSS), target: "-", result: "info"})
	table.addRatio("ingest: peak RSS per active series", mer.rssPerSeries(), ref.rssPerSeries(), formatKiB, true, 1.0)

	// Against Thanos Receive, the ratio of each round (the two ran back to back) shows the spread.
	rate := func(r ingestRun) float64 { return r.samplesPerSec }
	peak := func(r ingestRun) float64 { return r.peakRSS }
	table.add(benchRow{
		name:      fmt.Sprintf("ingest vs Thanos Receive: samples/s (median of %d)", ingestRounds),
		meridian:  formatRate(mer.samplesPerSec),
		reference: formatRate(thn.samplesPerSec),
		ratio:     fmt.Sprintf("%.2fx (rounds %s)", mer.samplesPerSec/thn.samplesPerSec, roundRatios(mers, thns, rate)),
		target:    ">= 1.00x",
		result:    passFail(mer.samplesPerSec >= thn.samplesPerSec),
	})
	table.add(benchRow{
		name:      fmt.Sprintf("ingest vs Thanos Receive: peak RSS (VmHWM, median of %d)", ingestRounds),
		meridian:  formatMiB(mer.peakRSS),
		reference: formatMiB(thn.peakRSS),
		ratio:     fmt.Sprintf("%.2fx (rounds %s)", mer.peakRSS/thn.peakRSS, roundRatios(mers, thns, peak)),
		target:    "<= 1.00x",
		result:    passFail(mer.peakRSS <= thn.peakRSS),
	})

	// The same samples with what a Prometheus sends besides (metadata of every family in every
	// request, an exemplar per histogram per step), against meridian with the samples alone.
	table.add(benchRow{
		name:      fmt.Sprintf("ingest with metadata and exemplars (%dk exemplars): samples/s, vs without", exemplars/1000),
		meridian:  formatRate(rich.samplesPerSec),
		reference: formatRate(mer.samplesPerSec),
		ratio:     fmt.Sprintf("%.2fx (rounds %s)", rich.samplesPerSec/mer.samplesPerSec, roundRatios(richs, mers, rate)),
		target:    ">= 0.95x",
		result:    passFail(rich.samplesPerSec >= 0.95*mer.samplesPerSec),
	})
}

// benchFamilies is the metadata of the families httpSeries makes, as Prometheus sends it.
var benchFamilies = []prompb.MetricMetadata{
	{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests handled, by handler, method and code."},
	{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "http_request_duration_seconds", Help: "Latency of requests.", Unit: "seconds"},
}

// encodeWithMetadataAndExemplars is wb's RW1 body (without the region label) with the metadata
// of every family and, on the le="0.1" bucket of every latency histogram, an exemplar with a
// trace_id at every step; it returns the body and its number of exemplars.
func encodeWithMetadataAndExemplars(wb writeBatch) ([]byte, int) {
	raw, err := snappy.Decode(nil, wb.encode(false))
	if err != nil {
		panic(fmt.Sprintf("decode generated write request: %v", err))
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		panic(fmt.Sprintf("unmarshal generated write request: %v", err))
	}
	req.Metadata = benchFamilies
	n := 0
	for i, ts := range req.Timeseries {
		if !hasLabel(ts.Labels, "le", "0.1") {
			continue
		}
		for _, smp := range ts.Samples {
			req.Timeseries[i].Exemplars = append(req.Timeseries[i].Exemplars, prompb.Exemplar{
				Labels:    []prompb.Label{{Name: "trace_id", Value: fmt.Sprintf("%016x", uint64(smp.Timestamp)*2654435761+uint64(i))}},
				Value:     0.08,
				Timestamp: smp.Timestamp,
			})
			n++
		}
	}
	out, err := req.Marshal()
	if err != nil {
		panic(fmt.Sprintf("marshal generated write request: %v", err))
	}
	return snappy.Encode(nil, out), n
}

func hasLabel(ls []prompb.Label, name, value string) bool {
	for _, l := range ls {
		if l.Name == name && l.Value == value {
			return true
		}
	}
	return false
}

// roundRatios is the range of meridian's figure over the reference's, round by round.
func roundRatios(mers, refs []ingestRun, get func(ingestRun) float64) string {
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range min(len(mers), len(refs)) {
		r := get(mers[i]) / get(refs[i])
		lo, hi = min(lo, r), max(hi, r)
	}
	return fmt.Sprintf("%.2f-%.2fx", lo, hi)
}

// thanosReceive is a running `thanos receive` (ingestor only: no hashring).
type thanosReceive struct {
	*process
	httpAddr, writeURL string
}

// startThanosReceive runs Thanos Receive over tsdbPath with its defaults, as a platform team
// would deploy it in place of meridian ingest, and waits until it is ready.
func startThanosReceive(t testing.TB, tsdbPath string, extLabels ...string) *thanosReceive {
	t.Helper()
	r := &thanosReceive{httpAddr: freeAddr(t)}
	writeAddr := freeAddr(t)
	r.writeURL = "http://" + writeAddr + "/api/v1/receive"
	args := []string{"receive", "--tsdb.path", tsdbPath, "--http-address", r.httpAddr,
		"--grpc-address", freeAddr(t), "--remote-write.address", writeAddr, "--log.level", "warn"}
	for _, l := range extLabels {
		args = append(args, "--label", l)
	}
	r.process = startProcess(t, "thanos receive", thanosBinary, args...)
	waitReady(t, r.process, "http://"+r.httpAddr+"/-/ready", time.Minute)
	return r
}

// feedReceiver posts every body to url, one sender per shard, and reads the receiver's head
// from its /metrics: every sample must have been appended to ingestSeries series.
func feedReceiver(t testing.TB, p *process, url, metricsURL string, bodies [][][]byte) ingestRun {
	t.Helper()
	run := ingestRun{idleRSS: procStatusBytes(t, p, "VmRSS")}
	began := time.Now()
	err := runSenders(context.Background(), bodies, func(ctx context.Context, body []byte) error {
		return postWrite(ctx, url, body)
	})
	elapsed := time.Since(began)
	require.NoError(t, err, "feed %s", p.name)
	got := scrapeMetrics(t, metricsURL, "prometheus_tsdb_head_series", "prometheus_tsdb_head_samples_appended_total")
	total := float64(ingestSeries * ingestSamplesPerSerie)
	require.Equal(t, total, got["prometheus_tsdb_head_samples_appended_total"], "%s appended", p.name)
	require.Equal(t, float64(ingestSeries), got["prometheus_tsdb_head_series"], "%s head series", p.name)
	run.samplesPerSec = total / elapsed.Seconds()
	run.peakRSS = procStatusBytes(t, p, "VmHWM")
	run.headSeries = got["prometheus_tsdb_head_series"]
	return run
}

func roundRates(runs []ingestRun) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = formatRate(r.samplesPerSec)
	}
	return out
}

// medianRun is the median of the rounds, each figure taken on its own (the round with the median
// throughput need not be the one with the median peak RSS).
func medianRun(runs []ingestRun) ingestRun {
	median := func(get func(ingestRun) float64) float64 {
		vs := make([]float64, len(runs))
		for i, r := range runs {
			vs[i] = get(r)
		}
		slices.Sort(vs)
		return vs[len(vs)/2]
	}
	return ingestRun{
		samplesPerSec: median(func(r ingestRun) float64 { return r.samplesPerSec }),
		peakRSS:       median(func(r ingestRun) float64 { return r.peakRSS }),
		idleRSS:       median(func(r ingestRun) float64 { return r.idleRSS }),
		headSeries:    median(func(r ingestRun) float64 { return r.headSeries }),
	}
}
