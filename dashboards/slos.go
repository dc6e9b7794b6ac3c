package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Burn-rate windows and the multi-window multi-burn-rate thresholds of a 30-day period
// (Google's SRE workbook, as Sloth generates them): page on 5m&1h at 14.4x and 30m&6h at 6x,
// ticket on 2h&1d at 3x and 6h&3d at 1x.
var (
	burnWindows    = []string{"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
	burnThresholds = []struct {
		value  float64
		colour string
	}{{1, "yellow"}, {3, "orange"}, {6, "red"}, {14.4, "dark-red"}}
)

// sloSelector selects one SLO's series by the Sloth id (<service>-<slo>), which Meridian's
// generated rules and Sloth's own share.
const sloSelector = `sloth_id="$slo"`

// globalRegion matches Meridian's region="global" series and Sloth's, which have no region.
func globalRegion(o Options) string { return fmt.Sprintf(`%s=~"global|"`, o.RegionLabel) }

func sloBoard(o Options) (Dashboard, error) {
	region := o.RegionLabel
	regions := fmt.Sprintf(`%s=~"$region"`, region)
	global := globalRegion(o)
	budget := fmt.Sprintf(`max by (sloth_id) (slo:error_budget:ratio{%s})`, sloSelector)

	burn := graph("Burn rate per window (all regions)", "Error ratio over each window divided by the error budget (1 - objective). Dashed lines: ticket at 1x and 3x, page at 6x and 14.4x.", "x", 24, 9).
		Min(0).
		Thresholds(burnThresholdSteps()).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))
	for _, w := range burnWindows {
		burn = burn.WithTarget(target(fmt.Sprintf("max by (sloth_id) (slo:sli_error:ratio_rate%s{%s,%s})\n/ on (sloth_id)\n%s", w, sloSelector, global, budget), w))
	}

	b := newBoard(UIDSLOs, "Meridian / SLOs",
		"One SLO at a time (the slo variable): error budget left globally and per region, burn rate per window against the alerting thresholds, time to exhaustion and its alerts. Reads the slo:* series in Sloth's names.", o).
		WithVariable(queryVariable("slo", "SLO", `label_values(slo:objective:ratio, sloth_id)`, false)).
		WithVariable(queryVariable("region", "Region", fmt.Sprintf(`label_values(slo:period_error_budget_remaining:ratio{%s}, %s)`, sloSelector, region), true)).
		WithRow(row("Error budget")).
		WithPanel(single("Budget left (all regions)", "Fraction of the period's error budget left, errors and totals summed over every region.", "percentunit", 6, 8,
			instant(fmt.Sprintf(`max by (sloth_id) (slo:period_error_budget_remaining:ratio{%s,%s})`, sloSelector, global), "")).
			Thresholds(thresholds("red", 0, "orange", 0.25, "green"))).
		WithPanel(bargauge.NewPanelBuilder().Title("Budget left per region").Span(10).Height(8).Datasource(datasourceRef()).
			Description("Fraction of the error budget left, each region on its own traffic.").
			Unit("percentunit").Min(0).Max(1).
			Orientation(common.VizOrientationHorizontal).DisplayMode(common.BarGaugeDisplayModeGradient).
			Thresholds(thresholds("red", 0, "orange", 0.25, "green")).
			WithTarget(instant(fmt.Sprintf(`max by (%s) (slo:period_error_budget_remaining:ratio{%s,%s})`, region, sloSelector, regions), "{{"+region+"}}"))).
		WithPanel(single("Objective", "The SLO's objective over its period.", "percentunit", 4, 4,
			instant(fmt.Sprintf(`max by (sloth_id) (slo:objective:ratio{%s})`, sloSelector), "")).
			Decimals(3).ColorMode(common.BigValueColorModeNone)).
		WithPanel(single("Period", "", "d", 4, 4,
			instant(fmt.Sprintf(`max by (sloth_id) (slo:time_period:days{%s})`, sloSelector), "")).
			ColorMode(common.BigValueColorModeNone)).
		WithPanel(graph("Budget left over time", "Fraction of the error budget left, per region and for all regions together.", "percentunit", 24, 8,
			target(fmt.Sprintf(`max by (%s) (slo:period_error_budget_remaining:ratio{%s,%s})`, region, sloSelector, regions), "{{"+region+"}}"))).
		WithRow(row("Burn rate")).
		WithPanel(burn).
		WithPanel(graph("Current burn rate per region", "Burn rate over the shortest window (slo:current_burn_rate:ratio), per region.", "x", 12, 8,
			target(fmt.Sprintf(`max by (%s) (slo:current_burn_rate:ratio{%s,%s})`, region, sloSelector, regions), "{{"+region+"}}")).
			Min(0).Thresholds(burnThresholdSteps()).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))).
		WithPanel(bargauge.NewPanelBuilder().Title("Time to exhaustion").Span(12).Height(8).Datasource(datasourceRef()).
			Description("Time until the budget left is spent at the current burn rate: budget left x period / burn rate. 0 when it is spent; absent while nothing burns.").
			Unit("s").Min(0).
			Orientation(common.VizOrientationHorizontal).DisplayMode(common.BarGaugeDisplayModeBasic).
			Thresholds(thresholds("red", 86400, "orange", 7*86400, "green")).
			WithTarget(instant(fmt.Sprintf(`clamp_min(
  max by (sloth_id, %[1]s) (slo:period_error_budget_remaining:ratio{%[2]s,%[3]s})
  / on (sloth_id, %[1]s)
  max by (sloth_id, %[1]s) (slo:current_burn_rate:ratio{%[2]s,%[3]s} > 0),
  0
) * on (sloth_id) group_left () (86400 * max by (sloth_id) (slo:time_period:days{%[2]s}))`, region, sloSelector, regions), "{{"+region+"}}"))).
		WithRow(row("Alerts")).
		WithPanel(alertState(o, 24, 8))
	return finish(UIDSLOs, "slos", b)
}

func burnThresholdSteps() *dashboard.ThresholdsConfigBuilder {
	steps := []any{}
	for _, t := range burnThresholds {
		steps = append(steps, t.value, t.colour)
	}
	return thresholds("green", steps...)
}

// alertState lists the SLO's burn-rate alerts with their state: the ALERTS series the ruler
// writes, 1 while firing, and each alert's severity; 0 (none firing) when the SLO is quiet.
func alertState(o Options, w, h uint32) *statPanel {
	return single("Burn-rate alerts firing", "Burn-rate alerts of this SLO firing now, by severity (page, ticket); 0 when none fires.", "none", w, h,
		instant(fmt.Sprintf(`count by (severity) (ALERTS{alertstate="firing",%s})
or on (severity)
label_replace(max by (sloth_id) (slo:objective:ratio{%s}) * 0, "severity", "page", "", "")
or on (severity)
label_replace(max by (sloth_id) (slo:objective:ratio{%s}) * 0, "severity", "ticket", "", "")`, sloSelector, sloSelector, sloSelector), "{{severity}}")).
		TextMode(common.BigValueTextModeValueAndName).
		Thresholds(thresholds("green", 1, "red"))
}
