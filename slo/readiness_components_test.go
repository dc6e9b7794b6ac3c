package slo

import (
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"
)

func readinessWorkloadVec(rows map[[2]string]float64) promql.Vector {
	var v promql.Vector
	for k, f := range rows {
		v = append(v, promql.Sample{Metric: labels.FromStrings("region", k[0], "deployment", k[1]), F: f})
	}
	return v
}

func TestReadinessVersionParityComponent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		critical  []string
		versions  promql.Vector
		workloads map[[2]string]float64
		partial   bool
		wantScore *float64
		wantGates []string
	}{
		{
			name: "same versions everywhere scores 100",
			versions: readinessVersionVec([3]string{"a", "api", "1"}, [3]string{"b", "api", "1"}, [3]string{"c", "api", "1"},
				[3]string{"a", "web", "2"}, [3]string{"b", "web", "2"}),
			wantScore: floatPtr(100),
		},
		{
			name: "one of two deployments differs scores 50",
			versions: readinessVersionVec([3]string{"a", "api", "1"}, [3]string{"b", "api", "1"},
				[3]string{"a", "web", "2"}, [3]string{"b", "web", "1"}),
			wantScore: floatPtr(50),
		},
		{
			name: "a rollout in progress matches when the version sets are equal",
			versions: readinessVersionVec([3]string{"a", "api", "1"}, [3]string{"a", "api", "2"},
				[3]string{"b", "api", "2"}, [3]string{"c", "api", "1"}),
			wantScore: floatPtr(100),
		},
		{
			name:     "only critical workloads are compared when listed",
			critical: []string{"api"},
			versions: readinessVersionVec([3]string{"a", "api", "1"}, [3]string{"b", "api", "1"},
				[3]string{"a", "web", "2"}, [3]string{"b", "web", "1"}),
			workloads: map[[2]string]float64{{"b", "api"}: 3},
			wantScore: floatPtr(100),
		},
		{
			name:      "critical workload without replicas in any survivor gates",
			critical:  []string{"api", "ledger"},
			versions:  readinessVersionVec([3]string{"a", "api", "1"}, [3]string{"b", "api", "1"}),
			workloads: map[[2]string]float64{{"a", "ledger"}: 3, {"b", "api"}: 2, {"b", "ledger"}: 0},
			wantScore: floatPtr(100), wantGates: []string{GateWorkloadMissing},
		},
		{
			name:      "critical workload unseen in a partial response does not gate",
			critical:  []string{"api"},
			versions:  readinessVersionVec([3]string{"a", "api", "1"}, [3]string{"b", "api", "1"}),
			workloads: map[[2]string]float64{},
			partial:   true,
			wantScore: floatPtr(100),
		},
		{
			name:     "no version reported in the failed region is unknown",
			versions: readinessVersionVec([3]string{"b", "api", "1"}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := newReadinessSpec(ReadinessConfig{CriticalWorkloads: tc.critical}, "region")
			require.NoError(t, err)
			snap := &readinessSnapshot{at: readinessTestNow, regions: []string{"a", "b", "c"}, versions: readinessAnswer(spec.VersionExpr, tc.versions)}
			if tc.workloads != nil {
				snap.workloads = readinessAnswer(spec.WorkloadExpr, readinessWorkloadVec(tc.workloads))
				snap.workloads.partial = tc.partial
			}
			o := scoreParity(spec, snap, "a", []string{"b", "c"})
			if tc.wantScore == nil {
				require.Nil(t, o.Score, o.Detail)
			} else {
				require.NotNil(t, o.Score, o.Detail)
				require.InDelta(t, *tc.wantScore, *o.Score, 1e-9)
			}
			var gates []string
			for _, g := range o.gates {
				gates = append(gates, g.Name)
			}
			require.Equal(t, tc.wantGates, gates)
			require.Equal(t, tc.partial, o.partial)
		})
	}
}

func TestReadinessReachabilityComponent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stores    []StoreHealth
		up        promql.Vector
		wantScore *float64
	}{
		{
			name:   "stores and targets of the survivors only",
			stores: []StoreHealth{{Region: "a", Healthy: false}, {Region: "b", Healthy: true}, {Region: "b", Healthy: false}},
			up:     append(readinessUpVec("b", 1, 1, 1, 0), readinessUpVec("a", 0, 0)...),
			// (1 healthy store + 3 targets up) / (2 stores + 4 targets)
			wantScore: floatPtr(100 * 4.0 / 6.0),
		},
		{name: "up alone when no store source", up: readinessUpVec("b", 1, 0), wantScore: floatPtr(50)},
		{name: "nothing known about the survivors is unknown", up: readinessUpVec("a", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := newReadinessSpec(ReadinessConfig{}, "region")
			require.NoError(t, err)
			snap := &readinessSnapshot{at: readinessTestNow, up: readinessAnswer("up", tc.up), stores: tc.stores, storesKnown: tc.stores != nil}
			o := scoreReachability(spec, snap, []string{"b"})
			if tc.wantScore == nil {
				require.Nil(t, o.Score, o.Detail)
				return
			}
			require.NotNil(t, o.Score, o.Detail)
			require.InDelta(t, *tc.wantScore, *o.Score, 1e-9)
		})
	}
}

func TestReadinessDrillComponent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		drill     promql.Vector
		wantScore *float64
	}{
		{name: "within 30 days scores 100", drill: readinessRegionVec(map[string]float64{"a": readinessDaysAgo(30)}), wantScore: floatPtr(100)},
		{name: "60 days scores 50", drill: readinessRegionVec(map[string]float64{"a": readinessDaysAgo(60), "b": readinessDaysAgo(1)}), wantScore: floatPtr(50)},
		{name: "90 days or more scores 0", drill: readinessRegionVec(map[string]float64{"a": readinessDaysAgo(200)}), wantScore: floatPtr(0)},
		{name: "a drill of another region does not count", drill: readinessRegionVec(map[string]float64{"b": readinessDaysAgo(1)})},
		{
			name:      "a drill without a region label counts for every region",
			drill:     promql.Vector{{Metric: labels.EmptyLabels(), F: readinessDaysAgo(45)}},
			wantScore: floatPtr(75),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := newReadinessSpec(ReadinessConfig{}, "region")
			require.NoError(t, err)
			o := scoreDrill(spec, &readinessSnapshot{at: readinessTestNow, drill: readinessAnswer(spec.DrillExpr, tc.drill)}, "a")
			if tc.wantScore == nil {
				require.Nil(t, o.Score, o.Detail)
				return
			}
			require.NotNil(t, o.Score, o.Detail)
			require.InDelta(t, *tc.wantScore, *o.Score, 1e-9)
		})
	}
}

func TestReadinessCombiningUnknownsAndStates(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mutate    func(spec readinessSpec, s *readinessSnapshot)
		wantScore float64
		wantState ReadinessState
		wantKnown float64
	}{
		{
			name:   "unknown SLO health is left out and the weights renormalised",
			mutate: func(_ readinessSpec, s *readinessSnapshot) { s.sloKnown, s.slo = false, nil },
			// (0.30x100 + 0.20x100 + 0.15x100 + 0.05x100 + 0.10x75) / 0.80
			wantScore: 96.88, wantState: StateReady, wantKnown: 0.8,
		},
		{
			name: "unknown components over a third of the weight make the state unknown",
			mutate: func(_ readinessSpec, s *readinessSnapshot) {
				s.sloKnown, s.slo = false, nil
				s.lag = inputResult{}
			},
			wantScore: 95.83, wantState: StateUnknown, wantKnown: 0.6,
		},
		{
			name: "unknown weight of 0.30 stays under a third",
			mutate: func(_ readinessSpec, s *readinessSnapshot) {
				s.sloKnown, s.slo = false, nil
				s.drill = readinessAnswer(s.drill.expr, nil)
			},
			// (0.30x100 + 0.20x100 + 0.15x100 + 0.05x100) / 0.70
			wantScore: 100, wantState: StateReady, wantKnown: 0.7,
		},
		{
			name: "unknown weight of 0.35 is over a third",
			mutate: func(_ readinessSpec, s *readinessSnapshot) {
				s.sloKnown, s.slo = false, nil
				s.drill = readinessAnswer(s.drill.expr, nil)
				s.up = readinessAnswer("up", nil)
				s.storesKnown = false
			},
			wantScore: 100, wantState: StateUnknown, wantKnown: 0.65,
		},
		{
			name: "score between 60 and 80 is degraded",
			mutate: func(spec readinessSpec, s *readinessSnapshot) {
				// U = 0.85 -> capacity 50; lowest budget 0.3 -> SLO 30.
				s.usage = readinessAnswer(spec.UsageExpr, readinessRegionVec(map[string]float64{"eu-west-1": 90, "us-east-1": 50, "ap-southeast-1": 30}))
				for r, h := range s.slo {
					h.MinBudgetRemaining = 0.3
					s.slo[r] = h
				}
			},
			// 0.30x50 + 0.20x30 + 0.20x100 + 0.15x100 + 0.05x100 + 0.10x75
			wantScore: 68.5, wantState: StateDegraded, wantKnown: 1,
		},
		{
			name: "score below 60 is not ready without a gate",
			mutate: func(spec readinessSpec, s *readinessSnapshot) {
				s.usage = readinessAnswer(spec.UsageExpr, readinessRegionVec(map[string]float64{"eu-west-1": 90, "us-east-1": 50, "ap-southeast-1": 30}))
				for r, h := range s.slo {
					h.MinBudgetRemaining = 0
					s.slo[r] = h
				}
				s.drill = readinessAnswer(s.drill.expr, readinessRegionVec(map[string]float64{"eu-west-1": readinessDaysAgo(120)}))
			},
			// 0.30x50 + 0 + 0.20x100 + 0.15x100 + 0.05x100 + 0
			wantScore: 55, wantState: StateNotReady, wantKnown: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := workedExampleSpec(t)
			snap := workedExample(spec)
			tc.mutate(spec, snap)
			res := scoreRegion(spec, snap, "eu-west-1")
			require.Equal(t, tc.wantState, res.State, res.Reason)
			require.InDelta(t, tc.wantScore, res.Score, 1e-9)
			require.InDelta(t, tc.wantKnown, res.KnownWeight, 1e-9)
			for _, c := range res.Components {
				if c.Score == nil {
					require.Equal(t, ComponentUnknown, c.State, "an unknown component is never scored")
				}
			}
		})
	}
}

func TestReadinessActivePassiveCountsAutoscalerCeiling(t *testing.T) {
	// Primary us-east-1 uses 80 of 100 cores; standby eu-west-1 idles at 4 of 40 allocatable
	// cores and its node pool may grow to 160. U = (4 + 80) / 160 = 0.525 with the ceiling,
	// (4 + 80) / 40 = 2.1 without it.
	for _, tc := range []struct {
		name      string
		ceiling   map[string]float64
		failed    string
		wantCap   float64
		wantState ReadinessState
		wantSurv  []string
		wantNotes []string
	}{
		{name: "primary loss is ready with the ceiling", ceiling: map[string]float64{"eu-west-1": 160}, failed: "us-east-1", wantCap: 100, wantState: StateReady, wantSurv: []string{"eu-west-1"}},
		{name: "primary loss gates without the ceiling", failed: "us-east-1", wantCap: 0, wantState: StateNotReady, wantSurv: []string{"eu-west-1"}},
		{
			name: "standby loss leaves the primary serving", ceiling: map[string]float64{"eu-west-1": 160}, failed: "eu-west-1",
			// U = (80 + 4) / 100 = 0.84 -> 100 x (1 - 0.84) / 0.30
			wantCap: 100 * 0.16 / 0.30, wantState: StateReady, wantSurv: []string{"us-east-1"},
			wantNotes: []string{"losing standby eu-west-1 leaves primary us-east-1 without a standby"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := newReadinessSpec(ReadinessConfig{
				Topology: TopologyActivePassive, Primary: "us-east-1", Standbys: []string{"eu-west-1"}, MaxCapacity: tc.ceiling,
			}, "region")
			require.NoError(t, err)
			snap := &readinessSnapshot{
				at: readinessTestNow, regions: []string{"eu-west-1", "us-east-1"},
				usage:    readinessAnswer(spec.UsageExpr, readinessRegionVec(map[string]float64{"us-east-1": 80, "eu-west-1": 4})),
				capacity: readinessAnswer(spec.CapacityExpr, readinessRegionVec(map[string]float64{"us-east-1": 100, "eu-west-1": 40})),
				versions: readinessAnswer(spec.VersionExpr, readinessVersionVec([3]string{"us-east-1", "api", "3"}, [3]string{"eu-west-1", "api", "3"})),
				up:       readinessAnswer("up", append(readinessUpVec("us-east-1", 1), readinessUpVec("eu-west-1", 1)...)),
				drill:    readinessAnswer(spec.DrillExpr, promql.Vector{{Metric: labels.EmptyLabels(), F: readinessDaysAgo(10)}}),
				slo: map[string]RegionSLOHealth{
					"us-east-1": {MinBudgetRemaining: 1, Known: true}, "eu-west-1": {MinBudgetRemaining: 1, Known: true},
				},
				sloKnown: true,
			}
			res := scoreRegion(spec, snap, tc.failed)
			require.Equal(t, tc.wantSurv, res.Survivors)
			requireReadinessScores(t, map[string]float64{ComponentCapacity: tc.wantCap}, res)
			require.Equal(t, tc.wantState, res.State, res.Reason)
			require.Equal(t, tc.wantNotes, res.Notes)
		})
	}
}

func TestReadinessConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     ReadinessConfig
		wantErr string
	}{
		{name: "defaults are valid", cfg: ReadinessConfig{}},
		{name: "unknown topology", cfg: ReadinessConfig{Topology: "mesh"}, wantErr: `topology "mesh"`},
		{name: "active-passive without primary", cfg: ReadinessConfig{Topology: TopologyActivePassive, Standbys: []string{"b"}}, wantErr: "needs a primary"},
		{name: "active-passive without standby", cfg: ReadinessConfig{Topology: TopologyActivePassive, Primary: "a"}, wantErr: "at least one standby"},
		{name: "primary listed as standby", cfg: ReadinessConfig{Topology: TopologyActivePassive, Primary: "a", Standbys: []string{"a"}}, wantErr: "also listed as a standby"},
		{name: "primary in active-active", cfg: ReadinessConfig{Primary: "a"}, wantErr: "only apply to topology active-passive"},
		{name: "target out of range", cfg: ReadinessConfig{UtilisationTarget: 1.2}, wantErr: "utilisation_target"},
		{name: "negative ceiling", cfg: ReadinessConfig{MaxCapacity: map[string]float64{"a": -1}}, wantErr: "max_capacity"},
		{name: "NaN target", cfg: ReadinessConfig{UtilisationTarget: math.NaN()}, wantErr: "utilisation_target"},
		{name: "expression that does not parse", cfg: ReadinessConfig{UsageExpr: "sum(("}, wantErr: "usage_expr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestReadinessUnknownStateStillReportsFiredGates(t *testing.T) {
	spec := workedExampleSpec(t)
	snap := workedExample(spec)
	snap.usage = readinessAnswer(spec.UsageExpr, nil) // capacity unknown (0.30)
	snap.drill = readinessAnswer(spec.DrillExpr, nil) // drill unknown (0.10)
	h := snap.slo["us-east-1"]
	h.PageBurn, h.PageBurnSLOs = true, []string{"shop/availability"}
	snap.slo["us-east-1"] = h

	res := scoreRegion(spec, snap, "eu-west-1")
	require.Equal(t, StateUnknown, res.State, "more than a third of the weight is unknown (READINESS.md puts UNKNOWN first)")
	require.False(t, res.Ready)
	require.Equal(t, []string{GatePageBurn}, readinessGateNames(res))
	require.Equal(t, "page-level burn in survivor us-east-1 (shop/availability); and inputs are missing for capacity, drill_recency (40% of the weight): no data for usage of eu-west-1, usage of ap-southeast-1, usage of us-east-1", res.Reason)
}
