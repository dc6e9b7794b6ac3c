package slo

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRegionizeQueryKeepsRegionForEachShape(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"sum drops every label", `sum(rate(x[5m]))`, `sum by (region) (rate(x[5m]))`},
		{"sum by appends region", `sum by (code) (rate(x[5m]))`, `sum by (region) (sum by (code, region) (rate(x[5m])))`},
		{"sum by region unchanged", `sum by (region) (rate(x[5m]))`, `sum by (region) (rate(x[5m]))`},
		{"without removes region", `sum without (region, instance) (rate(x[5m]))`, `sum by (region) (sum without (instance) (rate(x[5m])))`},
		{"no aggregation is wrapped", `rate(x{code=~"5.."}[5m])`, `sum by (region) (rate(x{code=~"5.."}[5m]))`},
		{"parentheses", `(sum(rate(x[5m])))`, `sum by (region) (rate(x[5m]))`},
		{"nested aggregations", `max by (job) (sum by (job, instance) (rate(x[5m])))`, `sum by (region) (max by (job, region) (sum by (job, instance, region) (rate(x[5m]))))`},
		{"binary of aggregations", `sum(rate(t[5m])) - sum(rate(g[5m]))`, `sum by (region) (sum by (region) (rate(t[5m])) - sum by (region) (rate(g[5m])))`},
		{"on() matching gets region", `sum by (job) (rate(e[5m])) / on (job) group_left () sum by (job) (rate(t[5m]))`, `sum by (region) (sum by (job, region) (rate(e[5m])) / on (job, region) group_left () sum by (job, region) (rate(t[5m])))`},
		{"ignoring(region) loses region from the list", `sum by (job, region) (rate(e[5m])) / ignoring (region) sum by (job, region) (rate(t[5m]))`, `sum by (region) (sum by (job, region) (rate(e[5m])) / sum by (job, region) (rate(t[5m])))`},
		{"or vector(0) fallback", `sum(rate(e[5m])) or vector(0)`, `sum by (region) (sum by (region) (rate(e[5m])) or vector(0))`},
		{"scalar multiplication", `sum(rate(e[5m])) * 60`, `sum by (region) (sum by (region) (rate(e[5m])) * 60)`},
		{"function over aggregation", `clamp_min(sum(rate(e[5m])), 0)`, `sum by (region) (clamp_min(sum by (region) (rate(e[5m])), 0))`},
		{"subquery", `sum(sum_over_time(sum(rate(e[5m]))[1h:5m]))`, `sum by (region) (sum_over_time(sum by (region) (rate(e[5m]))[1h:5m]))`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RegionizeQuery(tc.in, "region")
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestRegionizeQueryUsesTheConfiguredLabel(t *testing.T) {
	got, err := RegionizeQuery(`sum by (code) (rate(x[5m]))`, "dc")
	require.NoError(t, err)
	require.Equal(t, `sum by (dc) (sum by (code, dc) (rate(x[5m])))`, got)
}

func TestRegionizeQueryRejectsWhatCannotBeBrokenDown(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"scalar", `scalar(sum(rate(x[5m])))`, "query returns a scalar"},
		{"absent", `absent(up{job="x"})`, "absent() yields a series without"},
		{"vector outside or", `vector(1) - sum(rate(x[5m]))`, "vector() yields a series without"},
		{"parse error", `sum(rate(x[5m])`, "parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RegionizeQuery(tc.in, "region")
			require.ErrorContains(t, err, tc.want)
		})
	}
}
