package e2e

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/internal/faultproxy"
)

// The slow-store measurement: one region's StoreAPI behind a proxy that delays it well past the
// querier's store timeout.
const (
	slowStoreDelay   = 5 * time.Second
	slowStoreQueries = 5
	slowInstances    = 2
	slowHandlers     = 3
	slowSteps        = 40 // 10 minutes at 15s
)

func benchSlowStore(b *testing.B, table *benchTable) {
	series := httpSeries([]int{0, 1, 2}, slowInstances, slowHandlers)
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-(slowSteps - 1) * benchScrapeInterval)
	targets, stores := startRegionNodes(b)
	require.NoError(b, targets.load(context.Background(), series, 1, querySeriesPerBody, queryStepsPerBody, slowSteps, start.UnixMilli()))

	slowRegion := benchRegions[0]
	proxy, err := faultproxy.New("127.0.0.1:0", stores[0])
	require.NoError(b, err)
	b.Cleanup(func() { _ = proxy.Close() })
	stores[0] = proxy.Addr()
	querier := startQuerier(b, stores, queryStoreTimeout)
	proxy.SetDelay(slowStoreDelay)

	params := url.Values{"query": {`sum by (region) (rate(http_requests_total[5m]))`}, "time": {unixSeconds(end)}}
	var took []time.Duration
	for b.Loop() {
		took = took[:0]
		for i := range slowStoreQueries {
			ans := benchGet(b, querier.httpAddr, "/api/v1/query", params)
			require.Equal(b, len(benchRegions)-1, ans.count, "the partial answer holds the regions that answered")
			require.NotEmpty(b, ans.warnings, "the partial answer carries a warning")
			require.True(b, strings.Contains(strings.Join(ans.warnings, "\n"), slowRegion), "no warning names %s: %q", slowRegion, ans.warnings)
			if i == 0 {
				b.Logf("partial answer in %s with warning %q", ans.took.Round(time.Millisecond), ans.warnings)
			}
			took = append(took, ans.took)
		}
	}

	b.Logf("partial answers took %v", took)
	p50, worst := percentile(took, 50), percentile(took, 100)
	limit := queryStoreTimeout + queryStoreTimeout/10
	b.ReportMetric(ms(p50), "partial-p50-ms")
	b.ReportMetric(ms(worst), "partial-max-ms")
	table.add(benchRow{
		name:      fmt.Sprintf("slow store (+%s, store timeout %s): partial answer, %d queries", slowStoreDelay, queryStoreTimeout, slowStoreQueries),
		meridian:  fmt.Sprintf("p50 %s, max %s", formatMs(ms(p50)), formatMs(ms(worst))),
		reference: fmt.Sprintf("timeout %s", queryStoreTimeout),
		ratio:     fmt.Sprintf("%.2fx (max)", worst.Seconds()/queryStoreTimeout.Seconds()),
		target:    fmt.Sprintf("max <= %s", limit),
		result:    passFail(worst <= limit),
	})
}
