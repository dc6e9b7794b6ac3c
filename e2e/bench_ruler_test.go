package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The ruler measurement: one `meridian query` over the three regions evaluates the rules that
// `meridian rules generate` writes for 20 SLOs at a 15s interval, while the interactive query
// cases run against it. The same process alternates phases with the rule files present and
// absent (a reload between them), so both sides share the machine, the stores and the
// process's warm state; the ruler's queries load the stores too, so their share of the cost is
// in the figure.
const (
	rulerSLOs        = 20
	rulerInstances   = 10 // per region: 3 x 10 x 20 handlers x 19 = 11,400 series
	rulerHandlers    = 20
	rulerHistory     = time.Hour
	rulerInterval    = 15 * time.Second
	rulerPhase       = 30 * time.Second // two evaluation intervals
	rulerPhasesEach  = 2
	rulerTargetRatio = 1.10
)

// rulerSLOSpec is a Sloth spec with one availability SLO per handler.
func rulerSLOSpec() string {
	var b strings.Builder
	b.WriteString("version: \"prometheus/v1\"\nservice: api\nslos:\n")
	for h := range rulerSLOs {
		handler := fmt.Sprintf("/api/v1/h%02d", h)
		fmt.Fprintf(&b, `  - name: h%02d-availability
    objective: 99.5
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="api",handler=%q,code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="api",handler=%q}[{{.window}}]))
    alerting:
      name: H%02dAvailability
`, h, handler, handler, h)
	}
	return b.String()
}

func benchRuler(b *testing.B, table *benchTable) {
	dir := b.TempDir()
	require.NoError(b, writeTestFile(filepath.Join(dir, "api.yaml"), rulerSLOSpec()))
	cfg := filepath.Join(dir, "meridian.yml")
	require.NoError(b, writeTestFile(cfg, "region_label: region\nslo_files: [api.yaml]\nregions: [eu-west-1, us-east-1, ap-southeast-1]\n"))
	generated := filepath.Join(dir, "generated")
	out, err := exec.Command(meridianBinary, "rules", "generate", "--config", cfg, "--out", generated).CombinedOutput()
	require.NoError(b, err, "rules generate: %s", out)
	ruleFiles, err := filepath.Glob(filepath.Join(generated, "*.yml"))
	require.NoError(b, err)
	require.NotEmpty(b, ruleFiles)
	active := filepath.Join(dir, "active")
	require.NoError(b, os.MkdirAll(active, 0o755))

	series := httpSeries([]int{0, 1, 2}, rulerInstances, rulerHandlers)
	steps := int(rulerHistory / benchScrapeInterval)
	end := time.Now().Truncate(benchScrapeInterval)
	targets, stores := startRegionNodes(b)
	require.NoError(b, targets.load(context.Background(), series, querySendersPerRegion, querySeriesPerBody, queryStepsPerBody, steps, end.Add(-time.Duration(steps-1)*benchScrapeInterval).UnixMilli()))
	querier := startQuerier(b, stores, queryStoreTimeout,
		"--rule-file", filepath.Join(active, "*.yml"), "--rule.data-dir", b.TempDir(),
		"--rule.evaluation-interval", rulerInterval.String())
	metrics := "http://" + querier.httpAddr + "/metrics"

	setRules := func(on bool) {
		for _, f := range ruleFiles {
			dst := filepath.Join(active, filepath.Base(f))
			if on {
				data, err := os.ReadFile(f)
				require.NoError(b, err)
				require.NoError(b, os.WriteFile(dst, data, 0o644))
			} else {
				require.NoError(b, os.RemoveAll(dst))
			}
		}
		resp, err := http.Post("http://"+querier.httpAddr+"/-/reload", "", nil)
		require.NoError(b, err)
		_ = resp.Body.Close()
		require.Equal(b, http.StatusOK, resp.StatusCode)
	}

	cases := queryCases(end)[:3] // the instant and 1h range cases: tens of milliseconds each
	took := map[bool][][]time.Duration{true: make([][]time.Duration, len(cases)), false: make([][]time.Duration, len(cases))}
	var evalsOn, evalsOff float64
	for b.Loop() {
		for _, qc := range cases { // warm-up
			benchGet(b, querier.httpAddr, qc.path, qc.params)
		}
		for phase := range 2 * rulerPhasesEach {
			on := phase%2 == 1
			setRules(on)
			before := counterSums(b, metrics, "prometheus_rule_evaluations_total")[""]
			deadline := time.Now().Add(rulerPhase)
			for time.Now().Before(deadline) {
				for i, qc := range cases {
					ans := benchGet(b, querier.httpAddr, qc.path, qc.params)
					require.Empty(b, ans.warnings, "%s answered with warnings", qc.name)
					took[on][i] = append(took[on][i], ans.took)
				}
			}
			after := counterSums(b, metrics, "prometheus_rule_evaluations_total")[""]
			if on {
				evalsOn += after - before
			} else {
				evalsOff += after - before
			}
		}
	}
	require.Positive(b, evalsOn, "the rules were evaluated while on")
	require.Zero(b, evalsOff, "no rule was evaluated while off")

	// Evaluation time per group, from the rule manager's own gauge, at the end of the last
	// phase with the rules on (the groups were then reloaded away, so read them before).
	setRules(true)
	var groupTimes []time.Duration
	require.Eventually(b, func() bool {
		groupTimes = groupTimes[:0]
		fams := metricFamilies(b, metrics)
		for _, m := range fams["prometheus_rule_group_last_duration_seconds"].GetMetric() {
			if v := m.GetGauge().GetValue(); v > 0 {
				groupTimes = append(groupTimes, time.Duration(v*float64(time.Second)))
			}
		}
		return len(groupTimes) > 0 && len(groupTimes) == len(fams["prometheus_rule_group_rules"].GetMetric())
	}, 2*rulerInterval+10*time.Second, time.Second, "every group evaluated once")
	sort.Slice(groupTimes, func(i, j int) bool { return groupTimes[i] < groupTimes[j] })
	var sum time.Duration
	for _, d := range groupTimes {
		sum += d
	}
	b.Logf("rule group evaluation times (%d groups): %v", len(groupTimes), groupTimes)
	b.Logf("rule evaluations while on: %.0f, while off: %.0f", evalsOn, evalsOff)

	for i, qc := range cases {
		on, off := percentile(took[true][i], 50), percentile(took[false][i], 50)
		b.Logf("%s %s: ruler on p50 %s (%d calls), off p50 %s (%d calls)", qc.class, qc.name, on, len(took[true][i]), off, len(took[false][i]))
		table.addRatio(fmt.Sprintf("ruler on (%d SLOs x 3 regions, %s) vs off: %s %s", rulerSLOs, rulerInterval, qc.class, qc.name),
			ms(on), ms(off), formatMs, true, rulerTargetRatio)
		b.ReportMetric(ms(on)/ms(off), "ratio-"+strings.ReplaceAll(qc.class, " ", "")+"-"+fmt.Sprint(i))
	}
	table.add(benchRow{
		name:      fmt.Sprintf("ruler: evaluation time per group (%d groups, %d rules files)", len(groupTimes), len(ruleFiles)),
		meridian:  fmt.Sprintf("median %.1f ms, max %.1f ms", ms(groupTimes[len(groupTimes)/2]), ms(slices.Max(groupTimes))),
		reference: fmt.Sprintf("total %.0f ms per %s", ms(sum), rulerInterval),
		ratio:     "-", target: "-", result: "info",
	})
}
