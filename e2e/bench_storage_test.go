package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The shipping comparison: the same bodies go to two `meridian ingest` nodes, one shipping its
// blocks to a filesystem bucket and one without a bucket. The samples span 24h, so that the head
// cuts (and the shipping node uploads) a 2h block every few hundred milliseconds while the
// bodies are still arriving.
const (
	shipSeries   = 1_000
	shipSteps    = 24 * 3600 / 15 // 24h at the 15s scrape interval: 5760 samples per series
	shipSenders  = 4
	shipRounds   = 7
	shipPerBody  = 250
	shipStepBody = 10
)

func benchIngestShipping(b *testing.B, table *benchTable) {
	series := httpSeries([]int{0}, 10, 24)
	require.GreaterOrEqual(b, len(series), shipSeries)
	series = series[:shipSeries]
	start := (time.Now().Add(-25*time.Hour).UnixMilli() / (2 * time.Hour).Milliseconds()) * (2 * time.Hour).Milliseconds()
	// The senders go through the 24h in step: slice j holds every shard's bodies of the j-th
	// 10 steps, and a slice starts once the previous one is acknowledged, as Prometheus's shards
	// follow one WAL position. A shard left behind by more than an hour would have its samples
	// refused as out of bounds by any TSDB head.
	plan := planBatches(series, shipSenders, shipPerBody, shipStepBody, shipSteps, start)
	perSlice := shipSeries / shipSenders / shipPerBody
	bySlice := make([][][][]byte, shipSteps/shipStepBody)
	for j := range bySlice {
		bySlice[j] = make([][][]byte, len(plan))
		for sh, batches := range plan {
			for _, wb := range batches[j*perSlice : (j+1)*perSlice] {
				bySlice[j][sh] = append(bySlice[j][sh], wb.encode(false))
			}
		}
	}
	total := float64(shipSeries * shipSteps)

	feed := func(args ...string) (float64, float64) {
		node := startIngest(b, b.TempDir(), []string{"region=eu-west-1"}, args...)
		began := time.Now()
		for _, bodies := range bySlice {
			require.NoError(b, runSenders(context.Background(), bodies, func(ctx context.Context, body []byte) error {
				return postWrite(ctx, node.writeURL(), body)
			}))
		}
		rate := total / time.Since(began).Seconds()
		names := []string{"prometheus_tsdb_head_samples_appended_total"}
		if len(args) > 0 {
			names = append(names, "meridian_ingest_shipper_uploads_total")
		}
		got := scrapeMetrics(b, "http://"+node.httpAddr+"/metrics", names...)
		require.Equal(b, total, got["prometheus_tsdb_head_samples_appended_total"], "samples appended")
		node.stop(b, time.Minute)
		return rate, got["meridian_ingest_shipper_uploads_total"]
	}
	var on, off []ingestRun
	for b.Loop() {
		on, off = nil, nil
		for round := range shipRounds {
			feeds := []func(){
				func() {
					bucket := filepath.Join(b.TempDir(), "bucket")
					rate, uploads := feed("--objstore.config", fmt.Sprintf("type: FILESYSTEM\nconfig:\n  directory: %s\n", bucket))
					require.Positive(b, uploads, "no block was uploaded while the bodies arrived")
					on = append(on, ingestRun{samplesPerSec: rate})
				},
				func() {
					rate, _ := feed()
					off = append(off, ingestRun{samplesPerSec: rate})
				},
			}
			for i := range feeds {
				feeds[(round+i)%len(feeds)]()
			}
		}
		b.Logf("samples/s per round: shipping %v, not shipping %v", roundRates(on), roundRates(off))
	}
	mOn, mOff := medianRun(on), medianRun(off)
	b.ReportMetric(mOn.samplesPerSec, "shipping-samples/s")
	b.ReportMetric(mOff.samplesPerSec, "not-shipping-samples/s")
	// A round's two runs are back to back, a few seconds each, while the machine's speed drifts
	// by more than the effect measured between rounds: the figure is the median of the rounds'
	// own ratios.
	ratios := make([]float64, len(on))
	for i := range on {
		ratios[i] = on[i].samplesPerSec / off[i].samplesPerSec
	}
	slices.Sort(ratios)
	ratio := ratios[len(ratios)/2]
	rate := func(r ingestRun) float64 { return r.samplesPerSec }
	table.add(benchRow{
		name:      fmt.Sprintf("ingest shipping 2h blocks to a filesystem bucket: samples/s (%dk series over 24h, %d rounds), vs not shipping", shipSeries/1000, shipRounds),
		meridian:  formatRate(mOn.samplesPerSec),
		reference: formatRate(mOff.samplesPerSec),
		ratio:     fmt.Sprintf("%.2fx median of rounds (rounds %s)", ratio, roundRatios(on, off, rate)),
		target:    ">= 0.95x",
		result:    passFail(ratio >= 0.95),
	})
}
