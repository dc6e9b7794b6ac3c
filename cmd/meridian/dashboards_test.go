package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/dashboards/grafanatest"
)

// runCaptured runs the binary's entry point with args and returns its exit code, stdout and
// stderr.
func runCaptured(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	outR, outW, err := os.Pipe()
	require.NoError(t, err)
	errR, errW, err := os.Pipe()
	require.NoError(t, err)
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outW, errW
	var out, errOut bytes.Buffer
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(&out, outR); done <- struct{}{} }()
	go func() { _, _ = io.Copy(&errOut, errR); done <- struct{}{} }()
	code := run(args)
	os.Stdout, os.Stderr = stdout, stderr
	require.NoError(t, outW.Close())
	require.NoError(t, errW.Close())
	<-done
	<-done
	return code, out.String(), errOut.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestDashboardsGenerate(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCaptured(t, "dashboards", "generate", "--config", "../../examples/meridian.yml", "--out", dir)
	require.Equal(t, 0, code, errOut)
	require.Len(t, strings.Fields(out), 6, "five dashboards and the provider")
	require.FileExists(t, filepath.Join(dir, "meridian-overview.json"))
	require.FileExists(t, filepath.Join(dir, "meridian-dashboards.yaml"))

	code, out, errOut = runCaptured(t, "dashboards", "generate", "--out", dir, "--format", "configmap", "--namespace", "monitoring")
	require.Equal(t, 0, code, errOut)
	require.Len(t, strings.Fields(out), 5)
	b, err := os.ReadFile(filepath.Join(dir, "meridian-dashboard-slos.yaml"))
	require.NoError(t, err)
	require.Contains(t, string(b), `grafana_dashboard: "1"`)
	require.Contains(t, string(b), "grafana_folder: Meridian")
	require.Contains(t, string(b), "namespace: monitoring")
}

func TestDashboardsProvision(t *testing.T) {
	g := grafanatest.New(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(token, []byte(g.Token+"\n"), 0o600))
	args := []string{"dashboards", "provision", "--grafana.url", g.URL(), "--grafana.token-file", token,
		"--datasource.url", "http://meridian-query:9090", "--config", "../../examples/meridian.yml", "--alert-rules"}

	code, out, errOut := runCaptured(t, append(args, "--dry-run")...)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^\d+ would change \(dry run, nothing written\)$`, lastLine(out))
	require.Contains(t, out, "dashboard meridian-slos (Meridian / SLOs): would be created")
	require.Empty(t, g.Writes())

	code, out, errOut = runCaptured(t, args...)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^\d+ changed$`, lastLine(out))
	require.NotEqual(t, "0 changed", lastLine(out))
	require.Contains(t, out, "rule group sloth-slo-alerts-checkout-requests-availability")

	g.ResetRequests()
	code, out, errOut = runCaptured(t, args...)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "0 changed", lastLine(out))
	require.Empty(t, g.Writes(), "the second run makes no write request")

	t.Run("a wrong token ends with one line that says what to fix", func(t *testing.T) {
		require.NoError(t, os.WriteFile(token, []byte("glsa_wrong"), 0o600))
		code, _, errOut := runCaptured(t, args...)
		require.Equal(t, 1, code)
		require.Equal(t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, errOut)
		require.Contains(t, errOut, "check --grafana.token-file or --grafana.basic-auth-file")
	})
}
