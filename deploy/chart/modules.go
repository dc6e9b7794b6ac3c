package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
)

// Sources of the schemas the objects are checked against. They are read from Go module sources:
// `go mod download` takes them from the module cache, or through the Go module proxy on a cold
// cache, so that no test reaches for a web page.
const (
	// KubernetesModule holds api/openapi-spec/v3, the OpenAPI schemas published with the release.
	KubernetesModule = "k8s.io/kubernetes@v1.34.3"
	// PrometheusOperatorModule holds example/prometheus-operator-crd, the CRDs of the release.
	PrometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
)

// ModuleDir returns the directory of a module's source in the module cache, downloading it first
// when it is missing.
func ModuleDir(module string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module)
	// Outside of any module, so that the lookup neither reads nor changes a go.mod.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", module, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w: %s", module, err, stderr.String())
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no directory in %q", module, out)
	}
	return info.Dir, nil
}
