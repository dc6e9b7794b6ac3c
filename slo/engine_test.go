package slo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	v1 "github.com/prometheus/prometheus/web/api/v1"
	"github.com/stretchr/testify/require"
)

// twoRegions: region a serves 1000 requests a minute with 1% errors, region b 10 a minute
// with 50% errors, for two hours.
const twoRegions = `
load 1m
	http_requests_total{region="a",code="200",instance="a1"} 0+990x120
	http_requests_total{region="a",code="500",instance="a1"} 0+10x120
	http_requests_total{region="b",code="200",instance="b1"} 0+5x120
	http_requests_total{region="b",code="500",instance="b1"} 0+5x120
`

var evalTime = time.Unix(0, 0).Add(120 * time.Minute)

func availabilitySLO() SLO {
	return SLO{
		Service: "shop", Name: "availability", Objective: 0.99,
		ErrorQuery: `sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))`,
		TotalQuery: `sum(rate(http_requests_total[{{.window}}]))`,
	}
}

func newTestEngine(t *testing.T, q Querier, opts Options, slos ...SLO) *Engine {
	t.Helper()
	if opts.Period == 0 {
		opts.Period = 2 * time.Hour
	}
	e, err := NewEngine(slog.New(slog.NewTextHandler(io.Discard, nil)), q, slos, opts)
	require.NoError(t, err)
	return e
}

// failingQueryable stands for a region's store that cannot be reached: merged as a secondary
// querier, its failure becomes a warning, as in the querier's partial response.
func failingQueryable(msg string) storage.Queryable {
	return storage.QueryableFunc(func(int64, int64) (storage.Querier, error) {
		return failingQuerier{err: errors.New(msg)}, nil
	})
}

type failingQuerier struct{ err error }

func (f failingQuerier) Select(context.Context, bool, *storage.SelectHints, ...*labels.Matcher) storage.SeriesSet {
	return storage.ErrSeriesSet(f.err)
}
func (f failingQuerier) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, f.err
}
func (f failingQuerier) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, f.err
}
func (f failingQuerier) Close() error { return nil }

// partialQueryable merges the storage with an unreachable region c.
type partialQueryable struct {
	storage.Queryable
	down storage.Queryable
}

func (p partialQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	ok, err := p.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	down, _ := p.down.Querier(mint, maxt)
	return storage.NewMergeQuerier([]storage.Querier{ok}, []storage.Querier{down}, storage.ChainedSeriesMerge), nil
}

func (p partialQueryable) ChunkQuerier(int64, int64) (storage.ChunkQuerier, error) {
	return nil, errors.New("chunk queries are not served in this test")
}

const regionCDown = `region "c" (store 127.0.0.1:10903): unavailable: connection refused`

// querierSetups runs every engine test through the in-process engine querier and through the
// HTTP querier against Prometheus's own HTTP API over the same storage.
func querierSetups(t *testing.T, q storage.SampleAndChunkQueryable) map[string]Querier {
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	api := v1.NewAPI(engine, q, nil, nil,
		nil, nil, nil,
		func() config.Config { return config.Config{} }, map[string]string{}, v1.GlobalURLOptions{},
		func(f http.HandlerFunc) http.HandlerFunc { return f },
		nil, "", false, slog.New(slog.NewTextHandler(io.Discard, nil)),
		nil, 0, 0, 0, false, nil,
		func() (v1.RuntimeInfo, error) { return v1.RuntimeInfo{}, errors.New("not served") },
		&v1.PrometheusVersion{}, nil, nil, prometheus.NewRegistry(), nil, nil,
		false, nil, false, false, false, false, 5*time.Minute, false, false, nil, nil)
	router := route.New().WithPrefix("/prom/api/v1")
	api.Register(router)
	srv := httptest.NewServer(router)
	t.Cleanup(srv.Close)
	return map[string]Querier{
		"engine": NewEngineQuerier(engine, q),
		"http":   NewHTTPQuerier(srv.URL+"/prom", srv.Client()),
	}
}

func TestEngineSumsRegionsThroughRealQueriers(t *testing.T) {
	st := promqltest.LoadedStorage(t, twoRegions)
	for name, q := range querierSetups(t, st) {
		t.Run(name, func(t *testing.T) {
			e := newTestEngine(t, q, Options{}, availabilitySLO())
			results := e.Evaluate(context.Background(), evalTime)
			require.Len(t, results, 1)
			res := results[0]
			require.Empty(t, res.Error)
			require.False(t, res.Partial)
			require.Equal(t, []string{"5m", "30m", "1h", "2h"}, res.Windows)
			require.Len(t, res.Regions, 2)
			for _, w := range res.Windows {
				g, _ := res.Global.Window(w)
				require.InDelta(t, 15.0/1010, *g.Ratio, 1e-9, w)
				require.InDelta(t, 15.0/1010/0.01, *g.BurnRate, 1e-6, w)
				a, _ := res.Regions[0].Window(w)
				b, _ := res.Regions[1].Window(w)
				require.InDelta(t, 0.01, *a.Ratio, 1e-9, w)
				require.InDelta(t, 0.5, *b.Ratio, 1e-9, w)
				require.InDelta(t, 1000.0/60, *a.Total, 1e-6, "totals are per-second rates")
			}
			// Region a burns at exactly 1: its budget is gone; b is 49 budgets over.
			require.InDelta(t, 0, *res.Regions[0].Budget.Remaining, 1e-9)
			require.InDelta(t, -49, *res.Regions[1].Budget.Remaining, 1e-6)
			require.InDelta(t, 1-1.5/1.01, *res.Global.Budget.Remaining, 1e-9)
			require.Equal(t, ExhaustionExhausted, res.Global.Budget.Exhaustion)

			health, err := e.SLOHealth(context.Background(), evalTime)
			require.NoError(t, err)
			require.Equal(t, RegionSLOHealth{Region: "b", MinBudgetRemaining: 0, WorstSLO: "shop/availability",
				PageBurn: true, PageBurnSLOs: []string{"shop/availability"}, Known: true}, health["b"])
			require.False(t, health["a"].PageBurn, "burn 1 is no page")
		})
	}
}

func TestEngineMarksPartialWhenARegionDoesNotAnswer(t *testing.T) {
	st := promqltest.LoadedStorage(t, twoRegions)
	pq := partialQueryable{Queryable: st, down: failingQueryable(regionCDown)}
	for name, q := range querierSetups(t, pq) {
		t.Run(name, func(t *testing.T) {
			e := newTestEngine(t, q, Options{Regions: []string{"a", "b", "c"}}, availabilitySLO())
			res := e.Evaluate(context.Background(), evalTime)[0]
			require.Empty(t, res.Error)
			require.True(t, res.Partial)
			require.True(t, res.Global.Partial)
			require.Equal(t, []string{"c"}, res.MissingRegions)
			require.Contains(t, strings.Join(res.Warnings, "\n"), regionCDown)
			c, ok := res.Region("c")
			require.True(t, ok)
			require.True(t, c.Partial)
			require.Nil(t, c.Budget.Remaining)
			a, _ := res.Region("a")
			require.False(t, a.Partial, "region a's numbers are complete")

			health, err := e.SLOHealth(context.Background(), evalTime)
			require.NoError(t, err)
			require.False(t, health["c"].Known)
			require.True(t, health["c"].Partial)
		})
	}
}

func TestEngineNoTrafficAndRawRatios(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
load 1m
	http_requests_total{region="a",code="200"} 0+100x120
	http_requests_total{region="a",code="500"} 0+0x120
	http_requests_total{region="b",code="200"} 0x120
`)
	raw := SLO{Service: "shop", Name: "raw", Objective: 0.99,
		RawErrorRatioQuery: `sum(rate(http_requests_total{code=~"5.."}[{{.window}}])) / sum(rate(http_requests_total[{{.window}}]))`}
	q := NewEngineQuerier(promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery), st)
	e := newTestEngine(t, q, Options{}, availabilitySLO(), raw)
	results := e.Evaluate(context.Background(), evalTime)

	events := results[0]
	b, _ := events.Region("b")
	w, _ := b.Window("1h")
	require.True(t, w.NoTraffic)
	require.Nil(t, w.Ratio)
	require.False(t, w.Partial, "b answered, with no traffic")
	a, _ := events.Region("a")
	w, _ = a.Window("1h")
	require.InDelta(t, 0, *w.Ratio, 1e-12)
	require.InDelta(t, 1, *a.Budget.Remaining, 1e-12)
	require.Equal(t, ExhaustionNever, a.Budget.Exhaustion)

	rawRes := results[1]
	require.Equal(t, "raw", rawRes.SLI)
	require.Contains(t, strings.Join(rawRes.Notes, "\n"), "evaluated as given")
	g, _ := rawRes.Global.Window("1h")
	require.InDelta(t, 0, *g.Ratio, 1e-12)
	rb, _ := rawRes.Region("b")
	w, _ = rb.Window("1h")
	require.Nil(t, w.Ratio, "0/0 is undefined, not 0")
}

func TestEngineRejectsEventSLIsThatCannotBeBrokenDown(t *testing.T) {
	s := availabilitySLO()
	s.ErrorQuery = `scalar(sum(rate(http_requests_total{code=~"5.."}[{{.window}}])))`
	_, err := NewEngine(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, []SLO{s}, Options{})
	require.ErrorContains(t, err, "slo shop/availability")
	require.ErrorContains(t, err, "query returns a scalar")
}

func TestCollectorExposesTheLastEvaluation(t *testing.T) {
	st := promqltest.LoadedStorage(t, twoRegions)
	reg := prometheus.NewRegistry()
	q := NewEngineQuerier(promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery), st)
	e := newTestEngine(t, q, Options{Registerer: reg}, availabilitySLO())

	count, err := testutil.GatherAndCount(reg, "meridian_slo_burn_rate")
	require.NoError(t, err)
	require.Zero(t, count, "scrapes do not evaluate")

	e.Evaluate(context.Background(), evalTime)
	for _, tc := range []struct {
		metric, region string
		want           float64
	}{
		{"meridian_slo_error_budget_remaining_ratio", "a", 0},
		{"meridian_slo_error_budget_remaining_ratio", "b", -49},
		{"meridian_slo_error_budget_remaining_ratio", "global", 1 - 1.5/1.01},
		{"meridian_slo_partial", "a", 0},
		{"meridian_slo_partial", "global", 0},
	} {
		require.InDelta(t, tc.want, gaugeValue(t, reg, tc.metric, map[string]string{"service": "shop", "slo": "availability", "region": tc.region}), 1e-9, tc.metric+" "+tc.region)
	}
	require.InDelta(t, 50, gaugeValue(t, reg, "meridian_slo_burn_rate", map[string]string{"region": "b", "window": "1h"}), 1e-6)
	count, err = testutil.GatherAndCount(reg, "meridian_slo_burn_rate")
	require.NoError(t, err)
	require.Equal(t, 3*4, count, "3 regions incl. global x 4 windows")
	count, err = testutil.GatherAndCount(reg, "meridian_slo_evaluations_total")
	require.NoError(t, err)
	require.Equal(t, 1, count)
}

func TestSLOAPIServesResultsInPrometheusEnvelope(t *testing.T) {
	st := promqltest.LoadedStorage(t, twoRegions)
	q := NewEngineQuerier(promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery), st)
	other := availabilitySLO()
	other.Name = "other"
	e := newTestEngine(t, q, Options{Now: func() time.Time { return evalTime }}, availabilitySLO(), other)
	mux := http.NewServeMux()
	e.RegisterRoutes(mux)

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"availability", "other"}},
		{"?slo=other", []string{"other"}},
		{"?service=nope", nil},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, SLOAPIPath+tc.query, nil))
		require.Equal(t, http.StatusOK, rec.Code)
		var body struct {
			Status string `json:"status"`
			Data   []struct {
				SLO    string `json:"slo"`
				Global struct {
					Windows []struct {
						Window string   `json:"window"`
						Ratio  *float64 `json:"error_ratio"`
					} `json:"windows"`
				} `json:"global"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		require.Equal(t, "success", body.Status)
		var got []string
		for _, d := range body.Data {
			got = append(got, d.SLO)
			require.InDelta(t, 15.0/1010, *d.Global.Windows[0].Ratio, 1e-9)
		}
		require.Equal(t, tc.want, got, tc.query)
	}
}

// gaugeValue finds the one gauge of the family whose labels include want.
func gaugeValue(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue metrics
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	require.Failf(t, "metric not found", "%s%v", name, want)
	return 0
}
