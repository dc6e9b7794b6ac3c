package slo

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteReadinessTextExplainsEveryComponentAndGate(t *testing.T) {
	spec := workedExampleSpec(t)
	snap := workedExample(spec)
	snap.capacity = readinessAnswer(spec.CapacityExpr, readinessRegionVec(map[string]float64{"eu-west-1": 100, "us-east-1": 50, "ap-southeast-1": 50}))
	rep := &ReadinessReport{EvaluatedAt: readinessTestNow, Topology: spec.Topology, Regions: []ReadinessResult{scoreRegion(spec, snap, "eu-west-1")}}

	var b strings.Builder
	require.NoError(t, WriteReadinessText(&b, rep))
	out := b.String()
	for _, want := range []string{
		"Losing eu-west-1 (survivors: ap-southeast-1, us-east-1)",
		"state NOT_READY, score 63.5 (known weight 100%)",
		"reason: ap-southeast-1 and us-east-1 would run at 140% of CPU capacity after absorbing eu-west-1",
		"utilisation_at_or_above_capacity: ap-southeast-1 and us-east-1 would run at 140%",
		"capacity <- " + spec.CapacityExpr,
		"cpu_capacity_cores{us-east-1} = 50",
		"drill_recency   0.10    75.0",
	} {
		require.Contains(t, out, want)
	}
}

func TestExampleReadinessConfigLoadsAndValidates(t *testing.T) {
	data, err := os.ReadFile("../examples/meridian.yml")
	require.NoError(t, err)
	cfg, err := ParseConfig(data)
	require.NoError(t, err)
	require.NotNil(t, cfg.Readiness)
	_, err = NewReadinessEvaluator(*cfg.Readiness, nil, ReadinessOptions{})
	require.NoError(t, err)
}

func TestReadinessConfigUnknownFieldIsRejected(t *testing.T) {
	_, err := ParseConfig([]byte("readiness:\n  topology: active-active\n  rpo_seconds: 300\n"))
	require.ErrorContains(t, err, "line 3")
	require.ErrorContains(t, err, "rpo_seconds")
}

func FuzzReadinessConfig(f *testing.F) {
	f.Add([]byte("readiness:\n  topology: active-passive\n  primary: a\n  standbys: [b]\n  max_capacity: {b: 10}\n"))
	f.Add([]byte("readiness:\n  usage_expr: sum(rate(x[5m]))\n  rpo: 5m\n  utilisation_target: 0.5\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil || cfg.Readiness == nil {
			return
		}
		e, err := NewReadinessEvaluator(*cfg.Readiness, nil, ReadinessOptions{})
		if err != nil {
			return
		}
		// A configuration that validates yields a usable spec: a known topology and a target
		// in (0, 1).
		require.Contains(t, []string{TopologyActiveActive, TopologyActivePassive}, e.Topology())
		require.Greater(t, e.spec.UtilisationTarget, 0.0)
		require.Less(t, e.spec.UtilisationTarget, 1.0)
	})
}
