// Package simulate generates a realistic, deterministic multi-region workload: the series real
// exporters (the applications themselves, cAdvisor, kube-state-metrics, a replication monitor)
// would expose for a small shop running in several regions, with diurnal traffic, errors,
// latency histograms (classic and native), CPU usage and capacity, versions, replication lag
// and failover drills.
//
// Every value is a pure function of the seed, the origin, the control history and the time of
// the sample, so the backfill pushed at start and the live samples that follow agree, a scrape
// and a remote write of the same instant agree, and two simulators built alike produce the
// same data. Controls (error ratio, capacity, traffic, lag) change the rates from the moment
// they are set; counters stay monotonic across them.
//
// The data leaves the simulator three ways: as remote-write 1.0 requests (WriteRequests), pushed
// to a remote-write endpoint with backfill and retries (Push), or scraped from an HTTP handler
// in the Prometheus exposition format that also takes control requests (Handler).
//
// Series carry the labels a real scrape would (job, instance, namespace, pod, container, ...)
// but no region label: regions are told apart by the external label of the store that holds
// them. WithRegionLabel adds one, for a single Prometheus holding every region.
package simulate

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrUnknownRegion is returned for a region the simulator does not simulate.
var ErrUnknownRegion = errors.New("unknown region")

// Simulator simulates the workload of several regions. It is safe for concurrent use.
type Simulator struct {
	cfg     config
	origin  time.Time
	regions map[string]*region
	order   []string
	metrics *metrics
}

type config struct {
	seed        uint64
	clock       func() time.Time
	origin      time.Time
	profiles    []RegionProfile
	regionLabel string
	maxSamples  int
	backfill    time.Duration
	logger      *slog.Logger
	reg         prometheus.Registerer
	client      *http.Client
	minBackoff  time.Duration
	maxBackoff  time.Duration
}

// Option configures a Simulator.
type Option func(*config)

// WithSeed sets the seed every generated value derives from (default 1).
func WithSeed(seed uint64) Option { return func(c *config) { c.seed = seed } }

// WithClock sets the clock used for "now": control changes, the live exporter and Push
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithOrigin sets the instant every counter starts from zero. The default is the start of the
// UTC day in which the backfill starts, so simulators built on the same day agree.
func WithOrigin(t time.Time) Option { return func(c *config) { c.origin = t } }

// WithProfiles replaces the default regions (DefaultProfiles).
func WithProfiles(p ...RegionProfile) Option {
	return func(c *config) { c.profiles = append([]RegionProfile{}, p...) }
}

// WithRegionLabel adds a label with the given name (default "region" when empty) holding the
// region's name to every series, for places where one storage holds every region.
func WithRegionLabel(name string) Option {
	return func(c *config) {
		c.regionLabel = name
		if name == "" {
			c.regionLabel = "region"
		}
	}
}

// WithMaxSamplesPerRequest bounds the samples (floats and histograms) in one remote-write
// request (default 2000, Prometheus's max_samples_per_send).
func WithMaxSamplesPerRequest(n int) Option { return func(c *config) { c.maxSamples = n } }

// WithBackfill sets how much history Push sends before going live (default 6h, so that every
// SLO window up to 6h has data at once).
func WithBackfill(d time.Duration) Option { return func(c *config) { c.backfill = d } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithRegisterer registers the simulator's own metrics (pushed samples, failed requests).
func WithRegisterer(reg prometheus.Registerer) Option { return func(c *config) { c.reg = reg } }

// WithHTTPClient sets the client Push uses (default: a client with a 30s timeout).
func WithHTTPClient(cl *http.Client) Option { return func(c *config) { c.client = cl } }

// WithRetryBackoff sets the first and the longest wait between retries of a failed push
// (default 250ms and 10s).
func WithRetryBackoff(first, longest time.Duration) Option {
	return func(c *config) { c.minBackoff, c.maxBackoff = first, longest }
}

// New builds a simulator. It fails on invalid profiles or options.
func New(opts ...Option) (*Simulator, error) {
	cfg := config{
		seed:       1,
		clock:      time.Now,
		maxSamples: 2000,
		backfill:   6 * time.Hour,
		minBackoff: 250 * time.Millisecond,
		maxBackoff: 10 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.profiles == nil {
		cfg.profiles = DefaultProfiles()
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.client == nil {
		cfg.client = &http.Client{Timeout: 30 * time.Second}
	}
	var errs []error
	if cfg.maxSamples <= 0 {
		errs = append(errs, fmt.Errorf("max samples per request %d must be > 0", cfg.maxSamples))
	}
	if cfg.backfill < 0 {
		errs = append(errs, fmt.Errorf("backfill %v must be >= 0", cfg.backfill))
	}
	if cfg.minBackoff <= 0 || cfg.maxBackoff < cfg.minBackoff {
		errs = append(errs, fmt.Errorf("retry backoff %v..%v must be positive and increasing", cfg.minBackoff, cfg.maxBackoff))
	}
	if len(cfg.profiles) == 0 {
		errs = append(errs, errors.New("no regions"))
	}
	origin := cfg.origin
	if origin.IsZero() {
		origin = cfg.clock().Add(-cfg.backfill).UTC().Truncate(24 * time.Hour)
	}
	s := &Simulator{cfg: cfg, origin: origin, regions: map[string]*region{}}
	for _, p := range cfg.profiles {
		if err := p.validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := s.regions[p.Name]; dup {
			errs = append(errs, fmt.Errorf("region %q: defined twice", p.Name))
			continue
		}
		s.regions[p.Name] = newRegion(p, cfg.seed, origin, cfg.regionLabel)
		s.order = append(s.order, p.Name)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	m, err := newMetrics(cfg.reg)
	if err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	s.metrics = m
	return s, nil
}

// Regions returns the simulated regions' names in profile order.
func (s *Simulator) Regions() []string { return slices.Clone(s.order) }

// Origin returns the instant every counter starts from zero.
func (s *Simulator) Origin() time.Time { return s.origin }

// Controls returns the controls in force now in a region.
func (s *Simulator) Controls(region string) (Controls, error) {
	r, err := s.region(region)
	if err != nil {
		return Controls{}, err
	}
	return controlsAt(r.timeline.snapshot(), s.secondsAt(s.cfg.clock())), nil
}

// SetErrorRatio sets the share of requests answered with a 5xx code in a region, from now on.
func (s *Simulator) SetErrorRatio(region string, ratio float64) error {
	if !validRatio(ratio) {
		return fmt.Errorf("region %q: error ratio %v must be in [0, 1]", region, ratio)
	}
	return s.set(region, func(c *Controls) { c.ErrorRatio = ratio })
}

// SetCapacityFactor scales the allocatable CPU and memory of a region's nodes, from now on
// (1 = the profile's capacity, 0.5 = half of it).
func (s *Simulator) SetCapacityFactor(region string, factor float64) error {
	if !validFactor(factor) {
		return fmt.Errorf("region %q: capacity factor %v must be a finite number >= 0", region, factor)
	}
	return s.set(region, func(c *Controls) { c.CapacityFactor = factor })
}

// SetTrafficFactor scales a region's request rate and the request-driven part of its CPU
// usage, from now on (1 = the profile's traffic).
func (s *Simulator) SetTrafficFactor(region string, factor float64) error {
	if !validFactor(factor) {
		return fmt.Errorf("region %q: traffic factor %v must be a finite number >= 0", region, factor)
	}
	return s.set(region, func(c *Controls) { c.TrafficFactor = factor })
}

// SetLagSeconds sets the typical replication lag of a region's databases, from now on.
func (s *Simulator) SetLagSeconds(region string, seconds float64) error {
	if !validFactor(seconds) {
		return fmt.Errorf("region %q: lag %v must be a finite number of seconds >= 0", region, seconds)
	}
	return s.set(region, func(c *Controls) { c.LagSeconds = seconds })
}

func (s *Simulator) set(name string, fn func(*Controls)) error {
	r, err := s.region(name)
	if err != nil {
		return err
	}
	c := r.timeline.update(s.secondsAt(s.cfg.clock()), fn)
	s.cfg.logger.Info("simulator controls changed", "region", name, "error_ratio", c.ErrorRatio,
		"capacity_factor", c.CapacityFactor, "traffic_factor", c.TrafficFactor, "lag_seconds", c.LagSeconds)
	return nil
}

func (s *Simulator) region(name string) (*region, error) {
	r, ok := s.regions[name]
	if !ok {
		return nil, fmt.Errorf("region %q: %w", name, ErrUnknownRegion)
	}
	return r, nil
}

// secondsAt converts an instant to seconds since the origin, at millisecond precision (the
// precision of sample timestamps).
func (s *Simulator) secondsAt(t time.Time) float64 {
	return s.secondsAtMillis(t.UnixMilli())
}

func (s *Simulator) secondsAtMillis(ms int64) float64 {
	return float64(ms-s.origin.UnixMilli()) / 1000
}
