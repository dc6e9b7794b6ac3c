package chart

import (
	"testing"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
)

func TestLintStrict(t *testing.T) {
	kv, err := common.ParseKubeVersion(KubeVersion)
	require.NoError(t, err)
	for _, tc := range valuesCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = namespace
			lint.KubeVersion = kv
			res := lint.Run([]string{chartDir}, tc.values)
			for _, m := range res.Messages {
				t.Logf("%s", m)
			}
			require.Empty(t, res.Errors)
			require.False(t, action.HasWarningsOrErrors(res), "strict lint reports warnings")
			require.Equal(t, 1, res.TotalChartsLinted)
		})
	}
}

// TestRenderedObjectsAreValid renders both modes and every example, with and without the
// Prometheus Operator's API, and holds every object to the Kubernetes 1.34 API.
func TestRenderedObjectsAreValid(t *testing.T) {
	ch, openapi, crds := load(t)
	for _, tc := range valuesCases(t) {
		for _, apis := range [][]string{nil, {MonitoringAPI}} {
			name := tc.name
			if apis != nil {
				name += "+monitoring"
			}
			t.Run(name, func(t *testing.T) {
				r := render(t, ch, tc.release, tc.values, apis...)
				require.NotEmpty(t, r.Objects)
				for _, o := range r.Objects {
					require.NoError(t, validate(openapi, crds, o), "%s:\n%s", o, o.Raw)
					// No object lands in the default namespace by accident; only the dashboards
					// go where the values send them (Grafana's namespace).
					want := namespace
					if ns, _ := dig(tc.values, "dashboards", "namespace").(string); ns != "" && dig(o.Content, "metadata", "labels", "grafana_dashboard") != nil {
						want = ns
					}
					require.Equal(t, want, o.Namespace(), "%s", o)
				}
			})
		}
	}
}
