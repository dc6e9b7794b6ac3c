package query

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/util/features"
)

// EngineOptions are the PromQL engine limits of the querier (flags --query.*).
type EngineOptions struct {
	Timeout       time.Duration // whole query, default 2m
	MaxSamples    int           // samples loaded in memory at once by one query, default 50,000,000
	LookbackDelta time.Duration // default 5m
	MaxConcurrent int           // queries evaluated at once, others wait; default 20, <0 unlimited
}

func (o EngineOptions) withDefaults() EngineOptions {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = 50_000_000
	}
	if o.LookbackDelta <= 0 {
		o.LookbackDelta = 5 * time.Minute
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = 20
	}
	return o
}

// NewEngine builds Prometheus's PromQL engine the way Prometheus configures it for its own API:
// @ modifier, negative offsets and per-step statistics (stats=all) enabled. Its features are
// recorded in feat (may be nil).
func NewEngine(logger *slog.Logger, reg prometheus.Registerer, feat features.Collector, opts EngineOptions) *promql.Engine {
	opts = opts.withDefaults()
	var tracker promql.QueryTracker
	if opts.MaxConcurrent > 0 {
		tracker = newConcurrencyGate(opts.MaxConcurrent)
	}
	return promql.NewEngine(promql.EngineOpts{
		Logger:               logger,
		Reg:                  reg,
		MaxSamples:           opts.MaxSamples,
		Timeout:              opts.Timeout,
		LookbackDelta:        opts.LookbackDelta,
		ActiveQueryTracker:   tracker,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		EnablePerStepStats:   true,
		FeatureRegistry:      feat,
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return time.Minute.Milliseconds()
		},
	})
}

// concurrencyGate is a promql.QueryTracker that only bounds how many queries run at once.
// Prometheus's ActiveQueryTracker does the same but also logs queries to an mmap-ed file in the
// data directory, which the querier does not have.
type concurrencyGate struct {
	slots chan struct{}
}

func newConcurrencyGate(n int) *concurrencyGate {
	return &concurrencyGate{slots: make(chan struct{}, n)}
}

func (g *concurrencyGate) GetMaxConcurrent() int { return cap(g.slots) }

// Insert waits for a free slot. A query that waits past its deadline fails as a timeout, as it
// would had it been running.
func (g *concurrencyGate) Insert(ctx context.Context, _ string) (int, error) {
	select {
	case g.slots <- struct{}{}:
		return 0, nil // a free slot wins over an expired deadline: the engine reports that itself
	default:
	}
	select {
	case g.slots <- struct{}{}:
		return 0, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, promql.ErrQueryTimeout("queued")
		}
		return 0, promql.ErrQueryCanceled("queued")
	}
}

func (g *concurrencyGate) Delete(int) { <-g.slots }

func (*concurrencyGate) Close() error { return nil }
