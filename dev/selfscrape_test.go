package dev

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The ingest nodes' own metrics are queryable through the querier, each region's under its
// region label, as they are in production once the region's Prometheus scrapes its node.
func TestIngestNodesScrapedIntoTheirRegion(t *testing.T) {
	_, base := startEnv(t, Config{})
	for _, expr := range []string{
		`sum by (region) (rate(meridian_ingest_samples_appended_total{job="` + SelfScrapeJob + `"}[1m])) > 0`,
		`max by (region) (up{job="` + SelfScrapeJob + `"}) == 1`,
		`sum by (region) (meridian_storeapi_requests_total)`,
	} {
		require.Eventually(t, func() bool {
			resp, regions := instantQuery(t, base, expr, "false")
			return resp.Status == "success" && len(regions) == len(regionNames)
		}, 30*time.Second*timeScale, 500*time.Millisecond, expr)
		_, regions := instantQuery(t, base, expr, "false")
		require.ElementsMatch(t, regionNames, regions, expr)
	}
}
