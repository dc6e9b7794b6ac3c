package slo

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// windowData is what the queries of one SLO over one window returned.
type windowData struct {
	window string
	// errors and totals by region (events SLIs); "" holds samples without the region label
	// (e.g. an "or vector(0)" fallback), which count towards the global sums only.
	errors, totals map[string]float64
	// ratios by region and the global ratio (raw SLIs).
	ratios      map[string]float64
	globalRatio *float64
	warnings    []string
	err         error
}

// warningRegion finds the region a partial-response warning names, in the querier's format
// `region "eu-west-1" (store ...): ...`.
var warningRegion = regexp.MustCompile(`region "([^"]+)"`)

// assembly is everything assemble needs to know about the SLO.
type assembly struct {
	slo      SLO
	period   time.Duration
	windows  []string // in order; the last one is the period
	expected []string // configured regions
	notes    []string
}

// assemble turns the per-window query results into a Result: per-region and global ratios,
// burn rates and budgets, with every number that lacks data marked partial.
func assemble(a assembly, now time.Time, data []windowData) Result {
	res := Result{
		Service: a.slo.Service, Name: a.slo.Name, Description: a.slo.Description,
		Objective: a.slo.Objective, Period: windowName(a.period), Time: now,
		SLI: "events", Windows: a.windows, Notes: a.notes,
	}
	if a.slo.Raw() {
		res.SLI = "raw"
	}

	// Regions named anywhere: configured, present in some window, or named by a warning.
	known := map[string]bool{}
	for _, r := range a.expected {
		known[r] = true
	}
	namedByWarning := make([]map[string]bool, len(data))
	windowWide := make([]bool, len(data)) // a warning that names no region taints the window
	var errs []string
	for i, d := range data {
		if d.err != nil {
			errs = append(errs, fmt.Sprintf("window %s: %v", d.window, d.err))
		}
		for r := range d.totals {
			known[r] = true
		}
		for r := range d.ratios {
			known[r] = true
		}
		namedByWarning[i] = map[string]bool{}
		for _, w := range d.warnings {
			m := warningRegion.FindStringSubmatch(w)
			if m == nil {
				windowWide[i] = true
				continue
			}
			namedByWarning[i][m[1]] = true
			known[m[1]] = true
		}
		res.Warnings = appendUnique(res.Warnings, d.warnings...)
	}
	delete(known, "")
	if len(errs) > 0 {
		res.Error = strings.Join(errs, "; ")
	}

	regions := make([]string, 0, len(known))
	for r := range known {
		regions = append(regions, r)
	}
	sort.Strings(regions)

	missing := map[string]bool{}
	res.Global = RegionResult{Region: GlobalRegion}
	for _, r := range regions {
		rr := RegionResult{Region: r}
		for i, d := range data {
			v := WindowValue{Window: d.window}
			var present bool
			if a.slo.Raw() {
				var ratio float64
				ratio, present = d.ratios[r]
				if present {
					v.Ratio = finite(ratio)
				}
			} else {
				var total float64
				total, present = d.totals[r]
				if present {
					errors := d.errors[r] // absent errors series: no errors
					v.Errors, v.Total = fptr(errors), fptr(total)
					if ratio, ok := errorRatio(errors, total); ok {
						v.Ratio = fptr(ratio)
					} else {
						v.NoTraffic = true
					}
				}
			}
			if d.err == nil && (!present || namedByWarning[i][r]) {
				v.Missing = true
				missing[r] = true
			}
			v.Partial = v.Missing || windowWide[i] || namedByWarning[i][r]
			if d.err != nil {
				v.Ratio, v.NoTraffic = nil, false
			}
			setBurn(&v, a.slo.Objective)
			rr.Partial = rr.Partial || v.Partial
			rr.Windows = append(rr.Windows, v)
		}
		rr.Budget = budgetFor(rr, a)
		res.Regions = append(res.Regions, rr)
	}

	for i, d := range data {
		v := WindowValue{Window: d.window}
		if a.slo.Raw() {
			v.Ratio = d.globalRatio
		} else if d.err == nil {
			var errors, total float64
			for _, e := range d.errors {
				errors += e
			}
			for _, t := range d.totals {
				total += t
			}
			v.Errors, v.Total = fptr(errors), fptr(total)
			if ratio, ok := errorRatio(errors, total); ok {
				v.Ratio = fptr(ratio)
			} else {
				v.NoTraffic = true
			}
		}
		v.Partial = windowWide[i] || len(namedByWarning[i]) > 0
		for _, rr := range res.Regions {
			v.Partial = v.Partial || rr.Windows[i].Missing
		}
		setBurn(&v, a.slo.Objective)
		res.Global.Partial = res.Global.Partial || v.Partial
		res.Global.Windows = append(res.Global.Windows, v)
	}
	res.Global.Budget = budgetFor(res.Global, a)

	for r := range missing {
		res.MissingRegions = append(res.MissingRegions, r)
	}
	sort.Strings(res.MissingRegions)
	res.Partial = res.Global.Partial
	for _, rr := range res.Regions {
		res.Partial = res.Partial || rr.Partial
	}
	return res
}

func setBurn(v *WindowValue, objective float64) {
	if v.Ratio != nil {
		v.BurnRate = fptr(burnRate(*v.Ratio, objective))
	}
}

func budgetFor(rr RegionResult, a assembly) Budget {
	period, _ := rr.Window(a.windows[len(a.windows)-1])
	oneHour, _ := rr.Window(windowName(time.Hour))
	return budgetOf(period, oneHour, a.slo.Objective, a.period)
}

func finite(f float64) *float64 {
	if f != f || f > 1e300 || f < -1e300 {
		return nil
	}
	return fptr(f)
}

func appendUnique(dst []string, src ...string) []string {
	for _, s := range src {
		if !slices.Contains(dst, s) {
			dst = append(dst, s)
		}
	}
	return dst
}
