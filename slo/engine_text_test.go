package slo

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStatusTableShowsGlobalRegionsAndMarks(t *testing.T) {
	res := assemble(testAssembly(0.99, "a", "b", "c"), time.Unix(0, 0), []windowData{
		{window: "1h", errors: map[string]float64{"a": 10, "b": 5}, totals: map[string]float64{"a": 1000, "b": 10}},
		{window: "30d", errors: map[string]float64{"a": 5}, totals: map[string]float64{"a": 1000, "b": 0}},
	})
	var b strings.Builder
	require.NoError(t, WriteStatusTable(&b, []Result{res}))
	out := b.String()
	lines := strings.Split(out, "\n")
	require.Equal(t, []string{"SERVICE", "SLO", "OBJECTIVE", "REGION", "RATIO", "1h", "RATIO", "30d", "BURN", "1h", "BURN", "6h", "BUDGET", "LEFT", "EXHAUSTED", "IN"}, strings.Fields(lines[0]))
	require.Equal(t, []string{"shop", "availability", "99%", "global", "1.485%*", "0.5%*", "1.49x*", "-", "50%*", "242h24m0s*"}, strings.Fields(lines[1]), "global is partial: c has no data")
	require.Equal(t, []string{"shop", "availability", "99%", "a", "1%", "0.5%", "1x", "-", "50%", "360h0m0s"}, strings.Fields(lines[2]))
	require.Equal(t, []string{"shop", "availability", "99%", "b", "50%", "no", "traffic", "50x", "-", "-", "unknown"}, strings.Fields(lines[3]))
	require.Equal(t, []string{"shop", "availability", "99%", "c", "missing", "missing", "-", "-", "-", "unknown"}, strings.Fields(lines[4]))
	require.Contains(t, out, "shop/availability: no data from c in some windows")
}
