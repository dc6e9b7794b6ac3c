package chart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/deploy/image"
)

// TestChartInstallsTheImageOfItsVersion checks that the chart's appVersion is the release in
// the repository's VERSION file, that every container of both modes runs the image of that tag
// unless values say otherwise, and that `make image` (MERIDIAN_IMAGE) tagged and labelled its
// image with it: an install with default values pulls the image this commit builds.
func TestChartInstallsTheImageOfItsVersion(t *testing.T) {
	raw, err := os.ReadFile("../../VERSION")
	require.NoError(t, err)
	version := strings.TrimSpace(string(raw))
	require.NotEmpty(t, version)

	ch, _, _ := load(t)
	require.Equal(t, version, ch.Metadata.AppVersion, "Chart.yaml appVersion and VERSION must be one release")
	repo := dig(ch.Values, "image", "repository").(string)

	region := readValues(t, filepath.Join(chartDir, "ci", "region-values.yaml"))
	global := readValues(t, filepath.Join(chartDir, "ci", "global-values.yaml"))
	for mode, values := range map[string]map[string]any{"region": region, "global": global} {
		specs := podSpecs(t, render(t, ch, releaseName(values), values))
		require.NotEmpty(t, specs, mode)
		for name, spec := range specs {
			for _, c := range append(spec.Spec.InitContainers, spec.Spec.Containers...) {
				require.Equal(t, repo+":"+version, c.Image, "%s container %s", name, c.Name)
			}
		}
	}
	region["image"] = map[string]any{"tag": "9.9.9"}
	pinned := render(t, ch, releaseName(region), region)
	for name, spec := range podSpecs(t, pinned) {
		for _, c := range spec.Spec.Containers {
			require.Equal(t, repo+":9.9.9", c.Image, "%s container %s: image.tag overrides appVersion", name, c.Name)
		}
	}

	dir := os.Getenv("MERIDIAN_IMAGE")
	if dir == "" {
		t.Skip("MERIDIAN_IMAGE is not set (make chart-test sets it): the image of make image is not checked")
	}
	img, err := image.OpenLayout(dir, version)
	require.NoError(t, err, "make image must tag the image with the chart's appVersion")
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	require.Equal(t, version, cf.Config.Labels[image.LabelVersion])
}
