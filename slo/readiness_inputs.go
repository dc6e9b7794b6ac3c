package slo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/promql"
)

// inputResult is the answer to one input expression.
type inputResult struct {
	expr    string
	vec     promql.Vector
	partial bool     // the querier returned warnings: some store did not answer
	err     error    // the query failed: the input is unknown
	warns   []string // the querier's warnings, for the report
}

// known reports whether the query answered at all.
func (q inputResult) known() bool { return q.expr != "" && q.err == nil }

// byRegion folds the samples by the region label with combine (e.g. sum or max). Samples
// without the region label are folded under "". NaN and infinite values are left out: they
// are not a measurement.
func (q inputResult) byRegion(regionLabel string, combine func(a, b float64) float64) map[string]float64 {
	out := map[string]float64{}
	for _, s := range q.vec {
		if math.IsNaN(s.F) || math.IsInf(s.F, 0) || s.H != nil {
			continue
		}
		r := s.Metric.Get(regionLabel)
		if v, ok := out[r]; ok {
			out[r] = combine(v, s.F)
		} else {
			out[r] = s.F
		}
	}
	return out
}

func sumFloats(a, b float64) float64 { return a + b }

// readinessSnapshot is every input of the readiness model at one instant, for all regions.
type readinessSnapshot struct {
	at      time.Time
	regions []string

	usage, capacity, lag, versions, workloads, up, drill inputResult

	stores      []StoreHealth
	storesKnown bool

	slo      map[string]RegionSLOHealth
	sloKnown bool
	sloErr   error

	warnings []string
}

// gatherReadiness runs every input query at now (concurrently) and reads the store and SLO
// sources. A failed query makes its input unknown, it does not fail the snapshot; only when
// every query fails (the querier is unreachable) is an error returned.
func gatherReadiness(ctx context.Context, spec readinessSpec, q Querier, sloSrc SLOHealthSource, storeSrc StoreHealthSource, now time.Time) (*readinessSnapshot, error) {
	snap := &readinessSnapshot{at: now}
	type job struct {
		dst  *inputResult
		expr string
	}
	jobs := []job{
		{&snap.usage, spec.UsageExpr},
		{&snap.capacity, spec.CapacityExpr},
		{&snap.versions, spec.VersionExpr},
		{&snap.up, spec.UpExpr},
		{&snap.drill, spec.DrillExpr},
	}
	if spec.ReplicationLagExpr != "" {
		jobs = append(jobs, job{&snap.lag, spec.ReplicationLagExpr})
	}
	if len(spec.CriticalWorkloads) > 0 {
		jobs = append(jobs, job{&snap.workloads, spec.WorkloadExpr})
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			vec, annos, err := q.Query(ctx, j.expr, now)
			*j.dst = inputResult{expr: j.expr, vec: vec, err: err}
			if err != nil {
				j.dst.err = fmt.Errorf("query %q: %w", j.expr, err)
				return
			}
			for _, w := range annos.AsErrors() {
				j.dst.partial = true
				j.dst.warns = append(j.dst.warns, w.Error())
			}
		})
	}
	wg.Wait()

	var errs []error
	for _, j := range jobs {
		if j.dst.err != nil {
			errs = append(errs, j.dst.err)
			snap.warnings = append(snap.warnings, j.dst.err.Error())
		}
		for _, w := range j.dst.warns {
			if !slices.Contains(snap.warnings, w) {
				snap.warnings = append(snap.warnings, w)
			}
		}
	}
	if len(errs) == len(jobs) {
		return nil, fmt.Errorf("readiness inputs: every query failed: %w", errors.Join(errs...))
	}

	if storeSrc != nil {
		snap.stores = storeSrc.Stores()
		snap.storesKnown = true
	}
	if sloSrc != nil {
		h, err := sloSrc.SLOHealth(ctx, now)
		if err != nil {
			snap.sloErr = fmt.Errorf("slo health: %w", err)
			snap.warnings = append(snap.warnings, snap.sloErr.Error())
		} else {
			snap.slo, snap.sloKnown = h, true
		}
	}
	snap.regions = readinessRegions(spec, snap)
	return snap, nil
}

// readinessRegions is the set of regions scored: the configured ones, else the primary and
// standbys, else every region the usage, capacity and store inputs name.
func readinessRegions(spec readinessSpec, snap *readinessSnapshot) []string {
	var out []string
	switch {
	case len(spec.Regions) > 0:
		out = slices.Clone(spec.Regions)
	case spec.Topology == TopologyActivePassive:
		out = append([]string{spec.Primary}, spec.Standbys...)
	default:
		for _, q := range []inputResult{snap.usage, snap.capacity} {
			for r := range q.byRegion(spec.regionLabel, sumFloats) {
				out = append(out, r)
			}
		}
		for _, s := range snap.stores {
			out = append(out, s.Region)
		}
		for r := range spec.MaxCapacity {
			out = append(out, r)
		}
	}
	out = slices.DeleteFunc(out, func(r string) bool { return r == "" })
	slices.Sort(out)
	return slices.Compact(out)
}
