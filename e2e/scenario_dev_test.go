package e2e

import (
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDevReadyMeansEveryRegionWithItsBackfill starts `meridian dev` as a new user would (default
// 6h backfill and 15s step), waits for /-/ready as a script or Grafana would, and queries at
// once: every region must answer, with samples from the start of its 6h history to now.
func TestDevReadyMeansEveryRegionWithItsBackfill(t *testing.T) {
	const (
		backfill = 6 * time.Hour
		step     = 15 * time.Second
	)
	addr := freeAddr(t)
	started := time.Now()
	dev := startProcess(t, "meridian dev", meridianBinary, "dev", "--http-address", addr)

	client := &http.Client{Timeout: time.Second}
	var notReady string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		require.False(t, dev.exited(), "meridian dev exited before it was ready: %v", dev.err)
		require.True(t, time.Now().Before(deadline), "meridian dev not ready within 3m; last answer %q", notReady)
		resp, err := client.Get("http://" + addr + "/-/ready")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
			notReady = string(body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	readyAt := time.Now()
	t.Logf("ready %v after start; before that /-/ready said %q", readyAt.Sub(started).Round(time.Millisecond), notReady)

	now := readyAt.UnixMilli()
	regions := func(expr string, at int64) map[string]float64 {
		out := map[string]float64{}
		for _, s := range vectorOf(t, promQuery(t, addr, expr, at, nil)) {
			v, err := strconv.ParseFloat(s.Value[1].(string), 64)
			require.NoError(t, err)
			out[s.Metric["region"]] = v
		}
		return out
	}
	all := []string{"eu-west-1", "us-east-1", "ap-southeast-1"}

	got := regions("count by (region) (http_requests_total)", now)
	require.ElementsMatch(t, all, keys(got), "count by (region) (http_requests_total) right after /-/ready: %v", got)

	// The oldest end of the history: within a few steps of the backfill's beginning.
	early := started.Add(-backfill + 4*step).UnixMilli()
	got = regions("count by (region) (http_requests_total)", early)
	require.ElementsMatch(t, all, keys(got), "series 6h ago right after /-/ready: %v", got)

	// Every sample in between: 6h at 15s is 1440 samples per series, less the seconds between
	// the start and the ready answer. (Other up series, of the ingest nodes scraped by dev and
	// of the global ruler, start with dev.)
	minSamples := float64(backfill/step) - float64(readyAt.Sub(started)/step) - 2
	got = regions(`min by (region) (count_over_time(up{job="kube-state-metrics"}[6h]))`, now)
	require.ElementsMatch(t, all, keys(got), "count_over_time(up[6h]) right after /-/ready: %v", got)
	for region, n := range got {
		require.GreaterOrEqual(t, n, minSamples, "region %s: samples of up over the last 6h right after /-/ready", region)
	}
	require.Contains(t, notReady, "backfill", "/-/ready answered 503 with the reason while the backfill was being stored")
	dev.stop(t, 30*time.Second)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
