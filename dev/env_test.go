package dev

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	_ "github.com/meridian-obs/meridian/internal/grpccodec"
	"github.com/meridian-obs/meridian/slo"
)

// The environment under test: the real thing with a short backfill and fast evaluation, so
// that chaos shows within seconds.
const (
	testBackfill      = time.Hour
	testStep          = 5 * time.Second
	testStoreTimeout  = 2 * time.Second
	globalRequestRate = "sum by (region) (rate(http_requests_total[5m]))"
)

var regionNames = []string{"eu-west-1", "us-east-1", "ap-southeast-1"}

// startEnv runs an environment until the test ends and waits until it is ready. On cleanup it
// checks that Run stops within bounds, without error, and removes its temporary data directory.
func startEnv(t *testing.T, cfg Config) (*Env, string) {
	t.Helper()
	cfg.HTTPAddress = "127.0.0.1:0"
	if cfg.Backfill == 0 {
		cfg.Backfill = testBackfill
	}
	cfg.Step = testStep
	cfg.EvaluationInterval = 2 * time.Second
	cfg.ProbeInterval = 500 * time.Millisecond
	env, err := New(cfg)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second * timeScale):
			t.Fatalf("meridian dev did not stop within %v", 20*time.Second*timeScale)
		}
		if env.Info().TemporaryDataDir {
			_, err := os.Stat(env.Info().DataDir)
			require.True(t, os.IsNotExist(err), "temporary data directory %s removed on exit", env.Info().DataDir)
		}
	})
	start := time.Now()
	select {
	case <-env.Ready():
		t.Logf("ready with a %v backfill in %v", cfg.Backfill, time.Since(start).Round(time.Millisecond))
	case err := <-done:
		t.Fatalf("meridian dev stopped before it was ready: %v", err)
	case <-time.After(90 * time.Second * timeScale):
		t.Fatalf("meridian dev not ready within %v", 90*time.Second*timeScale)
	}
	return env, env.Info().QueryURL
}

// apiResponse is the Prometheus HTTP API envelope, data left raw.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

func call(t *testing.T, method, u string) (int, apiResponse) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "%s %s", method, u)
	var out apiResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out), "%s %s", method, u)
	return resp.StatusCode, out
}

// instantQuery runs a PromQL query now and returns the envelope and the regions in the result.
func instantQuery(t *testing.T, base, expr, partial string) (apiResponse, []string) {
	t.Helper()
	v := url.Values{"query": {expr}}
	if partial != "" {
		v.Set("partial_response", partial)
	}
	_, resp := call(t, http.MethodGet, base+"/api/v1/query?"+v.Encode())
	var regions []string
	if resp.Status == "success" {
		var data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		}
		require.NoError(t, json.Unmarshal(resp.Data, &data))
		for _, s := range data.Result {
			regions = append(regions, s.Metric["region"])
		}
	}
	return resp, regions
}

func chaosPost(t *testing.T, base, path string) RegionState {
	t.Helper()
	code, resp := call(t, http.MethodPost, base+ChaosPath+"/"+path)
	require.Equal(t, http.StatusOK, code, "POST %s: %s", path, resp.Error)
	var st RegionState
	require.NoError(t, json.Unmarshal(resp.Data, &st))
	return st
}

func readinessOf(t *testing.T, base, region string) (int, slo.ReadinessResult) {
	t.Helper()
	resp, err := http.Get(base + slo.ReadinessHealthPath + region)
	require.NoError(t, err)
	defer resp.Body.Close()
	var res slo.ReadinessResult
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
	return resp.StatusCode, res
}

func hasGate(res slo.ReadinessResult, name string) bool {
	for _, g := range res.Gates {
		if g.Name == name {
			return true
		}
	}
	return false
}

func warningNaming(warnings []string, region string) bool {
	for _, w := range warnings {
		if strings.Contains(w, region) {
			return true
		}
	}
	return false
}

func TestDevEnvironment(t *testing.T) {
	_, base := startEnv(t, Config{})

	t.Run("a global query has every region", func(t *testing.T) {
		resp, regions := instantQuery(t, base, globalRequestRate, "")
		require.Equal(t, "success", resp.Status, resp.Error)
		require.Empty(t, resp.Warnings)
		require.ElementsMatch(t, regionNames, regions)
	})

	t.Run("metadata and latency exemplars come from every region", func(t *testing.T) {
		code, resp := call(t, http.MethodGet, base+"/api/v1/metadata?metric=http_request_duration_seconds")
		require.Equal(t, http.StatusOK, code, resp.Error)
		require.JSONEq(t, `{"http_request_duration_seconds":[{"type":"histogram","help":"Duration of HTTP requests in seconds.","unit":""}]}`, string(resp.Data))
		code, resp = call(t, http.MethodGet, base+"/api/v1/metadata")
		require.Equal(t, http.StatusOK, code, resp.Error)
		var md map[string][]map[string]string
		require.NoError(t, json.Unmarshal(resp.Data, &md))
		require.Contains(t, md, "http_requests_total")
		require.Equal(t, "counter", md["http_requests_total"][0]["type"])

		code, resp = call(t, http.MethodGet, base+"/api/v1/query_exemplars?query="+url.QueryEscape(`histogram_quantile(0.99, sum by (le, region) (rate(http_request_duration_seconds_bucket[5m])))`))
		require.Equal(t, http.StatusOK, code, resp.Error)
		require.Empty(t, resp.Warnings)
		var exs []struct {
			SeriesLabels map[string]string `json:"seriesLabels"`
			Exemplars    []struct {
				Labels map[string]string `json:"labels"`
			} `json:"exemplars"`
		}
		require.NoError(t, json.Unmarshal(resp.Data, &exs))
		regions := map[string]bool{}
		for _, e := range exs {
			regions[e.SeriesLabels[RegionLabel]] = true
			require.NotEmpty(t, e.Exemplars)
			require.Len(t, e.Exemplars[0].Labels["trace_id"], 32)
		}
		require.Len(t, regions, len(regionNames), "exemplars of every region: %v", regions)
	})

	t.Run("SLOs are reported globally and per region", func(t *testing.T) {
		code, resp := call(t, http.MethodGet, base+slo.SLOAPIPath)
		require.Equal(t, http.StatusOK, code)
		var results []slo.Result
		require.NoError(t, json.Unmarshal(resp.Data, &results))
		require.NotEmpty(t, results)
		for _, res := range results {
			require.Empty(t, res.Error, res.Name)
			require.Equal(t, slo.GlobalRegion, res.Global.Region)
			w, ok := res.Global.Window("5m")
			require.True(t, ok)
			require.NotNil(t, w.Ratio, "%s/%s global 5m ratio", res.Service, res.Name)
			var regions []string
			for _, rr := range res.Regions {
				regions = append(regions, rr.Region)
			}
			require.ElementsMatch(t, regionNames, regions, "%s/%s", res.Service, res.Name)
		}
	})

	t.Run("readiness scores every region and shows the version behind", func(t *testing.T) {
		code, resp := call(t, http.MethodGet, base+slo.ReadinessAPIPath)
		require.Equal(t, http.StatusOK, code)
		var rep slo.ReadinessReport
		require.NoError(t, json.Unmarshal(resp.Data, &rep))
		var regions []string
		for _, r := range rep.Regions {
			regions = append(regions, r.Region)
			// ap-southeast-1 runs the previous checkout release: whichever region is lost, the
			// survivors' checkout versions differ from the lost region's.
			var parity *slo.Component
			for i := range r.Components {
				if r.Components[i].Name == slo.ComponentParity {
					parity = &r.Components[i]
				}
			}
			require.NotNil(t, parity, r.Region)
			require.NotNil(t, parity.Score, "version parity known for %s", r.Region)
			require.Less(t, *parity.Score, 100.0, r.Region)
			require.Contains(t, parity.Detail, "checkout", r.Region)
		}
		require.ElementsMatch(t, regionNames, regions)
	})

	t.Run("a region down is a warning, or an error without partial response, until it is up", func(t *testing.T) {
		st := chaosPost(t, base, "eu-west-1/down")
		require.True(t, st.Down)
		resp, regions := instantQuery(t, base, globalRequestRate, "")
		require.Equal(t, "success", resp.Status, resp.Error)
		require.True(t, warningNaming(resp.Warnings, "eu-west-1"), "warnings %v name eu-west-1", resp.Warnings)
		require.ElementsMatch(t, []string{"us-east-1", "ap-southeast-1"}, regions)

		resp, _ = instantQuery(t, base, globalRequestRate, "false")
		require.Equal(t, "error", resp.Status)
		require.Contains(t, resp.Error, "eu-west-1")

		require.False(t, chaosPost(t, base, "eu-west-1/up").Down)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			resp, regions := instantQuery(t, base, globalRequestRate, "")
			assert.Empty(c, resp.Warnings)
			assert.ElementsMatch(c, regionNames, regions)
		}, 20*time.Second*timeScale, 200*time.Millisecond)
	})

	t.Run("a slow region is answered within the store timeout with a warning", func(t *testing.T) {
		require.Equal(t, "3s", chaosPost(t, base, "ap-southeast-1/latency?delay=3s").Latency)
		start := time.Now()
		resp, regions := instantQuery(t, base, globalRequestRate, "")
		took := time.Since(start)
		t.Logf("answer with ap-southeast-1 3s away and a %v store timeout: %v", testStoreTimeout, took.Round(time.Millisecond))
		require.Equal(t, "success", resp.Status, resp.Error)
		// The store timeout plus 10% is the target; 25% leaves room for a loaded machine, and the
		// race detector's slowdown is added on top.
		require.Less(t, took, testStoreTimeout*125/100+(timeScale-1)*500*time.Millisecond)
		require.True(t, warningNaming(resp.Warnings, "ap-southeast-1"), "warnings %v name ap-southeast-1", resp.Warnings)
		require.ElementsMatch(t, []string{"eu-west-1", "us-east-1"}, regions)

		require.Equal(t, "0s", chaosPost(t, base, "ap-southeast-1/latency?delay=0s").Latency)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			resp, regions := instantQuery(t, base, globalRequestRate, "")
			assert.Empty(c, resp.Warnings)
			assert.ElementsMatch(c, regionNames, regions)
		}, 20*time.Second*timeScale, 200*time.Millisecond)
	})

	t.Run("capacity removed from the survivors fails the third region's readiness", func(t *testing.T) {
		_, before := readinessOf(t, base, "ap-southeast-1")
		require.False(t, hasGate(before, slo.GateCapacity), "no capacity gate before: %s", before.Reason)

		chaosPost(t, base, "eu-west-1/capacity?factor=0.3")
		chaosPost(t, base, "us-east-1/capacity?factor=0.3")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			code, res := readinessOf(t, base, "ap-southeast-1")
			assert.Equal(c, http.StatusServiceUnavailable, code)
			assert.Equal(c, slo.StateNotReady, res.State)
			assert.True(c, hasGate(res, slo.GateCapacity), "capacity gate: %s", res.Reason)
		}, 30*time.Second*timeScale, 250*time.Millisecond)

		chaosPost(t, base, "eu-west-1/capacity?factor=1")
		chaosPost(t, base, "us-east-1/capacity?factor=1")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			code, res := readinessOf(t, base, "ap-southeast-1")
			assert.False(c, hasGate(res, slo.GateCapacity), "capacity gate gone: %s", res.Reason)
			assert.Equal(c, res.Ready, code == http.StatusOK)
		}, 30*time.Second*timeScale, 250*time.Millisecond)
	})

	t.Run("chaos controls refuse bad input and say why", func(t *testing.T) {
		for _, tc := range []struct {
			method, path string
			code         int
			errorType    string
			errContains  string
		}{
			{http.MethodPost, "/mars-1/down", http.StatusNotFound, "not_found", `region "mars-1"`},
			{http.MethodPost, "/mars-1/errors?ratio=0.1", http.StatusNotFound, "not_found", "unknown region"},
			{http.MethodPost, "/eu-west-1/explode", http.StatusNotFound, "not_found", "unknown chaos control"},
			{http.MethodPost, "/eu-west-1/errors?ratio=2", http.StatusBadRequest, "bad_data", "error ratio"},
			{http.MethodPost, "/eu-west-1/errors", http.StatusBadRequest, "bad_data", `missing parameter "ratio"`},
			{http.MethodPost, "/eu-west-1/latency?delay=-1s", http.StatusBadRequest, "bad_data", "delay"},
			{http.MethodPost, "/eu-west-1/latency?delay=soon", http.StatusBadRequest, "bad_data", "delay"},
			{http.MethodPost, "/eu-west-1/capacity?factor=NaN", http.StatusBadRequest, "bad_data", "capacity factor"},
			{http.MethodPost, "/eu-west-1/capacity?factor=-0.5", http.StatusBadRequest, "bad_data", "capacity factor"},
			{http.MethodGet, "/eu-west-1/down", http.StatusMethodNotAllowed, "bad_data", "POST"},
			{http.MethodGet, "/eu-west-1", http.StatusMethodNotAllowed, "bad_data", "POST"},
		} {
			t.Run(tc.method+" "+tc.path, func(t *testing.T) {
				code, resp := call(t, tc.method, base+ChaosPath+tc.path)
				require.Equal(t, tc.code, code)
				require.Equal(t, "error", resp.Status)
				require.Equal(t, tc.errorType, resp.ErrorType)
				require.Contains(t, resp.Error, tc.errContains)
			})
		}

		// Nothing above changed any region; the querier still answers with all of them.
		code, resp := call(t, http.MethodGet, base+ChaosPath)
		require.Equal(t, http.StatusOK, code)
		var states []RegionState
		require.NoError(t, json.Unmarshal(resp.Data, &states))
		require.Len(t, states, len(regionNames))
		for _, st := range states {
			require.False(t, st.Down, st.Region)
			require.Equal(t, "0s", st.Latency, st.Region)
			require.Equal(t, 1.0, st.CapacityFactor, st.Region)
			require.Less(t, st.ErrorRatio, 0.01, st.Region)
		}
		queryResp, regions := instantQuery(t, base, globalRequestRate, "")
		require.Empty(t, queryResp.Warnings)
		require.ElementsMatch(t, regionNames, regions)
	})
}
