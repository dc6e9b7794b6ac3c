package slo

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseFilesAcceptsSlothSpecUnchanged(t *testing.T) {
	slos, problems := ParseFiles("testdata/sloth_valid.yaml")
	require.Empty(t, problems)
	require.Len(t, slos, 2)

	avail := slos[0]
	require.Equal(t, "myservice", avail.Service)
	require.Equal(t, "requests-availability", avail.Name)
	require.InDelta(t, 0.999, avail.Objective, 1e-12)
	require.Contains(t, avail.ErrorQuery, `code=~"(5..|429)"`)
	require.Contains(t, avail.TotalQuery, "[{{.window}}]")
	require.False(t, avail.Raw())
	require.Equal(t, map[string]string{"owner": "myteam", "repo": "myorg/myservice", "category": "availability"}, avail.Labels)
	require.Equal(t, "MyServiceHighErrorRate", avail.Alerting.Name)
	require.Equal(t, "pageteam", avail.Alerting.PageAlert.Labels["severity"])
	require.Equal(t, "#alerts-myteam", avail.Alerting.TicketAlert.Labels["slack_channel"])
	require.Equal(t, Source{File: "testdata/sloth_valid.yaml", Line: 7, Format: "sloth"}, Source{File: avail.Source.File, Line: avail.Source.Line, Format: avail.Source.Format})

	raw := slos[1]
	require.True(t, raw.Raw())
	require.InDelta(t, 0.99, raw.Objective, 1e-12)
	require.True(t, raw.Alerting.PageAlert.Disable)
	require.True(t, raw.Alerting.TicketAlert.Disable)
}

func TestParseFilesReadsOpenSLORatioSubset(t *testing.T) {
	slos, problems := ParseFiles("testdata/openslo_valid.yaml", "testdata/openslo_ref.yaml", "testdata/openslo_sli.yaml")
	require.Empty(t, problems)
	require.Len(t, slos, 2)

	latency := slos[0]
	require.Equal(t, "checkout", latency.Service)
	require.Equal(t, "checkout-latency", latency.Name)
	require.InDelta(t, 0.99, latency.Objective, 1e-12)
	require.Equal(t, 28*24*time.Hour, latency.Period)
	require.Equal(t, "payments,checkout", latency.Labels["team"])
	// good/total becomes errors = total - good over the same total.
	require.Equal(t, "("+latency.TotalQuery+") - ("+`sum(rate(http_request_duration_seconds_bucket{service="checkout",le="0.5"}[{{.window}}]))`+")", latency.ErrorQuery)

	avail := slos[1]
	require.Equal(t, "checkout-availability", avail.Name)
	require.InDelta(t, 0.995, avail.Objective, 1e-12)
	require.Contains(t, avail.ErrorQuery, `sum by (code)`, "indicatorRef resolved to the SLI in another file")
	require.Equal(t, "Checkout requests that failed", avail.Description)
}

func TestParseFilesReportsEveryProblemWithFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		want  []string // "file:line: field: message" prefixes, in order
	}{
		{
			name:  "unknown fields anywhere",
			files: []string{"testdata/sloth_unknown_field.yaml"},
			want: []string{
				"testdata/sloth_unknown_field.yaml:10: slos[0].sli.events.extra_query: unknown field",
				"testdata/sloth_unknown_field.yaml:13: slos[0].alerting.page_alert.labls: unknown field",
			},
		},
		{
			name:  "objective outside (0, 100)",
			files: []string{"testdata/sloth_objective_range.yaml"},
			want: []string{
				"testdata/sloth_objective_range.yaml:5: slos[0].objective: objective 100 is out of range",
				"testdata/sloth_objective_range.yaml:11: slos[1].objective: objective 0 is out of range",
			},
		},
		{
			name:  "queries that do not parse, lack the window or are scalars",
			files: []string{"testdata/sloth_bad_query.yaml"},
			want: []string{
				"testdata/sloth_bad_query.yaml:8: slos[0].sli.events.error_query: query does not parse once {{.window}} is 5m",
				"testdata/sloth_bad_query.yaml:14: slos[1].sli.events.error_query: query does not use {{.window}}",
				"testdata/sloth_bad_query.yaml:20: slos[2].sli.events.error_query: query returns a scalar",
			},
		},
		{
			name:  "duplicate SLO names in a service",
			files: []string{"testdata/sloth_duplicate.yaml"},
			want: []string{
				`testdata/sloth_duplicate.yaml:10: slos[1].name: duplicate SLO name "availability" in service "myservice" (first defined at testdata/sloth_duplicate.yaml:4)`,
			},
		},
		{
			name:  "duplicate SLO names across files",
			files: []string{"testdata/sloth_valid.yaml", "testdata/sloth_valid.yaml"},
			want: []string{
				`testdata/sloth_valid.yaml:7: slos[0].name: duplicate SLO name "requests-availability"`,
				`testdata/sloth_valid.yaml:30: slos[1].name: duplicate SLO name "requests-latency-raw"`,
			},
		},
		{
			name:  "OpenSLO target, budgeting, missing reference and threshold metrics",
			files: []string{"testdata/openslo_invalid.yaml"},
			want: []string{
				`testdata/openslo_invalid.yaml:7: spec.indicatorRef: no kind: SLI named "does-not-exist"`,
				`testdata/openslo_invalid.yaml:11: spec.budgetingMethod: budgeting method "Timeslices" is not supported`,
				`testdata/openslo_invalid.yaml:13: spec.objectives[0].target: target 99.5 is out of range`,
				`testdata/openslo_invalid.yaml:25: spec.indicator.spec.thresholdMetric: threshold metrics are not supported`,
				`testdata/openslo_invalid.yaml:32: spec.objectives[0].op: threshold objectives are not supported`,
				`testdata/openslo_invalid.yaml:33: spec.objectives[0].value: threshold objectives are not supported`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := ParseFiles(tc.files...)
			got := make([]string, 0, len(problems))
			for _, p := range problems {
				got = append(got, p.String())
			}
			require.Len(t, got, len(tc.want), "problems:\n%s", strings.Join(got, "\n"))
			for i, w := range tc.want {
				require.True(t, strings.HasPrefix(got[i], w), "problem %d:\n got %s\nwant %s...", i, got[i], w)
			}
		})
	}
}

func TestParseRejectsMalformedDocuments(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"yaml syntax error", "version: \"prometheus/v1\"\nservice: [unclosed\n", "spec.yaml:1: yaml: line 1: did not find expected"},
		{"neither Sloth nor OpenSLO", "kind: Deployment\n", "spec.yaml:1: unknown spec format"},
		{"other Sloth version", "version: \"prometheus/v2\"\nservice: s\nslos: []\n", `spec.yaml:1: version: unsupported Sloth version "prometheus/v2"`},
		{"other OpenSLO version", "apiVersion: openslo/v1alpha\nkind: SLO\n", `spec.yaml:1: apiVersion: unsupported OpenSLO version "openslo/v1alpha"`},
		{"SLO without SLI", "version: prometheus/v1\nservice: s\nslos:\n  - name: a\n    objective: 99\n", "spec.yaml:4: slos[0].sli: missing"},
		{"events and raw together", "version: prometheus/v1\nservice: s\nslos:\n  - name: a\n    objective: 99\n    sli:\n      raw: {error_ratio_query: 'x[{{.window}}]'}\n      events: {error_query: 'sum(rate(e[{{.window}}]))', total_query: 'sum(rate(t[{{.window}}]))'}\n", "spec.yaml:6: slos[0].sli: exactly one of events, raw or plugin"},
		{"template actions other than the window", "version: prometheus/v1\nservice: s\nslos:\n  - name: a\n    objective: 99\n    sli: {raw: {error_ratio_query: 'x[{{template \"query\"}}]'}}\n", `spec.yaml:6: slos[0].sli.raw.error_ratio_query: query template: unsupported action {{template "query"}}`},
		{"objective not a number", "version: prometheus/v1\nservice: s\nslos:\n  - name: a\n    objective: high\n    sli: {raw: {error_ratio_query: 'x[{{.window}}]'}}\n", `spec.yaml:5: slos[0].objective: expected a number, got "high"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := Parse("spec.yaml", []byte(tc.doc))
			require.NotEmpty(t, problems)
			require.True(t, strings.HasPrefix(problems[0].String(), tc.want), "got %s", problems.Error())
		})
	}
}

func FuzzParseSloth(f *testing.F) {
	for _, file := range []string{"testdata/sloth_valid.yaml", "testdata/sloth_unknown_field.yaml", "testdata/sloth_bad_query.yaml"} {
		f.Add(mustRead(f, file))
	}
	f.Add([]byte("version: prometheus/v1\nservice: &a s\nslos: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		slos, problems := Parse("fuzz.yaml", data)
		if len(problems) == 0 {
			for _, s := range slos {
				require.True(t, s.Objective > 0 && s.Objective < 1, "a valid SLO has an objective in (0, 1)")
			}
		}
	})
}

func FuzzParseOpenSLO(f *testing.F) {
	for _, file := range []string{"testdata/openslo_valid.yaml", "testdata/openslo_ref.yaml", "testdata/openslo_sli.yaml", "testdata/openslo_invalid.yaml"} {
		f.Add(mustRead(f, file))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		slos, problems := Parse("fuzz.yaml", data)
		if len(problems) == 0 {
			for _, s := range slos {
				require.NotEmpty(t, s.ErrorQuery+s.RawErrorRatioQuery, "a valid SLO has an SLI")
			}
		}
	})
}

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	data, err := os.ReadFile(path)
	require.NoError(tb, err)
	return data
}
