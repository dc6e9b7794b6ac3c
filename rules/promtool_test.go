package rules

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// The generated files are checked by the real consumer's tool: Debian's promtool (Prometheus
// 2.42, the oldest Prometheus the files must load in; `make deps` installs it).

func promtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool (Debian package prometheus) is needed: make deps installs it")
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool %v:\n%s", args, out)
}

func TestPromtoolChecksEveryGeneratedFile(t *testing.T) {
	for _, config := range []string{"../examples/meridian.yml", "testdata/meridian.yml"} {
		for _, split := range []string{SplitGlobal, SplitRegional} {
			for _, format := range []string{FormatPrometheus, FormatPrometheusOperator} {
				t.Run(filepath.Base(filepath.Dir(config))+"/"+split+"/"+format, func(t *testing.T) {
					files := generate(t, config, Options{Split: split})
					out := filepath.Join(t.TempDir(), "rules")
					require.NoError(t, WriteDir(out, files, format))
					checkDir := out
					if format == FormatPrometheusOperator {
						checkDir = extractSpecs(t, out)
					}
					entries, err := os.ReadDir(checkDir)
					require.NoError(t, err)
					require.Len(t, entries, len(files))
					args := []string{"check", "rules"}
					for _, e := range entries {
						args = append(args, e.Name())
					}
					promtool(t, checkDir, args...)
				})
			}
		}
	}
}

// extractSpecs writes the spec of every PrometheusRule in dir as a plain rule file.
func extractSpecs(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		var obj struct {
			APIVersion string         `yaml:"apiVersion"`
			Kind       string         `yaml:"kind"`
			Spec       map[string]any `yaml:"spec"`
		}
		require.NoError(t, yaml.Unmarshal(b, &obj))
		require.Equal(t, "PrometheusRule", obj.Kind)
		spec, err := yaml.Marshal(obj.Spec)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(out, e.Name()), spec, 0o644))
	}
	return out
}

// TestPromtoolRuleUnitTests runs testdata/rules.test.yml (burn rates, the two-region ratio,
// the readiness alert) with promtool over the files generated from testdata/meridian.yml.
func TestPromtoolRuleUnitTests(t *testing.T) {
	files := generate(t, "testdata/meridian.yml", Options{})
	dir := filepath.Join(t.TempDir(), "rules")
	require.NoError(t, WriteDir(dir, files, FormatPrometheus))
	test, err := os.ReadFile("testdata/rules.test.yml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.test.yml"), test, 0o644))
	promtool(t, dir, "test", "rules", "rules.test.yml")
}
