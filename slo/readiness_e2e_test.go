package slo

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// readinessRegionLoad is one region's data, as a promqltest load block. CPU counters grow by
// usage x 60 per minute, so rate(...[5m]) is usage cores.
func readinessRegionLoad(region string, usage int, perNode float64) string {
	r := `{region="` + region + `"`
	return strings.NewReplacer("REGION", r, "USAGE", itoa(usage*60), "NODE", model.SampleValue(perNode).String()).Replace(`
load 1m
  container_cpu_usage_seconds_totalREGION,container="app",pod="app-0"} 0+USAGEx10
  container_cpu_usage_seconds_totalREGION,container="",pod="app-0"} 0+99999x10
  kube_node_status_allocatableREGION,resource="cpu",node="n1"} NODEx10
  kube_node_status_allocatableREGION,resource="cpu",node="n2"} NODEx10
  kube_node_status_allocatableREGION,resource="memory",node="n1"} 1e12x10
  pg_replication_lag_secondsREGION,instance="db-0"} 30x10
  kube_deployment_labelsREGION,deployment="checkout",label_app_kubernetes_io_version="1.4.2"} 1x10
  kube_deployment_status_replicas_availableREGION,deployment="checkout"} 3x10
  upREGION,job="app",instance="a"} 1x10
  upREGION,job="node",instance="b"} 1x10
  meridian_failover_drill_last_success_timestamp_secondsREGION} 0x10
`)
}

func itoa(i int) string { return model.SampleValue(float64(i)).String() }

type staticSLOHealth map[string]RegionSLOHealth

func (s staticSLOHealth) SLOHealth(context.Context, time.Time) (map[string]RegionSLOHealth, error) {
	return s, nil
}

type staticStores []StoreHealth

func (s staticStores) Stores() []StoreHealth { return s }

// unreachableQuerier is a store that does not answer: the merge querier turns its error into
// a warning, the shape of a partial response.
type unreachableQuerier struct{ storage.LabelQuerier }

func (unreachableQuerier) Select(context.Context, bool, *storage.SelectHints, ...*labels.Matcher) storage.SeriesSet {
	return storage.ErrSeriesSet(errors.New(`region "ap-southeast-1": unavailable`))
}

// newReadinessTestQueryable returns three regions' stores merged like the querier's fan-out:
// eu-west-1 60 of 100 cores, us-east-1 50 of 100, ap-southeast-1 20 of 25. Losing ap-southeast-1
// leaves U = 130/200 = 0.65; losing eu-west-1 leaves U = 130/125 = 1.04, past the gate.
func newReadinessTestQueryable(t *testing.T, apReachable bool) storage.Queryable {
	stores := []storage.Storage{
		promqltest.LoadedStorage(t, readinessRegionLoad("eu-west-1", 60, 50)),
		promqltest.LoadedStorage(t, readinessRegionLoad("us-east-1", 50, 50)),
		promqltest.LoadedStorage(t, readinessRegionLoad("ap-southeast-1", 20, 12.5)),
	}
	return storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		var qs []storage.Querier
		for i, s := range stores {
			if i == 2 && !apReachable {
				q, err := stores[0].Querier(mint, maxt)
				require.NoError(t, err)
				qs = append(qs, unreachableQuerier{q})
				continue
			}
			q, err := s.Querier(mint, maxt)
			require.NoError(t, err)
			qs = append(qs, q)
		}
		return storage.NewMergeQuerier(nil, qs, storage.ChainedSeriesMerge), nil
	})
}

var readinessTestEvalTime = time.Unix(600, 0)

func newReadinessTestEvaluator(t *testing.T, apReachable bool, reg prometheus.Registerer) *ReadinessEvaluator {
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1e6)
	q := NewEngineQuerier(engine, newReadinessTestQueryable(t, apReachable))
	var stores staticStores
	slo := staticSLOHealth{}
	for _, r := range []string{"eu-west-1", "us-east-1", "ap-southeast-1"} {
		stores = append(stores, StoreHealth{Region: r, Address: r + ":10901", Healthy: true})
		slo[r] = RegionSLOHealth{Region: r, MinBudgetRemaining: 0.9, WorstSLO: "checkout-availability", Known: true}
	}
	e, err := NewReadinessEvaluator(ReadinessConfig{
		ReplicationLagExpr: "max by (region) (pg_replication_lag_seconds)",
		RPO:                model.Duration(5 * time.Minute),
		CriticalWorkloads:  []string{"checkout"},
	}, q, ReadinessOptions{
		SLOHealth: slo, Stores: stores, Registerer: reg,
		Now: func() time.Time { return readinessTestEvalTime },
	})
	require.NoError(t, err)
	return e
}

func readinessResultFor(t *testing.T, rep *ReadinessReport, region string) ReadinessResult {
	t.Helper()
	for _, r := range rep.Regions {
		if r.Region == region {
			return r
		}
	}
	require.Failf(t, "region not in report", "%s", region)
	return ReadinessResult{}
}

func TestReadinessThroughPromQLOverThreeStores(t *testing.T) {
	e := newReadinessTestEvaluator(t, true, nil)
	rep, err := e.Evaluate(context.Background(), readinessTestEvalTime)
	require.NoError(t, err)
	require.Empty(t, rep.Warnings)
	require.Len(t, rep.Regions, 3)

	ap := readinessResultFor(t, rep, "ap-southeast-1")
	// 0.30x100 + 0.20x90 + 0.20x100 + 0.15x100 + 0.05x100 + 0.10x100 (drilled 600 s ago)
	require.Equal(t, StateReady, ap.State, ap.Reason)
	require.InDelta(t, 98, ap.Score, 1e-9)
	require.Empty(t, ap.Gates)
	require.False(t, ap.Partial)

	eu := readinessResultFor(t, rep, "eu-west-1")
	require.Equal(t, StateNotReady, eu.State)
	require.Equal(t, []string{GateCapacity}, readinessGateNames(eu))
	require.InDelta(t, 68, eu.Score, 1e-9)
	require.Equal(t, "ap-southeast-1 and us-east-1 would run at 104% of CPU capacity after absorbing eu-west-1", eu.Reason)

	// Every input carries the expression it came from.
	for _, c := range eu.Components {
		require.Equal(t, ComponentOK, c.State, c.Name)
		for _, in := range c.Inputs {
			if in.Name == "cpu_usage_cores" {
				require.Equal(t, `sum by (region) (rate(container_cpu_usage_seconds_total{container!=""}[5m]))`, in.Expr)
			}
		}
	}
}

func TestReadinessPartialResponseMakesMissingRegionUnknown(t *testing.T) {
	e := newReadinessTestEvaluator(t, false, nil)
	res, warnings, err := e.EvaluateRegion(context.Background(), "eu-west-1", readinessTestEvalTime)
	require.NoError(t, err)
	require.NotEmpty(t, warnings)
	require.Contains(t, strings.Join(warnings, "\n"), `region "ap-southeast-1": unavailable`)
	require.True(t, res.Partial)
	caps := readinessComponentScores(res)
	require.Nil(t, caps[ComponentCapacity], "a survivor's usage missing must not become a better number")
	require.InDelta(t, 0.7, res.KnownWeight, 1e-9, "capacity (0.30) is left out of the weighting")
	var capacity Component
	for _, c := range res.Components {
		if c.Name == ComponentCapacity {
			capacity = c
		}
	}
	require.Equal(t, "no data for usage of ap-southeast-1, capacity of ap-southeast-1", capacity.Detail)
	require.GreaterOrEqual(t, res.Score, 80.0, "the known components alone would make it READY")
	require.Equal(t, StateDegraded, res.State, "partial data never makes a region READY")
	require.Contains(t, res.Reason, "readiness cannot be confirmed")
	require.False(t, res.Ready)
}

func TestReadinessHTTPHandlers(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	e := newReadinessTestEvaluator(t, true, reg)
	mux := http.NewServeMux()
	e.RegisterRoutes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		name     string
		path     string
		wantCode int
		check    func(t *testing.T, body []byte)
	}{
		{
			name: "all regions in the Prometheus envelope", path: "/api/v1/readiness", wantCode: http.StatusOK,
			check: func(t *testing.T, body []byte) {
				var env struct {
					Status string          `json:"status"`
					Data   ReadinessReport `json:"data"`
				}
				require.NoError(t, json.Unmarshal(body, &env))
				require.Equal(t, "success", env.Status)
				require.Len(t, env.Data.Regions, 3)
			},
		},
		{
			name: "what-if for one region", path: "/api/v1/readiness?fail=ap-southeast-1", wantCode: http.StatusOK,
			check: func(t *testing.T, body []byte) {
				var env struct {
					Data ReadinessReport `json:"data"`
				}
				require.NoError(t, json.Unmarshal(body, &env))
				require.Len(t, env.Data.Regions, 1)
				require.Equal(t, StateReady, env.Data.Regions[0].State)
			},
		},
		{
			name: "what-if for an unknown region is bad data", path: "/api/v1/readiness?fail=mars-1", wantCode: http.StatusBadRequest,
			check: func(t *testing.T, body []byte) {
				var env readinessEnvelope
				require.NoError(t, json.Unmarshal(body, &env))
				require.Equal(t, "error", env.Status)
				require.Equal(t, "bad_data", env.ErrorType)
				require.Contains(t, env.Error, "mars-1")
			},
		},
		{
			name: "survivable loss answers 200", path: "/readiness/ap-southeast-1", wantCode: http.StatusOK,
			check: func(t *testing.T, body []byte) {
				var res ReadinessResult
				require.NoError(t, json.Unmarshal(body, &res))
				require.True(t, res.Ready)
			},
		},
		{
			name: "unsurvivable loss answers 503 with the reason", path: "/readiness/eu-west-1", wantCode: http.StatusServiceUnavailable,
			check: func(t *testing.T, body []byte) {
				var res ReadinessResult
				require.NoError(t, json.Unmarshal(body, &res))
				require.Equal(t, StateNotReady, res.State)
				require.Contains(t, res.Reason, "104% of CPU capacity")
			},
		},
		{name: "unknown region answers 404", path: "/readiness/mars-1", wantCode: http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			require.NoError(t, err)
			defer resp.Body.Close()
			var body json.RawMessage
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
			require.Equal(t, tc.wantCode, resp.StatusCode, string(body))
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}

	require.NoError(t, promtestutil.GatherAndCompare(reg, strings.NewReader(`
# HELP meridian_failover_ready 1 when losing the region is survivable (state READY), else 0.
# TYPE meridian_failover_ready gauge
meridian_failover_ready{region="ap-southeast-1"} 1
meridian_failover_ready{region="eu-west-1"} 0
meridian_failover_ready{region="us-east-1"} 0
# HELP meridian_failover_readiness_score Failover readiness score (0-100) for losing the region; absent when every component is unknown.
# TYPE meridian_failover_readiness_score gauge
meridian_failover_readiness_score{region="ap-southeast-1"} 98
meridian_failover_readiness_score{region="eu-west-1"} 68
meridian_failover_readiness_score{region="us-east-1"} 68
`), "meridian_failover_ready", "meridian_failover_readiness_score"))
	require.NoError(t, promtestutil.GatherAndCompare(reg, strings.NewReader(`
# HELP meridian_failover_readiness_state 1 for the region's current readiness state (READY, DEGRADED, NOT_READY, UNKNOWN), 0 for the others.
# TYPE meridian_failover_readiness_state gauge
meridian_failover_readiness_state{region="ap-southeast-1",state="DEGRADED"} 0
meridian_failover_readiness_state{region="ap-southeast-1",state="NOT_READY"} 0
meridian_failover_readiness_state{region="ap-southeast-1",state="READY"} 1
meridian_failover_readiness_state{region="ap-southeast-1",state="UNKNOWN"} 0
meridian_failover_readiness_state{region="eu-west-1",state="DEGRADED"} 0
meridian_failover_readiness_state{region="eu-west-1",state="NOT_READY"} 1
meridian_failover_readiness_state{region="eu-west-1",state="READY"} 0
meridian_failover_readiness_state{region="eu-west-1",state="UNKNOWN"} 0
meridian_failover_readiness_state{region="us-east-1",state="DEGRADED"} 0
meridian_failover_readiness_state{region="us-east-1",state="NOT_READY"} 1
meridian_failover_readiness_state{region="us-east-1",state="READY"} 0
meridian_failover_readiness_state{region="us-east-1",state="UNKNOWN"} 0
`), "meridian_failover_readiness_state"))
	gates, err := promtestutil.GatherAndCount(reg, "meridian_failover_readiness_gate")
	require.NoError(t, err)
	require.Equal(t, 3*5, gates, "every gate of every region, fired or not")
	n, err := promtestutil.GatherAndCount(reg, "meridian_failover_readiness_component_score")
	require.NoError(t, err)
	require.Equal(t, 18, n, "six known components for each of three regions")
}

func TestReadinessRunRefreshesUntilCancelled(t *testing.T) {
	e := newReadinessTestEvaluator(t, true, nil)
	e.interval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	require.Eventually(t, func() bool { return e.Latest() != nil }, 5*time.Second, 5*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		require.FailNow(t, "Run did not return after cancel")
	}
}
