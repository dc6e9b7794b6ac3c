package slo

import (
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"
)

var readinessTestNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func readinessRegionVec(vals map[string]float64) promql.Vector {
	var v promql.Vector
	for r, f := range vals {
		v = append(v, promql.Sample{Metric: labels.FromStrings("region", r), F: f})
	}
	return v
}

func readinessAnswer(expr string, vec promql.Vector) inputResult {
	return inputResult{expr: expr, vec: vec}
}

func readinessVersionVec(rows ...[3]string) promql.Vector {
	var v promql.Vector
	for _, r := range rows {
		v = append(v, promql.Sample{Metric: labels.FromStrings("region", r[0], "deployment", r[1], "version", r[2]), F: 1})
	}
	return v
}

func readinessUpVec(region string, ups ...float64) promql.Vector {
	var v promql.Vector
	for i, u := range ups {
		v = append(v, promql.Sample{Metric: labels.FromStrings("region", region, "instance", string(rune('a'+i))), F: u})
	}
	return v
}

func readinessDaysAgo(d float64) float64 {
	return float64(readinessTestNow.Add(-time.Duration(d * 24 * float64(time.Hour))).Unix())
}

// workedExampleSpec and workedExample are the example of READINESS.md: active-active, three
// regions, usage/capacity eu-west-1 60/100, us-east-1 50/100, ap-southeast-1 30/100, lag 30s
// against an RPO of 5m, equal versions, everything up, last drill 45 days ago, lowest
// remaining budget 0.8, no page burn.
func workedExampleSpec(t *testing.T) readinessSpec {
	t.Helper()
	spec, err := newReadinessSpec(ReadinessConfig{
		ReplicationLagExpr: "max by (region) (pg_replication_lag_seconds)",
		RPO:                model.Duration(5 * time.Minute),
	}, "region")
	require.NoError(t, err)
	return spec
}

func workedExample(spec readinessSpec) *readinessSnapshot {
	regions := []string{"ap-southeast-1", "eu-west-1", "us-east-1"}
	var up promql.Vector
	var stores []StoreHealth
	slo := map[string]RegionSLOHealth{}
	for _, r := range regions {
		up = append(up, readinessUpVec(r, 1, 1)...)
		stores = append(stores, StoreHealth{Region: r, Address: r + ":10901", Healthy: true})
		slo[r] = RegionSLOHealth{Region: r, MinBudgetRemaining: 0.8, WorstSLO: "checkout-availability", Known: true}
	}
	return &readinessSnapshot{
		at:       readinessTestNow,
		regions:  regions,
		usage:    readinessAnswer(spec.UsageExpr, readinessRegionVec(map[string]float64{"eu-west-1": 60, "us-east-1": 50, "ap-southeast-1": 30})),
		capacity: readinessAnswer(spec.CapacityExpr, readinessRegionVec(map[string]float64{"eu-west-1": 100, "us-east-1": 100, "ap-southeast-1": 100})),
		lag:      readinessAnswer(spec.ReplicationLagExpr, readinessRegionVec(map[string]float64{"eu-west-1": 30, "us-east-1": 30, "ap-southeast-1": 30})),
		versions: readinessAnswer(spec.VersionExpr, readinessVersionVec(
			[3]string{"eu-west-1", "checkout", "1.4.2"}, [3]string{"us-east-1", "checkout", "1.4.2"}, [3]string{"ap-southeast-1", "checkout", "1.4.2"},
			[3]string{"eu-west-1", "payments", "2.0.0"}, [3]string{"us-east-1", "payments", "2.0.0"}, [3]string{"ap-southeast-1", "payments", "2.0.0"},
		)),
		up:          readinessAnswer(spec.UpExpr, up),
		drill:       readinessAnswer(spec.DrillExpr, readinessRegionVec(map[string]float64{"eu-west-1": readinessDaysAgo(45), "us-east-1": readinessDaysAgo(45), "ap-southeast-1": readinessDaysAgo(45)})),
		stores:      stores,
		storesKnown: true,
		slo:         slo,
		sloKnown:    true,
	}
}

func readinessComponentScores(res ReadinessResult) map[string]*float64 {
	out := map[string]*float64{}
	for _, c := range res.Components {
		out[c.Name] = c.Score
	}
	return out
}

func requireReadinessScores(t *testing.T, want map[string]float64, res ReadinessResult) {
	t.Helper()
	got := readinessComponentScores(res)
	for name, w := range want {
		require.NotNil(t, got[name], "component %s is unknown", name)
		require.InDelta(t, w, *got[name], 1e-9, "component %s", name)
	}
}

func readinessGateNames(res ReadinessResult) []string {
	var out []string
	for _, g := range res.Gates {
		out = append(out, g.Name)
	}
	return out
}

func TestReadinessWorkedExampleLosingEUWest1IsReadyAt93Point5(t *testing.T) {
	spec := workedExampleSpec(t)
	res := scoreRegion(spec, workedExample(spec), "eu-west-1")

	require.Equal(t, []string{"ap-southeast-1", "us-east-1"}, res.Survivors)
	requireReadinessScores(t, map[string]float64{
		ComponentCapacity: 100, ComponentSLOHealth: 80, ComponentFreshness: 100,
		ComponentParity: 100, ComponentReachability: 100, ComponentDrill: 75,
	}, res)
	require.Equal(t, 93.5, res.Score)
	require.Equal(t, StateReady, res.State)
	require.True(t, res.Ready)
	require.Empty(t, res.Gates)
	require.Equal(t, 1.0, res.KnownWeight)
	// SLO health costs 0.20x20 = 4 points, the drill 0.10x25 = 2.5: the budget is the worst factor.
	require.Equal(t, "the lowest remaining error budget among the survivors is 80% in ap-southeast-1 (checkout-availability)", res.Reason)
}

func TestReadinessWorkedExampleHalvedCapacityIsNotReadyByGate(t *testing.T) {
	spec := workedExampleSpec(t)
	snap := workedExample(spec)
	snap.capacity = readinessAnswer(spec.CapacityExpr, readinessRegionVec(map[string]float64{"eu-west-1": 100, "us-east-1": 50, "ap-southeast-1": 50}))
	res := scoreRegion(spec, snap, "eu-west-1")

	requireReadinessScores(t, map[string]float64{ComponentCapacity: 0}, res)
	require.Equal(t, 63.5, res.Score, "the score is shown even though the gate overrules it")
	require.Equal(t, StateNotReady, res.State)
	require.False(t, res.Ready)
	require.Equal(t, []string{GateCapacity}, readinessGateNames(res))
	require.Equal(t, "ap-southeast-1 and us-east-1 would run at 140% of CPU capacity after absorbing eu-west-1", res.Reason)
}

func TestReadinessCapacityComponent(t *testing.T) {
	for _, tc := range []struct {
		name       string
		usage, cap map[string]float64
		ceiling    map[string]float64
		wantScore  *float64
		wantGate   bool
		wantDetail string
	}{
		{
			name:  "at the target scores 100",
			usage: map[string]float64{"a": 40, "b": 30}, cap: map[string]float64{"a": 100, "b": 100},
			wantScore: floatPtr(100), wantDetail: "b would run at 70% of CPU capacity after absorbing a",
		},
		{
			name:  "halfway between target and full scores 50",
			usage: map[string]float64{"a": 45, "b": 40}, cap: map[string]float64{"a": 100, "b": 100},
			wantScore: floatPtr(50), wantDetail: "b would run at 85% of CPU capacity after absorbing a",
		},
		{
			name:  "exactly full scores 0 and gates",
			usage: map[string]float64{"a": 60, "b": 40}, cap: map[string]float64{"a": 100, "b": 100},
			wantScore: floatPtr(0), wantGate: true, wantDetail: "b would run at 100% of CPU capacity after absorbing a",
		},
		{
			name:  "autoscaler ceiling counts as capacity",
			usage: map[string]float64{"a": 60, "b": 40}, cap: map[string]float64{"a": 100, "b": 100}, ceiling: map[string]float64{"b": 200},
			wantScore: floatPtr(100), wantDetail: "b would run at 50% of CPU capacity after absorbing a",
		},
		{
			name:  "a ceiling below the allocatable capacity does not lower it",
			usage: map[string]float64{"a": 10, "b": 10}, cap: map[string]float64{"a": 100, "b": 100}, ceiling: map[string]float64{"b": 10},
			wantScore: floatPtr(100), wantDetail: "b would run at 20% of CPU capacity after absorbing a",
		},
		{
			name:  "survivors without capacity gate",
			usage: map[string]float64{"a": 10, "b": 0}, cap: map[string]float64{"a": 100, "b": 0},
			wantScore: floatPtr(0), wantGate: true, wantDetail: "b have no CPU capacity to absorb a",
		},
		{
			name:  "usage of the failed region missing is unknown, never 100",
			usage: map[string]float64{"b": 10}, cap: map[string]float64{"a": 100, "b": 100},
			wantDetail: "no data for usage of a",
		},
		{
			name:  "capacity of a survivor missing is unknown",
			usage: map[string]float64{"a": 10, "b": 10}, cap: map[string]float64{"a": 100},
			wantDetail: "no data for capacity of b",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := newReadinessSpec(ReadinessConfig{MaxCapacity: tc.ceiling}, "")
			require.NoError(t, err)
			snap := &readinessSnapshot{
				at: readinessTestNow, regions: []string{"a", "b"},
				usage:    readinessAnswer(spec.UsageExpr, readinessRegionVec(tc.usage)),
				capacity: readinessAnswer(spec.CapacityExpr, readinessRegionVec(tc.cap)),
			}
			o := scoreCapacity(spec, snap, "a", []string{"b"})
			if tc.wantScore == nil {
				require.Nil(t, o.Score)
				require.Equal(t, ComponentUnknown, o.State)
			} else {
				require.NotNil(t, o.Score)
				require.InDelta(t, *tc.wantScore, *o.Score, 1e-9)
			}
			require.Equal(t, tc.wantGate, len(o.gates) == 1)
			require.Equal(t, tc.wantDetail, o.Detail)
		})
	}
}

func TestReadinessSLOHealthComponent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		health    map[string]RegionSLOHealth
		known     bool
		wantScore *float64
		wantGate  bool
	}{
		{
			name:  "lowest budget among survivors",
			known: true,
			health: map[string]RegionSLOHealth{
				"b": {MinBudgetRemaining: 0.9, Known: true}, "c": {MinBudgetRemaining: 0.5, Known: true},
				"a": {MinBudgetRemaining: 0.1, Known: true}, // the failed region does not count
			},
			wantScore: floatPtr(50),
		},
		{
			name:      "an overspent budget is clamped to 0",
			known:     true,
			health:    map[string]RegionSLOHealth{"b": {MinBudgetRemaining: -0.4, Known: true}, "c": {MinBudgetRemaining: 1.3, Known: true}},
			wantScore: floatPtr(0),
		},
		{
			name:      "page burn in a survivor gates",
			known:     true,
			health:    map[string]RegionSLOHealth{"b": {MinBudgetRemaining: 0.9, Known: true, PageBurn: true, PageBurnSLOs: []string{"checkout"}}, "c": {MinBudgetRemaining: 1, Known: true}},
			wantScore: floatPtr(90), wantGate: true,
		},
		{
			name:      "page burn in the failed region does not gate",
			known:     true,
			health:    map[string]RegionSLOHealth{"a": {Known: true, PageBurn: true}, "b": {MinBudgetRemaining: 1, Known: true}, "c": {MinBudgetRemaining: 1, Known: true}},
			wantScore: floatPtr(100),
		},
		{
			name:   "no survivor with a known SLO is unknown",
			known:  true,
			health: map[string]RegionSLOHealth{"a": {MinBudgetRemaining: 1, Known: true}, "b": {Known: false}},
		},
		{
			name: "no SLO engine is unknown",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := &readinessSnapshot{at: readinessTestNow, slo: tc.health, sloKnown: tc.known}
			o := scoreSLOHealth(snap, []string{"b", "c"})
			if tc.wantScore == nil {
				require.Nil(t, o.Score)
			} else {
				require.NotNil(t, o.Score)
				require.InDelta(t, *tc.wantScore, *o.Score, 1e-9)
			}
			require.Equal(t, tc.wantGate, len(o.gates) == 1)
		})
	}
}

func TestReadinessFreshnessComponent(t *testing.T) {
	const lagExpr = "max by (region) (pg_replication_lag_seconds)"
	for _, tc := range []struct {
		name      string
		cfg       ReadinessConfig
		lag       map[string]float64
		partial   bool
		failed    string
		wantScore *float64
		wantGate  string
	}{
		{name: "lag within half the RPO scores 100", lag: map[string]float64{"b": 150, "c": 10}, wantScore: floatPtr(100)},
		{name: "lag at three quarters of the RPO scores 50", lag: map[string]float64{"b": 225, "c": 10}, wantScore: floatPtr(50)},
		{name: "lag at the RPO scores 0 without gate", lag: map[string]float64{"b": 300}, wantScore: floatPtr(0)},
		{name: "lag beyond the RPO gates", lag: map[string]float64{"b": 301}, wantScore: floatPtr(0), wantGate: GateReplicationLag},
		{name: "configured RPO is used", cfg: ReadinessConfig{RPO: model.Duration(time.Minute)}, lag: map[string]float64{"b": 45}, wantScore: floatPtr(50)},
		{name: "lag series absent in every survivor is broken replication", lag: map[string]float64{"a": 5}, wantScore: floatPtr(0), wantGate: GateReplicationBroke},
		{name: "lag series absent with a partial response is unknown, not broken", lag: map[string]float64{}, partial: true},
		{
			name: "active-passive primary loss needs every standby's lag",
			cfg:  ReadinessConfig{Topology: TopologyActivePassive, Primary: "a", Standbys: []string{"b", "c"}},
			lag:  map[string]float64{"b": 5}, wantScore: floatPtr(0), wantGate: GateReplicationBroke,
		},
		{name: "not configured is unknown", cfg: ReadinessConfig{ReplicationLagExpr: "-"}, lag: map[string]float64{"b": 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			switch cfg.ReplicationLagExpr {
			case "":
				cfg.ReplicationLagExpr = lagExpr
			case "-":
				cfg.ReplicationLagExpr = ""
			}
			spec, err := newReadinessSpec(cfg, "region")
			require.NoError(t, err)
			snap := &readinessSnapshot{at: readinessTestNow, regions: []string{"a", "b", "c"}}
			if cfg.ReplicationLagExpr != "" {
				snap.lag = readinessAnswer(lagExpr, readinessRegionVec(tc.lag))
				snap.lag.partial = tc.partial
			}
			o := scoreFreshness(spec, snap, "a", spec.survivors("a", snap.regions))
			if tc.wantScore == nil {
				require.Nil(t, o.Score, o.Detail)
			} else {
				require.NotNil(t, o.Score, o.Detail)
				require.InDelta(t, *tc.wantScore, *o.Score, 1e-9)
			}
			if tc.wantGate == "" {
				require.Empty(t, o.gates)
			} else {
				require.Len(t, o.gates, 1)
				require.Equal(t, tc.wantGate, o.gates[0].Name)
			}
		})
	}
}
