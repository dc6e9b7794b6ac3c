package e2e

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The querier-memory measurement: instant queries that touch every one of ~100k series spread
// over three ingest nodes.
const (
	rssSeriesPerRegion = 33_334 // 100,002 series in all
	rssSteps           = 20     // 5 minutes at 15s
	rssSeriesPerBody   = 500
	rssStoreTimeout    = time.Minute
)

func benchQuerierRSS(b *testing.B, table *benchTable) {
	series := podSeries(rssSeriesPerRegion)
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-(rssSteps - 1) * benchScrapeInterval)
	targets, stores := startRegionNodes(b)
	promAddr := freeAddr(b)
	prom := startPrometheus(b, promAddr, "global:\n  scrape_interval: 1m\n", "--web.enable-remote-write-receiver")
	targets.prometheusURL = "http://" + promAddr + "/api/v1/write"
	require.NoError(b, targets.load(context.Background(), series, 2, rssSeriesPerBody, rssSteps, rssSteps, start.UnixMilli()))
	querier := startQuerier(b, stores, rssStoreTimeout)
	idle := procStatusBytes(b, querier.process, "VmRSS")
	promBefore := procStatusBytes(b, prom, "VmHWM")

	queries := []struct {
		expr string
		want int
	}{
		{`count by (region) (kube_pod_container_status_restarts_total)`, len(benchRegions)},
		{`kube_pod_container_status_restarts_total`, len(series)},
	}
	for b.Loop() {
		for _, q := range queries {
			params := url.Values{"query": {q.expr}, "time": {unixSeconds(end)}}
			m := benchGet(b, querier.httpAddr, "/api/v1/query", params)
			p := benchGet(b, promAddr, "/api/v1/query", params)
			require.Equal(b, q.want, m.count, "meridian: %s", q.expr)
			require.Equal(b, q.want, p.count, "prometheus: %s", q.expr)
			require.Empty(b, m.warnings, q.expr)
			b.Logf("%s: meridian %s, prometheus %s", q.expr, m.took.Round(time.Millisecond), p.took.Round(time.Millisecond))
		}
	}
	peak := procStatusBytes(b, querier.process, "VmHWM")
	promPeak := procStatusBytes(b, prom, "VmHWM")
	b.Logf("querier RSS before the queries %s; Prometheus peak RSS after loading %s, after the queries %s",
		formatMiB(idle), formatMiB(promBefore), formatMiB(promPeak))
	b.ReportMetric(peak/(1<<20), "querier-peak-MiB")
	b.ReportMetric(promPeak/(1<<20), "prometheus-peak-MiB")
	table.add(benchRow{
		name:      fmt.Sprintf("querier peak RSS, instant queries over %dk series (reference: Prometheus holding them)", len(series)/1000),
		meridian:  fmt.Sprintf("%s (idle %s)", formatMiB(peak), formatMiB(idle)),
		reference: formatMiB(promPeak),
		ratio:     fmt.Sprintf("%.2fx", peak/promPeak),
		target:    "-",
		result:    "info",
	})
}
