package dashboards

import (
	"fmt"
)

// meridianSelf charts Meridian's own metrics. The ingest nodes' series (meridian_ingest_*,
// meridian_storeapi_*) are scraped by each region's Prometheus and carry the region's
// external label; the querier's (meridian_query_*, meridian_slo_*, meridian_failover_*) and
// the ruler's (prometheus_rule_*) are recorded by the global ruler into its TSDB.
func meridianSelf(o Options) (Dashboard, error) {
	region := o.RegionLabel
	m := fmt.Sprintf(`%s=~"$region"`, region)
	sel := func(metric string) string { return fmt.Sprintf("%s{%s}", metric, m) }
	rate := func(by, metric string) string {
		return fmt.Sprintf("sum by (%s) (rate(%s[$__rate_interval]))", by, metric)
	}
	p99 := func(by, metric string) string {
		return fmt.Sprintf("histogram_quantile(0.99, sum by (%s, le) (rate(%s[$__rate_interval])))", by, metric)
	}
	b := newBoard(UIDSelf, "Meridian / Meridian itself",
		"Meridian's own health: ingest nodes, the querier's fan-out and label cache, and rule evaluation.", o).
		WithVariable(queryVariable("region", "Region", fmt.Sprintf("label_values(meridian_ingest_samples_appended_total, %s)", region), true)).
		WithRow(row("Ingest nodes")).
		WithPanel(graph("Samples appended per second", "Samples committed to each region's TSDB (and WAL) from remote write.", "short", 12, 8,
			target(rate(region, sel("meridian_ingest_samples_appended_total")), "{{"+region+"}}"))).
		WithPanel(graph("Rejections per second by reason", "Samples and whole remote-write requests refused, by reason.", "short", 12, 8,
			target(rate(region+", reason", sel("meridian_ingest_samples_rejected_total")), "{{"+region+"}} samples {{reason}}"),
			target(rate(region+", reason", sel("meridian_ingest_write_requests_rejected_total")), "{{"+region+"}} requests {{reason}}"))).
		WithPanel(graph("Remote-write latency p99", "Time to answer remote-write requests.", "s", 12, 8,
			target(p99(region, sel("meridian_ingest_write_request_duration_seconds_bucket")), "{{"+region+"}}"))).
		WithPanel(single("WAL replay time", "Time each ingest node's TSDB took to open, WAL replay included, at its last start.", "s", 6, 8,
			instant(fmt.Sprintf("max by (%s) (%s)", region, sel("meridian_ingest_wal_replay_duration_seconds")), "{{"+region+"}}")).
			Thresholds(thresholds("green", 60, "orange", 300, "red"))).
		WithPanel(graph("StoreAPI calls served per second", "StoreAPI calls the ingest nodes answered, by method and gRPC code.", "reqps", 6, 8,
			target(rate(region+", method, code", sel("meridian_storeapi_requests_total")), "{{"+region+"}} {{method}} {{code}}"))).
		WithRow(row("Querier")).
		WithPanel(graph("Query latency p99 by endpoint", "Time to serve the querier's HTTP endpoints.", "s", 12, 8,
			target(p99("handler", "meridian_query_http_request_duration_seconds_bucket"), "{{handler}}"))).
		WithPanel(graph("Requests per second by endpoint and code", "", "reqps", 12, 8,
			target(rate("handler, code", "meridian_query_http_requests_total"), "{{handler}} {{code}}"))).
		WithPanel(graph("Fan-out calls per second", "StoreAPI calls the querier made, per store and method.", "reqps", 12, 8,
			target(rate("store, method", "meridian_query_store_request_duration_seconds_count"), "{{store}} {{method}}"))).
		WithPanel(graph("Fan-out errors and timeouts per second", "Failed StoreAPI calls per store and reason (error, timeout); 0 for a store without failures.", "reqps", 12, 8,
			target(rate("store, reason", "meridian_query_store_request_failures_total")+
				" or sum by (store) (rate(meridian_query_store_request_duration_seconds_count[$__rate_interval])) * 0", "{{store}} {{reason}}"))).
		WithPanel(graph("Label cache", "Label calls answered from the querier's label cache (hit) or sent to the store (miss).", "reqps", 12, 8,
			target(rate("method, result", "meridian_query_label_cache_requests_total"), "{{method}} {{result}}"))).
		WithPanel(graph("Stores healthy", "Stores answering their Info probe, out of all stores of the querier.", "short", 12, 8,
			target("sum(meridian_query_store_up)", "healthy"),
			target("max(meridian_query_stores)", "configured")).Min(0)).
		WithRow(row("Rules, SLOs and readiness")).
		WithPanel(graph("Rule group evaluation time", "Time the last evaluation of each rule group took in the global ruler.", "s", 12, 8,
			target("max by (rule_group) (prometheus_rule_group_last_duration_seconds)", "{{rule_group}}"))).
		WithPanel(graph("Rule evaluation failures per second", "Failed rule evaluations in the global ruler, per group.", "short", 12, 8,
			target(rate("rule_group", "prometheus_rule_evaluation_failures_total"), "{{rule_group}}"))).
		WithPanel(graph("SLO and readiness evaluation time", "Time the querier's SLO engine and readiness evaluator take per round (p99).", "s", 12, 8,
			target("histogram_quantile(0.99, sum by (le) (rate(meridian_slo_evaluation_duration_seconds_bucket[$__rate_interval])))", "SLO engine"),
			target("histogram_quantile(0.99, sum by (le) (rate(meridian_failover_readiness_evaluation_duration_seconds_bucket[$__rate_interval])))", "readiness"))).
		WithPanel(graph("SLO and readiness evaluation failures per second", "", "short", 12, 8,
			target("sum(rate(meridian_slo_evaluation_failures_total[$__rate_interval]))", "SLO engine"),
			target("sum(rate(meridian_failover_readiness_evaluation_failures_total[$__rate_interval]))", "readiness")))
	return finish(UIDSelf, "self", b)
}
