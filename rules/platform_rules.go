package rules

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// Platform alerts: Meridian watching itself, on the metrics `meridian query` and `meridian
// ingest` export (the querier's through the ruler's own recording of them, the ingest nodes'
// through the region's Prometheus scraping them).
const (
	alertStoreUnhealthy      = "MeridianStoreUnhealthy"
	alertRegionMissing       = "MeridianRegionMissing"
	alertIngestNoSamples     = "MeridianIngestNoSamples"
	alertRemoteWriteRejects  = "MeridianRemoteWriteRejections"
	alertReplicationLag      = "MeridianReplicationLagAboveRPO"
	alertRegionDataStale     = "MeridianRegionDataStale"
	alertShipperFailing      = "MeridianBlockUploadsFailing"
	alertRuleEvaluationFails = "MeridianRuleEvaluationFailures"

	recordNewestSample = "meridian:region_newest_sample:timestamp_seconds"
)

func (g *generator) platformGroup() (rulefmt.RuleGroup, error) {
	rules := []rulefmt.Rule{
		{
			Alert:  alertStoreUnhealthy,
			Expr:   `meridian_query_store_healthy == 0`,
			For:    model.Duration(5 * time.Minute),
			Labels: map[string]string{"severity": "ticket"},
			Annotations: map[string]string{
				"summary":     "Store {{ $labels.store }} ({{ $labels.region }}) does not answer the querier.",
				"description": "The querier's Info probes of store {{ $labels.store }} (region {{ $labels.region }}) have failed for 5 minutes. Its series are missing from every answer (named in the warnings), and rules evaluated with partial response aborted skip every evaluation that needs it.",
			},
		},
		{
			Alert: alertIngestNoSamples,
			Expr: `sum by (region, instance) (rate(meridian_ingest_samples_received_total[10m])) == 0` +
				` and on (region) (max by (region) (up) == 1)`,
			For:    model.Duration(time.Minute),
			Labels: map[string]string{"severity": "ticket"},
			Annotations: map[string]string{
				"summary":     "Ingest node {{ $labels.instance }} in {{ $labels.region }} receives no samples.",
				"description": "{{ $labels.instance }} (region {{ $labels.region }}) has received no remote-write samples for 10 minutes while the region's targets are being scraped: the region's Prometheus is not sending to it (remote_write URL, relabelling, queue) or its requests do not arrive.",
			},
		},
		{
			Alert: alertRemoteWriteRejects,
			Expr: `sum by (region, instance) (rate(meridian_ingest_write_requests_total{code!~"2.."}[5m]))` +
				` / sum by (region, instance) (rate(meridian_ingest_write_requests_total[5m])) > 0.01`,
			For:    model.Duration(15 * time.Minute),
			Labels: map[string]string{"severity": "ticket"},
			Annotations: map[string]string{
				"summary":     "Ingest node {{ $labels.instance }} in {{ $labels.region }} refuses remote-write requests.",
				"description": "{{ $value | humanizePercentage }} of the remote-write requests to {{ $labels.instance }} (region {{ $labels.region }}) were refused over the last 15 minutes (more than 1%). meridian_ingest_samples_rejected_total and meridian_ingest_write_requests_rejected_total give the reasons.",
			},
		},
		{
			Alert: alertRegionDataStale,
			Expr:  `time() - max by (region) (max_over_time(` + recordNewestSample + `[6h])) > 600`,
			For:   model.Duration(time.Minute),
			Labels: map[string]string{
				"severity": "page",
			},
			Annotations: map[string]string{
				"summary":     "The newest sample of {{ $labels.region }} is {{ $value | humanizeDuration }} old.",
				"description": "The newest sample Meridian holds from region {{ $labels.region }} is {{ $value | humanizeDuration }} old: global queries, SLOs and readiness see the region as it was then. The region's Prometheus or its remote write to Meridian has stopped.",
			},
		},
		{
			Alert:  alertRuleEvaluationFails,
			Expr:   `sum by (rule_group) (increase(prometheus_rule_evaluation_failures_total[10m])) > 0`,
			For:    model.Duration(10 * time.Minute),
			Labels: map[string]string{"severity": "ticket"},
			Annotations: map[string]string{
				"summary":     "Rules of group {{ $labels.rule_group }} fail to evaluate.",
				"description": "{{ $value | humanize }} evaluations of rule group {{ $labels.rule_group }} failed in the last 10 minutes, for 10 minutes: its alerts neither fire nor resolve. The ruler's /api/v1/rules shows each rule's last error (with partial response aborted, the region that was missing).",
			},
		},
		{
			// A pending block that keeps failing: the shipper retries at least every minute,
			// so failures rise in every 5m window while uploads do not succeed.
			Alert: alertShipperFailing,
			Expr: `max by (region, instance) (meridian_ingest_shipper_oldest_pending_block_age_seconds) > 0` +
				` and on (region, instance) sum by (region, instance) (increase(meridian_ingest_shipper_upload_failures_total[5m])) > 0`,
			For:    model.Duration(30 * time.Minute),
			Labels: map[string]string{"severity": "ticket"},
			Annotations: map[string]string{
				"summary":     "Ingest node {{ $labels.instance }} in {{ $labels.region }} cannot upload blocks to object storage.",
				"description": "Block uploads of {{ $labels.instance }} (region {{ $labels.region }}) have failed for 30 minutes. Writes are still accepted; local retention keeps blocks until they are uploaded, so the node's disk grows until uploads resume, and the history beyond local retention is not in the bucket meanwhile.",
			},
		},
	}
	if missing := g.regionMissingRule(); missing != nil {
		rules = append(rules[:1], append([]rulefmt.Rule{*missing}, rules[1:]...)...)
	}
	lag, err := g.replicationLagRule()
	if err != nil {
		return rulefmt.RuleGroup{}, err
	}
	if lag != nil {
		rules = append(rules, *lag)
	}
	for i := range rules {
		rules[i].Annotations["runbook_url"] = g.runbook(anchorOf(rules[i].Alert))
	}
	// The newest sample of each region, kept as a recorded series so that the staleness alert
	// still sees a region whose series went stale. Every Prometheus scrapes, so the timestamp of
	// its newest up sample is when the region last delivered data (the ingest node's StoreAPI
	// announces an open-ended time range, as Thanos Receive does, so Info cannot tell).
	newest := rulefmt.Rule{Record: recordNewestSample, Expr: `max by (region) (timestamp(up))`}
	return rulefmt.RuleGroup{Name: "meridian-platform", Rules: append([]rulefmt.Rule{newest}, rules...)}, nil
}

// regionMissingRule alerts for every configured region without a healthy store:
// (the configured regions as series) unless on (region) (healthy stores). Nil when the
// configuration lists no regions.
func (g *generator) regionMissingRule() *rulefmt.Rule {
	if len(g.cfg.Regions) == 0 {
		return nil
	}
	var expected parser.Expr
	for _, r := range g.cfg.Regions {
		v := call("label_replace", call("vector", num(1)), str(g.regionLabel), str(r), str(""), str(""))
		if expected == nil {
			expected = v
		} else {
			expected = binary(parser.LOR, expected, v)
		}
	}
	healthy := binary(parser.EQLC, selector("meridian_query_store_healthy", nil), num(1))
	healthy.ReturnBool = false
	expr := onMatching(parser.LUNLESS, paren(expected), paren(healthy), g.regionLabel)
	return &rulefmt.Rule{
		Alert:  alertRegionMissing,
		Expr:   expr.String(),
		For:    model.Duration(5 * time.Minute),
		Labels: map[string]string{"severity": "page"},
		Annotations: map[string]string{
			"summary": fmt.Sprintf("Region {{ $labels.%s }} is missing from the global view.", g.regionLabel),
			"description": fmt.Sprintf("The querier has had no healthy store of region {{ $labels.%s }} for 5 minutes (or none is configured): "+
				"global queries answer without it and name it in their warnings, the region's SLO alerts cannot fire, and rules with partial response aborted stop evaluating.", g.regionLabel),
		},
	}
}

// replicationLagRule alerts when the readiness configuration's replication lag exceeds its RPO;
// nil when replication is not configured.
func (g *generator) replicationLagRule() (*rulefmt.Rule, error) {
	rc := g.cfg.Readiness
	if rc == nil || rc.ReplicationLagExpr == "" || rc.RPO <= 0 {
		return nil, nil
	}
	lag, err := parser.ParseExpr(rc.ReplicationLagExpr)
	if err != nil {
		return nil, fmt.Errorf("readiness: replication_lag_expr: %w", err)
	}
	rpo := time.Duration(rc.RPO)
	return &rulefmt.Rule{
		Alert:  alertReplicationLag,
		Expr:   binary(parser.GTR, paren(lag), num(rpo.Seconds())).String(),
		For:    model.Duration(5 * time.Minute),
		Labels: map[string]string{"severity": "page"},
		Annotations: map[string]string{
			"summary":     fmt.Sprintf("Replication lag of {{ $labels.%s }} is beyond the RPO of %s.", g.regionLabel, model.Duration(rpo)),
			"description": fmt.Sprintf("Replication lag in {{ $labels.%s }} has been {{ $value | humanizeDuration }} for 5 minutes, beyond the RPO of %s: a failover now would lose more data than agreed, and failover readiness is NOT_READY (gate replication_lag_beyond_rpo).", g.regionLabel, model.Duration(rpo)),
		},
	}, nil
}
