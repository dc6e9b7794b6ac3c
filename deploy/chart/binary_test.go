package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var binary struct {
	once sync.Once
	path string
	err  error
}

// meridianBinary is MERIDIAN_BINARY (`make chart-test` sets it), or a build of the repository's
// binary for a plain `go test ./...` in deploy/.
func meridianBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		if p := os.Getenv("MERIDIAN_BINARY"); p != "" {
			binary.path = p
			return
		}
		dir, err := os.MkdirTemp("", "meridian-chart-test")
		if err != nil {
			binary.err = err
			return
		}
		binary.path = filepath.Join(dir, "meridian")
		cmd := exec.Command("go", "build", "-tags", "slicelabels", "-o", binary.path, "./cmd/meridian")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			binary.err = &exec.ExitError{Stderr: out}
		}
	})
	require.NoError(t, binary.err)
	return binary.path
}

// pod is a rendered pod laid out on this machine: every volume the chart fills from its own
// ConfigMaps written to a directory, so that containers can run with their rendered arguments.
type pod struct {
	spec   corev1.PodSpec
	root   string
	mounts map[string]string // volume name -> local directory
}

func layOut(t *testing.T, r *Release, spec corev1.PodSpec) *pod {
	t.Helper()
	p := &pod{spec: spec, root: t.TempDir(), mounts: map[string]string{}}
	configMap := func(name string) map[string]string {
		o, ok := r.Find("ConfigMap", name)
		require.True(t, ok, "ConfigMap %s is mounted but not rendered", name)
		return typed[*corev1.ConfigMap](t, o).Data
	}
	write := func(dir, path, content string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, path)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, path), []byte(content), 0o644))
	}
	for _, v := range spec.Volumes {
		dir := filepath.Join(p.root, v.Name)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		p.mounts[v.Name] = dir
		switch {
		case v.ConfigMap != nil:
			for k, content := range configMap(v.ConfigMap.Name) {
				write(dir, k, content)
			}
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				require.NotNil(t, src.ConfigMap, "volume %s: only ConfigMaps are projected", v.Name)
				data := configMap(src.ConfigMap.Name)
				for _, item := range src.ConfigMap.Items {
					content, ok := data[item.Key]
					require.True(t, ok, "volume %s: ConfigMap %s has no key %s", v.Name, src.ConfigMap.Name, item.Key)
					write(dir, item.Path, content)
				}
			}
		}
	}
	return p
}

// args returns a container's arguments with its mount paths replaced by the local directories
// and $(VAR) expanded as the kubelet does.
func (p *pod) args(t *testing.T, c corev1.Container, env map[string]string) []string {
	t.Helper()
	mounts := slices.Clone(c.VolumeMounts)
	slices.SortFunc(mounts, func(a, b corev1.VolumeMount) int { return len(b.MountPath) - len(a.MountPath) })
	for _, m := range mounts {
		_, ok := p.mounts[m.Name]
		require.True(t, ok, "container %s mounts unknown volume %s", c.Name, m.Name)
	}
	var out []string
	for _, a := range c.Args {
		flag, value, isFlag := strings.Cut(a, "=")
		if !isFlag {
			flag, value = "", a
		}
		for _, m := range mounts {
			if value == m.MountPath || strings.HasPrefix(value, m.MountPath+"/") {
				value = p.mounts[m.Name] + strings.TrimPrefix(value, m.MountPath)
				break
			}
		}
		if isFlag {
			a = flag + "=" + value
		} else {
			a = value
		}
		for k, v := range env {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		out = append(out, a)
	}
	return out
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

// acceptsFlags runs the binary with a container's arguments and --help: kingpin parses every
// flag (names, enums, durations) before it prints the help, so an exit 0 means the binary
// accepts what the chart passes.
func acceptsFlags(t *testing.T, args []string) {
	t.Helper()
	out, err := exec.Command(meridianBinary(t), append(args, "--help")...).CombinedOutput()
	require.NoError(t, err, "meridian %s:\n%s", strings.Join(args, " "), out)
}

func TestTheBinaryAcceptsEveryRenderedCommandLine(t *testing.T) {
	ch, _, _ := load(t)
	for _, tc := range valuesCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, ch, tc.release, tc.values, MonitoringAPI)
			for name, tmpl := range podSpecs(t, r) {
				p := layOut(t, r, tmpl.Spec)
				for _, c := range append(append([]corev1.Container{}, tmpl.Spec.InitContainers...), tmpl.Spec.Containers...) {
					t.Logf("%s container %s", name, c.Name)
					acceptsFlags(t, p.args(t, c, map[string]string{"POD_NAME": tc.release + "-0"}))
				}
			}
		})
	}
}

// TestGeneratedRulesPassPromtool runs the global release's rule generation as its init container
// would, on the SLO ConfigMaps the chart renders, and checks that the query container's
// --rule-file patterns find the files and that promtool accepts them.
func TestGeneratedRulesPassPromtool(t *testing.T) {
	ch, _, _ := load(t)
	for _, tc := range valuesCases(t) {
		if tc.values["mode"] != "global" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, ch, tc.release, tc.values)
			dep := typed[*appsv1.Deployment](t, r.OfKind("Deployment")[0])
			p := layOut(t, r, dep.Spec.Template.Spec)
			gen := p.args(t, container(t, p.spec, "generate-rules"), nil)
			out, err := exec.Command(meridianBinary(t), gen...).CombinedOutput()
			require.NoError(t, err, "meridian %s:\n%s", strings.Join(gen, " "), out)

			var files []string
			for _, a := range p.args(t, container(t, p.spec, "query"), nil) {
				if pattern, ok := strings.CutPrefix(a, "--rule-file="); ok {
					m, err := filepath.Glob(pattern)
					require.NoError(t, err)
					require.NotEmpty(t, m, "--rule-file=%s matches nothing", pattern)
					files = append(files, m...)
				}
			}
			require.NotEmpty(t, files)
			promtool(t, files...)
		})
	}
}

// TestPrometheusRuleGroupsPassPromtool checks the chart's own alerts (and additionalGroups) in
// the PrometheusRule of both modes.
func TestPrometheusRuleGroupsPassPromtool(t *testing.T) {
	ch, _, _ := load(t)
	for _, tc := range valuesCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, ch, tc.release, tc.values, MonitoringAPI)
			rules := r.OfKind("PrometheusRule")
			require.Len(t, rules, 1)
			b, err := yaml.Marshal(map[string]any{"groups": dig(rules[0].Content, "spec", "groups")})
			require.NoError(t, err)
			f := filepath.Join(t.TempDir(), "rules.yaml")
			require.NoError(t, os.WriteFile(f, b, 0o644))
			promtool(t, f)
		})
	}
}

func promtool(t *testing.T, files ...string) {
	t.Helper()
	out, err := exec.Command("promtool", append([]string{"check", "rules"}, files...)...).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	require.NotContains(t, string(out), "FAILED")
	t.Logf("%s", out)
}
