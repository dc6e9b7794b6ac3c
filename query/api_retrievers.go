package query

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// This file holds what Prometheus's web/api/v1 needs besides a queryable and an engine. The
// querier scrapes nothing and has no TSDB to administer, so those endpoints answer with
// well-formed empty results. Rules, alerts and Alertmanagers come from the ruler when one runs
// in the process (API.ServeRules); without one they are empty too.

// fallbackPrometheusVersion is the Prometheus release whose PromQL engine and API this module
// embeds (module v0.309.1 is Prometheus 3.9.1); used only when the binary carries no module
// information.
const fallbackPrometheusVersion = "3.9.1"

// buildInfo is served on /api/v1/status/buildinfo.
//
// Grafana's Prometheus data source reads data.version as a Prometheus version (semver) to decide
// which API features it may use (match[] on label values since 2.24, and so on); Grafana's
// alerting classifies the source as plain Prometheus when the answer has no "features" field.
// So "version" carries the version of the Prometheus engine and API Meridian embeds, which is
// what clients can rely on, and Meridian's own version goes in "meridianVersion"; revision,
// branch, build user and date describe the Meridian build. The extra fields are ignored by
// clients that only know Prometheus's shape.
type buildInfo struct {
	v1.PrometheusVersion
	Application     string `json:"application"`
	MeridianVersion string `json:"meridianVersion"`
}

func newBuildInfo() buildInfo {
	return buildInfo{
		PrometheusVersion: v1.PrometheusVersion{
			Version:   prometheusCompatibleVersion(),
			Revision:  version.Revision,
			Branch:    version.Branch,
			BuildUser: version.BuildUser,
			BuildDate: version.BuildDate,
			GoVersion: version.GoVersion,
		},
		Application:     "Meridian",
		MeridianVersion: version.Version,
	}
}

// prometheusCompatibleVersion derives the Prometheus release from the version of the
// github.com/prometheus/prometheus module the binary was built with.
func prometheusCompatibleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path != "github.com/prometheus/prometheus" {
				continue
			}
			if v, ok := prometheusReleaseFromModule(d.Version); ok {
				return v
			}
		}
	}
	return fallbackPrometheusVersion
}

// prometheusReleaseFromModule maps Prometheus's Go module versions to its releases:
// v0.MMM.P is release M.MM.P (v0.309.1 is 3.9.1, v0.54.1 is 2.54.1); pre-release suffixes are kept.
func prometheusReleaseFromModule(mod string) (string, bool) {
	rest, ok := strings.CutPrefix(mod, "v0.")
	if !ok {
		return "", false
	}
	minorStr, patch, ok := strings.Cut(rest, ".")
	if !ok || patch == "" {
		return "", false
	}
	n, err := strconv.Atoi(minorStr)
	if err != nil || n <= 0 {
		return "", false
	}
	major, minor := 2, n
	if n >= 300 {
		major, minor = n/100, n%100
	}
	return fmt.Sprintf("%d.%d.%s", major, minor, patch), true
}

// sampleAndChunkQueryable gives the API the chunk querier it wants for streamed remote read,
// re-encoding samples into chunks when q has no chunk querier of its own.
func sampleAndChunkQueryable(q storage.Queryable) storage.SampleAndChunkQueryable {
	if sc, ok := q.(storage.SampleAndChunkQueryable); ok {
		return sc
	}
	return chunkAdapter{Queryable: q}
}

type chunkAdapter struct{ storage.Queryable }

func (c chunkAdapter) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	q, err := c.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return chunkQuerier{Querier: q}, nil
}

type chunkQuerier struct{ storage.Querier }

func (c chunkQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	return storage.NewSeriesSetToChunkSet(c.Querier.Select(ctx, sortSeries, hints, ms...))
}

// emptyExemplarQueryable answers /api/v1/query_exemplars with an empty list: StoreAPI stores
// carry no exemplars.
type emptyExemplarQueryable struct{}

func (emptyExemplarQueryable) ExemplarQuerier(context.Context) (storage.ExemplarQuerier, error) {
	return emptyExemplarQueryable{}, nil
}

func (emptyExemplarQueryable) Select(int64, int64, ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	return []exemplar.QueryResult{}, nil
}

// noScrapes is the querier's scrape manager: it has none.
type noScrapes struct{}

func (noScrapes) ScrapePools() []string                       { return []string{} }
func (noScrapes) TargetsActive() map[string][]*scrape.Target  { return map[string][]*scrape.Target{} }
func (noScrapes) TargetsDropped() map[string][]*scrape.Target { return map[string][]*scrape.Target{} }
func (noScrapes) TargetsDroppedCounts() map[string]int        { return map[string]int{} }
func (noScrapes) ScrapePoolConfig(string) (*config.ScrapeConfig, error) {
	return nil, errors.New("meridian query scrapes no targets")
}

// noRules answers the rule and Alertmanager endpoints of a querier that runs no ruler.
type noRules struct{}

func (noRules) Alertmanagers() []*url.URL        { return nil }
func (noRules) DroppedAlertmanagers() []*url.URL { return nil }

func (noRules) RuleGroups() []*rules.Group           { return nil }
func (noRules) AlertingRules() []*rules.AlertingRule { return nil }

// errNoLocalTSDB answers the endpoints that inspect a local TSDB.
var errNoLocalTSDB = errors.New("meridian query has no local TSDB: ask the ingest stores")

type noLocalTSDB struct{}

func (noLocalTSDB) CleanTombstones() error { return errNoLocalTSDB }
func (noLocalTSDB) Delete(context.Context, int64, int64, ...*labels.Matcher) error {
	return errNoLocalTSDB
}
func (noLocalTSDB) Snapshot(string, bool) error            { return errNoLocalTSDB }
func (noLocalTSDB) Stats(string, int) (*tsdb.Stats, error) { return nil, errNoLocalTSDB }
func (noLocalTSDB) WALReplayStatus() (tsdb.WALReplayStatus, error) {
	return tsdb.WALReplayStatus{}, nil
}
func (noLocalTSDB) BlockMetas() ([]tsdb.BlockMeta, error) { return []tsdb.BlockMeta{}, nil }

func runtimeInfo(start time.Time) func() (v1.RuntimeInfo, error) {
	return func() (v1.RuntimeInfo, error) {
		cwd, _ := os.Getwd()
		host, _ := os.Hostname()
		return v1.RuntimeInfo{
			StartTime:           start,
			CWD:                 cwd,
			Hostname:            host,
			ServerTime:          time.Now().UTC(),
			ReloadConfigSuccess: true,
			GoroutineCount:      runtime.NumGoroutine(),
			GOMAXPROCS:          runtime.GOMAXPROCS(0),
			GOMEMLIMIT:          debug.SetMemoryLimit(-1),
			GOGC:                os.Getenv("GOGC"),
			GODEBUG:             os.Getenv("GODEBUG"),
		}, nil
	}
}

func gathererOrEmpty(g prometheus.Gatherer) prometheus.Gatherer {
	if g == nil {
		return prometheus.Gatherers{}
	}
	return g
}
