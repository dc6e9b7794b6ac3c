package e2e

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

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
	cpuSeconds    float64 // CPU time (user and system) the receiver spent during the load
}

func (r ingestRun) rssPerSeries() float64 { return r.peakRSS / r.headSeries }

func benchIngest(b *testing.B, table *benchTable) {
	series := httpSeries([]int{0}, 22, 24)
	require.GreaterOrEqual(b, len(series), ingestSeries)
	series = series[:ingestSeries]
	start := time.Now().Add(-ingestSamplesPerSerie * benchScrapeInterval).Truncate(time.Minute).UnixMilli()
	plan := planBatches(series, ingestSenders, ingestSeriesPerBody, ingestStepsPerBody, ingestSamplesPerSerie, start)
	bodies := make([][][]byte, len(plan))
	var payloadBytes int
	for sh, batches := range plan {
		for _, wb := range batches {
			body := wb.encode(false)
			payloadBytes += len(body)
			bodies[sh] = append(bodies[sh], body)
		}
	}
	b.Logf("ingest payloads: %d series, %d samples, %d requests, %.1f MiB snappy", ingestSeries,
		ingestSeries*ingestSamplesPerSerie, ingestSeries*ingestSamplesPerSerie/(ingestSeriesPerBody*ingestStepsPerBody), float64(payloadBytes)/(1<<20))

	var mer, ref, thn ingestRun
	var mers, refs, thns []ingestRun
	for b.Loop() {
		mers, refs, thns = nil, nil, nil
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
			}
			// Each receiver goes first, second and third in turn, so that drift on the machine
			// does not fall on one of them.
			for i := range feeds {
				feeds[(round+i)%len(feeds)]()
			}
		}
		b.Logf("samples/s per round: meridian %v, prometheus %v, thanos receive %v", roundRates(mers), roundRates(refs), roundRates(thns))
		mer, ref, thn = medianRun(mers), medianRun(refs), medianRun(thns)
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
	return startThanosReceiveWith(t, tsdbPath, extLabels)
}

// startThanosReceiveWith is startThanosReceive with flags besides its defaults.
func startThanosReceiveWith(t testing.TB, tsdbPath string, extLabels []string, extraArgs ...string) *thanosReceive {
	t.Helper()
	r := &thanosReceive{httpAddr: freeAddr(t)}
	writeAddr := freeAddr(t)
	r.writeURL = "http://" + writeAddr + "/api/v1/receive"
	args := []string{"receive", "--tsdb.path", tsdbPath, "--http-address", r.httpAddr,
		"--grpc-address", freeAddr(t), "--remote-write.address", writeAddr, "--log.level", "warn"}
	for _, l := range extLabels {
		args = append(args, "--label", l)
	}
	r.process = startProcess(t, "thanos receive", thanosBinary, append(args, extraArgs...)...)
	waitReady(t, r.process, "http://"+r.httpAddr+"/-/ready", time.Minute)
	return r
}

// feedReceiver posts every body (RW1) to url, one sender per shard, and reads the receiver's
// head from its /metrics: every sample must have been appended to ingestSeries series.
func feedReceiver(t testing.TB, p *process, url, metricsURL string, bodies [][][]byte) ingestRun {
	t.Helper()
	return feedReceiverAs(t, p, url, metricsURL, false, bodies, ingestSeries*ingestSamplesPerSerie)
}

// feedReceiverAs is feedReceiver for RW1 (v2 false) or RW2 bodies that hold samples samples.
func feedReceiverAs(t testing.TB, p *process, url, metricsURL string, v2 bool, bodies [][][]byte, samples int) ingestRun {
	t.Helper()
	run := ingestRun{idleRSS: procStatusBytes(t, p, "VmRSS")}
	cpuBefore := procCPUSeconds(t, p)
	began := time.Now()
	err := runSenders(context.Background(), bodies, func(ctx context.Context, body []byte) error {
		return postWriteAs(ctx, url, v2, body)
	})
	elapsed := time.Since(began)
	run.cpuSeconds = procCPUSeconds(t, p) - cpuBefore
	require.NoError(t, err, "feed %s", p.name)
	got := scrapeMetrics(t, metricsURL, "prometheus_tsdb_head_series", "prometheus_tsdb_head_samples_appended_total")
	total := float64(samples)
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
		cpuSeconds:    median(func(r ingestRun) float64 { return r.cpuSeconds }),
	}
}
