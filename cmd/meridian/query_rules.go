package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-obs/meridian/ingest"
	"github.com/meridian-obs/meridian/query"
	"github.com/meridian-obs/meridian/rules"
)

// rulerFlags are the flags of the global ruler in `meridian query`, named after Thanos Ruler's
// and Prometheus's where they exist.
type rulerFlags struct {
	files         *[]string
	interval      *time.Duration
	strategy      *string
	dataDir       *string
	retention     *time.Duration
	extLabels     *[]string
	alertmanagers *[]string
	amTimeout     *time.Duration
	queryURL      *string
	maxConcurrent *int
	selfRecord    *bool
	selfJob       *string
	outage        *time.Duration
	grace         *time.Duration
	resend        *time.Duration
	queryTimeout  *time.Duration
}

func rulerFlagsOf(cmd *kingpin.CmdClause) rulerFlags {
	return rulerFlags{
		files:         cmd.Flag("rule-file", "Rule file (Prometheus format) or glob to evaluate with the global ruler; reloaded on SIGHUP and POST /-/reload. Repeatable; without any, no ruler runs.").PlaceHolder("GLOB").Strings(),
		interval:      cmd.Flag("rule.evaluation-interval", "Evaluation interval of rule groups that set none.").Default("30s").Duration(),
		strategy:      cmd.Flag("rule.partial-response-strategy", "What a rule whose query misses a region does: abort (the evaluation fails; alerts neither fire nor resolve on some regions' data) or warn (evaluated on the regions that answered).").Default(rules.StrategyAbort).Enum(rules.StrategyAbort, rules.StrategyWarn),
		dataDir:       cmd.Flag("rule.data-dir", "Directory of the ruler's TSDB (recording-rule results, ALERTS, self-recorded metrics), read by the querier as a store of its own.").Default("data/ruler").String(),
		retention:     cmd.Flag("rule.retention", "How long the ruler's TSDB keeps samples.").Default("15d").Duration(),
		extLabels:     cmd.Flag("rule.external-label", "External label name=value of the ruler: carried by every series of its TSDB and added to every alert (Thanos Ruler's --label). Repeatable.").Default(rules.DefaultRulerLabel).PlaceHolder("NAME=VALUE").Strings(),
		alertmanagers: cmd.Flag("alertmanager.url", "Alertmanager to send alerts to (API v2): http[s]://[user:password@]host:port[/prefix]. Repeatable; every one receives every alert.").PlaceHolder("URL").Strings(),
		amTimeout:     cmd.Flag("alertmanager.timeout", "Timeout of one send to an Alertmanager.").Default("10s").Duration(),
		queryURL:      cmd.Flag("alert.query-url", "External URL of this querier, the base of each alert's generator link; default http://<hostname>:<http port>.").PlaceHolder("URL").String(),
		maxConcurrent: cmd.Flag("rule.query.max-concurrent", "Rule queries evaluated at once by the ruler's own engine, apart from --query.max-concurrent: rule evaluation never waits for interactive queries, nor they for it.").Default("4").Int(),
		queryTimeout:  cmd.Flag("rule.query.timeout", "Maximum time one rule query may take.").Default("2m").Duration(),
		selfRecord:    cmd.Flag("rule.self-record", "Append the querier's own metrics (meridian_slo_*, meridian_failover_*, meridian_query_*, ...) into the ruler's TSDB every evaluation interval, as a Prometheus scraping the querier would, so rules and dashboards can query them; --no-rule.self-record turns it off.").Default("true").Bool(),
		selfJob:       cmd.Flag("rule.self-record.job", "job label of the self-recorded metrics.").Default("meridian-query").String(),
		outage:        cmd.Flag("rules.alert.for-outage-tolerance", "Max time to tolerate a ruler outage for restoring the 'for' state of alerts.").Default("1h").Duration(),
		grace:         cmd.Flag("rules.alert.for-grace-period", "Minimum duration between alert and restored 'for' state, for alerts with a 'for' above it.").Default("10m").Duration(),
		resend:        cmd.Flag("rules.alert.resend-delay", "Minimum time to wait before resending an alert to Alertmanager.").Default("1m").Duration(),
	}
}

// openStore opens the ruler's TSDB when a rule file is given; nil without a ruler.
func (f rulerFlags) openStore(logger *slog.Logger, reg prometheus.Registerer) (*rules.Store, error) {
	if len(*f.files) == 0 {
		return nil, nil
	}
	ext, err := ingest.ParseExternalLabels(*f.extLabels)
	if err != nil {
		return nil, fmt.Errorf("--rule.external-label: %w", err)
	}
	return rules.OpenStore(rules.StoreOptions{
		Dir:            *f.dataDir,
		ExternalLabels: ext,
		Retention:      *f.retention,
		Logger:         logger,
		Registerer:     reg,
	})
}

// newRuler builds the ruler on the querier; its engine takes the querier's sample limit and
// lookback (engine) with the ruler's own concurrency limit and timeout.
func (f rulerFlags) newRuler(logger *slog.Logger, reg *prometheus.Registry, srv *query.Server, store *rules.Store, engine query.EngineOptions) (*rules.Ruler, error) {
	queryURL := *f.queryURL
	if queryURL == "" {
		queryURL = defaultQueryURL(srv.HTTPAddr())
	}
	return rules.NewRuler(rules.RulerOptions{
		Logger:                  logger.With("component", "ruler"),
		Registerer:              reg,
		RuleFiles:               *f.files,
		EvaluationInterval:      *f.interval,
		PartialResponseStrategy: *f.strategy,
		Queryable:               srv.Queryable(),
		Store:                   store,
		Engine:                  query.EngineOptions{MaxConcurrent: *f.maxConcurrent, Timeout: *f.queryTimeout, MaxSamples: engine.MaxSamples, LookbackDelta: engine.LookbackDelta},
		Alertmanagers:           *f.alertmanagers,
		AlertmanagerTimeout:     *f.amTimeout,
		QueryURL:                queryURL,
		OutageTolerance:         *f.outage,
		ForGracePeriod:          *f.grace,
		ResendDelay:             *f.resend,
		SelfRecord:              *f.selfRecord,
		Gatherer:                reg,
		SelfJob:                 *f.selfJob,
		SelfInstance:            srv.HTTPAddr(),
	})
}

// defaultQueryURL is http://<hostname>:<port> of the HTTP listener, or the listener's address
// when it is bound to a specific host.
func defaultQueryURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}
