package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRulesGenerateRefusesBadInputWithFileAndLine: a spec or configuration that cannot produce
// rules is reported as "file:line: field: message" (as `slo validate` reports specs), the exit
// code is 1, and no output directory is left behind; good input writes every file.
func TestRulesGenerateRefusesBadInputWithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	spec := "version: \"prometheus/v1\"\nservice: shop\nslos:\n  - name: availability\n    objective: 99.9\n    sli:\n      events:\n        error_query: sum(rate(http_requests_total{code=~\"5..\"}[{{.window}}]))\n        total_query: sum(rate(http_requests_total[{{.window}}]))\n"
	require.NoError(t, writeTestFile(filepath.Join(dir, "shop.yaml"), spec))
	require.NoError(t, writeTestFile(filepath.Join(dir, "bad.yaml"), strings.Replace(spec, "objective: 99.9", "objective: 99.9\n    labls: {}", 1)))
	for _, tc := range []struct {
		name, config string
		args         []string
		want         string
	}{
		{"unknown field in a spec", "slo_files: [bad.yaml]\n", nil, filepath.Join(dir, "bad.yaml") + ":6: slos[0].labls: unknown field"},
		{"period too short for the alert windows", "period: 2d\nslo_files: [shop.yaml]\n", nil, filepath.Join(dir, "shop.yaml") + ":4: period: "},
		{"unknown config field", "slo_file: [shop.yaml]\n", nil, "line 1: field slo_file not found"},
		{"regional split without regions", "slo_files: [shop.yaml]\n", []string{"--split", "regional"}, "lists no regions"},
		{"for of an alert that does not exist", "slo_files: [shop.yaml]\n", []string{"--alert.for", "Nope=1m"}, "no generated alert is named Nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "meridian.yml")
			require.NoError(t, writeTestFile(cfg, tc.config))
			out := filepath.Join(dir, "out-"+strings.ReplaceAll(tc.name, " ", "_"))
			code, msg := runMeridian(t, 30*time.Second, append([]string{"rules", "generate", "--config", cfg, "--out", out}, tc.args...)...)
			require.Equal(t, 1, code, msg)
			require.Contains(t, msg, tc.want)
			_, err := os.Stat(out)
			require.True(t, os.IsNotExist(err), "no output directory after a failure")
		})
	}

	t.Run("good input writes every file", func(t *testing.T) {
		cfg := filepath.Join(dir, "meridian.yml")
		require.NoError(t, writeTestFile(cfg, "slo_files: [shop.yaml]\nregions: [a, b]\nreadiness: {rpo: 5m}\n"))
		out := filepath.Join(dir, "rules")
		code, msg := runMeridian(t, 30*time.Second, "rules", "generate", "--config", cfg, "--out", out, "--split", "regional", "--format", "prometheus-operator")
		require.Equal(t, 0, code, msg)
		entries, err := os.ReadDir(out)
		require.NoError(t, err)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		require.ElementsMatch(t, []string{"slo-rules-a.yml", "slo-rules-b.yml", "slo-rules-global.yml", "readiness-rules.yml", "platform-rules.yml"}, names)
		b, err := os.ReadFile(filepath.Join(out, "slo-rules-a.yml"))
		require.NoError(t, err)
		require.Contains(t, string(b), "kind: PrometheusRule")
	})
}
