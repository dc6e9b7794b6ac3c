package rules

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/query"
)

const recordingRules = `
groups:
  - name: requests
    rules:
      - record: job:http_errors:rate5m
        expr: sum by (region, job) (rate(http_requests_total{code="500"}[5m]))
      - record: job:http_total:rate5m
        expr: sum by (region, job) (rate(http_requests_total[5m]))
      - record: job:http_error:ratio_rate5m
        expr: sum by (job) (job:http_errors:rate5m) / sum by (job) (job:http_total:rate5m)
  - name: alerts
    rules:
      - alert: HighErrorRatio
        expr: job:http_error:ratio_rate5m > 0.05
        labels:
          severity: page
        annotations:
          summary: "errors at {{ $value }}"
`

func threeRegions(t *testing.T, now time.Time, errRatio map[string]float64) []*regionStore {
	t.Helper()
	var out []*regionStore
	for _, r := range []string{"eu-west-1", "us-east-1", "ap-southeast-1"} {
		rs := startRegionStore(t, r)
		rs.appendRequests(t, now, 10, errRatio[r])
		out = append(out, rs)
	}
	return out
}

func TestRulerRecordsIntoItsStoreReadByTheQuerier(t *testing.T) {
	now := time.Now()
	stores := threeRegions(t, now, map[string]float64{"eu-west-1": 0.3})
	file := writeRuleFile(t, t.TempDir(), "rules.yml", recordingRules)
	dataDir := t.TempDir()
	f := startRuler(t, stores, fixtureOptions{files: []string{file}, dataDir: dataDir})

	// Recorded per region, with the ruler's label; the global ratio is sum(errors)/sum(totals).
	require.Eventually(t, func() bool {
		v, _ := f.instant(t, `job:http_error:ratio_rate5m`)
		return len(v) == 1
	}, 10*time.Second, 50*time.Millisecond)
	perRegion, ws := f.instant(t, `job:http_errors:rate5m`)
	require.Empty(t, ws)
	require.Len(t, perRegion, 3)
	for k := range perRegion {
		require.Contains(t, k, `ruler="global"`)
	}
	ratio, _ := f.instant(t, `job:http_error:ratio_rate5m`)
	require.InDelta(t, 0.1, ratio[`{__name__="job:http_error:ratio_rate5m", job="api", ruler="global"}`], 1e-9, "%v", ratio)

	// The region stores never hold it, and a selector on the ruler label reads the store alone.
	viaRegion, _ := f.instant(t, `job:http_errors:rate5m{region="eu-west-1"}`)
	require.Len(t, viaRegion, 1)
	require.InDelta(t, 3, viaRegion[`{__name__="job:http_errors:rate5m", job="api", region="eu-west-1", ruler="global"}`], 1e-9)
	none, _ := f.instant(t, `job:http_errors:rate5m{ruler="other"}`)
	require.Empty(t, none)

	// The alert fires (no for), and shows in /api/v1/alerts and /api/v1/rules.
	require.Eventually(t, func() bool {
		return f.rules(t)["HighErrorRatio"].State == "firing"
	}, 10*time.Second, 50*time.Millisecond)
	alerts := f.get(t, "/api/v1/alerts", nil)
	require.Equal(t, "success", alerts.Status)
	require.Contains(t, string(alerts.Data), `"alertname":"HighErrorRatio"`)
	require.Contains(t, string(alerts.Data), `"ruler":"global"`, "the alert's labels come from the recorded series")
	// ALERTS is recorded too, without a second ruler label.
	require.Eventually(t, func() bool {
		firing, _ := f.instant(t, `ALERTS{alertname="HighErrorRatio", alertstate="firing"}`)
		return len(firing) == 1
	}, 10*time.Second, 50*time.Millisecond)

	// A querier stacked on this one sees the recorded series through its StoreAPI.
	top := startRuler(t, []*regionStore{{addr: f.srv.GRPCAddr()}}, fixtureOptions{files: []string{writeRuleFile(t, t.TempDir(), "none.yml", "groups: []\n")}})
	require.Eventually(t, func() bool {
		v, _ := top.instant(t, `job:http_errors:rate5m`)
		return len(v) == 3
	}, 10*time.Second, 50*time.Millisecond)

	// A restart keeps the recorded series (WAL).
	before, _ := f.instant(t, `count_over_time(job:http_errors:rate5m{region="us-east-1"}[1h])`)
	require.Len(t, before, 1)
	f.stop()
	store, err := OpenStore(StoreOptions{Dir: dataDir, ExternalLabels: labels.FromStrings("ruler", "global")})
	require.NoError(t, err)
	defer store.Close()
	q, err := store.Querier(0, time.Now().Add(time.Minute).UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "job:http_errors:rate5m"))
	n := 0
	for set.Next() {
		require.Equal(t, "global", set.At().Labels().Get("ruler"))
		n++
	}
	require.NoError(t, set.Err())
	require.Equal(t, 3, n, "the recorded series survive a restart")
}

func TestRulerPartialResponseStrategy(t *testing.T) {
	for _, tc := range []struct {
		strategy string
		// wantHealth of the region-reading rule while eu-west-1 is down.
		wantHealth string
	}{
		{StrategyAbort, "err"},
		{StrategyWarn, "ok"},
	} {
		t.Run(tc.strategy, func(t *testing.T) {
			now := time.Now()
			stores := threeRegions(t, now, map[string]float64{"us-east-1": 0.5})
			file := writeRuleFile(t, t.TempDir(), "rules.yml", recordingRules+`
      - alert: StoreDown
        expr: meridian_query_store_up == 0
`)
			f := startRuler(t, stores, fixtureOptions{files: []string{file}, strategy: tc.strategy, selfRecord: true})
			require.Eventually(t, func() bool {
				return f.rules(t)["HighErrorRatio"].State == "firing"
			}, 10*time.Second, 50*time.Millisecond)
			group := file + ";requests"
			require.Zero(t, f.metric(t, "meridian_rule_evaluations_missing_regions_total", map[string]string{"rule_group": group}))

			stores[0].stop()
			require.Eventually(t, func() bool {
				return f.metric(t, "meridian_rule_evaluations_missing_regions_total", map[string]string{"rule_group": group, "strategy": tc.strategy}) >= 2
			}, 15*time.Second, 50*time.Millisecond)
			rs := f.rules(t)
			errRule := rs["job:http_errors:rate5m"]
			require.Equal(t, tc.wantHealth, errRule.Health, errRule.LastError)
			if tc.strategy == StrategyAbort {
				require.Contains(t, errRule.LastError, `region "eu-west-1"`)
				require.Contains(t, errRule.LastError, "regions eu-west-1 missing")
				// The alert neither resolves nor changes: its rule did not evaluate.
				require.Equal(t, "firing", rs["HighErrorRatio"].State)
			} else {
				perRegion, _ := f.instant(t, `job:http_errors:rate5m`)
				require.NotEmpty(t, perRegion)
			}
			// The alert on the querier's own metrics evaluates whatever the strategy: those
			// series live in the ruler's store alone.
			require.Eventually(t, func() bool {
				sd := f.rules(t)["StoreDown"]
				return sd.Health == "ok" && sd.State == "firing"
			}, 15*time.Second, 50*time.Millisecond)
		})
	}
}

func TestRulerSelfRecordsTheQueriersMetrics(t *testing.T) {
	now := time.Now()
	stores := threeRegions(t, now, nil)
	file := writeRuleFile(t, t.TempDir(), "rules.yml", recordingRules)
	f := startRuler(t, stores, fixtureOptions{files: []string{file}, selfRecord: true})
	require.Eventually(t, func() bool {
		v, _ := f.instant(t, `meridian_query_store_up{job="meridian-query"} == 1`)
		return len(v) == 3
	}, 10*time.Second, 50*time.Millisecond)
	v, _ := f.instant(t, `meridian_query_store_up`)
	for k := range v {
		require.Contains(t, k, `instance="`+f.srv.HTTPAddr()+`"`)
		require.Contains(t, k, `ruler="global"`)
	}
	// Histograms in their classic form, and the scrape's own series.
	require.Eventually(t, func() bool {
		buckets, _ := f.instant(t, `meridian_query_http_request_duration_seconds_bucket{le="+Inf", handler="/api/v1/query"}`)
		return len(buckets) == 1
	}, 10*time.Second, 50*time.Millisecond)
	up, _ := f.instant(t, `up{job="meridian-query"}`)
	require.Len(t, up, 1)
	// The rule manager's own metrics are recorded too.
	require.Eventually(t, func() bool {
		v, _ := f.instant(t, `prometheus_rule_group_rules{job="meridian-query"}`)
		return len(v) == 2
	}, 10*time.Second, 50*time.Millisecond)
}

func TestRulerReload(t *testing.T) {
	now := time.Now()
	stores := threeRegions(t, now, nil)
	dir := t.TempDir()

	// A bad file at start is an error naming file and line.
	bad := writeRuleFile(t, dir, "bad.yml", `
groups:
  - name: broken
    rules:
      - record: x:y
        expr: sum(rate(http_requests_total[5m])
`)
	_, err := newRulerFixture(t, stores, fixtureOptions{files: []string{bad}})
	require.Error(t, err)
	require.Contains(t, err.Error(), bad+": 5:")
	require.Contains(t, err.Error(), "unclosed left parenthesis")

	good := writeRuleFile(t, dir, "rules.yml", recordingRules)
	f := startRuler(t, stores, fixtureOptions{files: []string{dir + "/rules*.yml"}})
	require.Len(t, f.rules(t), 4)
	require.Equal(t, 1.0, f.metric(t, "meridian_rule_config_last_reload_successful", nil))

	// A bad file at reload keeps the old rules and says why.
	writeRuleFile(t, dir, "rules-more.yml", "groups:\n  - name: more\n    rules:\n      - record: a\n        expr: up\n        bogus: 1\n")
	resp, err := http.Post(f.url+"/-/reload", "", nil)
	require.NoError(t, err)
	body := readBody(t, resp)
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	require.Contains(t, body, "rules-more.yml: yaml: unmarshal errors:\n  line 6: field bogus not found")
	require.Equal(t, 0.0, f.metric(t, "meridian_rule_config_last_reload_successful", nil))
	require.Len(t, f.rules(t), 4, "the previous rules keep running")

	// A fixed file reloads.
	writeRuleFile(t, dir, "rules-more.yml", "groups:\n  - name: more\n    rules:\n      - record: a\n        expr: up\n")
	resp, err = http.Post(f.url+"/-/reload", "", nil)
	require.NoError(t, err)
	_ = readBody(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, f.rules(t), 5)
	require.Equal(t, 1.0, f.metric(t, "meridian_rule_config_last_reload_successful", nil))
	require.NotZero(t, f.metric(t, "meridian_rule_config_last_reload_success_timestamp_seconds", nil))
	_ = good
}

func TestRulerOptionsAreChecked(t *testing.T) {
	store, err := OpenStore(StoreOptions{Dir: t.TempDir(), ExternalLabels: labels.FromStrings("ruler", "global")})
	require.NoError(t, err)
	defer store.Close()
	srv, err := query.NewServer(query.ServerConfig{StoreSet: query.StoreSetOptions{Endpoints: []string{"127.0.0.1:1"}}, HTTPAddress: "127.0.0.1:0"})
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		opts RulerOptions
		want string
	}{
		{"strategy", RulerOptions{PartialResponseStrategy: "maybe"}, `partial response strategy "maybe"`},
		{"alertmanager scheme", RulerOptions{Alertmanagers: []string{"ftp://am:9093"}}, "scheme must be http or https"},
		{"alertmanager host", RulerOptions{Alertmanagers: []string{"http:///x"}}, "no host"},
		{"self-record without gatherer", RulerOptions{SelfRecord: true}, "gatherer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Queryable, tc.opts.Store, tc.opts.Registerer = srv.Queryable(), store, prometheus.NewRegistry()
			_, err := NewRuler(tc.opts)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err = OpenStore(StoreOptions{Dir: t.TempDir()})
	require.ErrorContains(t, err, "no external labels")
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestRulerReloadsOnSIGHUP(t *testing.T) {
	stores := threeRegions(t, time.Now(), nil)
	dir := t.TempDir()
	writeRuleFile(t, dir, "rules.yml", recordingRules)
	f := startRuler(t, stores, fixtureOptions{files: []string{dir + "/*.yml"}})
	require.Len(t, f.rules(t), 4)

	// The test's own handler keeps a SIGHUP sent before the ruler's handler is in place from
	// ending the process.
	own := make(chan os.Signal, 16)
	signal.Notify(own, syscall.SIGHUP)
	defer signal.Stop(own)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.ruler.ReloadOnSignal(ctx) }()
	defer func() { cancel(); <-done }()

	writeRuleFile(t, dir, "more.yml", "groups:\n  - name: more\n    rules:\n      - record: a\n        expr: up\n")
	require.Eventually(t, func() bool {
		require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
		return len(f.rules(t)) == 5
	}, 10*time.Second, 200*time.Millisecond, "SIGHUP reloads the rule files")
}
