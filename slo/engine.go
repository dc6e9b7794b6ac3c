package slo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// DefaultWindows are the windows of the multi-window multi-burn-rate scheme for a 30-day
// period: page on 5m&1h at 14.4x and 30m&6h at 6x, ticket on 2h&1d at 3x and 6h&3d at 1x.
// The SLO period is evaluated after them.
var DefaultWindows = []time.Duration{
	5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour,
}

// Defaults of Options.
const (
	DefaultPeriod   = 30 * 24 * time.Hour
	DefaultInterval = 30 * time.Second
)

// Options configure an Engine. Zero values take the defaults.
type Options struct {
	// Period is the SLO period for SLOs whose spec does not set one (default 30d).
	Period time.Duration
	// RegionLabel names a region in the data (default "region").
	RegionLabel string
	// Regions are the regions every SLO is expected to have data from: one absent from a
	// window is reported missing and makes the result partial. Regions seen in any window or
	// named by a partial-response warning are expected as well.
	Regions []string
	// Interval between evaluations in Run (default 30s).
	Interval time.Duration
	// Timeout bounds one evaluation of all SLOs (default: Interval).
	Timeout time.Duration
	// Registerer, when set, receives the SLO metrics (see NewCollector) and the engine's own.
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Engine evaluates SLOs across regions through a Querier, periodically in Run, and keeps the
// last results for the HTTP API, the metrics and failover readiness.
type Engine struct {
	logger  *slog.Logger
	q       Querier
	opts    Options
	plans   []sloPlan
	metrics *engineMetrics

	mu       sync.RWMutex
	last     []Result
	lastTime time.Time
}

// sloPlan is an SLO with its queries rendered and regionized for every window.
type sloPlan struct {
	assembly
	queries []windowQueries
}

type windowQueries struct {
	window        string
	errors, total string // events: sum by (region) (...)
	ratio         string // raw: regionized, empty when the ratio cannot be broken down
	globalRatio   string // raw: as given
}

// NewEngine prepares the queries of every SLO (rendered per window and regionized, see
// Regionize). It fails when an events SLI cannot be broken down by region.
func NewEngine(logger *slog.Logger, q Querier, slos []SLO, opts Options) (*Engine, error) {
	if opts.Period <= 0 {
		opts.Period = DefaultPeriod
	}
	if opts.RegionLabel == "" {
		opts.RegionLabel = DefaultRegionLabel
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = opts.Interval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Engine{logger: logger, q: q, opts: opts}
	var errs []error
	for _, s := range slos {
		p, err := newPlan(s, opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("slo %s (%s:%d): %w", s.ID(), s.Source.File, s.Source.Line, err))
			continue
		}
		e.plans = append(e.plans, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Registerer != nil {
		e.metrics = newEngineMetrics(opts.Registerer)
		if err := opts.Registerer.Register(NewCollector(e)); err != nil {
			return nil, fmt.Errorf("register slo collector: %w", err)
		}
	}
	return e, nil
}

func newPlan(s SLO, opts Options) (sloPlan, error) {
	period := s.Period
	if period <= 0 {
		period = opts.Period
	}
	p := sloPlan{assembly: assembly{slo: s, period: period, expected: opts.Regions}}
	windows := Windows(period)
	rawRegional := true
	for _, w := range windows {
		name := windowName(w)
		p.windows = append(p.windows, name)
		wq := windowQueries{window: name}
		if s.Raw() {
			q, err := renderQuery(s.RawErrorRatioQuery, name)
			if err != nil {
				return p, fmt.Errorf("error_ratio_query: %w", err)
			}
			wq.globalRatio = q
			if rawRegional {
				expr, err := parser.ParseExpr(q)
				if err != nil {
					return p, fmt.Errorf("error_ratio_query over %s: %w", name, err)
				}
				if expr, err = Regionize(expr, opts.RegionLabel); err == nil {
					wq.ratio = expr.String()
				} else {
					rawRegional = false
					p.notes = append(p.notes, fmt.Sprintf("raw error ratio evaluated globally only: %v", err))
				}
			}
		} else {
			var err error
			if wq.errors, err = regionQuery(s.ErrorQuery, name, opts.RegionLabel); err != nil {
				return p, fmt.Errorf("error_query: %w", err)
			}
			if wq.total, err = regionQuery(s.TotalQuery, name, opts.RegionLabel); err != nil {
				return p, fmt.Errorf("total_query: %w", err)
			}
		}
		p.queries = append(p.queries, wq)
	}
	if s.Raw() {
		p.notes = append(p.notes, "the global value of a raw error ratio is the ratio query evaluated as given, not recomputed from per-region errors and totals")
		if !rawRegional {
			for i := range p.queries {
				p.queries[i].ratio = ""
			}
		}
	}
	return p, nil
}

// Windows are the windows an SLO over period is evaluated on: the DefaultWindows shorter than
// the period, then the period itself.
func Windows(period time.Duration) []time.Duration {
	windows := slices.DeleteFunc(slices.Clone(DefaultWindows), func(d time.Duration) bool { return d >= period })
	return append(windows, period)
}

func regionQuery(tmpl, window, regionLabel string) (string, error) {
	q, err := renderQuery(tmpl, window)
	if err != nil {
		return "", err
	}
	return RegionizeQuery(q, regionLabel)
}

// Evaluate evaluates every SLO at now, caches the results and returns them. Query failures
// are reported in each Result's Error; partial data in its Partial fields.
func (e *Engine) Evaluate(ctx context.Context, now time.Time) []Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()
	results := make([]Result, len(e.plans))
	var wg sync.WaitGroup
	for i, p := range e.plans {
		wg.Go(func() { results[i] = e.evaluate(ctx, p, now) })
	}
	wg.Wait()
	failed := 0
	for _, r := range results {
		if r.Error != "" {
			failed++
			e.logger.Warn("slo evaluation failed", "service", r.Service, "slo", r.Name, "err", r.Error)
		}
	}
	if e.metrics != nil {
		e.metrics.observe(time.Since(start), now, failed)
	}
	e.mu.Lock()
	e.last, e.lastTime = results, now
	e.mu.Unlock()
	return results
}

func (e *Engine) evaluate(ctx context.Context, p sloPlan, now time.Time) Result {
	data := make([]windowData, len(p.queries))
	for i, wq := range p.queries {
		data[i] = e.evaluateWindow(ctx, p.slo, wq, now)
	}
	return assemble(p.assembly, now, data)
}

func (e *Engine) evaluateWindow(ctx context.Context, s SLO, wq windowQueries, now time.Time) windowData {
	d := windowData{window: wq.window}
	run := func(expr string) (promql.Vector, bool) {
		v, annos, err := e.q.Query(ctx, expr, now)
		if err != nil {
			d.err = errors.Join(d.err, fmt.Errorf("query %s: %w", expr, err))
			return nil, false
		}
		warnings, _ := annos.AsStrings(expr, 0, 0)
		d.warnings = appendUnique(d.warnings, warnings...)
		return v, true
	}
	if s.Raw() {
		if v, ok := run(wq.globalRatio); ok {
			switch len(v) {
			case 0:
			case 1:
				d.globalRatio = finite(v[0].F)
			default:
				d.err = errors.Join(d.err, fmt.Errorf("raw error ratio query returned %d series, expected one", len(v)))
			}
		}
		if wq.ratio != "" {
			if v, ok := run(wq.ratio); ok {
				d.ratios = map[string]float64{}
				for _, smp := range v {
					r := smp.Metric.Get(e.opts.RegionLabel)
					if _, dup := d.ratios[r]; dup && r != "" {
						d.err = errors.Join(d.err, fmt.Errorf("raw error ratio query returned several series for region %q", r))
					}
					d.ratios[r] = smp.F
				}
				delete(d.ratios, "")
			}
		}
		return d
	}
	if v, ok := run(wq.total); ok {
		d.totals = byRegion(v, e.opts.RegionLabel)
	}
	if v, ok := run(wq.errors); ok {
		d.errors = byRegion(v, e.opts.RegionLabel)
	}
	return d
}

func byRegion(v promql.Vector, label string) map[string]float64 {
	m := make(map[string]float64, len(v))
	for _, s := range v {
		m[s.Metric.Get(label)] += s.F
	}
	return m
}

// Run evaluates the SLOs now and then every interval until ctx is cancelled.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.opts.Interval)
	defer t.Stop()
	for {
		e.Evaluate(ctx, e.now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (e *Engine) now() time.Time { return e.opts.Now() }

// Results returns the last evaluation and its time; nil before the first one.
func (e *Engine) Results() ([]Result, time.Time) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.last, e.lastTime
}

// results returns the cached results when they are at most one interval older than now (in
// either direction), and evaluates afresh otherwise.
func (e *Engine) results(ctx context.Context, now time.Time) []Result {
	last, at := e.Results()
	if last != nil && now.Sub(at).Abs() <= e.opts.Interval {
		return last
	}
	return e.Evaluate(ctx, now)
}

// SLOHealth summarises, per region, the SLOs for failover readiness: the lowest remaining
// error-budget fraction (clamped to [0, 1]) and whether a page-level burn (5m&1h above 14.4x
// or 30m&6h above 6x) is true. It uses the cached evaluation when it is recent.
func (e *Engine) SLOHealth(ctx context.Context, now time.Time) (map[string]RegionSLOHealth, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return sloHealth(e.results(ctx, now)), nil
}

func sloHealth(results []Result) map[string]RegionSLOHealth {
	out := map[string]RegionSLOHealth{}
	for _, res := range results {
		for _, rr := range res.Regions {
			h, seen := out[rr.Region]
			if !seen {
				h = RegionSLOHealth{Region: rr.Region, MinBudgetRemaining: 1}
			}
			h.Partial = h.Partial || rr.Partial || res.Error != ""
			if b := rr.Budget.Remaining; b != nil && res.Error == "" {
				clamped := min(max(*b, 0), 1)
				if !h.Known || clamped < h.MinBudgetRemaining {
					h.MinBudgetRemaining, h.WorstSLO = clamped, res.Service+"/"+res.Name
				}
				h.Known = true
			}
			if pageBurn(rr) {
				h.PageBurn = true
				h.PageBurnSLOs = append(h.PageBurnSLOs, res.Service+"/"+res.Name)
			}
			out[rr.Region] = h
		}
	}
	for r, h := range out {
		if !h.Known {
			h.MinBudgetRemaining = 0
			out[r] = h
		}
	}
	return out
}

// pageBurn is the page condition of the multi-window scheme; an undefined window is false.
func pageBurn(rr RegionResult) bool {
	above := func(w string, threshold float64) bool {
		v, ok := rr.Window(w)
		return ok && v.BurnRate != nil && *v.BurnRate > threshold
	}
	return (above("5m", 14.4) && above("1h", 14.4)) || (above("30m", 6) && above("6h", 6))
}
