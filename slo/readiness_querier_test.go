package slo

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	_ "github.com/meridian-obs/meridian/internal/grpccodec"
	"github.com/meridian-obs/meridian/internal/storeapi"
	"github.com/meridian-obs/meridian/query"
)

// querierRegion is one region of the querier end-to-end tests: its readiness inputs (see
// readinessRegionLoad), its request rate with errorsPerMille errors per thousand requests for
// the availability SLO (objective 99%), and any further load lines.
type querierRegion struct {
	name           string
	usage          int     // CPU cores in use
	perNode        float64 // allocatable cores of each of its two nodes
	errorsPerMille int
	extra          string
}

// querierRegions: CPU usage of capacity eu-west-1 60/100, us-east-1 60/120, ap-southeast-1
// 40/50 (160 cores in use in all); remaining error budget 1 - ratio/0.01 = 0.8, 0.9 and 0.6;
// eu-west-1 has a third scrape target that is down. Replication lag 30 s everywhere (RPO 5m),
// checkout 1.4.2 everywhere, every region drilled 600 s before the evaluation.
var querierRegions = []querierRegion{
	{name: "eu-west-1", usage: 60, perNode: 50, errorsPerMille: 2, extra: `  up{region="eu-west-1",job="batch",instance="c"} 0x10`},
	{name: "us-east-1", usage: 60, perNode: 60, errorsPerMille: 1},
	{name: "ap-southeast-1", usage: 40, perNode: 25, errorsPerMille: 4},
}

// load is the region's promqltest script: readinessRegionLoad plus a thousand requests a minute.
func (r querierRegion) load() string {
	sel := `http_requests_total{region="` + r.name + `",instance="web-0",code=`
	return readinessRegionLoad(r.name, r.usage, r.perNode) + "\nload 1m\n" +
		"  " + sel + `"200"} 0+` + itoa(1000-r.errorsPerMille) + "x10\n" +
		"  " + sel + `"500"} 0+` + itoa(r.errorsPerMille) + "x10\n" +
		r.extra + "\n"
}

// querierHarness is a real querier (store set, fan-out, PromQL engine) over three StoreAPI
// servers on loopback, with the SLO engine and the readiness evaluator on top.
type querierHarness struct {
	set       *query.StoreSet
	servers   map[string]*grpc.Server
	readiness *ReadinessEvaluator
}

// storeSetHealth adapts the store set to StoreHealthSource, as meridian query does.
type storeSetHealth struct{ set *query.StoreSet }

func (h storeSetHealth) Stores() []StoreHealth {
	var out []StoreHealth
	for _, st := range h.set.Stores() {
		out = append(out, StoreHealth{Region: st.Region, Address: st.Address, Healthy: st.Healthy})
	}
	return out
}

func startQuerierHarness(t *testing.T) *querierHarness {
	t.Helper()
	h := &querierHarness{servers: map[string]*grpc.Server{}}
	var endpoints []string
	for _, r := range querierRegions {
		db := promqltest.LoadedStorage(t, r.load())
		t.Cleanup(func() { _ = db.Close() })
		srv, err := storeapi.NewServer(db, storeapi.Options{
			ExternalLabels: labels.FromStrings("region", r.name),
			Registerer:     prometheus.NewRegistry(),
		})
		require.NoError(t, err)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		g := grpc.NewServer()
		srv.Register(g)
		go func() { _ = g.Serve(lis) }()
		t.Cleanup(g.Stop)
		h.servers[r.name] = g
		endpoints = append(endpoints, lis.Addr().String())
	}

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	set, err := query.NewStoreSet(logger, prometheus.NewRegistry(), query.StoreSetOptions{
		Endpoints: endpoints, ProbeInterval: 50 * time.Millisecond, ProbeTimeout: time.Second,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = set.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	require.Eventually(t, set.Ready, 10*time.Second, 5*time.Millisecond)
	for _, st := range set.Stores() {
		require.True(t, st.Healthy, "store %s: %s", st.Address, st.LastError)
	}
	h.set = set

	fanout := query.NewFanout(logger, nil, set, query.FanoutOptions{PartialResponse: true, StoreResponseTimeout: 5 * time.Second})
	engine := query.NewEngine(logger, nil, nil, query.EngineOptions{})
	q := NewEngineQuerier(engine, fanout)
	now := func() time.Time { return readinessTestEvalTime }
	var regions []string
	for _, r := range querierRegions {
		regions = append(regions, r.name)
	}
	slos, err := NewEngine(logger, q, []SLO{availabilitySLO()}, Options{Regions: regions, Now: now})
	require.NoError(t, err)
	h.readiness, err = NewReadinessEvaluator(ReadinessConfig{
		ReplicationLagExpr: "max by (region) (pg_replication_lag_seconds)",
		RPO:                model.Duration(5 * time.Minute),
		CriticalWorkloads:  []string{"checkout"},
	}, q, ReadinessOptions{SLOHealth: slos, Stores: storeSetHealth{set}, Logger: logger, Now: now})
	require.NoError(t, err)
	return h
}

// componentByName returns the named component of res.
func componentByName(t *testing.T, res ReadinessResult, name string) Component {
	t.Helper()
	for _, c := range res.Components {
		if c.Name == name {
			return c
		}
	}
	require.Failf(t, "component not in result", "%s", name)
	return Component{}
}

func inputValue(t *testing.T, c Component, name string) float64 {
	t.Helper()
	for _, in := range c.Inputs {
		if in.Name == name {
			require.NotNil(t, in.Value, "%s of %s", name, c.Name)
			return *in.Value
		}
	}
	require.Failf(t, "input not in component", "%s of %s", name, c.Name)
	return 0
}

// Freshness (30 s <= RPO/2), version parity and drill recency (600 s ago) are 100 in every
// case below: 0.20x100 + 0.15x100 + 0.10x100 = 45 points of every score.
func TestReadinessThroughQuerierOverThreeStores(t *testing.T) {
	h := startQuerierHarness(t)
	rep, err := h.readiness.Evaluate(context.Background(), readinessTestEvalTime)
	require.NoError(t, err)
	require.Empty(t, rep.Warnings)
	require.Len(t, rep.Regions, 3)

	for _, tc := range []struct {
		fail         string
		wantState    ReadinessState
		wantScore    float64
		wantU        float64
		wantCapacity float64
		wantSLO      float64
		wantReach    float64
		wantGates    []string
		wantReason   string
	}{
		{
			// U = (60 + 60 + 40) / (100 + 120) = 160/220 = 0.7273 -> capacity 100 x (1 - 0.7273) / 0.30 = 90.91.
			// SLO: lowest budget of eu-west-1 0.8, us-east-1 0.9 -> 80. Reachability: 2 stores up
			// of 2, targets 2 of 3 (eu-west-1) and 2 of 2 -> 6/7 = 85.71.
			// 0.30x90.91 + 0.20x80 + 45 + 0.05x85.71 = 27.27 + 16 + 45 + 4.29 = 92.56 -> READY;
			// the SLO component costs the most (0.20x20 = 4 points against capacity's 2.73).
			fail: "ap-southeast-1", wantState: StateReady, wantScore: 92.56,
			wantU: 160.0 / 220, wantCapacity: 1000.0 / 11, wantSLO: 80, wantReach: 600.0 / 7,
			wantReason: "the lowest remaining error budget among the survivors is 80% in eu-west-1 (shop/availability)",
		},
		{
			// U = 160 / (120 + 50) = 0.9412 -> capacity 100 x (1 - 0.9412) / 0.30 = 19.61.
			// SLO: lowest of ap-southeast-1 0.6, us-east-1 0.9 -> 60. Reachability 6/6 -> 100.
			// 0.30x19.61 + 0.20x60 + 45 + 0.05x100 = 5.88 + 12 + 45 + 5 = 67.88 -> DEGRADED; the
			// capacity component costs the most (24.12 points).
			fail: "eu-west-1", wantState: StateDegraded, wantScore: 67.88,
			wantU: 160.0 / 170, wantCapacity: 100.0 / 17 / 0.3, wantSLO: 60, wantReach: 100,
			wantReason: "ap-southeast-1 and us-east-1 would run at 94% of CPU capacity after absorbing eu-west-1",
		},
		{
			// U = 160 / (100 + 50) = 1.0667 >= 1 -> capacity 0 and the capacity gate.
			// SLO: lowest of eu-west-1 0.8, ap-southeast-1 0.6 -> 60. Reachability 6/7 = 85.71.
			// 0 + 12 + 45 + 4.29 = 61.29, DEGRADED by score but NOT_READY by the gate.
			fail: "us-east-1", wantState: StateNotReady, wantScore: 61.29,
			wantU: 160.0 / 150, wantCapacity: 0, wantSLO: 60, wantReach: 600.0 / 7,
			wantGates:  []string{GateCapacity},
			wantReason: "ap-southeast-1 and eu-west-1 would run at 107% of CPU capacity after absorbing us-east-1",
		},
	} {
		t.Run("losing "+tc.fail, func(t *testing.T) {
			res := readinessResultFor(t, rep, tc.fail)
			require.Equal(t, tc.wantState, res.State, res.Reason)
			require.Equal(t, tc.wantState == StateReady, res.Ready)
			require.InDelta(t, tc.wantScore, res.Score, 1e-9)
			require.Equal(t, tc.wantGates, readinessGateNames(res))
			require.Equal(t, tc.wantReason, res.Reason)
			require.False(t, res.Partial)
			require.InDelta(t, 1, res.KnownWeight, 1e-9)

			capacity := componentByName(t, res, ComponentCapacity)
			require.InDelta(t, tc.wantU, inputValue(t, capacity, "projected_utilisation"), 1e-9)
			require.InDelta(t, tc.wantCapacity, *capacity.Score, 1e-9)
			slo := componentByName(t, res, ComponentSLOHealth)
			require.InDelta(t, tc.wantSLO, *slo.Score, 1e-9)
			require.Contains(t, slo.Detail, "(shop/availability)")
			require.InDelta(t, tc.wantReach, *componentByName(t, res, ComponentReachability).Score, 1e-9)
			for _, name := range []string{ComponentFreshness, ComponentParity, ComponentDrill} {
				require.InDelta(t, 100, *componentByName(t, res, name).Score, 1e-9, name)
			}
		})
	}
}

// A survivor's store stopped: its data is missing from every input, the querier answers
// partially with a warning naming the region, and losing ap-southeast-1 (READY at 92.56 with
// every store up) can no longer be confirmed.
func TestReadinessThroughQuerierWithAStoreStopped(t *testing.T) {
	h := startQuerierHarness(t)
	h.servers["us-east-1"].Stop()
	require.Eventually(t, func() bool {
		for _, st := range (storeSetHealth{h.set}).Stores() {
			if st.Region == "us-east-1" {
				return !st.Healthy
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "the store set never marked the stopped store unhealthy")

	res, warnings, err := h.readiness.EvaluateRegion(context.Background(), "ap-southeast-1", readinessTestEvalTime)
	require.NoError(t, err)
	require.NotEmpty(t, warnings)
	for _, w := range warnings {
		require.Contains(t, w, `region "us-east-1"`)
	}
	require.True(t, res.Partial)
	require.NotEqual(t, StateReady, res.State)
	require.False(t, res.Ready)

	// Capacity is unknown (usage and capacity of us-east-1 missing), leaving 0.70 of the weight.
	// SLO: eu-west-1 0.8, us-east-1 unknown -> 80. Freshness: eu-west-1 30 s -> 100. Parity:
	// checkout 1.4.2 in eu-west-1 -> 100. Reachability: stores 1 of 2 healthy, targets 2 of 3
	// (eu-west-1) -> 3/5 = 60. Drill of ap-southeast-1 -> 100.
	// (0.20x80 + 0.20x100 + 0.15x100 + 0.05x60 + 0.10x100) / 0.70 = 64/0.70 = 91.43, which
	// partial data caps at DEGRADED.
	require.Equal(t, StateDegraded, res.State, res.Reason)
	require.InDelta(t, 91.43, res.Score, 1e-9)
	require.InDelta(t, 0.7, res.KnownWeight, 1e-9)
	require.Empty(t, res.Gates)
	capacity := componentByName(t, res, ComponentCapacity)
	require.Nil(t, capacity.Score)
	require.Equal(t, "no data for usage of us-east-1, capacity of us-east-1", capacity.Detail)
	require.InDelta(t, 80, *componentByName(t, res, ComponentSLOHealth).Score, 1e-9)
	require.InDelta(t, 60, *componentByName(t, res, ComponentReachability).Score, 1e-9)
	require.Contains(t, strings.Join(res.Notes, "\n"), "SLO health unknown in us-east-1")
	require.True(t, strings.HasPrefix(res.Reason, "some stores did not answer, so readiness cannot be confirmed (score 91.4 on partial data)"), res.Reason)
}
