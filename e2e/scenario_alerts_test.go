package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	amclient "github.com/prometheus/alertmanager/api/v2/client"
	amalert "github.com/prometheus/alertmanager/api/v2/client/alert"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The alerting scenario: three real `meridian ingest` regions fed by a scripted workload (6.5
// hours of history written at start, then live samples every second), a real Debian
// Alertmanager, and `meridian query` running the global ruler on the files `meridian rules
// generate` writes for an SLO of the simulated shop, with the alerts' "for" shortened.
//
// The SLO's objective is 94%: its page threshold (14.4 x 6% = 86.4% errors over both 5m and
// 1h) is met at once by a region whose history ends with a 55-minute burst of errors, and,
// once the burst stops, the 5m ratio falls below it within about 40 seconds. So the page fires
// and resolves within the test's time, with the shipped windows and factors.
const (
	alertSLOObjective = 94.0
	alertBurstRegion  = "us-east-1"
	alertKilledRegion = "eu-west-1"
	pageAlert         = "CheckoutAvailability"
)

// scriptedRegion is the workload of one region, written by remote write.
type scriptedRegion struct {
	name, writeURL string

	mu               sync.Mutex
	errRatio         float64
	capacity         float64
	ok, errs, cpuSec float64
	last             time.Time
}

const (
	scriptRequestsPerSec = 10.0
	scriptCPUCores       = 4.0
	scriptAllocatable    = 16.0
)

// samplesUntil advances the region's counters to ts and returns one sample of every series.
func (r *scriptedRegion) samplesUntil(ts time.Time) []prompb.TimeSeries {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() {
		dt := ts.Sub(r.last).Seconds()
		r.errs += scriptRequestsPerSec * r.errRatio * dt
		r.ok += scriptRequestsPerSec * (1 - r.errRatio) * dt
		r.cpuSec += scriptCPUCores * dt
	}
	r.last = ts
	ms := ts.UnixMilli()
	one := func(v float64, kv ...string) prompb.TimeSeries {
		ls := make([]prompb.Label, 0, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			ls = append(ls, prompb.Label{Name: kv[i], Value: kv[i+1]})
		}
		sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
		return prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Timestamp: ms, Value: v}}}
	}
	return []prompb.TimeSeries{
		one(r.ok, "__name__", "http_requests_total", "job", "checkout", "code", "200"),
		one(r.errs, "__name__", "http_requests_total", "job", "checkout", "code", "500"),
		one(r.cpuSec, "__name__", "container_cpu_usage_seconds_total", "container", "checkout"),
		one(scriptAllocatable*r.capacity, "__name__", "kube_node_status_allocatable", "resource", "cpu"),
		one(1, "__name__", "meridian_replication_lag_seconds"),
		one(1, "__name__", "app_build_info", "deployment", "checkout", "version", "1.4.2"),
		one(1, "__name__", "app_build_info", "deployment", "payments", "version", "2.0.1"),
		one(3, "__name__", "kube_deployment_status_replicas_available", "deployment", "checkout"),
		one(3, "__name__", "kube_deployment_status_replicas_available", "deployment", "payments"),
		one(1, "__name__", "up", "job", "checkout"),
		one(float64(ts.Add(-24*time.Hour).Unix()), "__name__", "meridian_failover_drill_last_success_timestamp_seconds"),
	}
}

func (r *scriptedRegion) set(f func(r *scriptedRegion)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

// backfill writes the history from start to end every step, in slices of time so that the
// TSDB's head accepts every sample; burstFrom on, the region's errors are burstRatio.
func (r *scriptedRegion) backfill(t testing.TB, start, end time.Time, step time.Duration, burstFrom time.Time, burstRatio float64) {
	t.Helper()
	for slice := start; slice.Before(end); slice = slice.Add(30 * time.Minute) {
		byKey := map[string]*prompb.TimeSeries{}
		var order []string
		for ts := slice; ts.Before(slice.Add(30*time.Minute)) && ts.Before(end); ts = ts.Add(step) {
			if !ts.Before(burstFrom) {
				r.set(func(r *scriptedRegion) { r.errRatio = burstRatio })
			}
			for _, s := range r.samplesUntil(ts) {
				k := fmt.Sprint(s.Labels)
				if byKey[k] == nil {
					s := s
					byKey[k] = &s
					order = append(order, k)
					continue
				}
				byKey[k].Samples = append(byKey[k].Samples, s.Samples...)
			}
		}
		req := &prompb.WriteRequest{}
		for _, k := range order {
			req.Timeseries = append(req.Timeseries, *byKey[k])
		}
		code, body := remoteWrite(t, r.writeURL, req)
		require.Equal(t, 200, code/100*100, "backfill %s: %s", r.name, body)
	}
}

// pushLive writes a sample of every series every second until ctx ends; a region whose ingest
// is down just misses its samples.
func (r *scriptedRegion) pushLive(ctx context.Context, t testing.TB, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				_ = tryRemoteWrite(r.writeURL, &prompb.WriteRequest{Timeseries: r.samplesUntil(now)})
			}
		}
	}()
}

// alertsConfig writes the SLO and readiness configuration and the rules generated from it.
func alertsConfig(t *testing.T) (cfgPath, ruleDir string) {
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
      name: %s
      page_alert:
        labels: {team: shop}
      ticket_alert: {}
`, alertSLOObjective, pageAlert)))
	cfgPath = filepath.Join(dir, "meridian.yml")
	require.NoError(t, writeTestFile(cfgPath, `region_label: region
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
	ruleDir = filepath.Join(dir, "rules")
	out, err := exec.Command(meridianBinary, "rules", "generate", "--config", cfgPath, "--out", ruleDir,
		"--alert.for", pageAlert+"=2s", "--alert.for", "MeridianFailoverNotReady=3s").CombinedOutput()
	require.NoError(t, err, "rules generate: %s", out)
	return cfgPath, ruleDir
}

// startAlertmanager runs Debian's Alertmanager alone (no cluster) on a free loopback port.
func startAlertmanager(t *testing.T) (string, *amclient.AlertmanagerAPI) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, writeTestFile(cfg, `route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
`))
	addr := freeAddr(t)
	p := spawnOwned(t, t, "alertmanager", "prometheus-alertmanager", "--config.file", cfg, "--storage.path", dir,
		"--web.listen-address", addr, "--cluster.listen-address=")
	waitReady(t, p, "http://"+addr+"/-/ready", 30*time.Second)
	cli := amclient.NewHTTPClientWithConfig(nil, amclient.DefaultTransportConfig().WithHost(addr).WithBasePath("/api/v2").WithSchemes([]string{"http"}))
	return addr, cli
}

// amAlert is an alert as Alertmanager's API v2 reports it.
type amAlert struct {
	labels, annotations map[string]string
	state               string
}

// activeAlerts lists the alerts Alertmanager holds active (not resolved), by name.
func activeAlerts(t testing.TB, cli *amclient.AlertmanagerAPI) map[string][]amAlert {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Alert.GetAlerts(amalert.NewGetAlertsParams().WithContext(ctx))
	require.NoError(t, err)
	out := map[string][]amAlert{}
	for _, a := range resp.Payload {
		if a.Status == nil || a.Status.State == nil || *a.Status.State != "active" {
			continue
		}
		out[a.Labels["alertname"]] = append(out[a.Labels["alertname"]], amAlert{labels: a.Labels, annotations: a.Annotations, state: *a.Status.State})
	}
	return out
}

func alertFor(alerts []amAlert, kv ...string) (amAlert, bool) {
next:
	for _, a := range alerts {
		for i := 0; i+1 < len(kv); i += 2 {
			if a.labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		return a, true
	}
	return amAlert{}, false
}

func TestAlertsReachAlertmanager(t *testing.T) {
	cfgPath, ruleDir := alertsConfig(t)
	amAddr, am := startAlertmanager(t)

	now := time.Now().Truncate(time.Second)
	regions := map[string]*scriptedRegion{}
	ingests := map[string]*ingestProcess{}
	var endpoints []string
	for _, name := range regionNames {
		ip := startIngestOn(t, t, freeAddr(t), freeAddr(t), t.TempDir(), []string{"region=" + name})
		ingests[name] = ip
		endpoints = append(endpoints, ip.grpcAddr)
		r := &scriptedRegion{name: name, writeURL: ip.writeURL(), capacity: 1, errRatio: 0.001}
		burst := now.Add(time.Hour) // never
		if name == alertBurstRegion {
			burst = now.Add(-55 * time.Minute)
		}
		r.backfill(t, now.Add(-390*time.Minute), now, 30*time.Second, burst, 1.0)
		regions[name] = r
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, r := range regions {
		r.pushLive(ctx, t, &wg)
	}

	q := startGlobalQuerier(t, t, endpoints, append(sloConfigFlags(cfgPath),
		"--rule-file", filepath.Join(ruleDir, "*.yml"),
		"--rule.data-dir", t.TempDir(),
		"--rule.evaluation-interval", "1s",
		"--rules.alert.resend-delay", "1s",
		"--alertmanager.url", "http://"+amAddr,
	)...)

	t.Run("an error burst in one region pages with region, slo, severity and runbook_url, and resolves after it", func(t *testing.T) {
		var page amAlert
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			var ok bool
			page, ok = alertFor(activeAlerts(t, am)[pageAlert], "region", alertBurstRegion, "severity", "page")
			assert.True(c, ok, "page alert for %s in Alertmanager", alertBurstRegion)
		}, 60*time.Second, 500*time.Millisecond)
		t.Logf("page alert in Alertmanager: labels %v, annotations %v", page.labels, page.annotations)
		require.Equal(t, "requests-availability", page.labels["slo"])
		require.Equal(t, "shop", page.labels["team"], "the spec's page labels")
		require.Equal(t, "global", page.labels["ruler"], "the ruler's external label")
		require.Contains(t, page.annotations["runbook_url"], "runbooks.md#")
		require.NotEmpty(t, page.annotations["summary"])
		for _, other := range []string{"eu-west-1", "ap-southeast-1", "global"} {
			_, ok := alertFor(activeAlerts(t, am)[pageAlert], "region", other, "severity", "page")
			require.False(t, ok, "no page for %s: only %s burns", other, alertBurstRegion)
		}

		start := time.Now()
		regions[alertBurstRegion].set(func(r *scriptedRegion) { r.errRatio = 0.001 })
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, ok := alertFor(activeAlerts(t, am)[pageAlert], "region", alertBurstRegion, "severity", "page")
			assert.False(c, ok, "page alert resolved")
		}, 150*time.Second, time.Second)
		t.Logf("page alert resolved in Alertmanager %s after the burst ended", time.Since(start).Round(time.Second))
		_, ok := alertFor(activeAlerts(t, am)[pageAlert], "region", alertBurstRegion, "severity", "ticket")
		require.True(t, ok, "the ticket alert (6h and 3d windows) still fires")
	})

	t.Run("the readiness alert fires when capacity is removed", func(t *testing.T) {
		// The burst made the SLO-health gate fail the other regions' readiness; it passes again
		// once the page burn is over.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, ok := alertFor(activeAlerts(t, am)["MeridianFailoverNotReady"], "region", "ap-southeast-1")
			assert.False(c, ok)
		}, 90*time.Second, time.Second)
		for _, name := range []string{"eu-west-1", "us-east-1"} {
			regions[name].set(func(r *scriptedRegion) { r.capacity = 0.25 })
		}
		var a amAlert
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			var ok bool
			a, ok = alertFor(activeAlerts(t, am)["MeridianFailoverNotReady"], "region", "ap-southeast-1")
			assert.True(c, ok, "MeridianFailoverNotReady for ap-southeast-1")
		}, 90*time.Second, time.Second)
		t.Logf("readiness alert: %v %v", a.labels, a.annotations)
		require.Contains(t, a.annotations["runbook_url"], "runbooks.md#")
		var rep struct {
			Regions []struct {
				Region, State, Reason string
			} `json:"regions"`
		}
		require.NoError(t, json.Unmarshal(callAPI(t, q.httpAddr, "/api/v1/readiness", nil).Body.Data, &rep))
		for _, r := range rep.Regions {
			if r.Region == "ap-southeast-1" {
				t.Logf("readiness of ap-southeast-1: %s: %s", r.State, r.Reason)
				require.Equal(t, "NOT_READY", r.State)
				require.Contains(t, strings.ToLower(r.Reason), "capacity", "capacity is what made it not ready")
			}
		}
		for _, name := range []string{"eu-west-1", "us-east-1"} {
			regions[name].set(func(r *scriptedRegion) { r.capacity = 1 })
		}
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, ok := alertFor(activeAlerts(t, am)["MeridianFailoverNotReady"], "region", "ap-southeast-1")
			assert.False(c, ok)
		}, 90*time.Second, time.Second)
	})

	t.Run("a region killed in a quiet period fires and resolves nothing under abort, and is counted", func(t *testing.T) {
		before := sloAlertSet(activeAlerts(t, am))
		require.Contains(t, before, pageAlert+"/"+alertBurstRegion+"/ticket", "a firing alert that must not resolve")
		metricsURL := "http://" + q.httpAddr + "/metrics"
		missingBefore := counterSums(t, metricsURL, "meridian_rule_evaluations_missing_regions_total", "strategy")["abort"]

		ingests[alertKilledRegion].kill9(t)
		// Four resend intervals (4s) would let Alertmanager resolve an alert that is not re-sent.
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			require.Equal(t, before, sloAlertSet(activeAlerts(t, am)), "SLO alerts while %s is down", alertKilledRegion)
			time.Sleep(time.Second)
		}
		missing := counterSums(t, metricsURL, "meridian_rule_evaluations_missing_regions_total", "strategy")["abort"]
		require.Greater(t, missing, missingBefore+5, "evaluations with a missing region counted")
		res := callAPI(t, q.httpAddr, "/api/v1/rules", nil)
		require.Contains(t, res.Raw, `regions `+alertKilledRegion+` missing`, "the rules' lastError names the region")
	})
}

// sloAlertSet names the active SLO alerts (those with an slo label) as name/region/severity.
func sloAlertSet(alerts map[string][]amAlert) []string {
	var out []string
	for name, as := range alerts {
		for _, a := range as {
			if a.labels["slo"] != "" {
				out = append(out, name+"/"+a.labels["region"]+"/"+a.labels["severity"])
			}
		}
	}
	sort.Strings(out)
	return out
}

// sloConfigFlags are the querier flags that load an SLO and readiness configuration.
func sloConfigFlags(cfgPath string) []string {
	return []string{"--slo.config", cfgPath, "--slo.evaluation-interval", "1s"}
}

// tryRemoteWrite posts req like remoteWrite but reports failure instead of failing the test:
// for writers that outlive a region.
func tryRemoteWrite(writeURL string, req *prompb.WriteRequest) error {
	raw, err := req.Marshal()
	if err != nil {
		return err
	}
	hreq, err := http.NewRequest(http.MethodPost, writeURL, bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(hreq)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("remote write %s: %s", writeURL, resp.Status)
	}
	return nil
}
