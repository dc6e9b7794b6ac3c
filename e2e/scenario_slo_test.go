package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sloObjective is the objective (in %) of the checkout availability SLO of the scenarios.
const sloObjective = 99.0

// sloConfigArgs writes an SLO and readiness configuration for the simulated shop with a 5m
// period (so 5m is the only window) and returns the querier flags that load it.
func sloConfigArgs(t testing.TB) []string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, writeTestFile(filepath.Join(dir, "checkout.yaml"), fmt.Sprintf(`version: "prometheus/v1"
service: checkout
slos:
  - name: requests-availability
    objective: %v
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
    alerting:
      page_alert: {disable: true}
      ticket_alert: {disable: true}
`, sloObjective)))
	cfg := filepath.Join(dir, "meridian.yml")
	require.NoError(t, writeTestFile(cfg, `period: 5m
region_label: region
slo_files: [checkout.yaml]
regions: [eu-west-1, us-east-1, ap-southeast-1]
readiness:
  topology: active-active
  utilisation_target: 0.70
  usage_expr: sum by (region) (rate(container_cpu_usage_seconds_total{container!=""}[1m]))
  capacity_expr: sum by (region) (kube_node_status_allocatable{resource="cpu"})
  replication_lag_expr: max by (region) (meridian_replication_lag_seconds)
  rpo: 5m
  version_expr: count by (region, deployment, version) (app_build_info)
  critical_workloads: [checkout, payments]
  workload_expr: sum by (region, deployment) (kube_deployment_status_replicas_available)
  up_expr: up
  drill_expr: max by (region) (meridian_failover_drill_last_success_timestamp_seconds)
`))
	return []string{"--slo.config", cfg, "--slo.evaluation-interval", "2s"}
}

// sloWindow is one window of one region (or the global value) in /api/v1/slos.
type sloWindow struct {
	Window   string   `json:"window"`
	Errors   *float64 `json:"errors"`
	Total    *float64 `json:"total"`
	Ratio    *float64 `json:"error_ratio"`
	BurnRate *float64 `json:"burn_rate"`
}

// sloRegion is the global or one region's part of an SLO result.
type sloRegion struct {
	Region  string      `json:"region"`
	Windows []sloWindow `json:"windows"`
}

// sloResult is one SLO of /api/v1/slos.
type sloResult struct {
	Service     string      `json:"service"`
	Name        string      `json:"slo"`
	Objective   float64     `json:"objective"`
	EvaluatedAt time.Time   `json:"evaluated_at"`
	Global      sloRegion   `json:"global"`
	Regions     []sloRegion `json:"regions"`
	Error       string      `json:"error"`
}

// checkoutSLO returns the checkout SLO as last evaluated by the querier.
func checkoutSLO(t testing.TB, addr string) sloResult {
	t.Helper()
	body := getBody(t, "http://"+addr+"/api/v1/slos?service=checkout")
	var resp struct {
		Status string      `json:"status"`
		Data   []sloResult `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &resp), body)
	require.Equal(t, "success", resp.Status, body)
	require.Len(t, resp.Data, 1, body)
	require.Empty(t, resp.Data[0].Error, body)
	return resp.Data[0]
}

// window5m returns the 5m window of r.
func window5m(t testing.TB, r sloRegion) sloWindow {
	t.Helper()
	for _, w := range r.Windows {
		if w.Window == "5m" {
			require.NotNil(t, w.Errors, "%s: no errors", r.Region)
			require.NotNil(t, w.Total, "%s: no total", r.Region)
			require.NotNil(t, w.Ratio, "%s: no ratio", r.Region)
			require.NotNil(t, w.BurnRate, "%s: no burn rate", r.Region)
			return w
		}
	}
	t.Fatalf("%s: no 5m window", r.Region)
	return sloWindow{}
}

// hasAll5m tells whether the global value and every region have all 5m figures.
func hasAll5m(res sloResult) bool {
	if len(res.Regions) != len(regionNames) {
		return false
	}
	for _, r := range append([]sloRegion{res.Global}, res.Regions...) {
		found := false
		for _, w := range r.Windows {
			if w.Window == "5m" {
				found = w.Errors != nil && w.Total != nil && w.Ratio != nil && w.BurnRate != nil
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// handBurn holds what the test computes itself from the raw counters at one instant.
type handBurn struct {
	errors, total map[string]float64 // by region
}

// computeByHand queries the raw checkout counters through the querier at at and returns their
// per-region rates over 5m.
func computeByHand(t testing.TB, addr string, at time.Time) handBurn {
	t.Helper()
	h := handBurn{errors: map[string]float64{}, total: map[string]float64{}}
	for expr, into := range map[string]map[string]float64{
		`sum by (region) (rate(http_requests_total{job="checkout",code=~"5.."}[5m]))`: h.errors,
		`sum by (region) (rate(http_requests_total{job="checkout"}[5m]))`:             h.total,
	} {
		for _, s := range vectorOf(t, promQuery(t, addr, expr, at.UnixMilli(), nil)) {
			v, err := strconv.ParseFloat(s.Value[1].(string), 64)
			require.NoError(t, err)
			into[s.Metric["region"]] = v
		}
	}
	return h
}

// burn is ratio / (1 - objective).
func (h handBurn) burn(region string) float64 {
	return h.errors[region] / h.total[region] / (1 - sloObjective/100)
}

func (h handBurn) globalBurn() float64 {
	var e, tot float64
	for r := range h.total {
		e += h.errors[r]
		tot += h.total[r]
	}
	return e / tot / (1 - sloObjective/100)
}

// remoteWriteLag bounds how far behind the engine's view of the data can be: the regions'
// Prometheus scrape every second and send a batch at least every second.
const remoteWriteLag = 2 * time.Second

// handAround computes by hand at the engine's evaluation instant and at the instants up to
// remoteWriteLag before it, one per second: the engine evaluated before the last samples had
// arrived, and saw the data of one of those instants.
func handAround(t testing.TB, addr string, evaluatedAt time.Time) []handBurn {
	t.Helper()
	var out []handBurn
	for lag := time.Duration(0); lag <= remoteWriteLag; lag += time.Second {
		out = append(out, computeByHand(t, addr, evaluatedAt.Add(-lag)))
	}
	return out
}

// requireMatchesByHand checks one evaluation of the engine against the raw counters. The
// engine's own figures must be consistent exactly (burn = errors / total / (1 - objective),
// global = sums over regions). Against the counters, each figure must agree within tolerance
// with the computation by hand at one of the instants handAround read: early in an
// environment's life a region has few server errors in its window, and one error in the last
// second moves its burn rate by more than the tolerance.
func requireMatchesByHand(t testing.TB, res sloResult, hands []handBurn, tolerance float64) {
	t.Helper()
	require.InDelta(t, sloObjective/100, res.Objective, 1e-9)
	closeToOne := func(got float64, want func(handBurn) float64, abs float64, what string) {
		t.Helper()
		var wants []float64
		for _, h := range hands {
			w := want(h)
			if math.Abs(w-got) <= tolerance*math.Max(math.Abs(w), math.Abs(got))+abs+1e-15 {
				return
			}
			wants = append(wants, w)
		}
		t.Fatalf("%s: the engine's %v is not within tolerance of any computation by hand at its instant and up to %s before: %v",
			what, got, remoteWriteLag, wants)
	}
	var sumErr, sumTot float64
	for _, r := range res.Regions {
		w := window5m(t, r)
		sumErr += *w.Errors
		sumTot += *w.Total
		requireClose(t, *w.Errors / *w.Total, *w.Ratio, 1e-9, 0, "%s ratio", r.Region)
		requireClose(t, *w.Ratio/(1-sloObjective/100), *w.BurnRate, 1e-9, 0, "%s burn rate", r.Region)
		closeToOne(*w.Total, func(h handBurn) float64 { return h.total[r.Region] }, 0, r.Region+" total by hand")
		closeToOne(*w.BurnRate, func(h handBurn) float64 { return h.burn(r.Region) }, burnFloor, r.Region+" burn rate by hand")
	}
	require.Len(t, res.Regions, len(regionNames))
	g := window5m(t, res.Global)
	requireClose(t, sumErr, *g.Errors, 1e-9, 0, "global errors are the sum over regions")
	requireClose(t, sumTot, *g.Total, 1e-9, 0, "global total is the sum over regions")
	requireClose(t, sumErr/sumTot/(1-sloObjective/100), *g.BurnRate, 1e-9, 0, "global burn rate")
	closeToOne(*g.BurnRate, handBurn.globalBurn, burnFloor, "global burn rate by hand")
}

// burnFloor is the absolute slack on burn rates compared by hand: a region with no server error
// yet in the window burns at 0, and one late sample moves it by a few hundredths.
const burnFloor = 0.05

// requireClose requires |want-got| <= rel*max(|want|,|got|) + abs.
func requireClose(t testing.TB, want, got, rel, abs float64, msgAndArgs ...any) {
	t.Helper()
	require.InDelta(t, want, got, rel*math.Max(math.Abs(want), math.Abs(got))+abs+1e-15, msgAndArgs...)
}

// testErrorBurstMovesBurnRates: an error burst in one region (20% of requests fail) moves that
// region's burn rate and the global one from /api/v1/slos as computed by hand from the raw
// counters, and leaves the other regions' where they were.
func testErrorBurstMovesBurnRates(t *testing.T, env *coreEnv) {
	const tolerance = 0.05
	burst := env.region(t, "eu-west-1")
	// Every region has errors and totals over 5m (a fresh environment needs a few scrapes).
	var before sloResult
	require.Eventually(t, func() bool {
		before = checkoutSLO(t, env.querier.httpAddr)
		return hasAll5m(before)
	}, 90*time.Second, time.Second, "the SLO never had every region's 5m figures")
	requireMatchesByHand(t, before, handAround(t, env.querier.httpAddr, before.EvaluatedAt), tolerance)
	beforeBurn := map[string]float64{}
	for _, r := range before.Regions {
		beforeBurn[r.Region] = *window5m(t, r).BurnRate
	}
	t.Logf("burn rates over 5m before the burst: %v, global %.3f", beforeBurn, *window5m(t, before.Global).BurnRate)

	controls := getBody(t, "http://"+burst.simAddr+"/controls")
	code, msg := postRaw(t, "http://"+burst.simAddr+"/errors?ratio=0.2", nil, nil)
	require.Equal(t, http.StatusOK, code, msg)
	burstAt := time.Now()
	defer func() {
		var c struct {
			Controls struct {
				ErrorRatio float64 `json:"error_ratio"`
			} `json:"controls"`
		}
		require.NoError(t, json.Unmarshal([]byte(controls), &c), controls)
		code, msg := postRaw(t, "http://"+burst.simAddr+"/errors?ratio="+strconv.FormatFloat(c.Controls.ErrorRatio, 'g', -1, 64), nil, nil)
		require.Equal(t, http.StatusOK, code, msg)
	}()

	// Wait for an evaluation made well into the burst.
	var after sloResult
	require.Eventually(t, func() bool {
		after = checkoutSLO(t, env.querier.httpAddr)
		return after.EvaluatedAt.After(burstAt.Add(30 * time.Second))
	}, 90*time.Second, time.Second)
	hands := handAround(t, env.querier.httpAddr, after.EvaluatedAt)
	requireMatchesByHand(t, after, hands, tolerance)
	hand := hands[0]

	afterBurn := map[string]float64{}
	for _, r := range after.Regions {
		afterBurn[r.Region] = *window5m(t, r).BurnRate
	}
	globalAfter := *window5m(t, after.Global).BurnRate
	t.Logf("burn rates over 5m 30s into the burst: %v, global %.3f (by hand: %s %.3f, global %.3f)",
		afterBurn, globalAfter, burst.name, hand.burn(burst.name), hand.globalBurn())
	require.Greater(t, afterBurn[burst.name], 3*beforeBurn[burst.name]+1, "the burst region's burn rate did not rise")
	require.Greater(t, globalAfter, *window5m(t, before.Global).BurnRate, "the global burn rate did not rise")
	for _, r := range regionNames {
		if r == burst.name {
			continue
		}
		require.Less(t, afterBurn[r], afterBurn[burst.name], "%s burns faster than the burst region", r)
		require.InDelta(t, beforeBurn[r], afterBurn[r], math.Max(0.5, beforeBurn[r]), "%s moved without a burst", r)
		require.Less(t, afterBurn[r], globalAfter, "global is a weighted mean over regions")
	}
}

// readinessGate is one hard gate of a readiness result.
type readinessGate struct {
	Name      string `json:"name"`
	Component string `json:"component"`
	Message   string `json:"message"`
}

// readinessResult is GET /readiness/<region>'s body.
type readinessResult struct {
	Region string          `json:"region"`
	State  string          `json:"state"`
	Ready  bool            `json:"ready"`
	Score  float64         `json:"score"`
	Gates  []readinessGate `json:"gates"`
	Reason string          `json:"reason"`
}

// regionReadiness calls GET /readiness/<region> and returns its status code and body.
func regionReadiness(t testing.TB, addr, region string) (int, readinessResult, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/readiness/" + region)
	require.NoError(t, err)
	defer resp.Body.Close()
	var res readinessResult
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &res), string(raw))
	return resp.StatusCode, res, string(raw)
}

// testCapacityRemovedFromSurvivors: with 70% of the survivors' capacity removed, losing the
// third region is NOT_READY by the capacity gate and its health endpoint answers 503; with the
// capacity restored it answers 200 again.
func testCapacityRemovedFromSurvivors(t *testing.T, env *coreEnv) {
	const lost = "ap-southeast-1"
	waitReadiness := func(wantCode int, check func(readinessResult) bool, what string) readinessResult {
		t.Helper()
		var last string
		var res readinessResult
		require.Eventually(t, func() bool {
			var code int
			code, res, last = regionReadiness(t, env.querier.httpAddr, lost)
			return code == wantCode && check(res)
		}, 90*time.Second, time.Second, "%s; last answer: %s", what, last)
		return res
	}
	ready := waitReadiness(http.StatusOK, func(r readinessResult) bool { return r.Ready && r.State == "READY" }, "losing "+lost+" never READY")
	t.Logf("losing %s before: %s, score %.1f", lost, ready.State, ready.Score)

	var survivors []*simRegion
	for _, name := range regionNames {
		if name != lost {
			survivors = append(survivors, env.region(t, name))
		}
	}
	setCapacity := func(factor string) {
		t.Helper()
		for _, r := range survivors {
			code, msg := postRaw(t, "http://"+r.simAddr+"/capacity?factor="+factor, nil, nil)
			require.Equal(t, http.StatusOK, code, msg)
		}
	}
	setCapacity("0.3")
	restored := false
	defer func() {
		if !restored {
			setCapacity("1")
		}
	}()
	notReady := waitReadiness(http.StatusServiceUnavailable, func(r readinessResult) bool {
		if r.State != "NOT_READY" || r.Ready {
			return false
		}
		for _, g := range r.Gates {
			if g.Name == "utilisation_at_or_above_capacity" {
				return true
			}
		}
		return false
	}, "capacity gate never closed")
	t.Logf("losing %s with the survivors at 30%% capacity: %s, score %.1f, reason %q", lost, notReady.State, notReady.Score, notReady.Reason)

	setCapacity("1")
	restored = true
	back := waitReadiness(http.StatusOK, func(r readinessResult) bool { return r.Ready && r.State == "READY" && len(r.Gates) == 0 }, "READY did not come back")
	t.Logf("losing %s with capacity restored: %s, score %.1f", lost, back.State, back.Score)
}
