package chart

import (
	"maps"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// with returns the values of file with a YAML fragment merged over them (maps merged, the rest
// replaced), as `-f file -f fragment` would.
func with(t *testing.T, file, fragment string) map[string]any {
	t.Helper()
	base := readValues(t, file)
	var over map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(fragment), &over))
	return merge(base, over)
}

func merge(dst, src map[string]any) map[string]any {
	out := maps.Clone(dst)
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = merge(dm, sm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// TestBrokenValuesFail shows each layer catching what it is there for: values.schema.json at
// install, with the field's name; values that pass it but make an object the API would refuse,
// caught by strict decoding and the Kubernetes 1.34 schemas; and a ServiceMonitor the CRD refuses.
func TestBrokenValuesFail(t *testing.T) {
	ch, openapi, crds := load(t)
	region := filepath.Join(chartDir, "ci", "region-values.yaml")
	global := filepath.Join(chartDir, "ci", "global-values.yaml")

	t.Run("values schema", func(t *testing.T) {
		for _, tc := range []struct{ name, file, fragment, want string }{
			{"wrong type", region, "ingest: {replicas: two}", "'/ingest/replicas'"},
			{"unknown field", region, "ingest: {retension: {time: 30d}}", "retension"},
			{"typo at the top", region, "podSecurityContex: {}", "podSecurityContex"},
			{"bad enum", region, "mode: regional", "mode"},
			{"bad duration", region, "ingest: {retention: {time: 15 days}}", "'/ingest/retention/time'"},
			{"region missing", region, "ingest: {region: ''}", "'/ingest/region'"},
			{"negative exemplar storage", region, "ingest: {maxExemplars: -1}", "'/ingest/maxExemplars'"},
			{"bad endpoint list", global, "query: {endpoints: store:10901}", "'/query/endpoints'"},
			{"bad alertmanager url", global, "ruler: {alertmanagers: [alertmanager:9093]}", "'/ruler/alertmanagers/0'"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := Render(ch, Options{ReleaseName: "meridian-x", Namespace: namespace, Values: with(t, tc.file, tc.fragment)})
				require.Error(t, err)
				require.Contains(t, err.Error(), tc.want)
				t.Log(err)
			})
		}
	})

	t.Run("kubernetes schema", func(t *testing.T) {
		for _, tc := range []struct{ name, fragment, kind, want string }{
			// Pass-through Kubernetes objects are typed by the API, not by values.schema.json.
			{"wrong type in podSecurityContext", "podSecurityContext: {runAsUser: root}", "StatefulSet", "runAsUser"},
			{"unknown field in a toleration", "tolerations: [{key: dedicated, efect: NoSchedule}]", "StatefulSet", "efect"},
			{"unknown field in resources", "resources: {request: {cpu: 100m}}", "StatefulSet", "request"},
			{"unknown field in a network policy peer", "networkPolicy: {httpFrom: [{namespaceSelectr: {}}]}", "NetworkPolicy", "namespaceSelectr"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := render(t, ch, "meridian-eu-west-1", with(t, region, tc.fragment), MonitoringAPI)
				objs := r.OfKind(tc.kind)
				require.Len(t, objs, 1)
				_, strictErr := DecodeStrict(objs[0].Raw)
				schemaErr := openapi.Validate(objs[0].Content)
				require.Error(t, schemaErr, "the 1.34 OpenAPI schema")
				require.Contains(t, schemaErr.Error(), tc.want)
				require.Error(t, strictErr, "strict decoding")
				require.Contains(t, strictErr.Error(), tc.want)
				t.Log(schemaErr)
			})
		}
	})

	t.Run("a field newer than 1.34", func(t *testing.T) {
		// The Go types are those of a later release and know more fields than 1.34 serves:
		// only the 1.34 schema catches them. The pod's schedulingGroup is one.
		r := render(t, ch, "meridian-eu-west-1", readValues(t, region))
		sts := r.OfKind("StatefulSet")[0]
		dig(sts.Content, "spec", "template", "spec").(map[string]any)["schedulingGroup"] = map[string]any{"podGroupName": "ingest"}
		raw, err := yaml.Marshal(sts.Content)
		require.NoError(t, err)
		_, err = DecodeStrict(raw)
		require.NoError(t, err, "the Go types of a later release know the field")
		err = openapi.Validate(sts.Content)
		require.Error(t, err)
		require.Contains(t, err.Error(), "schedulingGroup")
	})

	t.Run("prometheus operator CRD", func(t *testing.T) {
		for _, tc := range []struct{ name, fragment, want string }{
			{"bad relabel action", "metrics: {serviceMonitor: {relabelings: [{action: rename, sourceLabels: [a]}]}}", "action"},
			{"unknown field in tlsConfig", "metrics: {serviceMonitor: {tlsConfig: {insecureSkipVerfy: true}}}", "insecureSkipVerfy"},
			{"wrong type in basicAuth", "metrics: {serviceMonitor: {basicAuth: {username: admin}}}", "username"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := render(t, ch, "meridian-eu-west-1", with(t, region, tc.fragment), MonitoringAPI)
				sm := r.OfKind("ServiceMonitor")
				require.Len(t, sm, 1)
				err := crds.Validate(sm[0].Content)
				require.Error(t, err)
				require.Contains(t, err.Error(), tc.want)
				t.Log(err)
			})
		}
	})
}
