package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/prometheus/prometheus/model/labels"
)

// readinessStateCodes encode the readiness states as numbers for the state timeline.
var readinessStateCodes = []struct {
	state  string
	code   int
	colour string
}{{"UNKNOWN", 0, "text"}, {"NOT_READY", 1, "red"}, {"DEGRADED", 2, "orange"}, {"READY", 3, "green"}}

func readinessBoard(o Options) (Dashboard, error) {
	region := o.RegionLabel
	m := fmt.Sprintf(`%s=~"$region"`, region)
	r := o.readiness()
	drill, err := withMatcher(r.drill, labels.MatchRegexp, region, "$region")
	if err != nil {
		return Dashboard{}, fmt.Errorf("readiness drill_expr: %w", err)
	}
	capacityOf, err := withMatcher(r.capacity, labels.MatchRegexp, region, "$region")
	if err != nil {
		return Dashboard{}, fmt.Errorf("readiness capacity_expr: %w", err)
	}
	// The state as a number per region: the code of the state whose series is 1.
	var stateExpr string
	mappings := map[string]dashboard.ValueMappingResult{}
	for i, s := range readinessStateCodes {
		if i > 0 {
			stateExpr += "\nor\n"
		}
		stateExpr += fmt.Sprintf(`%d * max by (%s) (meridian_failover_readiness_state{%s,state=%q} == 1)`, s.code, region, m, s.state)
		mappings[fmt.Sprint(s.code)] = dashboard.ValueMappingResult{Text: ptr(s.state), Color: ptr(s.colour), Index: ptr(int32(i))}
	}

	b := newBoard(UIDReadiness, "Meridian / Failover readiness",
		"For each region: could the other regions take its load if it failed now? Score and state over time, each component's score, the gates that fired, drill recency, and what losing each region would do to the survivors' utilisation.", o).
		WithVariable(queryVariable("region", "Region", fmt.Sprintf("label_values(meridian_failover_readiness_score, %s)", region), true)).
		WithRow(row("Score and state")).
		WithPanel(readinessStates(o, m, 24, 4)).
		WithPanel(graph("Readiness score", "Score (0-100) for losing each region. READY >= 80, DEGRADED 60-80, NOT_READY < 60.", "none", 12, 8,
			target(fmt.Sprintf(`max by (%s) (meridian_failover_readiness_score{%s})`, region, m), "{{"+region+"}}")).
			Min(0).Max(100).Thresholds(thresholds("red", 60, "orange", 80, "green")).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))).
		WithPanel(statetimeline.NewPanelBuilder().Title("Readiness state").Span(12).Height(8).Datasource(datasourceRef()).
			Description("The readiness state of each region over time.").
			Mappings([]dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: mappings}}}).
			Thresholds(thresholds("text")).
			ShowValue(common.VisibilityModeNever).MergeValues(true).
			Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeSingle).Sort(common.SortOrderNone)).
			WithTarget(target(stateExpr, "{{"+region+"}}"))).
		WithRow(row("Components and gates")).
		WithPanel(graph("Component scores", "Score (0-100) of each component: capacity (0.30), SLO health (0.20), data freshness (0.20), version parity (0.15), reachability (0.05), drill recency (0.10). Absent while unknown.", "none", 12, 8,
			target(fmt.Sprintf(`max by (%s, component) (meridian_failover_readiness_component_score{%s})`, region, m), "{{"+region+"}} {{component}}")).
			Min(0).Max(100)).
		WithPanel(tablePanel("Hard gates", "", 12, 8).
			Description("Each hard gate per region: 1 when it fired (forcing NOT_READY whatever the score), 0 when it holds.").
			Thresholds(thresholds("green", 1, "red")).
			OverrideByName("Value", []dashboard.DynamicConfigValue{{Id: "custom.cellOptions", Value: map[string]any{"type": "color-background"}}}).
			WithTarget(instant(fmt.Sprintf(`max by (%s, gate) (meridian_failover_readiness_gate{%s})`, region, m), "")).
			WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{"excludeByName": map[string]any{"Time": true}}})).
		WithRow(row("What if")).
		WithPanel(bargauge.NewPanelBuilder().Title("Survivors' utilisation if the region fails").Span(12).Height(8).Datasource(datasourceRef()).
			Description(fmt.Sprintf("Projected CPU utilisation of the other regions if this one failed and they absorbed its load (all regions' usage over the survivors' capacity, readiness usage_expr and capacity_expr, active-active). Capacity scores fully up to %.0f%%; 100%% is a hard gate.", 100*r.utilisationTarget)).
			Unit("percentunit").Min(0).Max(1.2).
			Orientation(common.VizOrientationHorizontal).DisplayMode(common.BarGaugeDisplayModeGradient).
			Thresholds(thresholds("green", r.utilisationTarget, "orange", 1, "red")).
			WithTarget(instant(fmt.Sprintf("scalar(sum(%s))\n/\n(scalar(sum(%s)) - (%s))", r.usage, r.capacity, capacityOf), "{{"+region+"}}"))).
		WithPanel(bargauge.NewPanelBuilder().Title("Since the last failover drill").Span(12).Height(8).Datasource(datasourceRef()).
			Description("Time since each region's last successful failover drill (readiness drill_expr).").
			Unit("s").Min(0).
			Orientation(common.VizOrientationHorizontal).DisplayMode(common.BarGaugeDisplayModeBasic).
			Thresholds(thresholds("green", 30*86400, "orange", 90*86400, "red")).
			WithTarget(instant(fmt.Sprintf("time() - (%s)", drill), "{{"+region+"}}")))
	return finish(UIDReadiness, "readiness", b)
}
