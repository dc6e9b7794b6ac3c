package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/store/storepb"
)

// coreEnv is the shared three-region environment: per region a test exporter, a real
// Prometheus scraping it every second and remote-writing to a real `meridian ingest`, and one
// `meridian query` that reaches each ingest through a fault proxy.
type coreEnv struct {
	owner   testing.TB
	regions []*simRegion
	querier *globalQuerier
}

// startCoreEnv starts the environment; its processes live as long as owner.
func startCoreEnv(t testing.TB, querierArgs ...string) *coreEnv {
	t.Helper()
	env := &coreEnv{owner: t}
	var endpoints []string
	for _, name := range regionNames {
		r := startRegion(t, t, name, []string{"region=" + name}, "")
		env.regions = append(env.regions, r)
		endpoints = append(endpoints, r.proxy.Addr())
	}
	env.querier = startGlobalQuerier(t, t, endpoints, querierArgs...)
	// Every region has a few seconds of scraped data before the scenarios start (Prometheus
	// writes its own up series even when a scrape fails, so wait for the exporter's series).
	since := time.Now().Add(3 * time.Second).UnixMilli()
	for _, r := range env.regions {
		waitStoreHolds(t, r.ingest.grpcAddr, "http_requests_total", "frontend", since, 60*time.Second)
	}
	return env
}

func (env *coreEnv) region(t testing.TB, name string) *simRegion {
	t.Helper()
	for _, r := range env.regions {
		if r.name == name {
			return r
		}
	}
	t.Fatalf("no region %q", name)
	return nil
}

// regionsAnswering asks the querier which regions have a scrape target up at atMillis.
func (env *coreEnv) regionsAnswering(t testing.TB, extra url.Values) (apiAnswer, []string) {
	t.Helper()
	res := promQuery(t, env.querier.httpAddr, `count by (region) (up{job="simulate"})`, time.Now().UnixMilli(), extra)
	if res.Code != http.StatusOK {
		return res, nil
	}
	var names []string
	for _, s := range vectorOf(t, res) {
		names = append(names, s.Metric["region"])
	}
	sort.Strings(names)
	return res, names
}

// waitAllRegionsBack waits until a query answers from every region without a warning.
func (env *coreEnv) waitAllRegionsBack(t testing.TB, timeout time.Duration) {
	t.Helper()
	want := append([]string(nil), regionNames...)
	sort.Strings(want)
	var last apiAnswer
	require.Eventually(t, func() bool {
		var got []string
		last, got = env.regionsAnswering(t, nil)
		return last.Code == http.StatusOK && len(last.Body.Warnings) == 0 && strings.Join(got, ",") == strings.Join(want, ",")
	}, timeout, 250*time.Millisecond, "not every region answers without warning; last answer: %s", last.Raw)
}

// TestScenarios runs the core scenarios over one shared three-region environment. Scenarios
// that break a region restore it before they end, so their order does not matter.
func TestScenarios(t *testing.T) {
	env := startCoreEnv(t, sloConfigArgs(t)...)

	t.Run("GlobalQueryEqualsTheUnionOfTheRegions", func(t *testing.T) { testGlobalQueryEqualsUnion(t, env) })
	t.Run("SlowRegionAnswersWithinStoreTimeoutWithWarning", func(t *testing.T) { testSlowRegion(t, env) })
	t.Run("KilledRegionIsNamedAndComesBackWithoutGap", func(t *testing.T) { testKilledRegion(t, env) })
	t.Run("Kill9DuringRemoteWriteKeepsEveryAcknowledgedSample", func(t *testing.T) { testKill9KeepsAcked(t, env) })
	t.Run("BadInputIsRefusedAndTheProcessesKeepServing", func(t *testing.T) { testBadInputOnRunningProcesses(t, env) })
	t.Run("CapacityRemovedFromSurvivorsClosesTheReadinessGate", func(t *testing.T) { testCapacityRemovedFromSurvivors(t, env) })
	// Last: its burst stays in the 5m window for five minutes and would fire a page burn gate.
	t.Run("ErrorBurstMovesBurnRatesAsComputedByHand", func(t *testing.T) { testErrorBurstMovesBurnRates(t, env) })
}

// testGlobalQueryEqualsUnion: raw samples of the global querier equal the union of what each
// region's store returns over StoreAPI, and aggregates by region equal those of a querier over
// that region alone, bit for bit.
func testGlobalQueryEqualsUnion(t *testing.T, env *coreEnv) {
	const window = 20 * time.Second
	// at is a past instant with at least 12 scrapes in the window before it in every region (so
	// that rate over 10s has points), and that every region has written beyond (so nothing more
	// can arrive for it).
	var at int64
	require.Eventually(t, func() bool {
		at = time.Now().Add(-2 * time.Second).UnixMilli()
		for _, r := range env.regions {
			ss := storeSeries(t, r.ingest.grpcAddr, at-window.Milliseconds()+1, at, eqMatcher(labels.MetricName, "http_requests_total"))
			if len(ss) == 0 || len(ss[0].Samples) < 12 {
				return false
			}
		}
		return true
	}, 60*time.Second, 500*time.Millisecond, "the regions have not scraped 12 times within %s", window)
	for _, r := range env.regions {
		waitStoreHolds(t, r.ingest.grpcAddr, "http_requests_total", "frontend", at+1000, 30*time.Second)
	}

	t.Run("raw samples", func(t *testing.T) {
		for _, name := range []string{"http_requests_total", "http_request_duration_seconds_bucket", "up"} {
			want := map[string][]sample{}
			for _, r := range env.regions {
				got := storeSeries(t, r.ingest.grpcAddr, at-window.Milliseconds()+1, at, eqMatcher(labels.MetricName, name))
				require.NotEmpty(t, got, "region %s holds no %s", r.name, name)
				for k, v := range bySeries(got) {
					want[k] = v
				}
			}
			res := promQuery(t, env.querier.httpAddr, fmt.Sprintf("%s[%ds]", name, int(window.Seconds())), at, nil)
			require.Empty(t, res.Body.Warnings)
			got := bySeries(decodeMatrix(t, res))
			require.Len(t, got, len(want), name)
			require.Equal(t, want, got, name)
		}
	})

	t.Run("aggregates by region", func(t *testing.T) {
		perRegion := map[string]*globalQuerier{}
		for _, r := range env.regions {
			perRegion[r.name] = startGlobalQuerier(t, t, []string{r.ingest.grpcAddr})
		}
		for _, expr := range []string{
			`sum by (region) (http_requests_total)`,
			`sum by (region, code) (rate(http_requests_total[10s]))`,
			`histogram_quantile(0.99, sum by (region, le) (rate(http_request_duration_seconds_bucket[10s])))`,
			`count by (region) (up)`,
			`max by (region) (meridian_replication_lag_seconds)`,
		} {
			want := map[string]string{}
			for _, r := range env.regions {
				res := promQuery(t, perRegion[r.name].httpAddr, expr, at, nil)
				require.Empty(t, res.Body.Warnings)
				vec := decodeVector(t, res)
				require.NotEmpty(t, vec, "%s in %s", expr, r.name)
				for k, v := range vec {
					want[k] = v
				}
			}
			res := promQuery(t, env.querier.httpAddr, expr, at, nil)
			require.Empty(t, res.Body.Warnings)
			require.Equal(t, want, decodeVector(t, res), expr)
		}
	})
}

// testSlowRegion: a region behind a proxy that delays it by 5s, with a 2s store timeout: the
// answer arrives within the store timeout + 10% with the other regions' data and a warning
// naming the slow one.
func testSlowRegion(t *testing.T, env *coreEnv) {
	slow := env.region(t, "us-east-1")
	// Label values of a stored label, asked until the querier's label cache answers them.
	hits := func() float64 {
		return counterSums(t, "http://"+env.querier.httpAddr+"/metrics", "meridian_query_label_cache_requests_total", "result")["hit"]
	}
	before := hits()
	require.Eventually(t, func() bool {
		lv := callAPI(t, env.querier.httpAddr, "/api/v1/label/handler/values", nil)
		require.Equal(t, http.StatusOK, lv.Code, lv.Raw)
		require.Empty(t, lv.Body.Warnings, lv.Raw)
		return hits() > before
	}, 10*time.Second, 50*time.Millisecond, "label values never answered from the cache")
	slow.proxy.SetDelay(5 * time.Second)
	defer func() {
		slow.proxy.SetDelay(0)
		env.waitAllRegionsBack(t, 30*time.Second)
	}()
	limit := storeTimeout + storeTimeout/10
	for i := range 3 {
		res, got := env.regionsAnswering(t, nil)
		require.Equal(t, http.StatusOK, res.Code, res.Raw)
		t.Logf("answer %d with region %s delayed by 5s: %s", i, slow.name, res.Elapsed)
		require.LessOrEqual(t, res.Elapsed, limit, "answer %d took %s", i, res.Elapsed)
		require.Equal(t, []string{"ap-southeast-1", "eu-west-1"}, got)
		w := warningFor(res.Body.Warnings, slow.name)
		require.NotEmpty(t, w, "no warning naming %s in %v", slow.name, res.Body.Warnings)
		require.Contains(t, w, slow.proxy.Addr())
	}
	// A range query and the label API are bounded the same way.
	end := time.Now()
	rng := callAPI(t, env.querier.httpAddr, "/api/v1/query_range", url.Values{
		"query": {`sum by (region) (rate(http_requests_total[10s]))`},
		"start": {millisParam(end.Add(-time.Minute).UnixMilli())}, "end": {millisParam(end.UnixMilli())}, "step": {"5"},
	})
	require.Equal(t, http.StatusOK, rng.Code, rng.Raw)
	require.LessOrEqual(t, rng.Elapsed, limit)
	require.NotEmpty(t, warningFor(rng.Body.Warnings, slow.name), rng.Raw)
	// The label cache does not answer for a region that stopped answering its pings.
	for _, name := range []string{"region", "handler"} {
		lv := callAPI(t, env.querier.httpAddr, "/api/v1/label/"+name+"/values", nil)
		require.Equal(t, http.StatusOK, lv.Code, lv.Raw)
		require.LessOrEqual(t, lv.Elapsed, limit)
		require.NotEmpty(t, warningFor(lv.Body.Warnings, slow.name), "label %s: %s", name, lv.Raw)
	}
}

// testKilledRegion: with one region's ingest stopped, answers name it in a warning within the
// store timeout (at once and 15s and 20s later), partial_response=false fails naming it, and
// once restarted on the same directory and ports it answers again with no hole in its data:
// Prometheus retried what it scraped during the outage.
func testKilledRegion(t *testing.T, env *coreEnv) {
	dead := env.region(t, "ap-southeast-1")
	dead.ingest.stop(t, 30*time.Second)
	killedAt := time.Now()

	for _, after := range []time.Duration{0, 15 * time.Second, 20 * time.Second} {
		if d := time.Until(killedAt.Add(after)); d > 0 {
			time.Sleep(d)
		}
		res, got := env.regionsAnswering(t, nil)
		require.Equal(t, http.StatusOK, res.Code, res.Raw)
		require.LessOrEqual(t, res.Elapsed, storeTimeout, "%s after the kill", after)
		require.Equal(t, []string{"eu-west-1", "us-east-1"}, got)
		w := warningFor(res.Body.Warnings, dead.name)
		require.NotEmpty(t, w, "%s after the kill: no warning naming %s in %v", after, dead.name, res.Body.Warnings)
		require.Contains(t, w, dead.proxy.Addr())

		strict, _ := env.regionsAnswering(t, url.Values{"partial_response": {"false"}})
		require.NotEqual(t, http.StatusOK, strict.Code, strict.Raw)
		require.Equal(t, "error", strict.Body.Status)
		require.Contains(t, strict.Body.Error, fmt.Sprintf("region %q", dead.name))

		// Nor does the label cache answer for it.
		lv := callAPI(t, env.querier.httpAddr, "/api/v1/label/handler/values", nil)
		require.Equal(t, http.StatusOK, lv.Code, lv.Raw)
		require.NotEmpty(t, warningFor(lv.Body.Warnings, dead.name), "%s after the kill: %s", after, lv.Raw)
	}

	// The querier's own metrics say why and since when the region's store fails; after it is
	// back, when it last failed stays (its reason depends on what the proxy in front of the
	// stopped store does: it closes each connection).
	failedAt := lastStoreError(t, env.querier.httpAddr, dead.proxy.Addr(), dead.name)
	require.False(t, failedAt.Before(killedAt.Add(-time.Second)), "last error at %s, region stopped at %s", failedAt, killedAt)

	dead.restartIngest(t, env.owner)
	downtime := time.Since(killedAt)
	restartedAt := time.Now()
	env.waitAllRegionsBack(t, 30*time.Second)
	require.False(t, lastStoreError(t, env.querier.httpAddr, dead.proxy.Addr(), dead.name).Before(failedAt), "the last error is kept after recovery")

	// Prometheus sends what it scraped during the outage once the region is back.
	until := restartedAt.Add(3 * time.Second).UnixMilli()
	waitStoreHolds(t, dead.ingest.grpcAddr, "up", "simulate", until, 60*time.Second)
	from := killedAt.Add(-10 * time.Second).UnixMilli()
	stored := storeSeries(t, dead.ingest.grpcAddr, from, until, eqMatcher(labels.MetricName, "up"), eqMatcher("job", "simulate"))
	require.Len(t, stored, 1)
	gap, gapAt := maxGap(stored[0].Samples)
	t.Logf("region down for %s; longest hole in its up series around the outage: %s at %d", downtime.Round(time.Millisecond), gap, gapAt)
	require.Less(t, gap, downtime+3*scrapeInterval)
	require.LessOrEqual(t, gap, 3*scrapeInterval, "Prometheus did not resend what it scraped during the outage")
	require.GreaterOrEqual(t, stored[0].Samples[0].T, from)
	require.LessOrEqual(t, stored[0].Samples[0].T, from+(3*scrapeInterval).Milliseconds())
}

// testKill9KeepsAcked: `kill -9` of an ingest while its Prometheus remote-writes; after the
// restart the store holds exactly what Prometheus holds up to the highest timestamp Prometheus
// had sent and had acknowledged before the kill.
func testKill9KeepsAcked(t *testing.T, env *coreEnv) {
	r := env.region(t, "eu-west-1")
	// Writes are flowing: the store holds a sample from the last seconds.
	waitStoreHolds(t, r.ingest.grpcAddr, "up", "simulate", time.Now().Add(-2*time.Second).UnixMilli(), 30*time.Second)
	acked := r.highestSentMillis(t)
	r.ingest.kill9(t)
	require.Greater(t, acked, r.startedAt.UnixMilli(), "Prometheus acknowledged nothing before the kill")
	r.restartIngest(t, env.owner)

	window := time.Duration(acked-r.startedAt.UnixMilli())*time.Millisecond + time.Second
	windowSec := int(window.Seconds())
	fromProm := bySeries(promRangeSamples(t, r.promAddr, `{__name__=~".+"}`, time.Duration(windowSec)*time.Second, acked))
	fromStore := bySeries(storeSeries(t, r.ingest.grpcAddr, acked-int64(windowSec)*1000+1, acked,
		storepb.LabelMatcher{Type: storepb.LabelMatcher_RE, Name: labels.MetricName, Value: ".+"}), "region")
	total := 0
	for _, s := range fromProm {
		total += len(s)
	}
	t.Logf("comparing %d series, %d samples acknowledged over %s before the kill", len(fromProm), total, window.Round(time.Second))
	require.Greater(t, total, 1000)
	require.Len(t, fromStore, len(fromProm))
	for k, want := range fromProm {
		require.Equal(t, want, fromStore[k], "series %s", k)
	}
	env.waitAllRegionsBack(t, 30*time.Second)
}

// lastStoreError reads meridian_query_store_last_error_timestamp_seconds of one store off the
// querier's /metrics: the region it names, a reason, and the time of the failure.
func lastStoreError(t *testing.T, querierAddr, store, region string) time.Time {
	t.Helper()
	mf, ok := metricFamilies(t, "http://"+querierAddr+"/metrics")["meridian_query_store_last_error_timestamp_seconds"]
	require.True(t, ok, "the querier exposes no store's last error")
	for _, m := range mf.GetMetric() {
		ls := map[string]string{}
		for _, lp := range m.GetLabel() {
			ls[lp.GetName()] = lp.GetValue()
		}
		if ls["store"] != store {
			continue
		}
		require.Equal(t, region, ls["region"])
		require.NotEmpty(t, ls["reason"])
		t.Logf("store %s (region %s): last error %s, reason %s", store, region, time.Unix(0, int64(m.GetGauge().GetValue()*1e9)).UTC().Format(time.RFC3339Nano), ls["reason"])
		return time.Unix(0, int64(m.GetGauge().GetValue()*1e9))
	}
	t.Fatalf("no last error for store %s", store)
	return time.Time{}
}
