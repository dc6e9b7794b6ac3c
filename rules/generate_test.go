package rules

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/meridian-obs/meridian/slo"
)

func loadConfig(t *testing.T, path string) (*slo.Config, []slo.SLO) {
	t.Helper()
	cfg, slos, err := slo.Load(path)
	require.NoError(t, err)
	return cfg, slos
}

func generate(t *testing.T, path string, opts Options) []File {
	t.Helper()
	cfg, slos := loadConfig(t, path)
	files, err := Generate(cfg, slos, opts)
	require.NoError(t, err)
	return files
}

func rulesOf(files []File) []rulefmt.Rule {
	var out []rulefmt.Rule
	for _, f := range files {
		for _, g := range f.Groups {
			out = append(out, g.Rules...)
		}
	}
	return out
}

// normalise prints an expression with its numbers rounded to 10 significant digits, so that
// 0.0009999999999999432 (Sloth's 100 - 99.9) and 0.001 compare equal.
func normalise(t *testing.T, expr string) string {
	t.Helper()
	e, err := parser.ParseExpr(expr)
	require.NoError(t, err, expr)
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if nl, ok := n.(*parser.NumberLiteral); ok {
			nl.Val, _ = strconv.ParseFloat(strconv.FormatFloat(nl.Val, 'g', 10, 64), 64)
		}
		return nil
	})
	return e.String()
}

func TestAlertExpressionsAreSlothsForASlothSpec(t *testing.T) {
	slos, problems := slo.ParseFiles("testdata/sloth-svc01.yaml")
	require.Empty(t, problems)
	cfg, err := slo.ParseConfig(nil)
	require.NoError(t, err)
	files, err := Generate(cfg, slos, Options{})
	require.NoError(t, err)
	want, err := os.ReadFile("testdata/sloth-svc01-alerts.txt")
	require.NoError(t, err)
	wantExprs := strings.Split(string(want), "---\n")

	var alerts []rulefmt.Rule
	for _, r := range rulesOf(files) {
		if r.Alert == "myServiceAlert" {
			alerts = append(alerts, r)
		}
	}
	require.Len(t, alerts, 2, "a page and a ticket alert, both named as the spec says")
	for i, a := range alerts {
		require.Equal(t, normalise(t, wantExprs[i]), normalise(t, a.Expr), "alert %d", i)
		require.Zero(t, a.For, "Sloth's burn-rate alerts have no for")
	}
	require.Equal(t, "page", alerts[0].Labels["sloth_severity"])
	require.Equal(t, "alert01v1", alerts[0].Labels["alert01k1"])
	require.Equal(t, "alert03v1", alerts[0].Labels["alert03k1"])
	require.Equal(t, "ticket", alerts[1].Labels["sloth_severity"])
	require.Equal(t, "alert04v1", alerts[1].Labels["alert04k1"])
	require.Equal(t, "alert02k2", alerts[1].Annotations["alert02k1"])
}

func TestBurnRateFactorsScaleWithThePeriodAsSloth(t *testing.T) {
	for _, tc := range []struct {
		period  time.Duration
		factors []float64 // page quick, page slow, ticket quick, ticket slow
	}{
		{30 * 24 * time.Hour, []float64{14.4, 6, 3, 1}},
		{28 * 24 * time.Hour, []float64{13.44, 5.6, 2.8, 0.9333333333}},
		{7 * 24 * time.Hour, []float64{3.36, 1.4, 0.7, 0.2333333333}},
	} {
		t.Run(slo.WindowName(tc.period), func(t *testing.T) {
			var got []float64
			for _, c := range append(append([]mwmbAlert{}, pageConditions...), ticketConditions...) {
				got = append(got, c.factor(tc.period))
			}
			require.InDeltaSlice(t, tc.factors, got, 1e-9)
		})
	}
}

func TestGlobalRatioSumsComponentsOverRegions(t *testing.T) {
	files := generate(t, "testdata/meridian.yml", Options{})
	var global, regional string
	for _, r := range rulesOf(files) {
		if r.Record == "slo:sli_error:ratio_rate1h" && r.Labels["sloth_slo"] == "availability" {
			if r.Labels["region"] == "global" {
				global = r.Expr
			} else {
				regional = r.Expr
			}
		}
	}
	sel := `{sloth_id="shop-availability",sloth_service="shop",sloth_slo="availability"}`
	require.Equal(t, `sum(slo:sli_errors:rate1h`+sel+`) / sum(slo:sli_total:rate1h`+sel+`)`, global)
	require.Equal(t, `sum by (region) (slo:sli_errors:rate1h`+sel+`) / sum by (region) (slo:sli_total:rate1h`+sel+`)`, regional)
}

func TestRegionalSplitSendsOnlyRecordedSeriesOverTheWAN(t *testing.T) {
	files := generate(t, "../examples/meridian.yml", Options{Split: SplitRegional})
	names := map[string]File{}
	for _, f := range files {
		names[f.Name] = f
	}
	for _, r := range []string{"eu-west-1", "us-east-1", "ap-southeast-1"} {
		f, ok := names["slo-rules-"+r+".yml"]
		require.True(t, ok, "a file for region %s", r)
		for _, rule := range rulesOf([]File{f}) {
			require.Empty(t, rule.Alert, "regional files only record")
			require.Regexp(t, `^slo:sli_(errors|total):rate`, rule.Record)
			require.Equal(t, r, rule.Labels["region"], "component %s carries its region", rule.Record)
		}
	}
	global, ok := names["slo-rules-global.yml"]
	require.True(t, ok)
	for _, rule := range rulesOf([]File{global}) {
		require.NotRegexp(t, `^slo:sli_(errors|total):`, rule.Record, "components are recorded in the regions")
		e, err := parser.ParseExpr(rule.Expr)
		require.NoError(t, err)
		for _, vs := range selectors(e) {
			require.True(t, strings.HasPrefix(vs.Name, "slo:"), "%s of %s%s reads raw series %s", rule.Expr, rule.Record, rule.Alert, vs.Name)
		}
	}
}

func selectors(e parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

func TestEveryAlertHasSeveritySummaryDescriptionAndARunbookSection(t *testing.T) {
	doc, err := os.ReadFile("../docs/runbooks.md")
	require.NoError(t, err)
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			anchors[githubAnchor(h)] = true
		}
	}
	for _, split := range []string{SplitGlobal, SplitRegional} {
		files := generate(t, "../examples/meridian.yml", Options{Split: split})
		alerts := 0
		for _, r := range rulesOf(files) {
			if r.Alert == "" {
				continue
			}
			alerts++
			require.NotEmpty(t, r.Labels["severity"], r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], r.Alert)
			require.NotEmpty(t, r.Annotations["description"], r.Alert)
			base, anchor, ok := strings.Cut(r.Annotations["runbook_url"], "#")
			require.True(t, ok, r.Alert)
			require.Equal(t, DefaultRunbookBaseURL, base)
			require.True(t, anchors[anchor], "docs/runbooks.md has no section for #%s (%s)", anchor, r.Alert)
		}
		require.Greater(t, alerts, 10)
	}
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(h, "")
	return strings.ReplaceAll(h, " ", "-")
}

func TestDisabledPageAlertIsNotGenerated(t *testing.T) {
	files := generate(t, "../examples/meridian.yml", Options{})
	for _, r := range rulesOf(files) {
		if r.Alert != "" && r.Labels["slo"] == "requests-latency" {
			require.Equal(t, "ticket", r.Labels["severity"], "checkout requests-latency disables its page alert")
		}
	}
}

func TestForOverridesApplyByAlertName(t *testing.T) {
	files := generate(t, "../examples/meridian.yml", Options{For: map[string]time.Duration{"MeridianFailoverNotReady": time.Minute}})
	found := false
	for _, r := range rulesOf(files) {
		if r.Alert == "MeridianFailoverNotReady" {
			found = true
			require.Equal(t, "1m", r.For.String())
		}
	}
	require.True(t, found)
}

func TestGenerateRejectsWhatCannotMakeRules(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	spec := write("spec.yaml", `version: "prometheus/v1"
service: shop
slos:
  - name: availability
    objective: 99
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
`)
	for _, tc := range []struct {
		name   string
		config string
		opts   Options
		want   string
	}{
		{"period too short for the ticket windows", "period: 2d\nslo_files: [spec.yaml]\n", Options{},
			spec + `:4: period: slo shop/availability: the ticket alert needs the 6h and 3d windows, which a period of 2d does not have`},
		{"regional split without regions", "slo_files: [spec.yaml]\n", Options{Split: SplitRegional},
			"split regional: the configuration lists no regions"},
		{"unknown split", "slo_files: [spec.yaml]\n", Options{Split: "sideways"}, `split "sideways"`},
		{"for of an alert that does not exist", "slo_files: [spec.yaml]\n", Options{For: map[string]time.Duration{"NoSuchAlert": time.Minute}},
			"for: no generated alert is named NoSuchAlert"},
		{"replication lag that does not parse", "slo_files: [spec.yaml]\nreadiness:\n  replication_lag_expr: max(\n  rpo: 5m\n", Options{},
			"replication_lag_expr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, slos, err := slo.Load(write("meridian.yml", tc.config))
			require.NoError(t, err)
			_, err = Generate(cfg, slos, tc.opts)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestWriteDirReplacesItsFilesAndKeepsOthers(t *testing.T) {
	files := generate(t, "testdata/meridian.yml", Options{})
	out := filepath.Join(t.TempDir(), "rules")
	require.NoError(t, WriteDir(out, files, FormatPrometheus))
	require.NoError(t, os.WriteFile(filepath.Join(out, "slo-rules.yml"), []byte("stale"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(out, "team.yml"), []byte("groups: []\n"), 0o644))
	require.NoError(t, WriteDir(out, files, FormatPrometheus))
	b, err := os.ReadFile(filepath.Join(out, "slo-rules.yml"))
	require.NoError(t, err)
	require.Contains(t, string(b), "sloth-slo-sli-recordings-shop-availability")
	_, err = os.Stat(filepath.Join(out, "team.yml"))
	require.NoError(t, err, "files the generator did not write are left alone")
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	require.Len(t, entries, len(files)+1, "no temporary files left")
}

func TestWriteDirLeavesNoPartialDirectory(t *testing.T) {
	files := generate(t, "testdata/meridian.yml", Options{})
	parent := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(parent, "file"), nil, 0o644))
	require.Error(t, WriteDir(filepath.Join(parent, "file", "rules"), files, FormatPrometheus))
	require.Error(t, WriteDir(filepath.Join(parent, "file"), files, FormatPrometheus))
	_, err := Marshal(files[0], "json")
	require.ErrorContains(t, err, `format "json"`)
	require.Error(t, WriteDir(filepath.Join(parent, "rules"), files, "json"))
	entries, err := os.ReadDir(parent)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing but the file that was there")
}

func TestPrometheusOperatorFormatHoldsTheSameGroups(t *testing.T) {
	files := generate(t, "testdata/meridian.yml", Options{})
	for _, f := range files {
		b, err := Marshal(f, FormatPrometheusOperator)
		require.NoError(t, err)
		var obj prometheusRule
		require.NoError(t, yaml.Unmarshal(b, &obj))
		require.Equal(t, "monitoring.coreos.com/v1", obj.APIVersion)
		require.Equal(t, "PrometheusRule", obj.Kind)
		require.Regexp(t, `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, obj.Metadata.Name, "a DNS-1123 object name")
		require.Equal(t, f.Groups, obj.Spec.Groups)
	}
}
