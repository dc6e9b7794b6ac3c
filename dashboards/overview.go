package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Dashboard UIDs: stable, so that links, bookmarks and provisioning (overwrite by UID) hold
// across versions.
const (
	UIDOverview  = "meridian-overview"
	UIDRegion    = "meridian-region"
	UIDSLOs      = "meridian-slos"
	UIDReadiness = "meridian-readiness"
	UIDSelf      = "meridian-self"
)

// metricNames are the user-facing series of the traffic panels, with the region variable's
// matcher already in place.
type traffic struct {
	o       Options
	matcher string // e.g. region=~"$region"
}

func (t traffic) requests(extra string) string {
	sel := t.matcher
	if extra != "" {
		sel += "," + extra
	}
	return fmt.Sprintf("%s{%s}", t.o.RequestsMetric, sel)
}

func (t traffic) rate(by, extra string) string {
	return fmt.Sprintf("sum by (%s) (rate(%s[$__rate_interval]))", by, t.requests(extra))
}

func (t traffic) errorRatio(by string) string {
	return fmt.Sprintf("%s\n/\n%s", t.rate(by, fmt.Sprintf(`%s=~"5.."`, t.o.StatusCodeLabel)), t.rate(by, ""))
}

func (t traffic) quantile(q float64, by string) string {
	return fmt.Sprintf("histogram_quantile(%g, sum by (%s, le) (rate(%s_bucket{%s}[$__rate_interval])))", q, by, t.o.DurationMetric, t.matcher)
}

func regionVariable(o Options, multi bool) *dashboard.QueryVariableBuilder {
	return queryVariable("region", "Region", fmt.Sprintf("label_values(%s, %s)", o.RequestsMetric, o.RegionLabel), multi)
}

// storeHealth is the table of the stores as the querier sees them: healthy or missing at the
// last probe, with the region the store announced, probe failures and failed calls over the
// dashboard's range, and the reason and time of its last error (a store that recovered keeps
// them; the error's full text is on the querier's /api/v1/stores).
func storeHealth(o Options, title string, w, h uint32) *tablePanelBuilder {
	region := o.RegionLabel
	return tablePanel(title, "", w, h).
		Description("Each store of the querier: healthy (1) or missing (0) at its last Info probe, with its region, probe failures and failed StoreAPI calls over the dashboard's range, and its last error: the reason (timeout, connection_refused, dns, tls, unavailable, ...) and how long ago, kept after the store recovers. A store that is down stays listed until it is removed from the configuration; the querier's /api/v1/stores gives the error's full text.").
		WithTarget(instant(fmt.Sprintf(`max by (store, %s) (meridian_query_store_healthy)`, region), "healthy")).
		WithTarget(instant(`sum by (store) (increase(meridian_query_store_probe_failures_total[$__range])) or sum by (store) (meridian_query_store_up) * 0`, "probe failures")).
		WithTarget(instant(`sum by (store) (increase(meridian_query_store_request_failures_total[$__range])) or sum by (store) (meridian_query_store_up) * 0`, "failed calls")).
		// Milliseconds for the dateTimeFromNow unit; 0 (a store that never failed) reads "never".
		WithTarget(instant(`max by (store, reason) (meridian_query_store_last_error_timestamp_seconds) * 1000 or on (store) max by (store) (meridian_query_store_up) * 0`, "last error")).
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]any{"Time": true},
			"renameByName":  map[string]any{"Value #A": "healthy", "Value #B": "probe failures", "Value #C": "failed calls", "Value #D": "last error", "reason": "last error reason"},
		}}).
		OverrideByName("healthy", []dashboard.DynamicConfigValue{
			{Id: "custom.cellOptions", Value: map[string]any{"type": "color-background"}},
			{Id: "mappings", Value: []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: map[string]dashboard.ValueMappingResult{
				"0": {Text: ptr("missing"), Color: ptr("red")},
				"1": {Text: ptr("healthy"), Color: ptr("green")},
			}}}}},
		}).
		OverrideByName("last error", []dashboard.DynamicConfigValue{
			{Id: "unit", Value: "dateTimeFromNow"},
			{Id: "mappings", Value: []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: map[string]dashboard.ValueMappingResult{
				"0": {Text: ptr("never")},
			}}}}},
		})
}

// readinessStates shows one stat per region with the state of its failover readiness.
func readinessStates(o Options, matcher string, w, h uint32) *statPanel {
	p := single("Failover readiness", "Could the other regions take this region's load if it failed now? The state of the readiness score (READY >= 80, DEGRADED 60-80, NOT_READY < 60 or a hard gate, UNKNOWN when inputs are missing).", "none", w, h,
		instant(fmt.Sprintf(`max by (%s, state) (meridian_failover_readiness_state{%s} == 1)`, o.RegionLabel, matcher), fmt.Sprintf("{{%s}}: {{state}}", o.RegionLabel))).
		TextMode(common.BigValueTextModeName).
		Orientation(common.VizOrientationHorizontal).
		Thresholds(thresholds("text"))
	for _, s := range readinessStateCodes {
		p = p.OverrideByRegexp(".*: "+s.state+"$", []dashboard.DynamicConfigValue{{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": s.colour}}})
	}
	return p
}

func overview(o Options) (Dashboard, error) {
	t := traffic{o: o, matcher: fmt.Sprintf(`%s=~"$region"`, o.RegionLabel)}
	region := o.RegionLabel
	link := regionLink("Region detail", UIDRegion, region)
	b := newBoard(UIDOverview, "Meridian / Global overview",
		"Every region side by side: traffic, errors, latency, the stores as the querier sees them, ingest and failover readiness.", o).
		WithVariable(regionVariable(o, true)).
		WithRow(row("Traffic by region")).
		WithPanel(graph("Requests per second", "Requests per second by region. Click a series for the region's detail.", "reqps", 12, 8,
			target(t.rate(region, ""), "{{"+region+"}}")).DataLinks(linkList(link))).
		WithPanel(graph("Error ratio", "Share of requests answered with a 5xx status code, by region.", "percentunit", 12, 8,
			target(t.errorRatio(region), "{{"+region+"}}")).DataLinks(linkList(link)).Min(0)).
		WithPanel(graph("Latency p50 and p99", "Request latency quantiles by region, from the duration histogram.", "s", 24, 8,
			target(t.quantile(0.5, region), "{{"+region+"}} p50"),
			target(t.quantile(0.99, region), "{{"+region+"}} p99")).DataLinks(linkList(link))).
		WithRow(row("Regions")).
		WithPanel(readinessStates(o, t.matcher, 24, 4)).
		WithPanel(graph("Ingest samples per second", "Samples committed per second by each region's meridian ingest node.", "short", 12, 8,
			target(fmt.Sprintf(`sum by (%s) (rate(meridian_ingest_samples_appended_total{%s}[$__rate_interval]))`, region, t.matcher), "{{"+region+"}}")).DataLinks(linkList(link))).
		WithPanel(storeHealth(o, "Stores as the querier sees them", 12, 8))
	return finish(UIDOverview, "overview", b)
}
