package chart

import (
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "../helm/meridian"
	examplesDir = "../examples"
	namespace   = "meridian"
)

// valuesCase is one values file the chart is rendered with, and the release name it is
// installed under (the README's commands use the same names).
type valuesCase struct {
	name    string
	release string
	file    string
	values  map[string]any
}

func readValues(t *testing.T, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, yaml.Unmarshal(b, &v), file)
	return v
}

// valuesCases lists the chart-testing values (ci/) and every example values file.
func valuesCases(t *testing.T) []valuesCase {
	t.Helper()
	var out []valuesCase
	ci, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	require.NoError(t, err)
	ex, err := filepath.Glob(filepath.Join(examplesDir, "*", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, ci)
	require.GreaterOrEqual(t, len(ex), 7, "examples: three regions and a global release active-active, and the active-passive variant")
	for _, f := range append(ci, ex...) {
		v := readValues(t, f)
		out = append(out, valuesCase{name: filepath.ToSlash(f[len(filepath.Dir(filepath.Dir(f)))+1:]), release: releaseName(v), file: f, values: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// releaseName is the README's name for a release of these values: meridian-<region> or
// meridian-global.
func releaseName(v map[string]any) string {
	if v["mode"] == "global" {
		return "meridian-global"
	}
	ingest, _ := v["ingest"].(map[string]any)
	region, _ := ingest["region"].(string)
	return "meridian-" + region
}

var loaded struct {
	once    sync.Once
	chart   *chartv2.Chart
	openapi *OpenAPI
	crds    *CRDs
	err     error
}

// load reads the chart and the Kubernetes 1.34 and Prometheus Operator schemas once per run.
func load(t *testing.T) (*chartv2.Chart, *OpenAPI, *CRDs) {
	t.Helper()
	loaded.once.Do(func() {
		loaded.chart, loaded.err = Load(chartDir)
		if loaded.err != nil {
			return
		}
		var k8s, promop string
		if k8s, loaded.err = ModuleDir(KubernetesModule); loaded.err != nil {
			return
		}
		if promop, loaded.err = ModuleDir(PrometheusOperatorModule); loaded.err != nil {
			return
		}
		if loaded.openapi, loaded.err = LoadOpenAPI(filepath.Join(k8s, "api", "openapi-spec", "v3")); loaded.err != nil {
			return
		}
		crdDir := filepath.Join(promop, "example", "prometheus-operator-crd")
		loaded.crds, loaded.err = LoadCRDs(loaded.openapi,
			filepath.Join(crdDir, "monitoring.coreos.com_servicemonitors.yaml"),
			filepath.Join(crdDir, "monitoring.coreos.com_prometheusrules.yaml"))
	})
	require.NoError(t, loaded.err)
	return loaded.chart, loaded.openapi, loaded.crds
}

func render(t *testing.T, ch *chartv2.Chart, release string, values map[string]any, apis ...string) *Release {
	t.Helper()
	r, err := Render(ch, Options{ReleaseName: release, Namespace: namespace, Values: values, APIVersions: apis})
	require.NoError(t, err)
	return r
}

// validate checks one object as the API server would: strict decoding, then its schema.
func validate(openapi *OpenAPI, crds *CRDs, o Object) error {
	if _, err := DecodeStrict(o.Raw); err != nil {
		return err
	}
	if crds.Has(o.APIVersion(), o.Kind()) {
		return crds.Validate(o.Content)
	}
	return openapi.Validate(o.Content)
}
