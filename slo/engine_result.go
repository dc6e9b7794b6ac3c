package slo

import (
	"math"
	"time"

	"github.com/prometheus/common/model"
)

// GlobalRegion is the region name of the whole: all regions summed.
const GlobalRegion = "global"

// Exhaustion states of an error budget besides a finite time.
const (
	ExhaustionNever     = "never"     // the 1h burn rate is 0: the budget is not being spent
	ExhaustionExhausted = "exhausted" // no budget left
	ExhaustionUnknown   = "unknown"   // budget or 1h burn rate undefined (no traffic or no data)
)

// Result is the evaluation of one SLO at one instant: the global SLI over every window and the
// per-region SLIs beside it.
type Result struct {
	Service     string    `json:"service"`
	Name        string    `json:"slo"`
	Description string    `json:"description,omitempty"`
	Objective   float64   `json:"objective"`
	Period      string    `json:"period"`
	Time        time.Time `json:"evaluated_at"`
	// SLI is "events" (errors over totals) or "raw" (a precomputed error ratio).
	SLI     string         `json:"sli"`
	Windows []string       `json:"windows"`
	Global  RegionResult   `json:"global"`
	Regions []RegionResult `json:"regions"`
	// MissingRegions are regions expected or seen in some window whose data is absent from at
	// least one window: every number that would have included them is marked partial.
	MissingRegions []string `json:"missing_regions,omitempty"`
	Partial        bool     `json:"partial"`
	Warnings       []string `json:"warnings,omitempty"`
	Notes          []string `json:"notes,omitempty"`
	Error          string   `json:"error,omitempty"`
}

// Region returns the result of the named region, or of the whole for GlobalRegion.
func (r *Result) Region(name string) (RegionResult, bool) {
	if name == GlobalRegion {
		return r.Global, true
	}
	for _, rr := range r.Regions {
		if rr.Region == name {
			return rr, true
		}
	}
	return RegionResult{}, false
}

// RegionResult is one region's (or the global) SLI over every window and its error budget.
type RegionResult struct {
	Region  string        `json:"region"`
	Windows []WindowValue `json:"windows"`
	Budget  Budget        `json:"budget"`
	Partial bool          `json:"partial"`
}

// Window returns the value over the named window ("5m", "1h", "30d", ...).
func (r RegionResult) Window(name string) (WindowValue, bool) {
	for _, w := range r.Windows {
		if w.Window == name {
			return w, true
		}
	}
	return WindowValue{}, false
}

// WindowValue is the SLI over one window. Ratio and BurnRate are nil when undefined: no traffic
// (total 0), or no data. An undefined ratio is neither 0 nor 100%.
type WindowValue struct {
	Window    string   `json:"window"`
	Errors    *float64 `json:"errors,omitempty"`
	Total     *float64 `json:"total,omitempty"`
	Ratio     *float64 `json:"error_ratio"`
	BurnRate  *float64 `json:"burn_rate"`
	NoTraffic bool     `json:"no_traffic,omitempty"`
	Missing   bool     `json:"missing,omitempty"`
	Partial   bool     `json:"partial,omitempty"`
}

// Budget is the error budget over the SLO period. Remaining is a fraction of the budget and is
// not clamped: -0.5 means half a budget more than allowed was spent.
type Budget struct {
	Remaining        *float64 `json:"remaining_ratio"`
	RemainingPercent *float64 `json:"remaining_percent"`
	// Exhaustion is a duration ("52h30m0s") at the current 1h burn rate, or one of
	// ExhaustionNever, ExhaustionExhausted, ExhaustionUnknown.
	Exhaustion              string   `json:"exhaustion"`
	TimeToExhaustionSeconds *float64 `json:"time_to_exhaustion_seconds,omitempty"`
	Partial                 bool     `json:"partial,omitempty"`
}

// errorRatio is errors / total; it is undefined (ok false) without traffic or with non-finite
// inputs, never reported as 0 or 1.
func errorRatio(errors, total float64) (float64, bool) {
	if !(total > 0) || math.IsInf(total, 0) || math.IsNaN(errors) || math.IsInf(errors, 0) {
		return 0, false
	}
	return errors / total, true
}

// burnRate is how fast the budget is spent: 1 spends exactly the budget over the period.
func burnRate(ratio, objective float64) float64 {
	return ratio / (1 - objective)
}

// budgetRemaining is the fraction of the period's error budget left given the period's error
// ratio: 1 with no errors, 0 when the ratio equals 1 - objective, negative beyond.
func budgetRemaining(periodRatio, objective float64) float64 {
	return 1 - periodRatio/(1-objective)
}

// timeToExhaustion is how long the remaining budget lasts at burn rate burn1h: remaining x
// period / burn. A burn of 1 spends a whole budget in one period.
func timeToExhaustion(remaining float64, period time.Duration, burn1h float64) (time.Duration, string) {
	switch {
	case remaining <= 0:
		return 0, ExhaustionExhausted
	case burn1h <= 0:
		return 0, ExhaustionNever
	}
	secs := remaining * period.Seconds() / burn1h
	if secs > float64(math.MaxInt64/int64(time.Second)) {
		return 0, ExhaustionNever
	}
	d := time.Duration(secs * float64(time.Second)).Round(time.Second)
	return d, d.String()
}

// budgetOf computes the budget from the period window and the 1h window of one region.
func budgetOf(period, oneHour WindowValue, objective float64, periodLen time.Duration) Budget {
	b := Budget{Exhaustion: ExhaustionUnknown, Partial: period.Partial}
	if period.Ratio == nil {
		return b
	}
	rem := budgetRemaining(*period.Ratio, objective)
	if math.Abs(rem) < 1e-9 {
		rem = 0 // 1 - objective is not exact in floating point: a ratio at the budget leaves 0
	}
	pct := rem * 100
	b.Remaining, b.RemainingPercent = &rem, &pct
	if rem <= 0 {
		b.Exhaustion = ExhaustionExhausted
		zero := 0.0
		b.TimeToExhaustionSeconds = &zero
		return b
	}
	b.Partial = b.Partial || oneHour.Partial
	if oneHour.BurnRate == nil {
		return b
	}
	d, state := timeToExhaustion(rem, periodLen, *oneHour.BurnRate)
	b.Exhaustion = state
	if state != ExhaustionNever {
		secs := d.Seconds()
		b.TimeToExhaustionSeconds = &secs
	}
	return b
}

// windowName formats a window the way PromQL writes it: 5m, 1h, 1d, 30d.
func windowName(d time.Duration) string {
	return model.Duration(d).String()
}

func fptr(f float64) *float64 { return &f }

// WindowName is the name of a window in results, metric labels and recorded series: "5m",
// "1h", "30d" (Prometheus duration syntax).
func WindowName(d time.Duration) string { return windowName(d) }
