package slo

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/stretchr/testify/require"
)

// serviceTestData holds three regions over ten minutes. Requests per second: eu-west-1 10 with
// 0.1 errors (1%), us-east-1 1 with 0.5 errors (50%), ap-southeast-1 2 with none. The global
// 5m error ratio is (0.1 + 0.5) / 13 = 0.04615..., not an average of the three ratios. CPU
// cores used / allocatable: eu-west-1 60/100, us-east-1 50/100, ap-southeast-1 20/25. Versions
// are equal and drills recent; replication is not configured.
const serviceTestData = `
load 1m
  http_requests_total{region="eu-west-1",job="shop",code="200"} 0+594x10
  http_requests_total{region="eu-west-1",job="shop",code="500"} 0+6x10
  http_requests_total{region="us-east-1",job="shop",code="200"} 0+30x10
  http_requests_total{region="us-east-1",job="shop",code="500"} 0+30x10
  http_requests_total{region="ap-southeast-1",job="shop",code="200"} 0+120x10
  container_cpu_usage_seconds_total{region="eu-west-1",container="app"} 0+3600x10
  container_cpu_usage_seconds_total{region="us-east-1",container="app"} 0+3000x10
  container_cpu_usage_seconds_total{region="ap-southeast-1",container="app"} 0+1200x10
  kube_node_status_allocatable{region="eu-west-1",resource="cpu",node="n1"} 100x10
  kube_node_status_allocatable{region="us-east-1",resource="cpu",node="n1"} 100x10
  kube_node_status_allocatable{region="ap-southeast-1",resource="cpu",node="n1"} 25x10
  up{region="eu-west-1",job="shop"} 1x10
  up{region="us-east-1",job="shop"} 1x10
  up{region="ap-southeast-1",job="shop"} 1x10
  kube_deployment_labels{region="eu-west-1",deployment="shop",label_app_kubernetes_io_version="1.0"} 1x10
  kube_deployment_labels{region="us-east-1",deployment="shop",label_app_kubernetes_io_version="1.0"} 1x10
  kube_deployment_labels{region="ap-southeast-1",deployment="shop",label_app_kubernetes_io_version="1.0"} 1x10
  meridian_failover_drill_last_success_timestamp_seconds{region="eu-west-1"} 0x10
  meridian_failover_drill_last_success_timestamp_seconds{region="us-east-1"} 0x10
  meridian_failover_drill_last_success_timestamp_seconds{region="ap-southeast-1"} 0x10
`

const serviceTestConfig = `
slo_files: [slos/*.yaml]
readiness:
  critical_workloads: []
`

const serviceTestSpec = `
version: "prometheus/v1"
service: "shop"
slos:
  - name: "availability"
    objective: 99
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="shop",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="shop"}[{{.window}}]))
    alerting:
      page_alert:
        disable: true
      ticket_alert:
        disable: true
`

var serviceTestTime = time.Unix(600, 0)

// writeServiceConfig writes the configuration and, when spec is not empty, one SLO spec file.
func writeServiceConfig(t *testing.T, config, spec string) string {
	dir := t.TempDir()
	path := filepath.Join(dir, "meridian.yml")
	require.NoError(t, os.WriteFile(path, []byte(config), 0o644))
	if spec != "" {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "slos"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "slos", "shop.yaml"), []byte(spec), 0o644))
	}
	return path
}

// startService loads the configuration at path over the scripted data, mounts it on a router
// served by httptest, and runs it until the test ends.
func startService(t *testing.T, path string, stores StoreHealthSource, reg prometheus.Registerer) (*Service, *httptest.Server) {
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, promqltest.DefaultMaxSamplesPerQuery)
	q := NewEngineQuerier(engine, promqltest.LoadedStorage(t, serviceTestData))
	svc, err := LoadService(nil, reg, path, q, stores, ServiceOptions{
		Interval: 50 * time.Millisecond,
		Now:      func() time.Time { return serviceTestTime },
	})
	require.NoError(t, err)
	r := route.New()
	svc.Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Error("service did not stop within 5s of its context ending")
		}
	})
	require.Eventually(t, func() bool { return svc.Readiness().Latest() != nil }, 10*time.Second, 10*time.Millisecond)
	return svc, srv
}

func getJSON(t *testing.T, url string, wantCode int, into any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, wantCode, resp.StatusCode, url)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.NoError(t, json.NewDecoder(resp.Body).Decode(into))
}

func componentOf(t *testing.T, res ReadinessResult, name string) Component {
	t.Helper()
	for _, c := range res.Components {
		if c.Name == name {
			return c
		}
	}
	require.Failf(t, "component not in result", "%s for region %s", name, res.Region)
	return Component{}
}

func gateNames(res ReadinessResult) []string {
	var names []string
	for _, g := range res.Gates {
		names = append(names, g.Name)
	}
	return names
}

func TestServiceServesSLOsAndReadinessOnOneRouter(t *testing.T) {
	stores := staticStores{
		{Region: "eu-west-1", Address: "eu:10901", Healthy: true},
		{Region: "us-east-1", Address: "us:10901", Healthy: true},
		{Region: "ap-southeast-1", Address: "ap:10901", Healthy: false},
	}
	reg := prometheus.NewRegistry()
	_, srv := startService(t, writeServiceConfig(t, serviceTestConfig, serviceTestSpec), stores, reg)

	var slos struct {
		Status string   `json:"status"`
		Data   []Result `json:"data"`
	}
	getJSON(t, srv.URL+SLOAPIPath, http.StatusOK, &slos)
	require.Equal(t, "success", slos.Status)
	require.Len(t, slos.Data, 1)
	res := slos.Data[0]
	require.Empty(t, res.Error)
	global, ok := res.Global.Window("5m")
	require.True(t, ok)
	require.NotNil(t, global.Ratio)
	require.InDelta(t, 0.6/13, *global.Ratio, 1e-9, "global ratio is summed errors over summed totals")
	require.InDelta(t, 0.6/13/0.01, *global.BurnRate, 1e-6)
	for region, want := range map[string]float64{"eu-west-1": 0.01, "us-east-1": 0.5, "ap-southeast-1": 0} {
		rr, ok := res.Region(region)
		require.True(t, ok, region)
		w, ok := rr.Window("5m")
		require.True(t, ok)
		require.NotNil(t, w.Ratio, region)
		require.InDelta(t, want, *w.Ratio, 1e-9, region)
	}

	var rep struct {
		Status string          `json:"status"`
		Data   ReadinessReport `json:"data"`
	}
	getJSON(t, srv.URL+ReadinessAPIPath, http.StatusOK, &rep)
	require.Equal(t, "success", rep.Status)
	require.Len(t, rep.Data.Regions, 3)
	byRegion := map[string]ReadinessResult{}
	for _, r := range rep.Data.Regions {
		byRegion[r.Region] = r
		require.Equal(t, ComponentOK, componentOf(t, r, ComponentSLOHealth).State, "the engine feeds the SLO health of %s's survivors", r.Region)
	}
	// us-east-1 burns its budget 50 times too fast: a page burn in a survivor of every other
	// region's loss, and not when us-east-1 itself is the one lost.
	require.Contains(t, gateNames(byRegion["eu-west-1"]), GatePageBurn)
	require.Contains(t, gateNames(byRegion["ap-southeast-1"]), GatePageBurn)
	require.NotContains(t, gateNames(byRegion["us-east-1"]), GatePageBurn)
	// The unhealthy ap-southeast-1 store counts against reachability when it is a survivor.
	require.Less(t, *componentOf(t, byRegion["eu-west-1"], ComponentReachability).Score, 100.0)
	require.InDelta(t, 100, *componentOf(t, byRegion["ap-southeast-1"], ComponentReachability).Score, 1e-9)

	var health ReadinessResult
	getJSON(t, srv.URL+ReadinessHealthPath+"eu-west-1", http.StatusServiceUnavailable, &health)
	require.Equal(t, "eu-west-1", health.Region)
	require.Equal(t, StateNotReady, health.State)
	var notFound readinessEnvelope
	getJSON(t, srv.URL+ReadinessHealthPath+"mars-1", http.StatusNotFound, &notFound)
	require.Equal(t, "error", notFound.Status)

	burn, ok := serviceGauge(t, reg, "meridian_slo_burn_rate", map[string]string{"service": "shop", "slo": "availability", "region": GlobalRegion, "window": "5m"})
	require.True(t, ok, "SLO metrics are registered")
	require.InDelta(t, 0.6/13/0.01, burn, 1e-6)
	ready, ok := serviceGauge(t, reg, "meridian_failover_ready", map[string]string{"region": "eu-west-1"})
	require.True(t, ok, "readiness metrics are registered")
	require.Zero(t, ready)
}

func TestServiceWithoutSLOsLeavesSLOHealthUnknown(t *testing.T) {
	_, srv := startService(t, writeServiceConfig(t, "readiness:\n  critical_workloads: []\n", ""), nil, nil)

	var slos struct {
		Status string   `json:"status"`
		Data   []Result `json:"data"`
	}
	getJSON(t, srv.URL+SLOAPIPath, http.StatusOK, &slos)
	require.Equal(t, "success", slos.Status)
	require.Empty(t, slos.Data)

	var rep struct {
		Data ReadinessReport `json:"data"`
	}
	getJSON(t, srv.URL+ReadinessAPIPath, http.StatusOK, &rep)
	require.Len(t, rep.Data.Regions, 3)
	for _, r := range rep.Data.Regions {
		c := componentOf(t, r, ComponentSLOHealth)
		require.Equal(t, ComponentUnknown, c.State, r.Region)
		require.Nil(t, c.Score, r.Region)
	}
}

func TestServiceRejectsBadConfiguration(t *testing.T) {
	q := NewEngineQuerier(promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery), promqltest.LoadedStorage(t, serviceTestData))
	for _, tc := range []struct {
		name, config, spec string
		missingFile        bool
		wantErr            string
	}{
		{name: "missing file", missingFile: true, wantErr: "read config"},
		{name: "unknown field", config: "slo_file: [x.yaml]\n", wantErr: "field slo_file not found"},
		{name: "spec files that match nothing", config: "slo_files: [nowhere/*.yaml]\n", wantErr: "no such file"},
		{name: "unknown topology", config: "readiness:\n  topology: ring\n", wantErr: "readiness"},
		{name: "invalid spec", config: serviceTestConfig, spec: strings.Replace(serviceTestSpec, "objective: 99", "objective: 120", 1), wantErr: "objective"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "absent.yml")
			if !tc.missingFile {
				path = writeServiceConfig(t, tc.config, tc.spec)
			}
			_, err := LoadService(nil, nil, path, q, nil, ServiceOptions{})
			require.ErrorContains(t, err, tc.wantErr)
			if tc.name != "invalid spec" {
				require.ErrorContains(t, err, path, "the error names the configuration file")
			}
		})
	}
}

// serviceGauge finds the gauge with the given name and exactly the given labels in reg.
func serviceGauge(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if maps.Equal(got, want) {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}
