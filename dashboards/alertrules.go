package dashboards

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/prometheus/prometheus/model/rulefmt"
)

// grafanaBaseInterval is Grafana's scheduler tick: a rule group's interval is a multiple of it.
const grafanaBaseInterval = 10 * time.Second

// expressionDatasource is the UID Grafana gives its server-side expressions.
const expressionDatasource = "__expr__"

// AlertRuleGroups turns the alerting rules of Prometheus rule groups (the SLO burn-rate and
// readiness alerts that `meridian rules generate` writes) into Grafana-managed rule groups,
// one per group that has alerts, each rule querying datasourceUID. A rule fires like its
// Prometheus original: while its expression returns a series (query A, the last value of
// each series B, B > 0 as the condition C; every generated alert's value is positive when it
// fires), and no data is normal, as in Prometheus. Recording rules are left out: the global
// ruler evaluates them, and the alerts read their series through the data source.
func AlertRuleGroups(groups []rulefmt.RuleGroup, datasourceUID string) ([]RuleGroup, error) {
	var out []RuleGroup
	for _, g := range groups {
		interval := time.Duration(g.Interval)
		if interval == 0 {
			interval = time.Minute
		}
		// Round up to Grafana's scheduler tick.
		interval = (interval + grafanaBaseInterval - 1) / grafanaBaseInterval * grafanaBaseInterval
		rg := RuleGroup{Title: g.Name, Interval: interval}
		titles := map[string]int{}
		for _, r := range g.Rules {
			if r.Alert != "" {
				titles[r.Alert]++
			}
		}
		seen := map[string]bool{}
		for i, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			title := r.Alert
			// Grafana wants titles unique in a folder; Sloth names the page and ticket alerts
			// of an SLO alike, told apart by their severity.
			if titles[r.Alert] > 1 {
				title = fmt.Sprintf("%s (%s)", r.Alert, distinguishing(r, i))
			}
			if seen[title] {
				return nil, fmt.Errorf("rule group %s: alert %s: two rules would have the title %q", g.Name, r.Alert, title)
			}
			seen[title] = true
			labels := map[string]string{}
			for k, v := range g.Labels {
				labels[k] = v
			}
			for k, v := range r.Labels {
				labels[k] = v
			}
			rg.Rules = append(rg.Rules, AlertRule{
				Title:        title,
				Condition:    "C",
				Data:         alertQueries(r.Expr, datasourceUID),
				For:          time.Duration(r.For),
				NoDataState:  "OK",
				ExecErrState: "Error",
				Labels:       labels,
				Annotations:  grafanaAnnotations(r.Annotations),
			})
		}
		if len(rg.Rules) > 0 {
			out = append(out, rg)
		}
	}
	return out, nil
}

// promOnlyTemplate matches Prometheus's template functions that query (query, first, value,
// label, strvalue, sortByLabel), which Grafana's alert templates do not have.
var promOnlyTemplate = regexp.MustCompile(`\{\{[^}]*\b(query|first|value|label|strvalue|sortByLabel)\b`)

// grafanaAnnotations keeps the annotations Grafana can render: $labels, $value and the
// humanize functions are shared, Prometheus's query functions are not, so an annotation that
// uses them is left out rather than shown as a template error.
func grafanaAnnotations(in map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		if !promOnlyTemplate.MatchString(v) {
			out[k] = v
		}
	}
	return out
}

func distinguishing(r rulefmt.Rule, i int) string {
	for _, k := range []string{"severity", "sloth_severity"} {
		if v := r.Labels[k]; v != "" {
			return v
		}
	}
	keys := make([]string, 0, len(r.Labels))
	for k := range r.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s,", k, r.Labels[k])
	}
	return fmt.Sprintf("%d-%s", i, hex.EncodeToString(h.Sum(nil))[:6])
}

func alertQueries(expr, datasourceUID string) []AlertQuery {
	exprDS := map[string]any{"type": expressionDatasource, "uid": expressionDatasource}
	return []AlertQuery{
		{RefID: "A", DatasourceUID: datasourceUID, From: 10 * time.Minute, Model: map[string]any{
			"refId": "A", "expr": expr, "instant": true, "range": false,
			"datasource":    map[string]any{"type": "prometheus", "uid": datasourceUID},
			"intervalMs":    1000,
			"maxDataPoints": 43200,
		}},
		{RefID: "B", DatasourceUID: expressionDatasource, Model: map[string]any{
			"refId": "B", "datasource": exprDS, "type": "reduce", "expression": "A", "reducer": "last",
			"settings": map[string]any{"mode": "dropNN"},
		}},
		{RefID: "C", DatasourceUID: expressionDatasource, Model: map[string]any{
			"refId": "C", "datasource": exprDS, "type": "threshold", "expression": "B",
			"conditions": []any{map[string]any{"evaluator": map[string]any{"type": "gt", "params": []any{0}}}},
		}},
	}
}

// MeridianDataSource is the Prometheus data source pointing at `meridian query`. Grafana is
// told it speaks to a Thanos-compatible querier, so that it uses the label APIs with match[]
// for variables, sends queries by POST, and reads the ruler's rules and alerts.
func MeridianDataSource(uid, name, queryURL, scrapeInterval string) DataSource {
	return DataSource{
		UID: uid, Name: name, Type: "prometheus", URL: queryURL, Access: "proxy",
		JSONData: map[string]any{
			"httpMethod":        "POST",
			"prometheusType":    "Thanos",
			"prometheusVersion": "0.31.0",
			"timeInterval":      scrapeInterval,
			"manageAlerts":      true,
		},
	}
}
