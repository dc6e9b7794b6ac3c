package slo

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// scoreFreshness: replication lag L (the worst over the survivors, which hold the replicas that
// would take over) against the RPO: 100 at L <= RPO/2, 0 at L = RPO; gate on L > RPO or on the
// lag series being absent while replication is configured. Active-passive, when the primary
// fails every standby must report a lag; otherwise at least one survivor must (in active-active
// a survivor may hold the primary copy and report no lag).
func scoreFreshness(spec readinessSpec, snap *readinessSnapshot, region string, surv []string) componentOutcome {
	o := newComponentOutcome(ComponentFreshness)
	switch {
	case spec.ReplicationLagExpr == "":
		o.unknown("replication is not configured (readiness.replication_lag_expr)")
		return o
	case !snap.lag.known():
		o.unknown("replication lag could not be queried: %v", snap.lag.err)
		return o
	case len(surv) == 0:
		o.unknown("no surviving region to absorb %s", region)
		return o
	}
	rpo := spec.rpo.Seconds()
	lags := snap.lag.byRegion(spec.regionLabel, math.Max)
	var absent []string
	lag, worst, seen := 0.0, "", 0
	for _, r := range surv {
		v, ok := lags[r]
		o.input("replication_lag_seconds", r, optionalFloat(v, ok), snap.lag.expr, snap.lag.partial)
		if !ok {
			absent = append(absent, r)
			continue
		}
		if seen == 0 || v > lag {
			lag, worst = v, r
		}
		seen++
	}
	o.input("rpo_seconds", "", floatPtr(rpo), "config readiness.rpo", false)

	everyRequired := spec.Topology == TopologyActivePassive && region == spec.Primary
	broken := len(absent) > 0 && (everyRequired || seen == 0)
	if broken && !snap.lag.partial {
		o.set(0, fmt.Sprintf("replication lag series is absent in %s while replication is configured: replication is broken", joinRegionNames(absent)))
		o.gate(GateReplicationBroke, "%s", o.Detail)
		return o
	}
	if seen == 0 {
		o.unknown("no replication lag series for %s (partial response)", joinRegionNames(surv))
		return o
	}
	if len(absent) > 0 && snap.lag.partial {
		o.notes = append(o.notes, fmt.Sprintf("replication lag unknown in %s (partial response)", joinRegionNames(absent)))
	}
	o.set(linearRamp(lag, rpo/2, rpo), fmt.Sprintf("replication lag is %s in %s against an RPO of %s", formatSeconds(lag), worst, spec.rpo))
	if lag > rpo {
		o.gate(GateReplicationLag, "replication lag %s in %s exceeds the RPO of %s", formatSeconds(lag), worst, spec.rpo)
	}
	return o
}

func formatSeconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

// versionSets reads "count by (region, deployment, version)" into region -> deployment ->
// sorted versions.
func versionSets(q inputResult, regionLabel string) map[string]map[string][]string {
	out := map[string]map[string][]string{}
	for _, s := range q.vec {
		r, d, v := s.Metric.Get(regionLabel), s.Metric.Get("deployment"), s.Metric.Get("version")
		if d == "" || v == "" {
			continue
		}
		if out[r] == nil {
			out[r] = map[string][]string{}
		}
		if !slices.Contains(out[r][d], v) {
			out[r][d] = append(out[r][d], v)
			slices.Sort(out[r][d])
		}
	}
	return out
}

// scoreParity: over the critical workloads (all of the failed region's deployments when none
// are listed), the fraction whose version set in the survivors equals the one in the failed
// region; gate on a critical workload with no available replicas in any survivor.
func scoreParity(spec readinessSpec, snap *readinessSnapshot, region string, surv []string) componentOutcome {
	o := newComponentOutcome(ComponentParity)
	workloadGate(&o, spec, snap, surv)
	switch {
	case !snap.versions.known():
		o.unknown("deployment versions could not be queried: %v", snap.versions.err)
		return o
	case len(surv) == 0:
		o.unknown("no surviving region to absorb %s", region)
		return o
	}
	sets := versionSets(snap.versions, spec.regionLabel)
	workloads := spec.CriticalWorkloads
	if len(workloads) == 0 {
		workloads = slices.Sorted(maps.Keys(sets[region]))
	}
	var compared, same int
	var differ, notInFailed []string
	for _, w := range workloads {
		failed := sets[region][w]
		if len(failed) == 0 {
			notInFailed = append(notInFailed, w)
			continue
		}
		var survivors []string
		for _, r := range surv {
			for _, v := range sets[r][w] {
				if !slices.Contains(survivors, v) {
					survivors = append(survivors, v)
				}
			}
		}
		slices.Sort(survivors)
		match := slices.Equal(failed, survivors)
		compared++
		v := 0.0
		if match {
			same++
			v = 1
		} else {
			differ = append(differ, w)
		}
		o.Inputs = append(o.Inputs, InputValue{
			Name: "versions_match", Region: w, Value: floatPtr(v), Expr: snap.versions.expr, Partial: snap.versions.partial,
			Text: fmt.Sprintf("%s: %s runs [%s], survivors run [%s]", w, region, strings.Join(failed, " "), strings.Join(survivors, " ")),
		})
	}
	o.partial = o.partial || snap.versions.partial
	if len(notInFailed) > 0 {
		o.notes = append(o.notes, fmt.Sprintf("no version of %s is reported in %s: not compared", strings.Join(notInFailed, ", "), region))
	}
	if compared == 0 {
		o.unknown("no deployment versions are reported in %s", region)
		return o
	}
	detail := fmt.Sprintf("%d of %d workloads run the same versions in the survivors as in %s", same, compared, region)
	if len(differ) > 0 {
		detail += " (differs: " + strings.Join(differ, ", ") + ")"
	}
	o.set(100*float64(same)/float64(compared), detail)
	return o
}

// workloadGate fires for each critical workload with no available replicas in any survivor.
// When the workload query is partial, a workload seen nowhere is reported as unknown, not as
// missing.
func workloadGate(o *componentOutcome, spec readinessSpec, snap *readinessSnapshot, surv []string) {
	if len(spec.CriticalWorkloads) == 0 || len(surv) == 0 {
		return
	}
	if !snap.workloads.known() {
		o.notes = append(o.notes, fmt.Sprintf("critical workloads could not be checked: %v", snap.workloads.err))
		return
	}
	avail := map[string]map[string]float64{} // deployment -> region -> replicas
	for _, s := range snap.workloads.vec {
		d, r := s.Metric.Get("deployment"), s.Metric.Get(spec.regionLabel)
		if avail[d] == nil {
			avail[d] = map[string]float64{}
		}
		avail[d][r] += s.F
	}
	for _, w := range spec.CriticalWorkloads {
		present := false
		for _, r := range surv {
			v, ok := avail[w][r]
			o.Inputs = append(o.Inputs, InputValue{
				Name: "available_replicas", Region: r, Value: optionalFloat(v, ok), Expr: snap.workloads.expr,
				Partial: snap.workloads.partial, Text: w,
			})
			present = present || v > 0
		}
		switch {
		case present:
		case snap.workloads.partial:
			o.partial = true
			o.notes = append(o.notes, fmt.Sprintf("critical workload %s not seen in %s (partial response)", w, joinRegionNames(surv)))
		default:
			o.gate(GateWorkloadMissing, "critical workload %s has no available replicas in %s", w, joinRegionNames(surv))
		}
	}
}

// scoreReachability: the fraction of the survivors' stores that are healthy and of their up
// series that are 1.
func scoreReachability(spec readinessSpec, snap *readinessSnapshot, surv []string) componentOutcome {
	o := newComponentOutcome(ComponentReachability)
	var ok, total float64
	if snap.storesKnown {
		for _, r := range surv {
			var healthy, n float64
			for _, s := range snap.stores {
				if s.Region != r {
					continue
				}
				n++
				if s.Healthy {
					healthy++
				}
			}
			o.input("stores_healthy", r, floatPtr(healthy), "querier store set", false)
			o.input("stores_total", r, floatPtr(n), "querier store set", false)
			ok, total = ok+healthy, total+n
		}
	}
	if snap.up.known() {
		for _, r := range surv {
			var up, n float64
			for _, s := range snap.up.vec {
				if s.Metric.Get(spec.regionLabel) != r || s.H != nil {
					continue
				}
				n++
				if s.F == 1 {
					up++
				}
			}
			o.input("targets_up", r, floatPtr(up), snap.up.expr, snap.up.partial)
			o.input("targets_total", r, floatPtr(n), snap.up.expr, snap.up.partial)
			ok, total = ok+up, total+n
		}
	}
	if total == 0 {
		o.unknown("no store or scrape target of %s is known", joinRegionNames(surv))
		return o
	}
	o.set(100*ok/total, fmt.Sprintf("%.0f of %.0f stores and scrape targets of the survivors are up", ok, total))
	return o
}

// scoreDrill: days D since the last successful failover drill of the failed region (or of the
// whole system, when the drill metric carries no region): 100 at D <= 30, 0 at D = 90.
func scoreDrill(spec readinessSpec, snap *readinessSnapshot, region string) componentOutcome {
	o := newComponentOutcome(ComponentDrill)
	if !snap.drill.known() {
		o.unknown("drill timestamp could not be queried: %v", snap.drill.err)
		return o
	}
	drills := snap.drill.byRegion(spec.regionLabel, math.Max)
	ts, ok := drills[region]
	if !ok {
		ts, ok = drills[""]
	}
	o.input("last_drill_timestamp_seconds", region, optionalFloat(ts, ok), snap.drill.expr, snap.drill.partial)
	if !ok {
		o.unknown("no successful failover drill of %s is recorded", region)
		return o
	}
	days := math.Max(0, float64(snap.at.UnixMilli()-int64(ts*1000))/float64(24*time.Hour/time.Millisecond))
	o.input("days_since_drill", region, floatPtr(days), "", false)
	o.set(linearRamp(days, 30, 90), fmt.Sprintf("the last successful failover drill of %s was %.0f days ago", region, days))
	return o
}
