package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/prometheus/prometheus/model/labels"
)

// regionScoped narrows a configured expression to the dashboard's single region.
func regionScoped(o Options, expr string) (string, error) {
	return withMatcher(expr, labels.MatchEqual, o.RegionLabel, "$region")
}

func regionDetail(o Options) (Dashboard, error) {
	region := o.RegionLabel
	t := traffic{o: o, matcher: fmt.Sprintf(`%s="$region"`, region)}
	r := o.readiness()
	usage, err := regionScoped(o, r.usage)
	if err != nil {
		return Dashboard{}, fmt.Errorf("readiness usage_expr: %w", err)
	}
	capacity, err := regionScoped(o, r.capacity)
	if err != nil {
		return Dashboard{}, fmt.Errorf("readiness capacity_expr: %w", err)
	}
	drill, err := regionScoped(o, r.drill)
	if err != nil {
		return Dashboard{}, fmt.Errorf("readiness drill_expr: %w", err)
	}
	b := newBoard(UIDRegion, "Meridian / Region detail",
		"One region at a time (the region variable): its traffic by status code, latency, capacity, failover readiness and its ingest node.", o).
		WithVariable(regionVariable(o, false)).
		WithRow(row("Traffic")).
		WithPanel(graph("Requests per second by status code", "", "reqps", 12, 8,
			target(t.rate(o.StatusCodeLabel, ""), "{{"+o.StatusCodeLabel+"}}"))).
		WithPanel(graph("Error ratio", "Share of requests answered with a 5xx status code.", "percentunit", 12, 8,
			target(t.errorRatio(region), "5xx ratio")).Min(0)).
		WithPanel(graph("Latency", "Request latency quantiles from the duration histogram.", "s", 24, 8,
			target(t.quantile(0.5, region), "p50"),
			target(t.quantile(0.9, region), "p90"),
			target(t.quantile(0.99, region), "p99"))).
		WithRow(row("Capacity and failover")).
		WithPanel(graph("CPU usage and capacity", "The readiness inputs usage_expr and capacity_expr for this region, in cores.", "short", 12, 8,
			target(usage, "usage"),
			target(capacity, "capacity")).Min(0)).
		WithPanel(graph("Failover readiness score", "Readiness score (0-100) for losing this region: could the others take its load?", "none", 6, 8,
			target(fmt.Sprintf(`meridian_failover_readiness_score{%s}`, t.matcher), "score")).
			Min(0).Max(100).Thresholds(thresholds("red", 60, "orange", 80, "green")).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))).
		WithPanel(single("Since the last failover drill", "Time since the region's last successful failover drill (readiness drill_expr).", "s", 6, 8,
			instant(fmt.Sprintf("time() - (%s)", drill), "")).
			Thresholds(thresholds("green", 30*86400, "orange", 90*86400, "red")))
	if r.lag != "" {
		lag, err := regionScoped(o, r.lag)
		if err != nil {
			return Dashboard{}, fmt.Errorf("readiness replication_lag_expr: %w", err)
		}
		b = b.WithPanel(graph("Replication lag", "The readiness input replication_lag_expr for this region.", "s", 12, 8,
			target(lag, "lag")).Min(0))
	}
	b = b.WithPanel(graph("Readiness components", "Each readiness component's score (0-100) for losing this region.", "none", 12, 8,
		target(fmt.Sprintf(`meridian_failover_readiness_component_score{%s}`, t.matcher), "{{component}}")).Min(0).Max(100))
	if r.lag == "" {
		b = b.WithPanel(graph("Remote-write requests by status code", "Remote-write requests received by the region's ingest node.", "reqps", 12, 8,
			target(fmt.Sprintf(`sum by (code) (rate(meridian_ingest_write_requests_total{%s}[$__rate_interval]))`, t.matcher), "{{code}}")))
	}
	b = b.WithRow(row("Ingest node")).
		WithPanel(graph("Samples per second", "Samples committed per second by the region's meridian ingest node.", "short", 12, 8,
			target(fmt.Sprintf(`sum(rate(meridian_ingest_samples_appended_total{%s}[$__rate_interval]))`, t.matcher), "appended"),
			target(fmt.Sprintf(`sum(rate(meridian_ingest_samples_received_total{%s}[$__rate_interval]))`, t.matcher), "received"))).
		WithPanel(graph("Samples rejected per second", "Remote-write samples not stored, by reason.", "short", 12, 8,
			target(fmt.Sprintf(`sum by (reason) (rate(meridian_ingest_samples_rejected_total{%s}[$__rate_interval]))`, t.matcher), "{{reason}}")))
	return finish(UIDRegion, "region", b)
}
