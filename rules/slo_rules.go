package rules

import (
	"fmt"
	"strconv"
	"time"
	"unicode"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/meridian-obs/meridian/slo"
)

// Recorded series of the SLO rules: Sloth's names, and the per-region components of our own.
const (
	metricErrorRatio      = "slo:sli_error:ratio_rate" // + window
	metricErrors          = "slo:sli_errors:rate"      // + window: error events per second, per region
	metricTotal           = "slo:sli_total:rate"       // + window: all events per second, per region
	metricObjective       = "slo:objective:ratio"
	metricErrorBudget     = "slo:error_budget:ratio"
	metricTimePeriod      = "slo:time_period:days"
	metricCurrentBurnRate = "slo:current_burn_rate:ratio"
	metricPeriodBurnRate  = "slo:period_burn_rate:ratio"
	metricPeriodRemaining = "slo:period_error_budget_remaining:ratio"
	metricInfo            = "sloth_slo_info"
)

// Labels of the SLO series, as Sloth names them.
const (
	labelID       = "sloth_id"
	labelService  = "sloth_service"
	labelSLO      = "sloth_slo"
	labelWindow   = "sloth_window"
	labelSeverity = "sloth_severity"
)

// slothVersion is the Sloth release whose rule output these rules follow (sloth_slo_info).
const slothVersion = "v0.16.0"

// mwmbAlert is one of the four multi-window multi-burn-rate conditions: the share of the
// period's error budget that may be spent over the long window before it alerts, and its two
// windows. The values are Sloth's (the Google SRE workbook's) for 30d and 28d; for any other
// period the same budget shares and windows give the burn-rate factor by Sloth's formula
// budgetPercent x period / 100 / long window (14.4, 6, 3 and 1 for 30d).
type mwmbAlert struct {
	severity      string
	budgetPercent float64
	short, long   time.Duration
}

var (
	pageConditions = []mwmbAlert{
		{"page", 2, 5 * time.Minute, time.Hour},
		{"page", 5, 30 * time.Minute, 6 * time.Hour},
	}
	ticketConditions = []mwmbAlert{
		{"ticket", 10, 2 * time.Hour, 24 * time.Hour},
		{"ticket", 10, 6 * time.Hour, 72 * time.Hour},
	}
)

func (a mwmbAlert) factor(period time.Duration) float64 {
	return a.budgetPercent * period.Hours() / 100 / a.long.Hours()
}

// sloRules holds what every rule of one SLO shares.
type sloRules struct {
	g       *generator
	s       slo.SLO
	id      string
	period  time.Duration
	windows []string // short windows then the period, as slo.Windows gives them
	base    map[string]string
}

func (g *generator) newSLORules(s slo.SLO) *sloRules {
	period := s.Period
	if period <= 0 {
		period = time.Duration(g.cfg.Period)
	}
	if period <= 0 {
		period = slo.DefaultPeriod
	}
	r := &sloRules{g: g, s: s, id: s.Service + "-" + s.Name, period: period}
	for _, w := range slo.Windows(period) {
		r.windows = append(r.windows, slo.WindowName(w))
	}
	r.base = mergeMaps(s.Labels, map[string]string{labelID: r.id, labelService: s.Service, labelSLO: s.Name})
	return r
}

// errorf prefixes an error with the spec file and line of the SLO, as `slo validate` does.
func (r *sloRules) errorf(field, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s: slo %s: %s", r.s.Source.File, r.s.Source.Line, field, r.s.ID(), fmt.Sprintf(format, args...))
}

// periodWindow is the name of the last window: the period.
func (r *sloRules) periodWindow() string { return r.windows[len(r.windows)-1] }

// shortWindows are the windows evaluated directly from the spec's queries.
func (r *sloRules) shortWindows() []string { return r.windows[:len(r.windows)-1] }

// seriesSelector selects one recorded series of this SLO.
func (r *sloRules) seriesSelector(metric string) *parser.VectorSelector {
	return selector(metric, map[string]string{labelID: r.id, labelService: r.s.Service, labelSLO: r.s.Name})
}

func (r *sloRules) labels(extra ...string) map[string]string {
	m := mergeMaps(r.base)
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

// sloGroups returns the SLO's groups for the ruler that sees every region: the SLI recordings
// (with the component recordings when withComponents), Sloth's meta recordings and the alerts.
func (g *generator) sloGroups(s slo.SLO, withComponents bool) ([]rulefmt.RuleGroup, error) {
	r := g.newSLORules(s)
	var sli []rulefmt.Rule
	if !s.Raw() && withComponents {
		c, err := r.componentRules("")
		if err != nil {
			return nil, err
		}
		sli = append(sli, c...)
	}
	ratios, err := r.ratioRules()
	if err != nil {
		return nil, err
	}
	sli = append(sli, ratios...)
	groups := []rulefmt.RuleGroup{
		{Name: "sloth-slo-sli-recordings-" + r.id, Rules: sli},
		{Name: "sloth-slo-meta-recordings-" + r.id, Rules: r.metaRules()},
	}
	alerts, err := r.alertRules()
	if err != nil {
		return nil, err
	}
	if len(alerts) > 0 {
		groups = append(groups, rulefmt.RuleGroup{Name: "sloth-slo-alerts-" + r.id, Rules: alerts})
	}
	return groups, nil
}

// componentGroup is the group a region's own Prometheus evaluates: the SLO's error and total
// rates in that region (or, for a raw SLI, its error ratio), labelled with the region.
func (g *generator) componentGroup(s slo.SLO, region string) (rulefmt.RuleGroup, error) {
	r := g.newSLORules(s)
	name := "meridian-slo-components-" + r.id
	if s.Raw() {
		rs, err := r.rawRegionRules(region)
		return rulefmt.RuleGroup{Name: name, Rules: rs}, err
	}
	rs, err := r.componentRules(region)
	return rulefmt.RuleGroup{Name: name, Rules: rs}, err
}

// componentRules records slo:sli_errors:rate<w> and slo:sli_total:rate<w> per region for every
// window: the spec's queries with the region added to their grouping (slo.RegionizeQuery), and
// for the period the average of the first window's rates over it (the mean rate, without a
// 30-day range query over raw counters). A non-empty region is written as a label: the rules
// then run in that region's own Prometheus, whose series carry no region label.
func (r *sloRules) componentRules(region string) ([]rulefmt.Rule, error) {
	var out []rulefmt.Rule
	extra := []string{}
	if region != "" {
		extra = []string{r.g.regionLabel, region}
	}
	for _, w := range r.shortWindows() {
		for _, c := range []struct{ metric, field, tmpl string }{
			{metricErrors, "error_query", r.s.ErrorQuery},
			{metricTotal, "total_query", r.s.TotalQuery},
		} {
			q, err := slo.RenderQuery(c.tmpl, w)
			if err != nil {
				return nil, r.errorf(c.field, "%v", err)
			}
			expr, err := slo.RegionizeQuery(q, r.g.regionLabel)
			if err != nil {
				return nil, r.errorf(c.field, "%v", err)
			}
			out = append(out, rulefmt.Rule{Record: c.metric + w, Expr: expr, Labels: r.labels(append([]string{labelWindow, w}, extra...)...)})
		}
	}
	first, period := r.windows[0], r.periodWindow()
	for _, metric := range []string{metricErrors, metricTotal} {
		sel := r.seriesSelector(metric + first)
		if region != "" {
			sel = withMatcher(sel, labels.MatchEqual, r.g.regionLabel, region)
		}
		out = append(out, rulefmt.Rule{Record: metric + period, Expr: overTime("avg_over_time", sel, period).String(),
			Labels: r.labels(append([]string{labelWindow, period}, extra...)...)})
	}
	return out, nil
}

// ratioRules records slo:sli_error:ratio_rate<w> for every window, per region and globally.
// Event SLIs: a region's ratio is its recorded errors over its recorded totals; the global
// ratio is the sum of all regions' errors over the sum of their totals. Raw SLIs (a given
// ratio) cannot be summed: the region's ratio is the ratio query broken down by region, the
// global one the query as given, and the period the mean of the first window's ratio, as Sloth
// computes it.
func (r *sloRules) ratioRules() ([]rulefmt.Rule, error) {
	if r.s.Raw() {
		return r.rawRatioRules()
	}
	var out []rulefmt.Rule
	for _, w := range r.windows {
		errs, total := r.seriesSelector(metricErrors+w), r.seriesSelector(metricTotal+w)
		out = append(out,
			rulefmt.Rule{Record: metricErrorRatio + w,
				Expr:   binary(parser.DIV, sumBy(errs, r.g.regionLabel), sumBy(total, r.g.regionLabel)).String(),
				Labels: r.labels(labelWindow, w)},
			rulefmt.Rule{Record: metricErrorRatio + w,
				Expr:   binary(parser.DIV, sumBy(errs), sumBy(total)).String(),
				Labels: r.labels(labelWindow, w, r.g.regionLabel, slo.GlobalRegion)},
		)
	}
	return out, nil
}

func (r *sloRules) rawRatioRules() ([]rulefmt.Rule, error) {
	var out []rulefmt.Rule
	if r.g.opts.Split == SplitGlobal {
		regional, err := r.rawRegionRules("")
		if err != nil {
			return nil, err
		}
		out = append(out, regional...)
	}
	for _, w := range r.shortWindows() {
		q, err := slo.RenderQuery(r.s.RawErrorRatioQuery, w)
		if err != nil {
			return nil, r.errorf("error_ratio_query", "%v", err)
		}
		expr, err := parser.ParseExpr(q)
		if err != nil {
			return nil, r.errorf("error_ratio_query", "%v", err)
		}
		out = append(out, rulefmt.Rule{Record: metricErrorRatio + w, Expr: expr.String(),
			Labels: r.labels(labelWindow, w, r.g.regionLabel, slo.GlobalRegion)})
	}
	period := r.periodWindow()
	out = append(out, rulefmt.Rule{Record: metricErrorRatio + period,
		Expr:   overTime("avg_over_time", r.seriesSelector(metricErrorRatio+r.windows[0]), period).String(),
		Labels: r.labels(labelWindow, period)})
	return out, nil
}

// rawRegionRules records a raw SLI's ratio per region (broken down with slo.Regionize); a
// non-empty region is written as a label, for that region's own Prometheus.
func (r *sloRules) rawRegionRules(region string) ([]rulefmt.Rule, error) {
	var out []rulefmt.Rule
	for _, w := range r.shortWindows() {
		q, err := slo.RenderQuery(r.s.RawErrorRatioQuery, w)
		if err != nil {
			return nil, r.errorf("error_ratio_query", "%v", err)
		}
		expr, err := parser.ParseExpr(q)
		if err != nil {
			return nil, r.errorf("error_ratio_query", "%v", err)
		}
		if expr, err = slo.Regionize(expr, r.g.regionLabel); err != nil {
			return nil, r.errorf("error_ratio_query", "%v", err)
		}
		ls := []string{labelWindow, w}
		if region != "" {
			ls = append(ls, r.g.regionLabel, region)
		}
		out = append(out, rulefmt.Rule{Record: metricErrorRatio + w, Expr: expr.String(), Labels: r.labels(ls...)})
	}
	return out, nil
}

// metaRules are Sloth's meta recordings: objective, budget, period, burn rates, budget left
// and the info series. Those computed from the SLI keep its region label.
func (r *sloRules) metaRules() []rulefmt.Rule {
	budget := r.budget()
	onSLO := []string{labelID, labelSLO, labelService}
	ratio5m := r.seriesSelector(metricErrorRatio + r.windows[0])
	ratioPeriod := r.seriesSelector(metricErrorRatio + r.periodWindow())
	budgetSel := r.seriesSelector(metricErrorBudget)
	return []rulefmt.Rule{
		{Record: metricObjective, Expr: call("vector", num(r.s.Objective)).String(), Labels: r.labels()},
		{Record: metricErrorBudget, Expr: call("vector", num(budget)).String(), Labels: r.labels()},
		{Record: metricTimePeriod, Expr: call("vector", num(r.period.Hours()/24)).String(), Labels: r.labels()},
		{Record: metricCurrentBurnRate, Expr: onGroupLeft(parser.DIV, ratio5m, budgetSel, onSLO...).String(), Labels: r.labels()},
		{Record: metricPeriodBurnRate, Expr: onGroupLeft(parser.DIV, ratioPeriod, budgetSel, onSLO...).String(), Labels: r.labels()},
		{Record: metricPeriodRemaining, Expr: binary(parser.SUB, num(1), r.seriesSelector(metricPeriodBurnRate)).String(), Labels: r.labels()},
		{Record: metricInfo, Expr: call("vector", num(1)).String(), Labels: r.labels(
			"sloth_mode", "cli-gen-prom", "sloth_spec", specName(r.s), "sloth_version", slothVersion,
			"sloth_objective", strconv.FormatFloat(r.s.Objective*100, 'f', -1, 64))},
	}
}

func specName(s slo.SLO) string {
	if s.Source.Format == "openslo" {
		return "openslo/v1"
	}
	return "prometheus/v1"
}

// alertRules are the page and ticket alerts (each unless disabled in the spec). Like Sloth's,
// an alert fires when both windows of either of its two conditions burn faster than the
// condition's factor, with no "for": the short window resets it soon after the burn stops.
// The conditions keep the region label, so one rule alerts for the whole (region="global")
// and for each region on its own: a region burning alone pages even when the global ratio is
// fine.
func (r *sloRules) alertRules() ([]rulefmt.Rule, error) {
	var out []rulefmt.Rule
	for _, a := range []struct {
		severity string
		spec     slo.AlertSpec
		conds    []mwmbAlert
	}{
		{"page", r.s.Alerting.PageAlert, pageConditions},
		{"ticket", r.s.Alerting.TicketAlert, ticketConditions},
	} {
		if a.spec.Disable {
			continue
		}
		rule, err := r.alertRule(a.severity, a.spec, a.conds)
		if err != nil {
			return nil, err
		}
		out = append(out, rule)
	}
	return out, nil
}

func (r *sloRules) alertRule(severity string, spec slo.AlertSpec, conds []mwmbAlert) (rulefmt.Rule, error) {
	budget := r.budget()
	var expr parser.Expr
	var thresholds []string
	for _, c := range conds {
		short, long := slo.WindowName(c.short), slo.WindowName(c.long)
		if !r.hasWindow(short) || !r.hasWindow(long) {
			return rulefmt.Rule{}, r.errorf("period", "the %s alert needs the %s and %s windows, which a period of %s does not have", severity, short, long, model.Duration(r.period))
		}
		f := c.factor(r.period)
		over := func(w string) parser.Expr {
			return maxWithout(binary(parser.GTR, r.seriesSelector(metricErrorRatio+w), paren(binary(parser.MUL, num(f), num(budget)))), labelWindow)
		}
		both := paren(binary(parser.LAND, over(short), over(long)))
		if expr == nil {
			expr = both
		} else {
			expr = binary(parser.LOR, expr, both)
		}
		thresholds = append(thresholds, fmt.Sprintf("%gx over %s and %s (error ratio above %s)", round(f), short, long, percent(f*budget)))
	}
	name := r.s.Alerting.Name
	if name == "" {
		name = camel(r.s.Service) + camel(r.s.Name) + "ErrorBudgetBurn"
	}
	rl := r.g.regionLabel
	where := fmt.Sprintf(`{{ if eq $labels.%s %q }}across all regions{{ else }}in region {{ $labels.%s }}{{ end }}`, rl, slo.GlobalRegion, rl)
	labels := mergeMaps(
		map[string]string{"severity": severity, "slo": r.s.Name, "service": r.s.Service},
		r.s.Alerting.Labels, spec.Labels,
		map[string]string{labelSeverity: severity},
	)
	annotations := mergeMaps(
		map[string]string{
			"summary": "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate is over expected.",
			"title":   fmt.Sprintf("(%s) {{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate is too fast.", severity),
			"description": fmt.Sprintf("%s %s is spending its %s error budget (objective %s over %s) too fast: "+
				"error ratio {{ $value | humanizePercentage }} over the short window. It %s when %s.",
				r.s.ID(), where, percent(budget), percent(r.s.Objective), model.Duration(r.period), map[string]string{"page": "pages", "ticket": "opens a ticket"}[severity],
				joinOr(thresholds)),
			"runbook_url": r.g.runbook("slo-error-budget-burn-" + severity),
		},
		r.s.Alerting.Annotations, spec.Annotations,
	)
	return rulefmt.Rule{Alert: name, Expr: expr.String(), Labels: labels, Annotations: annotations}, nil
}

// budget is 1 - objective without the float noise of the subtraction (0.01, not
// 0.010000000000000009), so that thresholds read as written.
func (r *sloRules) budget() float64 {
	b, _ := strconv.ParseFloat(strconv.FormatFloat(1-r.s.Objective, 'g', 12, 64), 64)
	return b
}

func (r *sloRules) hasWindow(w string) bool {
	for _, x := range r.windows {
		if x == w {
			return true
		}
	}
	return false
}

// runbook is the runbook URL of an alert: the base URL and the alert's anchor.
func (g *generator) runbook(anchor string) string { return g.opts.RunbookBaseURL + "#" + anchor }

func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func percent(f float64) string { return strconv.FormatFloat(round(f*100*100)/100, 'f', -1, 64) + "%" }

func joinOr(parts []string) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += ", or "
		}
		out += p
	}
	return out
}

// camel turns "checkout" and "requests-availability" into "Checkout" and "RequestsAvailability".
func camel(s string) string {
	var out []rune
	up := true
	for _, c := range s {
		if !unicode.IsLetter(c) && !unicode.IsDigit(c) {
			up = true
			continue
		}
		if up {
			c = unicode.ToUpper(c)
			up = false
		}
		out = append(out, c)
	}
	return string(out)
}
