package slo

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
)

// ServiceOptions are the optional settings of a Service.
type ServiceOptions struct {
	// Interval between evaluations of the SLOs and of readiness; default 30s.
	Interval time.Duration
	// Timeout bounds one evaluation of all SLOs; default the longer of Interval and 30s, so
	// that a short interval does not cut the long windows' queries off (a round that overruns
	// the interval delays the next one instead).
	Timeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Service is the SLO engine and the failover readiness evaluator of one configuration, run and
// served together over one Querier: what `meridian query --slo.config` and `meridian dev` add
// to a querier. Readiness reads the survivors' SLO health from the engine.
type Service struct {
	logger    *slog.Logger
	engine    *Engine
	readiness *ReadinessEvaluator
}

// LoadService reads the configuration file at path and the SLO specs it lists (see Load) and
// builds a Service from them.
func LoadService(logger *slog.Logger, reg prometheus.Registerer, path string, q Querier, stores StoreHealthSource, opts ServiceOptions) (*Service, error) {
	cfg, slos, err := Load(path)
	if err != nil {
		return nil, err
	}
	s, err := NewService(logger, reg, cfg, slos, q, stores, opts)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return s, nil
}

// NewService builds the SLO engine for slos and the readiness evaluator for cfg.Readiness
// (defaults when cfg has no readiness section), both reading through q. stores, when not nil,
// gives the querier's store health to readiness's reachability component. The metrics of both
// (meridian_slo_*, meridian_failover_*) are registered on reg when it is not nil.
func NewService(logger *slog.Logger, reg prometheus.Registerer, cfg *Config, slos []SLO, q Querier, stores StoreHealthSource, opts ServiceOptions) (*Service, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg == nil {
		var err error
		if cfg, err = ParseConfig(nil); err != nil {
			return nil, err
		}
	}
	eopts := cfg.EngineOptions()
	eopts.Interval, eopts.Timeout, eopts.Now, eopts.Registerer = opts.Interval, opts.Timeout, opts.Now, reg
	if eopts.Timeout <= 0 {
		eopts.Timeout = max(opts.Interval, DefaultInterval)
	}
	engine, err := NewEngine(logger.With("component", "slo"), q, slos, eopts)
	if err != nil {
		return nil, fmt.Errorf("slo engine: %w", err)
	}
	ropts := ReadinessOptions{
		RegionLabel: cfg.RegionLabel,
		Stores:      stores,
		Interval:    opts.Interval,
		Logger:      logger.With("component", "readiness"),
		Now:         opts.Now,
		Registerer:  reg,
	}
	// Without SLOs the survivors' SLO health is unknown, not perfect.
	if len(slos) > 0 {
		ropts.SLOHealth = engine
	}
	rcfg := ReadinessConfig{}
	if cfg.Readiness != nil {
		rcfg = *cfg.Readiness
	}
	readiness, err := NewReadinessEvaluator(rcfg, q, ropts)
	if err != nil {
		return nil, fmt.Errorf("readiness: %w", err)
	}
	logger.Info("slo service ready", "slos", len(slos), "topology", readiness.Topology())
	return &Service{logger: logger, engine: engine, readiness: readiness}, nil
}

// Engine is the service's SLO engine.
func (s *Service) Engine() *Engine { return s.engine }

// Readiness is the service's readiness evaluator.
func (s *Service) Readiness() *ReadinessEvaluator { return s.readiness }

// Register mounts GET /api/v1/slos, GET /api/v1/readiness and GET /readiness/:region on r.
func (s *Service) Register(r *route.Router) {
	s.engine.RegisterRouter(r)
	s.readiness.RegisterRouter(r)
}

// Run evaluates the SLOs and readiness every interval until ctx is cancelled; it returns nil
// then. Each is an actor of one run group. Readiness starts after the SLO engine's first round,
// so that its first report already has the survivors' SLO health.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g run.Group
	g.Add(func() error {
		<-ctx.Done()
		return nil
	}, func(error) { cancel() })

	firstRound := make(chan struct{})
	engineCtx, stopEngine := context.WithCancel(ctx)
	g.Add(func() error {
		t := time.NewTicker(s.engine.opts.Interval)
		defer t.Stop()
		for first := true; ; first = false {
			s.engine.Evaluate(engineCtx, s.engine.now())
			if first {
				close(firstRound)
			}
			select {
			case <-engineCtx.Done():
				return nil
			case <-t.C:
			}
		}
	}, func(error) { stopEngine() })

	readinessCtx, stopReadiness := context.WithCancel(ctx)
	g.Add(func() error {
		select {
		case <-firstRound:
		case <-readinessCtx.Done():
			return nil
		}
		return s.readiness.Run(readinessCtx)
	}, func(error) { stopReadiness() })
	return g.Run()
}
