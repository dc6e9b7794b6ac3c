package e2e

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// TestHAPairWithGapsOnDifferentSidesGivesOneGapFreeSeries runs two replicas of one region, each
// an ingest fed by its own Prometheus scraping the same exporter. Each replica's Prometheus is
// stopped for a few seconds at a different time, so each replica misses a different interval;
// the querier, deduplicating by the replica label, returns one series per label set with no hole
// longer than a few scrape intervals (each replica alone has one of about six seconds).
func TestHAPairWithGapsOnDifferentSidesGivesOneGapFreeSeries(t *testing.T) {
	const outage = 6 * time.Second
	_, simAddr := startRegionSimulator(t, t, "eu-west-1")
	replicas := map[string]*simRegion{}
	var endpoints []string
	for _, name := range []string{"a", "b"} {
		r := startRegion(t, t, "eu-west-1", []string{"region=eu-west-1", "replica=" + name}, simAddr)
		replicas[name] = r
		endpoints = append(endpoints, r.ingest.grpcAddr)
	}
	q := startGlobalQuerier(t, t, endpoints, "--query.replica-label", "replica")

	// Both replicas have data from a common instant on, and for a while before the first outage:
	// like Thanos, dedup gives the first sample of a window an initial penalty of 5s (no scrape
	// interval is known yet), so a replica hole that starts right at a query window's first
	// sample can leave a hole of up to 5s there. Real scrape intervals are rarely below that.
	from := time.Now().Add(3 * time.Second).UnixMilli()
	for _, r := range replicas {
		waitStoreHolds(t, r.ingest.grpcAddr, "up", "simulate", from+(8*scrapeInterval).Milliseconds(), 60*time.Second)
	}
	// Replica a misses an interval, then replica b misses a later one.
	gapStart := map[string]int64{}
	for _, name := range []string{"a", "b"} {
		r := replicas[name]
		gapStart[name] = time.Now().UnixMilli()
		r.prom.stop(t, 60*time.Second)
		time.Sleep(outage)
		r.startPrometheus(t, t)
		waitStoreHolds(t, r.ingest.grpcAddr, "up", "simulate", time.Now().Add(3*time.Second).UnixMilli(), 60*time.Second)
	}
	until := time.Now().UnixMilli()
	window := int(math.Ceil(float64(until-from)/1000)) + 1
	mint := until - int64(window)*1000 + 1

	for _, name := range []string{"up", "http_requests_total"} {
		t.Run(name, func(t *testing.T) {
			// Each replica alone has a hole of about the outage, where it was made.
			var perReplica map[string][]sample
			for _, rn := range []string{"a", "b"} {
				got := bySeries(storeSeries(t, replicas[rn].ingest.grpcAddr, mint, until, eqMatcher(labels.MetricName, name)), "replica")
				require.NotEmpty(t, got)
				for key, s := range got {
					gap, at := maxGap(s)
					require.GreaterOrEqual(t, gap, outage-time.Second, "replica %s, %s: no hole", rn, key)
					require.InDelta(t, gapStart[rn], at, float64((3 * time.Second).Milliseconds()), "replica %s, %s: hole at the wrong place", rn, key)
				}
				if perReplica == nil {
					perReplica = got
				}
				require.Len(t, got, len(perReplica), "replicas hold different series")
			}

			res := promQuery(t, q.httpAddr, fmt.Sprintf("%s[%ds]", name, window), until, nil)
			require.Empty(t, res.Body.Warnings)
			merged := decodeMatrix(t, res)
			require.Len(t, merged, len(perReplica), "one series per label set")
			worst := time.Duration(0)
			for _, s := range merged {
				key := s.Labels.String()
				require.False(t, s.Labels.Has("replica"), "%s keeps its replica label", key)
				_, ok := perReplica[key]
				require.True(t, ok, "%s is not a series of the replicas", key)
				// Penalty-based dedup switches replica only once the chosen one has been silent
				// for twice its scrape interval, so a switch leaves up to about three intervals.
				gap, at := maxGap(s.Samples)
				require.LessOrEqual(t, gap, 4*scrapeInterval, "%s: hole of %s at %d", key, gap, at)
				require.LessOrEqual(t, s.Samples[0].T, from+(3*scrapeInterval).Milliseconds(), "%s starts late", key)
				require.GreaterOrEqual(t, s.Samples[len(s.Samples)-1].T, until-(3*scrapeInterval).Milliseconds(), "%s ends early", key)
				worst = max(worst, gap)
			}
			t.Logf("%s: %d deduplicated series over %ds, longest hole %s (each replica alone: >= %s)", name, len(merged), window, worst, outage-time.Second)
		})
	}
}
