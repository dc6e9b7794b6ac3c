package chart

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// TestDashboardConfigMapsAreTheGenerators checks that the dashboards in the chart are what
// `meridian dashboards generate --format configmap` writes (`make chart-dashboards` puts them
// there), and that the rendered ConfigMaps carry what the Grafana sidecar looks for.
func TestDashboardConfigMapsAreTheGenerators(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(meridianBinary(t), "dashboards", "generate", "--format", "configmap", "--out", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	generated, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, generated)
	shipped, err := filepath.Glob(filepath.Join(chartDir, "dashboards", "*.yaml"))
	require.NoError(t, err)
	require.Len(t, shipped, len(generated), "make chart-dashboards")
	for _, g := range generated {
		want, err := os.ReadFile(g)
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(chartDir, "dashboards", filepath.Base(g)))
		require.NoError(t, err, "make chart-dashboards")
		require.Equal(t, string(want), string(got), "%s is stale: make chart-dashboards", filepath.Base(g))
	}

	ch, _, _ := load(t)
	for _, tc := range valuesCases(t) {
		if tc.values["mode"] != "global" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, ch, tc.release, tc.values)
			var dashboards []*corev1.ConfigMap
			for _, o := range r.OfKind("ConfigMap") {
				cm := typed[*corev1.ConfigMap](t, o)
				if _, ok := cm.Labels["grafana_dashboard"]; ok {
					dashboards = append(dashboards, cm)
				}
			}
			require.Len(t, dashboards, len(generated))
			uids := map[string]bool{}
			for _, cm := range dashboards {
				require.Equal(t, "1", cm.Labels["grafana_dashboard"], cm.Name)
				require.Equal(t, "Meridian", cm.Annotations["grafana_folder"], cm.Name)
				require.Len(t, cm.Data, 1, cm.Name)
				for key, model := range cm.Data {
					var d struct {
						UID           string `json:"uid"`
						SchemaVersion int    `json:"schemaVersion"`
						Panels        []any  `json:"panels"`
					}
					require.NoError(t, json.Unmarshal([]byte(model), &d), "%s %s", cm.Name, key)
					require.NotEmpty(t, d.UID)
					require.NotZero(t, d.SchemaVersion)
					require.NotEmpty(t, d.Panels)
					uids[d.UID] = true
				}
			}
			require.Len(t, uids, len(generated), "one dashboard per ConfigMap")
		})
	}
}
