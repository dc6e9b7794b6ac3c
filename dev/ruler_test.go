package dev

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/slo"
)

// recordedSample is the newest sample of one recorded series.
type recordedSample struct {
	labels map[string]string
	t      time.Time
	v      float64
}

// recordedRatios returns the newest sample of every slo:sli_error:ratio_rate5m series recorded
// at least age ago (so that no sample of its window can still be arriving).
func recordedRatios(t *testing.T, base string, age time.Duration) []recordedSample {
	t.Helper()
	end := time.Now().Add(-age)
	// The raw samples, with their own timestamps, come from a range selector.
	v := url.Values{"query": {`slo:sli_error:ratio_rate5m[2m]`}, "time": {strconv.FormatFloat(float64(end.UnixMilli())/1000, 'f', 3, 64)}}
	code, resp := call(t, http.MethodGet, base+"/api/v1/query?"+v.Encode())
	require.Equal(t, http.StatusOK, code, resp.Error)
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(resp.Data, &data))
	var out []recordedSample
	for _, s := range data.Result {
		if len(s.Values) == 0 {
			continue
		}
		last := s.Values[len(s.Values)-1]
		f, err := strconv.ParseFloat(last[1].(string), 64)
		require.NoError(t, err)
		ts := last[0].(float64)
		out = append(out, recordedSample{labels: s.Metric, t: time.UnixMilli(int64(ts * 1000)), v: f})
	}
	return out
}

func TestDevRulerRecordsWhatTheSLOEngineComputes(t *testing.T) {
	env, base := startEnv(t, Config{Backfill: 20 * time.Minute})

	t.Run("the generated rules are loaded and healthy", func(t *testing.T) {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			code, resp := call(t, http.MethodGet, base+"/api/v1/rules")
			assert.Equal(c, http.StatusOK, code)
			var data struct {
				Groups []struct {
					Name  string `json:"name"`
					Rules []struct {
						Name      string `json:"name"`
						Health    string `json:"health"`
						LastError string `json:"lastError"`
					} `json:"rules"`
				} `json:"groups"`
			}
			assert.NoError(c, json.Unmarshal(resp.Data, &data))
			assert.NotEmpty(c, data.Groups)
			for _, g := range data.Groups {
				for _, r := range g.Rules {
					assert.Equal(c, "ok", r.Health, "%s/%s: %s", g.Name, r.Name, r.LastError)
				}
			}
		}, 60*time.Second*timeScale, time.Second)
	})

	t.Run("the recorded 5m error ratio equals the SLO engine's at the same instant", func(t *testing.T) {
		var samples []recordedSample
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			samples = recordedRatios(t, base, 20*time.Second)
			global := 0
			for _, s := range samples {
				if s.labels["region"] == slo.GlobalRegion {
					global++
				}
			}
			assert.NotZero(c, global, "a global ratio recorded 20s ago")
		}, 90*time.Second*timeScale, time.Second)

		compared := map[string]int{}
		for _, s := range samples {
			results := env.service.Engine().Evaluate(context.Background(), s.t)
			var res *slo.Result
			for i := range results {
				if results[i].Service == s.labels["sloth_service"] && results[i].Name == s.labels["sloth_slo"] {
					res = &results[i]
				}
			}
			require.NotNil(t, res, "an SLO for %v", s.labels)
			rr, ok := res.Region(s.labels["region"])
			require.True(t, ok, "region %s of %v", s.labels["region"], s.labels)
			w, ok := rr.Window("5m")
			require.True(t, ok)
			require.NotNil(t, w.Ratio, "%v", s.labels)
			require.InDelta(t, *w.Ratio, s.v, 1e-12, "%v at %s: recorded %g, SLO engine %g", s.labels, s.t, s.v, *w.Ratio)
			compared[s.labels["region"]]++
		}
		t.Logf("compared recorded and engine 5m ratios: %v", compared)
		require.NotZero(t, compared[slo.GlobalRegion])
		for _, r := range regionNames {
			require.NotZero(t, compared[r], "region %s compared", r)
		}
	})

	t.Run("the querier's own metrics are queryable", func(t *testing.T) {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			resp, regions := instantQuery(t, base, `meridian_failover_readiness_state{job="meridian-query"} == 1`, "")
			assert.Equal(c, "success", resp.Status)
			assert.ElementsMatch(c, regionNames, regions)
		}, 60*time.Second*timeScale, time.Second)
	})
}
