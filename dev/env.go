package dev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/meridian-obs/meridian/ingest"
	"github.com/meridian-obs/meridian/internal/faultproxy"
	"github.com/meridian-obs/meridian/internal/simulate"
	"github.com/meridian-obs/meridian/query"
	"github.com/meridian-obs/meridian/rules"
	"github.com/meridian-obs/meridian/slo"
)

// Defaults of Config.
const (
	DefaultHTTPAddress          = "127.0.0.1:9090"
	DefaultBackfill             = 6 * time.Hour
	DefaultStep                 = simulate.DefaultStep
	DefaultEvaluationInterval   = 10 * time.Second
	DefaultStoreResponseTimeout = 2 * time.Second
	// DefaultProbeInterval is how often the querier asks each store for Info: shorter than a
	// production querier's, so that chaos shows within seconds.
	DefaultProbeInterval = 2 * time.Second
)

// Label names of the environment: regions are told apart by the stores' external region label,
// replicas (none by default) by the replica label, as in Thanos.
const (
	RegionLabel  = "region"
	ReplicaLabel = "replica"
)

// Config configures an environment. Zero values take the defaults.
type Config struct {
	Logger *slog.Logger
	// HTTPAddress is the querier's HTTP API (PromQL, SLOs, readiness, chaos); default
	// 127.0.0.1:9090. Port 0 picks a free port.
	HTTPAddress string
	// DataDir holds one TSDB per region (DataDir/<region>) and, unless ConfigFile is set, the
	// example configuration (DataDir/config). Empty: a temporary directory removed by Run on exit.
	DataDir string
	// ConfigFile is an SLO and readiness configuration; empty: the embedded examples.
	ConfigFile string
	// Seed of the simulated data (default 0 is a valid seed: same seed, same data).
	Seed uint64
	// Backfill is the history pushed to every region at start; default 6h. A negative value
	// pushes none.
	Backfill time.Duration
	// Step is the interval between simulated samples; default 15s.
	Step time.Duration
	// EvaluationInterval is how often SLOs and readiness are evaluated; default 10s.
	EvaluationInterval time.Duration
	// StoreResponseTimeout is the time a region has to answer before it is reported missing;
	// default 2s.
	StoreResponseTimeout time.Duration
	// ProbeInterval is how often the querier probes each store; default 2s.
	ProbeInterval time.Duration
	// Faults are applied at start, after the regions are built and before anything is served.
	Faults []Fault
	// Alertmanagers receive the ruler's alerts (URLs, API v2); none by default: the alerts
	// are on /api/v1/alerts.
	Alertmanagers []string
	// AlertFor overrides the "for" of generated alerts by name (rules.Options.For), e.g. to
	// see a readiness alert fire without waiting its 10 minutes.
	AlertFor map[string]time.Duration
	// Flags are served on /api/v1/status/flags.
	Flags map[string]string
}

// Env is a running `meridian dev`: regions, simulator, querier, SLO engine and readiness.
type Env struct {
	cfg        Config
	logger     *slog.Logger
	tempDir    bool
	configPath string
	start      time.Time

	sim     *simulate.Simulator
	regions []*region
	querier *query.Server
	service *slo.Service
	chaos   *chaos
	// ruleStore, ruler and ruleDir are the global ruler (see ruler.go).
	ruleStore *rules.Store
	ruler     *rules.Ruler
	ruleDir   string
	ready     chan struct{}
	// pending holds the regions waitReady last found not ready, told by /-/ready.
	pending atomic.Pointer[[]string]

	cleanupOnce sync.Once
}

// New builds the environment: data directory, configuration, simulator, one ingest node and
// fault proxy per region, querier, SLO service and chaos controls. Every listener is bound when
// it returns; nothing is served before Run. The configuration and the faults are checked before
// anything is bound.
func New(cfg Config) (_ *Env, err error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	e := &Env{cfg: cfg, logger: cfg.Logger, ready: make(chan struct{})}
	defer func() {
		if err != nil {
			e.cleanup()
		}
	}()
	if err := e.prepareDataDir(); err != nil {
		return nil, err
	}
	sloCfg, slos, err := e.loadConfig()
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("meridian"),
	)
	e.sim, err = simulate.New(
		simulate.WithSeed(cfg.Seed),
		simulate.WithBackfill(cfg.Backfill),
		simulate.WithLogger(cfg.Logger.With("component", "simulate")),
		simulate.WithRegisterer(reg),
	)
	if err != nil {
		return nil, err
	}
	for _, f := range cfg.Faults {
		if !slices.Contains(e.sim.Regions(), f.Region) {
			return nil, fmt.Errorf("--%s %s: region %q: %w (known: %v)", f.Kind, f.Region, f.Region, ErrUnknownRegion, e.sim.Regions())
		}
	}
	// Bind-and-release the querier's address first: a busy port is the likeliest failure, and
	// it is better told before the regions are built.
	if ln, err := net.Listen("tcp", cfg.HTTPAddress); err != nil {
		return nil, fmt.Errorf("listen http %s: %w", cfg.HTTPAddress, err)
	} else if err := ln.Close(); err != nil {
		return nil, fmt.Errorf("release http %s: %w", cfg.HTTPAddress, err)
	}

	if err := e.buildRegions(); err != nil {
		return nil, err
	}
	if err := e.openRuleStore(); err != nil {
		return nil, err
	}
	if err := e.buildQuerier(reg, sloCfg, slos); err != nil {
		return nil, err
	}
	if err := e.buildRuler(reg, sloCfg, slos); err != nil {
		return nil, err
	}
	e.chaos = &chaos{logger: cfg.Logger.With("component", "chaos"), sim: e.sim, regions: e.regions}
	e.chaos.register(e.querier.Router())
	for _, f := range cfg.Faults {
		if _, err := e.chaos.apply(f); err != nil {
			return nil, fmt.Errorf("--%s %s: %w", f.Kind, f, err)
		}
	}
	return e, nil
}

func (c *Config) applyDefaults() error {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPAddress == "" {
		c.HTTPAddress = DefaultHTTPAddress
	}
	switch {
	case c.Backfill == 0:
		c.Backfill = DefaultBackfill
	case c.Backfill < 0:
		c.Backfill = 0
	}
	if c.Step == 0 {
		c.Step = DefaultStep
	}
	if c.EvaluationInterval == 0 {
		c.EvaluationInterval = DefaultEvaluationInterval
	}
	if c.StoreResponseTimeout == 0 {
		c.StoreResponseTimeout = DefaultStoreResponseTimeout
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	for name, d := range map[string]time.Duration{
		"step": c.Step, "evaluation interval": c.EvaluationInterval,
		"store response timeout": c.StoreResponseTimeout, "probe interval": c.ProbeInterval,
	} {
		if d < time.Millisecond {
			return fmt.Errorf("%s %v must be at least 1ms", name, d)
		}
	}
	return nil
}

func (e *Env) prepareDataDir() error {
	if e.cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "meridian-dev-")
		if err != nil {
			return fmt.Errorf("create temporary data directory: %w", err)
		}
		e.cfg.DataDir, e.tempDir = dir, true
		return nil
	}
	if err := os.MkdirAll(e.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data directory %s: %w", e.cfg.DataDir, err)
	}
	return nil
}

// loadConfig loads the user's configuration or writes out and loads the embedded examples, and
// checks it by building (and dropping) an SLO service from it.
func (e *Env) loadConfig() (*slo.Config, []slo.SLO, error) {
	e.configPath = e.cfg.ConfigFile
	if e.configPath == "" {
		var err error
		if e.configPath, err = writeExamples(filepath.Join(e.cfg.DataDir, "config")); err != nil {
			return nil, nil, err
		}
	}
	cfg, slos, err := slo.Load(e.configPath)
	if err != nil {
		return nil, nil, err
	}
	if _, err := slo.NewService(nil, nil, cfg, slos, nil, nil, slo.ServiceOptions{}); err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", e.configPath, err)
	}
	return cfg, slos, nil
}

// buildRegions creates every region's ingest node and the fault proxy in front of its StoreAPI.
// Samples up to the backfill's age are accepted out of order, so that a restart on the same
// data directory fills the gap since the last run.
func (e *Env) buildRegions() error {
	for _, name := range e.sim.Regions() {
		logger := e.logger.With("region", name)
		node, err := ingest.New(logger.With("component", "ingest"), prometheus.NewRegistry(), ingest.Config{
			ExternalLabels:       labels.FromStrings(RegionLabel, name),
			TSDBPath:             filepath.Join(e.cfg.DataDir, name),
			HTTPAddress:          "127.0.0.1:0",
			GRPCAddress:          "127.0.0.1:0",
			OutOfOrderTimeWindow: e.cfg.Backfill,
			MaxExemplars:         ingest.PrometheusMaxExemplars, // the tour shows exemplars
		})
		if err != nil {
			return fmt.Errorf("region %s: %w", name, err)
		}
		proxy, err := faultproxy.New("127.0.0.1:0", node.GRPCAddr())
		if err != nil {
			return fmt.Errorf("region %s: fault proxy to %s: %w", name, node.GRPCAddr(), err)
		}
		e.regions = append(e.regions, &region{name: name, node: node, proxy: proxy})
	}
	return nil
}

func (e *Env) buildQuerier(reg *prometheus.Registry, sloCfg *slo.Config, slos []slo.SLO) error {
	// The stores are given as a file SD file with each region's label, as an operator would:
	// a region that is down from the start, and so never announced its labels, is still named
	// in warnings.
	sdFile, err := e.writeStoresFile()
	if err != nil {
		return err
	}
	e.querier, err = query.NewServer(query.ServerConfig{
		Logger:     e.logger.With("component", "query"),
		Registerer: reg,
		Gatherer:   reg,
		StoreSet:   query.StoreSetOptions{SDFiles: []string{sdFile}, ProbeInterval: e.cfg.ProbeInterval, LabelCache: true},
		Fanout: query.FanoutOptions{
			ReplicaLabels:        []string{ReplicaLabel},
			StoreResponseTimeout: e.cfg.StoreResponseTimeout,
			PartialResponse:      true,
			RegionLabel:          RegionLabel,
		},
		HTTPAddress: e.cfg.HTTPAddress,
		LocalStores: []query.LocalStore{e.ruleStore},
		Ready:       e.readiness,
		Flags:       e.cfg.Flags,
	})
	if err != nil {
		return fmt.Errorf("querier: %w", err)
	}
	q := slo.NewEngineQuerier(e.querier.Engine(), e.querier.Queryable())
	e.service, err = slo.NewService(e.logger, reg, sloCfg, slos, q, e.storeHealth(), slo.ServiceOptions{Interval: e.cfg.EvaluationInterval})
	if err != nil {
		return fmt.Errorf("config %s: %w", e.configPath, err)
	}
	e.service.Register(e.querier.Router())
	return nil
}

// Run serves until ctx is cancelled or a component fails, then stops everything in order and
// removes a temporary data directory. Ready is closed once every region's backfill is stored
// and the querier has seen the regions it can reach; the SLO engine and readiness start then.
func (e *Env) Run(ctx context.Context) error {
	defer e.cleanup()
	e.start = time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var g run.Group
	g.Add(func() error {
		<-ctx.Done()
		return nil
	}, func(error) { cancel() })
	for _, r := range e.regions {
		nodeCtx, stop := context.WithCancel(context.Background())
		g.Add(func() error {
			if err := r.node.Run(nodeCtx); err != nil {
				return fmt.Errorf("region %s: %w", r.name, err)
			}
			return nil
		}, func(error) { stop() })

		pushCtx, stopPush := context.WithCancel(context.Background())
		g.Add(func() error {
			// Pushing before the TSDB is open would only collect 503s and retries.
			if err := waitFor(pushCtx, r.node.Ready); err != nil {
				return nil
			}
			return e.sim.Push(pushCtx, r.name, r.remoteWriteURL(), e.cfg.Step)
		}, func(error) { stopPush() })
	}
	e.addSelfScrape(&g)
	queryCtx, stopQuery := context.WithCancel(context.Background())
	g.Add(func() error { return e.querier.Run(queryCtx) }, func(error) { stopQuery() })

	sloCtx, stopSLO := context.WithCancel(context.Background())
	g.Add(func() error {
		if err := e.waitReady(sloCtx); err != nil {
			return nil
		}
		close(e.ready)
		return e.service.Run(sloCtx)
	}, func(error) { stopSLO() })

	rulerCtx, stopRuler := context.WithCancel(context.Background())
	g.Add(func() error { return e.runRuler(rulerCtx) }, func(error) { stopRuler() })

	err := g.Run()
	e.logger.Info("meridian dev stopped", "uptime", time.Since(e.start).Round(time.Second))
	return err
}

// Ready is closed once the environment answers with every region's backfill.
func (e *Env) Ready() <-chan struct{} { return e.ready }

// readiness is the querier's /-/ready condition: the same as Ready, so that a script, a test or
// Grafana that waits for /-/ready and then queries gets every region's history, as the banner
// promises.
func (e *Env) readiness() error {
	select {
	case <-e.ready:
		return nil
	default:
	}
	if p := e.pending.Load(); p != nil {
		return fmt.Errorf("meridian dev is storing the %v backfill; regions not yet stored or not yet seen by the querier: %s", e.cfg.Backfill, strings.Join(*p, ", "))
	}
	return fmt.Errorf("meridian dev is starting its regions")
}

// waitReady waits until every region holds its backfill up to the start and the querier sees
// each region that is not faulted as healthy with that data.
func (e *Env) waitReady(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	lastLog := time.Now()
	for {
		pending := e.pendingRegions()
		e.pending.Store(&pending)
		if len(pending) == 0 {
			e.logger.Info("meridian dev ready", "took", time.Since(e.start).Round(time.Millisecond), "backfill", e.cfg.Backfill)
			return nil
		}
		if time.Since(lastLog) > 5*time.Second {
			e.logger.Info("waiting for the backfill", "regions", pending)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// pendingRegions lists the regions whose store does not yet hold the backfill up to the start,
// or that the querier does not yet see as healthy with the time range the store holds (a store
// announced with a later minimum time would be left out of queries over the early history). The
// simulator pushes in time order, one request after the other, so once the store acknowledged a
// sample at the start it holds the whole backfill (the head's maximum time cannot tell: the
// node's own metrics, scraped into it, reach the present at once). A region under a fault is
// only checked in its store.
func (e *Env) pendingRegions() []string {
	// Samples fall on multiples of the step: the last one of the backfill is within a step of
	// the start.
	landed := e.start.Add(-e.cfg.Step).UnixMilli()
	seen := map[string]query.StoreStatus{}
	for _, st := range e.querier.StoreSet().Stores() {
		seen[st.Address] = st
	}
	var pending []string
	for _, r := range e.regions {
		db := r.node.DB()
		if db == nil || e.sim.Pushed(r.name).UnixMilli() < landed {
			pending = append(pending, r.name)
			continue
		}
		if r.proxy.Down() || r.proxy.Delay() > 0 {
			continue
		}
		held, err := db.StartTime()
		if st, ok := seen[r.proxy.Addr()]; err != nil || !ok || !st.Healthy || st.MinTime > held {
			pending = append(pending, r.name)
		}
	}
	return pending
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// cleanup closes the fault proxies and removes a temporary data directory. The ingest nodes
// and the querier close their own listeners when their Run returns.
func (e *Env) cleanup() { e.cleanupOnce.Do(e.release) }

func (e *Env) release() {
	var errs []error
	if e.ruleStore != nil {
		if err := e.ruleStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ruler store: %w", err))
		}
	}
	for _, r := range e.regions {
		if err := r.proxy.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close fault proxy of %s: %w", r.name, err))
		}
	}
	if e.tempDir {
		if err := os.RemoveAll(e.cfg.DataDir); err != nil {
			errs = append(errs, fmt.Errorf("remove data directory %s: %w", e.cfg.DataDir, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		e.logger.Warn("cleanup", "err", err)
	}
}

// writeStoresFile writes the querier's endpoints, one target group per region labelled with
// it, in Prometheus file_sd format under the data directory.
func (e *Env) writeStoresFile() (string, error) {
	var b strings.Builder
	for _, r := range e.regions {
		fmt.Fprintf(&b, "- targets: [%q]\n  labels: {%s: %q}\n", r.proxy.Addr(), RegionLabel, r.name)
	}
	path := filepath.Join(e.cfg.DataDir, "stores.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("write store targets: %w", err)
	}
	return path, nil
}
