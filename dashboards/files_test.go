package dashboards

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestWriteDirJSONWithProvider(t *testing.T) {
	dir := t.TempDir()
	ds := generated(t, Options{})
	written, err := WriteDir(dir, ds, FilesOptions{Folder: "Platform SRE", ProviderPath: "/var/lib/grafana/dashboards/meridian"})
	require.NoError(t, err)
	require.Len(t, written, len(ds)+1)
	for _, d := range ds {
		b, err := os.ReadFile(filepath.Join(dir, "meridian-"+d.File+".json"))
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		require.Equal(t, d.UID, m["uid"])
	}
	var p providerFile
	b, err := os.ReadFile(filepath.Join(dir, ProviderFile))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &p))
	require.Equal(t, 1, p.APIVersion)
	require.Equal(t, "Platform SRE", p.Providers[0].Folder)
	require.Equal(t, "platform-sre", p.Providers[0].FolderUID)
	require.Equal(t, "file", p.Providers[0].Type)
	require.Equal(t, "/var/lib/grafana/dashboards/meridian", p.Providers[0].Options.Path)
}

func TestWriteDirConfigMapsForTheSidecar(t *testing.T) {
	dir := t.TempDir()
	ds := generated(t, Options{})
	written, err := WriteDir(dir, ds, FilesOptions{Format: FormatConfigMap, Namespace: "monitoring"})
	require.NoError(t, err)
	require.Len(t, written, len(ds))
	for i, path := range written {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		var cm configMap
		require.NoError(t, yaml.Unmarshal(b, &cm))
		require.Equal(t, "ConfigMap", cm.Kind)
		require.Equal(t, "v1", cm.APIVersion)
		require.Equal(t, "monitoring", cm.Metadata.Namespace)
		require.Equal(t, "1", cm.Metadata.Labels["grafana_dashboard"], "the sidecar's label, a string")
		require.Equal(t, DefaultFolder, cm.Metadata.Annotations["grafana_folder"])
		require.Regexp(t, `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, cm.Metadata.Name)
		require.Len(t, cm.Data, 1)
		want, err := ds[i].JSON()
		require.NoError(t, err)
		require.Equal(t, string(want), cm.Data["meridian-"+ds[i].File+".json"], "the JSON survives YAML")
	}
	_, err = WriteDir(dir, ds, FilesOptions{Format: "xml"})
	require.ErrorContains(t, err, `format "xml"`)
}
