package slo

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testAssembly is an events SLO at 99% over a 30d period evaluated over 1h and the period.
func testAssembly(objective float64, expected ...string) assembly {
	return assembly{
		slo:      SLO{Service: "shop", Name: "availability", Objective: objective, ErrorQuery: "e", TotalQuery: "t"},
		period:   30 * 24 * time.Hour,
		windows:  []string{"1h", "30d"},
		expected: expected,
	}
}

// sameData gives every window the same errors and totals.
func sameData(errors, totals map[string]float64, warnings ...string) []windowData {
	return []windowData{
		{window: "1h", errors: errors, totals: totals, warnings: warnings},
		{window: "30d", errors: errors, totals: totals, warnings: warnings},
	}
}

func TestGlobalRatioSumsErrorsAndTotalsNotRatios(t *testing.T) {
	// Region A: 1000 requests, 1% errors; region B: 10 requests, 50% errors.
	// Global = (10 + 5) / (1000 + 10) = 1.485...%, not (1% + 50%) / 2 = 25.5%.
	res := assemble(testAssembly(0.99), time.Unix(0, 0), sameData(
		map[string]float64{"a": 10, "b": 5},
		map[string]float64{"a": 1000, "b": 10},
	))
	g, _ := res.Global.Window("1h")
	require.InDelta(t, 15.0/1010, *g.Ratio, 1e-12)
	require.InDelta(t, 1.485, *g.Ratio*100, 0.001)
	a, _ := res.Regions[0].Window("1h")
	b, _ := res.Regions[1].Window("1h")
	require.Equal(t, "a", res.Regions[0].Region)
	require.InDelta(t, 0.01, *a.Ratio, 1e-12)
	require.InDelta(t, 0.5, *b.Ratio, 1e-12)
	// Burn rates against a 1% budget.
	require.InDelta(t, 15.0/1010/0.01, *g.BurnRate, 1e-9)
	require.InDelta(t, 1.0, *a.BurnRate, 1e-9)
	require.InDelta(t, 50.0, *b.BurnRate, 1e-9)
	require.False(t, res.Partial)
}

func TestBudgetAndBurnAtThePeriodEdges(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		name            string
		objective       float64
		errors, total   float64
		wantRatio       float64
		wantBurn        float64
		wantRemaining   float64
		wantExhaustion  string
		wantTimeSeconds *float64
	}{
		{"no errors: whole budget, never exhausted", 0.99, 0, 1000, 0, 0, 1, ExhaustionNever, nil},
		{"ratio equals the budget: nothing left, burn 1", 0.99, 10, 1000, 0.01, 1, 0, ExhaustionExhausted, fptr(0)},
		{"ratio above the budget: negative remaining is reported", 0.99, 25, 1000, 0.025, 2.5, -1.5, ExhaustionExhausted, fptr(0)},
		// Half the budget spent at burn 0.5: the other half lasts 0.5 x 30d / 0.5 = 30d.
		{"half spent at burn 0.5 lasts one period", 0.999, 5, 10000, 0.0005, 0.5, 0.5, (30 * day).String(), fptr((30 * day).Seconds())},
		// A quarter spent at burn 0.25: 0.75 x 30d / 0.25 = 90d.
		{"quarter spent at burn 0.25", 0.9, 25, 1000, 0.025, 0.25, 0.75, (90 * day).String(), fptr((90 * day).Seconds())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := assemble(testAssembly(tc.objective), time.Unix(0, 0), sameData(
				map[string]float64{"a": tc.errors}, map[string]float64{"a": tc.total}))
			for _, rr := range []RegionResult{res.Global, res.Regions[0]} {
				w, _ := rr.Window("30d")
				require.InDelta(t, tc.wantRatio, *w.Ratio, 1e-12)
				require.InDelta(t, tc.wantBurn, *w.BurnRate, 1e-9)
				require.InDelta(t, tc.wantRemaining, *rr.Budget.Remaining, 1e-9)
				require.InDelta(t, tc.wantRemaining*100, *rr.Budget.RemainingPercent, 1e-7)
				require.Equal(t, tc.wantExhaustion, rr.Budget.Exhaustion)
				if tc.wantTimeSeconds == nil {
					require.Nil(t, rr.Budget.TimeToExhaustionSeconds)
				} else {
					require.InDelta(t, *tc.wantTimeSeconds, *rr.Budget.TimeToExhaustionSeconds, 1)
				}
			}
		})
	}
}

func TestNoTrafficLeavesRatioUndefined(t *testing.T) {
	res := assemble(testAssembly(0.99), time.Unix(0, 0), sameData(
		map[string]float64{}, map[string]float64{"a": 0, "b": 100}))
	a, _ := res.Regions[0].Window("1h")
	require.True(t, a.NoTraffic)
	require.Nil(t, a.Ratio, "no traffic is neither 0% nor 100% errors")
	require.Nil(t, a.BurnRate)
	require.Nil(t, res.Regions[0].Budget.Remaining)
	require.Equal(t, ExhaustionUnknown, res.Regions[0].Budget.Exhaustion)
	require.False(t, a.Partial, "a region that answered with zero traffic is not missing")

	g, _ := res.Global.Window("1h")
	require.InDelta(t, 0, *g.Ratio, 1e-12, "b had traffic and no errors series: zero errors")

	empty := assemble(testAssembly(0.99), time.Unix(0, 0), sameData(nil, map[string]float64{}))
	g, _ = empty.Global.Window("1h")
	require.True(t, g.NoTraffic)
	require.Nil(t, g.Ratio)
}

func TestPartialDataIsNeverReportedAsComplete(t *testing.T) {
	for _, tc := range []struct {
		name        string
		expected    []string
		errors      map[string]float64
		totals      map[string]float64
		warnings    []string
		wantMissing []string
		// wantPartial is per region, "global" included.
		wantPartial map[string]bool
	}{
		{
			name:        "warning names the region that did not answer",
			errors:      map[string]float64{"a": 1},
			totals:      map[string]float64{"a": 100},
			warnings:    []string{`region "b" (store 10.0.0.7:10901): unavailable: connection refused`},
			wantMissing: []string{"b"},
			wantPartial: map[string]bool{"global": true, "a": false, "b": true},
		},
		{
			name:        "configured region absent from the data",
			expected:    []string{"a", "b", "c"},
			errors:      map[string]float64{"a": 1},
			totals:      map[string]float64{"a": 100, "b": 100},
			wantMissing: []string{"c"},
			wantPartial: map[string]bool{"global": true, "a": false, "b": false, "c": true},
		},
		{
			name:        "warning naming no region taints every number",
			errors:      map[string]float64{"a": 1},
			totals:      map[string]float64{"a": 100, "b": 100},
			warnings:    []string{"store timeout"},
			wantPartial: map[string]bool{"global": true, "a": true, "b": true},
		},
		{
			name:        "complete data",
			expected:    []string{"a", "b"},
			errors:      map[string]float64{"a": 1},
			totals:      map[string]float64{"a": 100, "b": 100},
			wantPartial: map[string]bool{"global": false, "a": false, "b": false},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := assemble(testAssembly(0.99, tc.expected...), time.Unix(0, 0), sameData(tc.errors, tc.totals, tc.warnings...))
			require.Equal(t, tc.wantMissing, res.MissingRegions)
			require.Equal(t, tc.wantPartial["global"], res.Partial)
			for region, want := range tc.wantPartial {
				rr, ok := res.Region(region)
				require.True(t, ok, region)
				w, _ := rr.Window("1h")
				require.Equal(t, want, w.Partial, region)
				require.Equal(t, want, rr.Partial, region)
				require.Equal(t, want, rr.Budget.Partial, region)
			}
			require.Equal(t, tc.warnings, res.Warnings)
		})
	}
}

func TestMissingRegionInOneWindowOnly(t *testing.T) {
	// b answered over the period but not over the last hour: the hour is partial, and the
	// period is not.
	data := []windowData{
		{window: "1h", errors: map[string]float64{"a": 1}, totals: map[string]float64{"a": 100}},
		{window: "30d", errors: map[string]float64{"a": 1, "b": 0.5}, totals: map[string]float64{"a": 100, "b": 100}},
	}
	res := assemble(testAssembly(0.99), time.Unix(0, 0), data)
	require.Equal(t, []string{"b"}, res.MissingRegions)
	h, _ := res.Global.Window("1h")
	p, _ := res.Global.Window("30d")
	require.True(t, h.Partial)
	require.False(t, p.Partial)
	b, _ := res.Region("b")
	bh, _ := b.Window("1h")
	require.True(t, bh.Missing)
	require.Nil(t, bh.Ratio)
	require.InDelta(t, 0.5, *b.Budget.Remaining, 1e-9)
	require.Equal(t, ExhaustionUnknown, b.Budget.Exhaustion, "no 1h burn to project from")
	require.True(t, b.Budget.Partial, "time to exhaustion needs the missing 1h burn")
}

func TestQueryErrorLeavesNumbersUndefined(t *testing.T) {
	data := []windowData{
		{window: "1h", err: errTest},
		{window: "30d", errors: map[string]float64{"a": 0.5}, totals: map[string]float64{"a": 100}},
	}
	res := assemble(testAssembly(0.99), time.Unix(0, 0), data)
	require.Contains(t, res.Error, "window 1h: test failure")
	h, _ := res.Global.Window("1h")
	require.Nil(t, h.Ratio)
	require.Equal(t, ExhaustionUnknown, res.Global.Budget.Exhaustion)
}

func TestSLOHealthTakesLowestBudgetAndPageBurn(t *testing.T) {
	mk := func(name string, budgetA, budgetB float64, burnA map[string]float64) Result {
		r := Result{Service: "shop", Name: name}
		for _, rg := range []struct {
			region string
			budget float64
			burn   map[string]float64
		}{{"a", budgetA, burnA}, {"b", budgetB, nil}} {
			rr := RegionResult{Region: rg.region, Budget: Budget{Remaining: fptr(rg.budget)}}
			for w, v := range rg.burn {
				rr.Windows = append(rr.Windows, WindowValue{Window: w, BurnRate: fptr(v)})
			}
			r.Regions = append(r.Regions, rr)
		}
		return r
	}
	for _, tc := range []struct {
		name     string
		burn     map[string]float64
		wantPage bool
	}{
		{"fast burn on 5m and 1h pages", map[string]float64{"5m": 15, "1h": 14.5}, true},
		{"fast burn on 5m only does not", map[string]float64{"5m": 30, "1h": 2}, false},
		{"slow burn on 30m and 6h pages", map[string]float64{"30m": 7, "6h": 6.1}, true},
		{"exactly 6x is not above", map[string]float64{"30m": 6, "6h": 6}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sloHealth([]Result{mk("one", 0.8, 1, tc.burn), mk("two", -0.5, 0.9, nil)})
			require.Equal(t, RegionSLOHealth{Region: "a", MinBudgetRemaining: 0, WorstSLO: "shop/two", PageBurn: tc.wantPage,
				PageBurnSLOs: map[bool][]string{true: {"shop/one"}}[tc.wantPage], Known: true}, h["a"])
			require.Equal(t, RegionSLOHealth{Region: "b", MinBudgetRemaining: 0.9, WorstSLO: "shop/two", Known: true}, h["b"])
		})
	}
}

var errTest = testError("test failure")

type testError string

func (e testError) Error() string { return string(e) }
