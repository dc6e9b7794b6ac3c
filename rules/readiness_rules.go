package rules

import (
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
)

// Failover readiness alerts, on the metrics the querier exports for it
// (meridian_failover_readiness_state, _gate and _score, labelled by the region that would fail).
// The ruler records the querier's own metrics, so these alerts evaluate through the querier like
// every other rule.
const (
	alertFailoverNotReady = "MeridianFailoverNotReady"
	alertFailoverUnknown  = "MeridianFailoverReadinessUnknown"
)

func (g *generator) readinessGroup() rulefmt.RuleGroup {
	const why = `Gates fired: {{ range $i, $g := query (printf "meridian_failover_readiness_gate{region=%q} == 1" $labels.region) }}{{ if $i }}, {{ end }}{{ $g.Labels.gate }}{{ else }}none (the score is below 60){{ end }}; ` +
		`score {{ with query (printf "max(meridian_failover_readiness_score{region=%q})" $labels.region) }}{{ . | first | value | printf "%.1f" }}{{ else }}unknown{{ end }}/100. ` +
		`GET /api/v1/readiness?fail={{ $labels.region }} on the querier explains every component with its inputs.`
	return rulefmt.RuleGroup{Name: "meridian-failover-readiness", Rules: []rulefmt.Rule{
		{
			Alert: alertFailoverNotReady,
			Expr:  `max by (region) (meridian_failover_readiness_state{state="NOT_READY"}) == 1`,
			For:   model.Duration(10 * time.Minute),
			Labels: map[string]string{
				"severity": "ticket",
			},
			Annotations: map[string]string{
				"summary":     "Failing over from {{ $labels.region }} would not work now.",
				"description": "Failover readiness for losing {{ $labels.region }} has stayed NOT_READY (10m by default before this alert fires): the surviving regions could not take its load. " + why,
				"runbook_url": g.runbook(anchorOf(alertFailoverNotReady)),
			},
		},
		{
			Alert: alertFailoverUnknown,
			Expr:  `max by (region) (meridian_failover_readiness_state{state="UNKNOWN"}) == 1`,
			For:   model.Duration(30 * time.Minute),
			Labels: map[string]string{
				"severity": "ticket",
			},
			Annotations: map[string]string{
				"summary": "Failover readiness for losing {{ $labels.region }} cannot be told.",
				"description": "Failover readiness for losing {{ $labels.region }} has stayed UNKNOWN (30m by default before this alert fires): inputs carrying more than a third of the score's weight are missing " +
					"(capacity, SLO health, replication lag or versions). GET /api/v1/readiness?fail={{ $labels.region }} names the unknown components and their expressions.",
				"runbook_url": g.runbook(anchorOf(alertFailoverUnknown)),
			},
		},
	}}
}

// anchorOf is the runbook anchor of a built-in alert: its name in lower case, the anchor GitHub
// gives a heading that is the alert's name.
func anchorOf(alert string) string {
	out := make([]byte, 0, len(alert))
	for i := 0; i < len(alert); i++ {
		c := alert[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out = append(out, c)
	}
	return string(out)
}
