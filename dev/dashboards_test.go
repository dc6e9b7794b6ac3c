package dev

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/dashboards"
	"github.com/meridian-obs/meridian/slo"
)

// dashboardRateInterval stands for Grafana's $__rate_interval: four scrape intervals of the
// test environment, rounded up, as Grafana computes it for a 5s scrape interval.
const dashboardRateInterval = "1m"

// panelResult runs one interpolated panel query as Grafana would (a range query over the last
// 10 minutes, or an instant query) and returns the number of series with data, the warnings
// and the error.
func panelResult(base string, q dashboards.Query, expr string) (int, []string, error) {
	now := time.Now()
	v := url.Values{"query": {expr}}
	path := "/api/v1/query_range"
	if q.Instant {
		path = "/api/v1/query"
		v.Set("time", strconv.FormatInt(now.Unix(), 10))
	} else {
		v.Set("start", strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10))
		v.Set("end", strconv.FormatInt(now.Unix(), 10))
		v.Set("step", "15")
	}
	resp, err := http.PostForm(base+path, v)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status   string   `json:"status"`
		Error    string   `json:"error"`
		Warnings []string `json:"warnings"`
		Data     struct {
			Result []struct {
				Values [][2]any `json:"values"`
				Value  []any    `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, nil, err
	}
	if out.Status != "success" {
		return 0, out.Warnings, fmt.Errorf("%s", out.Error)
	}
	n := 0
	for _, s := range out.Data.Result {
		if len(s.Values) > 0 || len(s.Value) == 2 {
			n++
		}
	}
	return n, out.Warnings, nil
}

// variableValues resolves a label_values(selector, label) variable the way Grafana's
// Prometheus data source does: /api/v1/label/<label>/values with match[].
func variableValues(base, query string) ([]string, error) {
	sel, label, err := dashboards.LabelValuesQuery(query)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	v := url.Values{"match[]": {sel}, "start": {strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix(), 10)}}
	resp, err := http.Get(base + "/api/v1/label/" + label + "/values?" + v.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string   `json:"status"`
		Error  string   `json:"error"`
		Data   []string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("%s", out.Error)
	}
	return out.Data, nil
}

// resolve gives each variable of the dashboard the value Grafana would start with: the
// provisioned data source, "All" (the variable's allValue) for multi-value variables, the
// first value otherwise. A variable without values fails the dashboard.
func resolve(base string, d dashboards.Dashboard, vars map[string]string) error {
	for _, v := range d.Variables() {
		if v.Type != "query" {
			continue
		}
		q, err := dashboards.Interpolate(v.Query, dashboardRateInterval, vars)
		if err != nil {
			return err
		}
		values, err := variableValues(base, q)
		if err != nil {
			return fmt.Errorf("variable %s (%s): %w", v.Name, q, err)
		}
		if len(values) == 0 {
			return fmt.Errorf("variable %s (%s): no values", v.Name, q)
		}
		sort.Strings(values)
		vars[v.Name] = values[0]
		if v.IncludeAll {
			vars[v.Name] = ".+"
		}
	}
	return nil
}

// TestEveryDashboardPanelHasData generates the dashboards from the environment's own
// configuration and runs every panel query, through the querier as Grafana would, until each
// returns data: no panel of a working install shows "No data". Self-monitoring series only
// exist once the environment has scraped (and recorded) itself a few times, so the check
// retries for a bounded time and then names every panel still without data.
func TestEveryDashboardPanelHasData(t *testing.T) {
	env, base := startEnv(t, Config{})
	cfg, err := slo.LoadConfig(env.Info().ConfigFile)
	require.NoError(t, err)
	ds, err := dashboards.Generate(dashboards.OptionsFromConfig(cfg))
	require.NoError(t, err)

	deadline := time.Now().Add(90 * time.Second * timeScale)
	pending := map[string]string{}
	for {
		clear(pending)
		total := 0
		for _, d := range ds {
			vars := map[string]string{}
			if err := resolve(base, d, vars); err != nil {
				pending[d.UID] = err.Error()
				continue
			}
			for _, q := range d.Queries() {
				total++
				key := fmt.Sprintf("%s / %s / %s", d.UID, q.Panel, q.RefID)
				expr, err := dashboards.Interpolate(q.Expr, dashboardRateInterval, vars)
				require.NoError(t, err, key)
				_, err = parser.ParseExpr(expr)
				require.NoError(t, err, "%s: %s", key, expr)
				n, warnings, err := panelResult(base, q, expr)
				switch {
				case err != nil:
					pending[key] = "error: " + err.Error()
				case len(warnings) > 0:
					pending[key] = "warnings: " + strings.Join(warnings, "; ")
				case n == 0:
					pending[key] = "no data: " + expr
				}
			}
		}
		if len(pending) == 0 {
			t.Logf("%d panel queries of %d dashboards return data", total, len(ds))
			return
		}
		if time.Now().After(deadline) {
			keys := make([]string, 0, len(pending))
			for k := range pending {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var b strings.Builder
			for _, k := range keys {
				fmt.Fprintf(&b, "\n  %s: %s", k, pending[k])
			}
			t.Fatalf("%d of %d panel queries without data after %v:%s", len(pending), total, 90*time.Second*timeScale, b.String())
		}
		time.Sleep(2 * time.Second)
	}
}
