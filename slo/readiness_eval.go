package slo

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReadinessOptions are the optional collaborators of a ReadinessEvaluator.
type ReadinessOptions struct {
	// RegionLabel names the region label in the input series; default "region".
	RegionLabel string
	// SLOHealth gives the survivors' SLO health; nil leaves the SLO component unknown.
	SLOHealth SLOHealthSource
	// Stores gives the querier's store health; nil leaves reachability to `up` alone.
	Stores StoreHealthSource
	// Interval between evaluations in Run; default 30s.
	Interval time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Registerer receives the evaluator's metrics when not nil.
	Registerer prometheus.Registerer
}

// ReadinessEvaluator scores every region's failover readiness, periodically in Run (the last
// report is cached for the HTTP handlers and the metrics) and on demand for what-if drills.
type ReadinessEvaluator struct {
	spec     readinessSpec
	q        Querier
	slo      SLOHealthSource
	stores   StoreHealthSource
	interval time.Duration
	logger   *slog.Logger
	now      func() time.Time
	metrics  *readinessMetrics

	mu     sync.RWMutex
	latest *ReadinessReport
}

// NewReadinessEvaluator validates cfg, fills in its defaults and returns an evaluator reading
// its inputs through q.
func NewReadinessEvaluator(cfg ReadinessConfig, q Querier, opts ReadinessOptions) (*ReadinessEvaluator, error) {
	spec, err := newReadinessSpec(cfg, opts.RegionLabel)
	if err != nil {
		return nil, err
	}
	e := &ReadinessEvaluator{
		spec: spec, q: q, slo: opts.SLOHealth, stores: opts.Stores,
		interval: opts.Interval, logger: opts.Logger, now: opts.Now,
	}
	if e.interval <= 0 {
		e.interval = DefaultReadinessInterval
	}
	if e.logger == nil {
		e.logger = slog.Default()
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.metrics = newReadinessMetrics(e)
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(e.metrics); err != nil {
			return nil, fmt.Errorf("register readiness metrics: %w", err)
		}
	}
	return e, nil
}

// Topology is the configured topology, defaults applied.
func (e *ReadinessEvaluator) Topology() string { return e.spec.Topology }

// Evaluate scores every region at now. It fails only when no input could be queried.
func (e *ReadinessEvaluator) Evaluate(ctx context.Context, now time.Time) (*ReadinessReport, error) {
	snap, err := gatherReadiness(ctx, e.spec, e.q, e.slo, e.stores, now)
	if err != nil {
		return nil, err
	}
	rep := &ReadinessReport{EvaluatedAt: now, Topology: e.spec.Topology, Regions: []ReadinessResult{}, Warnings: snap.warnings}
	for _, r := range snap.regions {
		rep.Regions = append(rep.Regions, scoreRegion(e.spec, snap, r))
	}
	return rep, nil
}

// EvaluateRegion is the what-if: it gathers the inputs at now and scores the loss of region
// alone. It returns ErrUnknownRegion (wrapped) when region is not one of the scored regions.
func (e *ReadinessEvaluator) EvaluateRegion(ctx context.Context, region string, now time.Time) (ReadinessResult, []string, error) {
	snap, err := gatherReadiness(ctx, e.spec, e.q, e.slo, e.stores, now)
	if err != nil {
		return ReadinessResult{}, nil, err
	}
	if !slices.Contains(snap.regions, region) {
		return ReadinessResult{}, nil, fmt.Errorf("region %q (known: %v): %w", region, snap.regions, ErrUnknownRegion)
	}
	return scoreRegion(e.spec, snap, region), snap.warnings, nil
}

// Latest returns the last report Run produced, or nil before the first evaluation.
func (e *ReadinessEvaluator) Latest() *ReadinessReport {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.latest
}

// current is the cached report, or a fresh evaluation when there is none yet.
func (e *ReadinessEvaluator) current(ctx context.Context) (*ReadinessReport, error) {
	if rep := e.Latest(); rep != nil {
		return rep, nil
	}
	return e.refresh(ctx)
}

// refresh evaluates now and caches the report.
func (e *ReadinessEvaluator) refresh(ctx context.Context) (*ReadinessReport, error) {
	start := time.Now()
	rep, err := e.Evaluate(ctx, e.now())
	e.metrics.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		e.metrics.failures.Inc()
		return nil, err
	}
	e.mu.Lock()
	e.latest = rep
	e.mu.Unlock()
	return rep, nil
}

// Run evaluates every interval until ctx is cancelled; a failed evaluation is logged and keeps
// the previous report. It returns nil when ctx is cancelled.
func (e *ReadinessEvaluator) Run(ctx context.Context) error {
	t := time.NewTicker(e.interval)
	defer t.Stop()
	for {
		rep, err := e.refresh(ctx)
		if err != nil && ctx.Err() == nil {
			e.logger.Warn("readiness evaluation failed", "err", err)
		} else if err == nil {
			for _, r := range rep.Regions {
				e.logger.Debug("readiness evaluated", "region", r.Region, "state", r.State, "score", r.Score)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// readinessMetrics exposes the latest report; it is a prometheus.Collector so the gauges
// always match the cached report and regions that disappear stop being exported.
type readinessMetrics struct {
	e         *ReadinessEvaluator
	score     *prometheus.Desc
	ready     *prometheus.Desc
	component *prometheus.Desc
	state     *prometheus.Desc
	gate      *prometheus.Desc
	evaluated *prometheus.Desc
	failures  prometheus.Counter
	duration  prometheus.Histogram
}

func newReadinessMetrics(e *ReadinessEvaluator) *readinessMetrics {
	return &readinessMetrics{
		e: e,
		score: prometheus.NewDesc("meridian_failover_readiness_score",
			"Failover readiness score (0-100) for losing the region; absent when every component is unknown.", []string{"region"}, nil),
		ready: prometheus.NewDesc("meridian_failover_ready",
			"1 when losing the region is survivable (state READY), else 0.", []string{"region"}, nil),
		component: prometheus.NewDesc("meridian_failover_readiness_component_score",
			"Score (0-100) of one readiness component for losing the region; absent when unknown.", []string{"region", "component"}, nil),
		// state and gate follow kube-state-metrics' convention for enumerations: one series per
		// possible value, 1 for the current one, so that alerts select a state with a matcher
		// and "for" durations survive score changes.
		state: prometheus.NewDesc("meridian_failover_readiness_state",
			"1 for the region's current readiness state (READY, DEGRADED, NOT_READY, UNKNOWN), 0 for the others.", []string{"region", "state"}, nil),
		gate: prometheus.NewDesc("meridian_failover_readiness_gate",
			"1 when the hard gate fired for losing the region (forcing NOT_READY), 0 when it did not.", []string{"region", "gate"}, nil),
		evaluated: prometheus.NewDesc("meridian_failover_readiness_last_evaluation_timestamp_seconds",
			"Time of the readiness report the other readiness metrics come from.", nil, nil),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_failover_readiness_evaluation_failures_total",
			Help: "Readiness evaluations that failed because no input could be queried.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meridian_failover_readiness_evaluation_duration_seconds",
			Help:    "Time taken by one readiness evaluation.",
			Buckets: prometheus.DefBuckets,
		}),
	}
}

// Describe implements prometheus.Collector.
func (m *readinessMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.score
	ch <- m.ready
	ch <- m.component
	ch <- m.state
	ch <- m.gate
	ch <- m.evaluated
	m.failures.Describe(ch)
	m.duration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *readinessMetrics) Collect(ch chan<- prometheus.Metric) {
	m.failures.Collect(ch)
	m.duration.Collect(ch)
	rep := m.e.Latest()
	if rep == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(m.evaluated, prometheus.GaugeValue, float64(rep.EvaluatedAt.UnixMilli())/1000)
	for _, r := range rep.Regions {
		ready := 0.0
		if r.Ready {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(m.ready, prometheus.GaugeValue, ready, r.Region)
		if r.KnownWeight > 0 {
			ch <- prometheus.MustNewConstMetric(m.score, prometheus.GaugeValue, r.Score, r.Region)
		}
		for _, st := range readinessStates {
			ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, boolValue(r.State == st), r.Region, string(st))
		}
		for _, g := range readinessGates {
			fired := slices.ContainsFunc(r.Gates, func(x Gate) bool { return x.Name == g })
			ch <- prometheus.MustNewConstMetric(m.gate, prometheus.GaugeValue, boolValue(fired), r.Region, g)
		}
		for _, c := range r.Components {
			if c.Score != nil {
				ch <- prometheus.MustNewConstMetric(m.component, prometheus.GaugeValue, *c.Score, r.Region, c.Name)
			}
		}
	}
}

var (
	readinessStates = []ReadinessState{StateReady, StateDegraded, StateNotReady, StateUnknown}
	readinessGates  = []string{GateCapacity, GatePageBurn, GateReplicationLag, GateReplicationBroke, GateWorkloadMissing}
)

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
