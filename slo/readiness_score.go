package slo

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// componentOutcome is what scoring one component produced.
type componentOutcome struct {
	Component
	gates   []Gate
	partial bool
	notes   []string
}

func newComponentOutcome(name string) componentOutcome {
	for _, cw := range componentWeights {
		if cw.name == name {
			return componentOutcome{Component: Component{Name: name, Weight: cw.weight, State: ComponentUnknown}}
		}
	}
	panic("slo: unknown readiness component " + name)
}

// set marks the component known with score (clamped to [0, 100]) and detail.
func (o *componentOutcome) set(score float64, detail string) {
	score = math.Max(0, math.Min(100, score))
	o.Score = &score
	o.State = ComponentOK
	o.Detail = detail
}

// unknown leaves the component unknown and says why.
func (o *componentOutcome) unknown(format string, args ...any) {
	o.Score, o.State, o.Detail = nil, ComponentUnknown, fmt.Sprintf(format, args...)
}

func (o *componentOutcome) input(name, region string, v *float64, expr string, partial bool) {
	o.Inputs = append(o.Inputs, InputValue{Name: name, Region: region, Value: v, Expr: expr, Partial: partial})
	o.partial = o.partial || partial
}

func (o *componentOutcome) gate(name, format string, args ...any) {
	o.gates = append(o.gates, Gate{Name: name, Component: o.Name, Message: fmt.Sprintf(format, args...)})
}

func floatPtr(v float64) *float64 { return &v }

// ramp is 100 at or below good, 0 at or above bad, linear between.
func linearRamp(x, good, bad float64) float64 {
	switch {
	case x <= good:
		return 100
	case x >= bad:
		return 0
	default:
		return 100 * (bad - x) / (bad - good)
	}
}

// scoreRegion answers, from one snapshot, whether the survivors could take region's load.
func scoreRegion(spec readinessSpec, snap *readinessSnapshot, region string) ReadinessResult {
	surv := spec.survivors(region, snap.regions)
	res := ReadinessResult{Region: region, Survivors: surv, EvaluatedAt: snap.at, Gates: []Gate{}}
	outs := []componentOutcome{
		scoreCapacity(spec, snap, region, surv),
		scoreSLOHealth(snap, surv),
		scoreFreshness(spec, snap, region, surv),
		scoreParity(spec, snap, region, surv),
		scoreReachability(spec, snap, surv),
		scoreDrill(spec, snap, region),
	}
	if spec.Topology == TopologyActivePassive && region != spec.Primary {
		left := slices.DeleteFunc(slices.Clone(spec.Standbys), func(s string) bool { return s == region })
		if len(left) == 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("losing standby %s leaves primary %s without a standby", region, spec.Primary))
		} else {
			res.Notes = append(res.Notes, fmt.Sprintf("losing standby %s leaves primary %s with standby %s", region, spec.Primary, joinRegionNames(left)))
		}
	}
	combine(&res, outs)
	return res
}

// combine folds the component outcomes into the score, the state and the reason.
func combine(res *ReadinessResult, outs []componentOutcome) {
	var weighted, known, unknown float64
	var unknownNames []string
	for _, o := range outs {
		res.Components = append(res.Components, o.Component)
		res.Gates = append(res.Gates, o.gates...)
		res.Notes = append(res.Notes, o.notes...)
		res.Partial = res.Partial || o.partial
		if o.Score == nil {
			unknown += o.Weight
			unknownNames = append(unknownNames, o.Name)
			continue
		}
		known += o.Weight
		weighted += o.Weight * *o.Score
	}
	if known > 0 {
		res.Score = math.Round(weighted/known*100) / 100
	}
	res.KnownWeight = math.Round(known*1000) / 1000

	switch {
	case unknown > 1.0/3+1e-9:
		res.State = StateUnknown
	case len(res.Gates) > 0 || res.Score < 60:
		res.State = StateNotReady
	case res.Score < 80 || res.Partial:
		// Partial data caps the state at DEGRADED: a survivor whose stores did not answer
		// cannot be shown to absorb the load, and a DNS health check must not read 200 then.
		res.State = StateDegraded
	default:
		res.State = StateReady
	}
	res.Ready = res.State == StateReady
	res.Reason = reason(res, outs, unknownNames, unknown)
	if res.Partial && res.State == StateDegraded && res.Score >= 80 {
		res.Reason = "some stores did not answer, so readiness cannot be confirmed (score " +
			fmt.Sprintf("%.1f", res.Score) + " on partial data); " + res.Reason
	}
}

// reason is one sentence naming the worst factor: the missing inputs when the state is
// unknown, else the first gate, else the component that costs the most weighted points.
func reason(res *ReadinessResult, outs []componentOutcome, unknownNames []string, unknown float64) string {
	if res.State == StateUnknown {
		first := ""
		for _, o := range outs {
			if o.Score == nil {
				first = o.Detail
				break
			}
		}
		msg := fmt.Sprintf("inputs are missing for %s (%.0f%% of the weight): %s", strings.Join(unknownNames, ", "), unknown*100, first)
		if len(res.Gates) > 0 {
			// The state stays UNKNOWN (READINESS.md), but a gate that fired is known and says
			// more to the person on call than the missing inputs do.
			msg = res.Gates[0].Message + "; and " + msg
		}
		return msg
	}
	if len(res.Gates) > 0 {
		msg := res.Gates[0].Message
		if n := len(res.Gates) - 1; n > 0 {
			msg += fmt.Sprintf(" (and %d more gate%s)", n, pluralS(n))
		}
		return msg
	}
	worst, cost := -1, 0.0
	for i, o := range outs {
		if o.Score == nil {
			continue
		}
		if c := o.Weight * (100 - *o.Score); c > cost {
			worst, cost = i, c
		}
	}
	if worst < 0 {
		return fmt.Sprintf("every known component is at full score: the survivors can take %s's load", res.Region)
	}
	return outs[worst].Detail
}

func pluralS(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// joinRegions writes "a", "a and b", "a, b and c".
func joinRegionNames(rs []string) string {
	switch len(rs) {
	case 0:
		return "no region"
	case 1:
		return rs[0]
	default:
		return strings.Join(rs[:len(rs)-1], ", ") + " and " + rs[len(rs)-1]
	}
}

// scoreCapacity: projected utilisation U = (usage(S) + usage(R)) / capacity(S), capacity
// counting the autoscaler ceiling where configured; 100 at U <= target, 0 at U = 1; gate U >= 1.
func scoreCapacity(spec readinessSpec, snap *readinessSnapshot, region string, surv []string) componentOutcome {
	o := newComponentOutcome(ComponentCapacity)
	if len(surv) == 0 {
		o.unknown("no surviving region to absorb %s", region)
		return o
	}
	if !snap.usage.known() || !snap.capacity.known() {
		o.unknown("CPU usage or capacity could not be queried")
		return o
	}
	usage := snap.usage.byRegion(spec.regionLabel, sumFloats)
	capacity := snap.capacity.byRegion(spec.regionLabel, sumFloats)

	var totalUsage, totalCap float64
	var missing []string
	for _, r := range append([]string{region}, surv...) {
		v, ok := usage[r]
		o.input("cpu_usage_cores", r, optionalFloat(v, ok), snap.usage.expr, snap.usage.partial)
		if !ok {
			missing = append(missing, "usage of "+r)
		}
		totalUsage += v
	}
	for _, r := range surv {
		v, ok := capacity[r]
		o.input("cpu_capacity_cores", r, optionalFloat(v, ok), snap.capacity.expr, snap.capacity.partial)
		if ceiling, has := spec.MaxCapacity[r]; has {
			o.input("max_capacity_cores", r, floatPtr(ceiling), "config readiness.max_capacity", false)
			v, ok = math.Max(v, ceiling), true
		}
		if !ok {
			missing = append(missing, "capacity of "+r)
		}
		totalCap += v
	}
	if len(missing) > 0 {
		o.unknown("no data for %s", strings.Join(missing, ", "))
		return o
	}
	o.input("utilisation_target", "", floatPtr(spec.UtilisationTarget), "config readiness.utilisation_target", false)
	if totalCap <= 0 {
		o.set(0, fmt.Sprintf("%s have no CPU capacity to absorb %s", joinRegionNames(surv), region))
		o.gate(GateCapacity, "%s", o.Detail)
		return o
	}
	u := totalUsage / totalCap
	o.input("projected_utilisation", "", floatPtr(u), "(usage(survivors) + usage(failed)) / capacity(survivors)", false)
	o.set(linearRamp(u, spec.UtilisationTarget, 1), fmt.Sprintf("%s would run at %.0f%% of CPU capacity after absorbing %s", joinRegionNames(surv), u*100, region))
	if u >= 1 {
		o.gate(GateCapacity, "%s", o.Detail)
	}
	return o
}

func optionalFloat(v float64, ok bool) *float64 {
	if !ok {
		return nil
	}
	return &v
}

// scoreSLOHealth: 100 x the lowest remaining error-budget fraction over the survivors; gate on
// a page-level burn in a survivor.
func scoreSLOHealth(snap *readinessSnapshot, surv []string) componentOutcome {
	o := newComponentOutcome(ComponentSLOHealth)
	switch {
	case snap.sloErr != nil:
		o.unknown("%v", snap.sloErr)
		return o
	case !snap.sloKnown:
		o.unknown("no SLO engine is configured")
		return o
	}
	lowest, worstRegion, worstSLO, seen := 1.0, "", "", 0
	var unknownRegions []string
	for _, r := range surv {
		h, ok := snap.slo[r]
		if !ok || !h.Known {
			o.input("min_error_budget_remaining", r, nil, "slo engine", false)
			unknownRegions = append(unknownRegions, r)
			continue
		}
		b := math.Max(0, math.Min(1, h.MinBudgetRemaining))
		expr := "slo engine"
		if h.WorstSLO != "" {
			expr = "slo engine: " + h.WorstSLO
		}
		o.input("min_error_budget_remaining", r, floatPtr(b), expr, h.Partial)
		if h.PageBurn {
			o.gate(GatePageBurn, "page-level burn in survivor %s (%s)", r, strings.Join(h.PageBurnSLOs, ", "))
		}
		if seen == 0 || b < lowest {
			lowest, worstRegion, worstSLO = b, r, h.WorstSLO
		}
		seen++
	}
	if seen == 0 {
		o.unknown("no SLO could be evaluated in %s", joinRegionNames(surv))
		return o
	}
	if len(unknownRegions) > 0 {
		o.partial = true
		o.notes = append(o.notes, fmt.Sprintf("SLO health unknown in %s", joinRegionNames(unknownRegions)))
	}
	detail := fmt.Sprintf("the lowest remaining error budget among the survivors is %.0f%% in %s", lowest*100, worstRegion)
	if worstSLO != "" {
		detail += " (" + worstSLO + ")"
	}
	o.set(100*lowest, detail)
	return o
}
