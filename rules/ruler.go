package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/notifier"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"

	"github.com/meridian-obs/meridian/query"
)

// Partial-data strategies of the ruler (--rule.partial-response-strategy), named as Thanos
// Ruler names them.
const (
	// StrategyAbort fails a rule's evaluation when its query misses a region: an alert neither
	// fires nor resolves on the data of some regions only. Thanos Ruler's default.
	StrategyAbort = "abort"
	// StrategyWarn evaluates the rule on the regions that answered.
	StrategyWarn = "warn"
)

// RulerOptions configures the global ruler. Zero values take Prometheus's defaults.
type RulerOptions struct {
	Logger *slog.Logger
	// Registerer receives the rule manager's prometheus_rule_*, the notifier's
	// prometheus_notifications_* and the ruler's own meridian_rule_* metrics.
	Registerer prometheus.Registerer

	// RuleFiles are file names or globs, expanded at every (re)load.
	RuleFiles []string
	// EvaluationInterval is the interval of groups that set none; default 30s.
	EvaluationInterval time.Duration
	// PartialResponseStrategy is StrategyAbort (default) or StrategyWarn.
	PartialResponseStrategy string

	// Queryable is what rules read: the querier's fan-out with the ruler's store beside it
	// (query.Server.Queryable), so that rules can build on recorded series.
	Queryable storage.Queryable
	// Store receives recording-rule results, ALERTS and the self-recorded metrics.
	Store *Store
	// Engine bounds the ruler's own PromQL engine; its MaxConcurrent (default 4) is separate
	// from the interactive queries' limit, so rule evaluation never waits for a Grafana
	// dashboard, nor a dashboard for rule evaluation.
	Engine query.EngineOptions

	// Alertmanagers are Alertmanager base URLs (http://host:9093, or with a path prefix);
	// alerts go to every one of them through API v2.
	Alertmanagers []string
	// AlertmanagerTimeout bounds one send; default 10s.
	AlertmanagerTimeout time.Duration
	// NotificationQueueCapacity is the notifier's queue; default 10000.
	NotificationQueueCapacity int
	// QueryURL is the base of each alert's generator URL (the querier's external URL).
	QueryURL string
	// OutageTolerance, ForGracePeriod and ResendDelay are Prometheus's rule manager
	// settings (--rules.alert.*); defaults 1h, 10m, 1m.
	OutageTolerance, ForGracePeriod, ResendDelay time.Duration

	// SelfRecord appends a gather of Gatherer into the store every evaluation interval,
	// labelled like a scrape of the querier by job SelfJob (default "meridian-query") and
	// instance SelfInstance.
	SelfRecord   bool
	Gatherer     prometheus.Gatherer
	SelfJob      string
	SelfInstance string
}

// Ruler is the global ruler of `meridian query`: Prometheus's rules manager evaluating rule
// files through the querier, recording into its own Store, sending alerts with Prometheus's
// notifier, and serving its groups to /api/v1/rules and /api/v1/alerts (it is a
// query.RuleSource).
type Ruler struct {
	logger   *slog.Logger
	opts     RulerOptions
	engine   *promql.Engine
	manager  *promrules.Manager
	notifier *notifier.Manager
	ams      []alertmanagerTarget
	self     *selfRecorder
	notify   promrules.NotifyFunc
	metrics  *rulerMetrics
	queryURL string

	reloadMu sync.Mutex
}

type rulerMetrics struct {
	missingRegions *prometheus.CounterVec
	reloadSuccess  prometheus.Gauge
	reloadTime     prometheus.Gauge
}

func newRulerMetrics(reg prometheus.Registerer) *rulerMetrics {
	m := &rulerMetrics{
		missingRegions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_rule_evaluations_missing_regions_total",
			Help: "Evaluations of a rule group in which at least one rule's query missed a region (failed under the abort strategy, evaluated on the other regions under warn), by rule group (file;group, as prometheus_rule_* name it).",
		}, []string{"rule_group", "strategy"}),
		reloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_rule_config_last_reload_successful",
			Help: "Whether the last load of the rule files succeeded (1) or failed and kept the previous rules (0).",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_rule_config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful load of the rule files.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.missingRegions, m.reloadSuccess, m.reloadTime)
	}
	return m
}

// NewRuler builds the ruler and loads its rule files: a file that does not load is an error
// naming the file and line. Run starts evaluation.
func NewRuler(opts RulerOptions) (*Ruler, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Queryable == nil || opts.Store == nil {
		return nil, errors.New("new ruler: a queryable and a store are needed")
	}
	if opts.EvaluationInterval <= 0 {
		opts.EvaluationInterval = 30 * time.Second
	}
	switch opts.PartialResponseStrategy {
	case "":
		opts.PartialResponseStrategy = StrategyAbort
	case StrategyAbort, StrategyWarn:
	default:
		return nil, fmt.Errorf("new ruler: partial response strategy %q: want %q or %q", opts.PartialResponseStrategy, StrategyAbort, StrategyWarn)
	}
	if opts.AlertmanagerTimeout <= 0 {
		opts.AlertmanagerTimeout = 10 * time.Second
	}
	if opts.NotificationQueueCapacity <= 0 {
		opts.NotificationQueueCapacity = 10000
	}
	if opts.OutageTolerance <= 0 {
		opts.OutageTolerance = time.Hour
	}
	if opts.ForGracePeriod <= 0 {
		opts.ForGracePeriod = 10 * time.Minute
	}
	if opts.ResendDelay <= 0 {
		opts.ResendDelay = time.Minute
	}
	if opts.Engine.MaxConcurrent == 0 {
		opts.Engine.MaxConcurrent = 4
	}
	if opts.SelfJob == "" {
		opts.SelfJob = "meridian-query"
	}
	if opts.SelfRecord && opts.Gatherer == nil {
		return nil, errors.New("new ruler: self-recording needs a gatherer")
	}
	r := &Ruler{
		logger:   opts.Logger,
		opts:     opts,
		metrics:  newRulerMetrics(opts.Registerer),
		queryURL: opts.QueryURL,
	}
	var err error
	if r.ams, err = parseAlertmanagers(opts.Alertmanagers); err != nil {
		return nil, err
	}
	r.notifier = notifier.NewManager(&notifier.Options{
		QueueCapacity:  opts.NotificationQueueCapacity,
		ExternalLabels: opts.Store.ExternalLabels(),
		Registerer:     opts.Registerer,
	}, model.UTF8Validation, opts.Logger.With("component", "notifier"))
	if err := r.notifier.ApplyConfig(notifierConfig(r.ams, opts.AlertmanagerTimeout, opts.Store.ExternalLabels())); err != nil {
		return nil, fmt.Errorf("new ruler: alertmanagers: %w", err)
	}
	// Its own engine: own concurrency limit, no metrics of its own (the rule manager's
	// prometheus_rule_* time every evaluation), same limits otherwise as the querier's.
	r.engine = query.NewEngine(opts.Logger.With("component", "rule-engine"), nil, nil, opts.Engine)
	if opts.SelfRecord {
		r.self = newSelfRecorder(opts.Gatherer, opts.Store, opts.SelfJob, opts.SelfInstance, opts.Logger)
	}
	r.notify = promrules.SendAlerts(r.notifier, opts.QueryURL)
	r.manager = promrules.NewManager(&promrules.ManagerOptions{
		ExternalURL:     externalURL(opts.QueryURL),
		QueryFunc:       r.queryFunc,
		NotifyFunc:      r.notify,
		Context:         context.Background(),
		Appendable:      opts.Store,
		Queryable:       opts.Store.LocalQueryable(),
		Logger:          opts.Logger.With("component", "rule-manager"),
		Registerer:      opts.Registerer,
		OutageTolerance: opts.OutageTolerance,
		ForGracePeriod:  opts.ForGracePeriod,
		ResendDelay:     opts.ResendDelay,
	})
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func externalURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil || s == "" {
		return &url.URL{}
	}
	return u
}

// Reload re-reads the rule files. A file that does not load (YAML, a field, a PromQL
// expression) is an error naming the file and line, and the rules that ran before keep
// running; meridian_rule_config_last_reload_successful says which happened.
func (r *Ruler) Reload() error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	err := r.reload()
	if err != nil {
		r.metrics.reloadSuccess.Set(0)
		return err
	}
	r.metrics.reloadSuccess.Set(1)
	r.metrics.reloadTime.SetToCurrentTime()
	return nil
}

func (r *Ruler) reload() error {
	files, err := expandRuleFiles(r.opts.RuleFiles)
	if err != nil {
		return err
	}
	ext := r.opts.Store.ExternalLabels()
	// The manager's own Update only logs why a file failed; loading first gives the caller
	// Prometheus's file:line:column messages.
	if _, errs := r.manager.LoadGroups(r.opts.EvaluationInterval, ext, r.queryURL, r.evalIteration, false, files...); len(errs) > 0 {
		return fmt.Errorf("load rule files: %w", errors.Join(errs...))
	}
	if err := r.manager.Update(r.opts.EvaluationInterval, files, ext, r.queryURL, r.evalIteration); err != nil {
		return fmt.Errorf("load rule files: %w", err)
	}
	groups := r.manager.RuleGroups()
	n := 0
	for _, g := range groups {
		n += len(g.Rules())
	}
	r.logger.Info("rule files loaded", "files", len(files), "groups", len(groups), "rules", n)
	return nil
}

// expandRuleFiles expands the globs into a sorted list of files without duplicates. A pattern
// that is not a glob must name a file; a glob may match none, as in Prometheus.
func expandRuleFiles(patterns []string) ([]string, error) {
	var files []string
	for _, p := range patterns {
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("rule file pattern %q: %w", p, err)
		}
		files = append(files, m...)
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// Run evaluates the rules, sends alerts and self-records until ctx ends; the store is not
// closed (its owner closes it after the querier stopped reading it).
func (r *Ruler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.runNotifier()
	}()
	go func() {
		defer wg.Done()
		r.manager.Run()
	}()
	if r.self != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.self.run(ctx, r.opts.EvaluationInterval)
		}()
	}
	<-ctx.Done()
	r.manager.Stop()
	r.notifier.Stop()
	wg.Wait()
	return nil
}

// RuleGroups are the loaded groups, for /api/v1/rules.
func (r *Ruler) RuleGroups() []*promrules.Group { return r.manager.RuleGroups() }

// AlertingRules are the loaded alerting rules, for /api/v1/alerts.
func (r *Ruler) AlertingRules() []*promrules.AlertingRule { return r.manager.AlertingRules() }

// Alertmanagers are the Alertmanagers alerts are sent to, for /api/v1/alertmanagers.
func (r *Ruler) Alertmanagers() []*url.URL { return r.notifier.Alertmanagers() }

// DroppedAlertmanagers are always none: every configured Alertmanager is used.
func (r *Ruler) DroppedAlertmanagers() []*url.URL { return r.notifier.DroppedAlertmanagers() }
