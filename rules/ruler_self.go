package rules

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
)

// ownMetricPrefixes mark the querier's own metric families (meridian_query_*, meridian_slo_*,
// meridian_failover_*, meridian_rule_*) and its ruler's (the rule manager's and the notifier's):
// rules read them from the ruler's store alone (see ruleQueryable), so that the alerts about
// the querier and the ruler themselves (a store down, rule evaluations failing) evaluate while
// a region is missing. Families every process exports (go_*, process_*) are recorded too, but
// read from every store like any other metric.
var ownMetricPrefixes = []string{"meridian_", "prometheus_rule_", "prometheus_notifications_"}

// selfRecorder appends a gather of the querier's registry into the ruler's store, as a
// Prometheus scraping the querier would: the same series names (histograms and summaries in
// their classic _bucket/_sum/_count form), job and instance labels (a metric's own job or
// instance label becomes exported_job/exported_instance, as with honor_labels: false), up,
// scrape_duration_seconds and scrape_samples_scraped, and staleness markers for series that
// disappeared since the previous gather.
type selfRecorder struct {
	gatherer       prometheus.Gatherer
	app            storage.Appendable
	job, instance  string
	logger         *slog.Logger
	previous       map[uint64]labels.Labels
	mu             sync.RWMutex
	ownNames       map[string]bool
	lastErrorShown bool
}

func newSelfRecorder(g prometheus.Gatherer, app storage.Appendable, job, instance string, logger *slog.Logger) *selfRecorder {
	return &selfRecorder{gatherer: g, app: app, job: job, instance: instance, logger: logger, previous: map[uint64]labels.Labels{}, ownNames: map[string]bool{}}
}

// owns tells whether name is a series name of one of the querier's own metric families, as of
// the last gather.
func (s *selfRecorder) owns(name string) bool {
	if !slices.ContainsFunc(ownMetricPrefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ownNames[name]
}

func (s *selfRecorder) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.record(ctx, time.Now()); err != nil {
			if !s.lastErrorShown {
				s.logger.Warn("self-recording failed", "err", err)
			}
			s.lastErrorShown = true
		} else {
			s.lastErrorShown = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// record gathers once and appends everything at ts.
func (s *selfRecorder) record(ctx context.Context, ts time.Time) error {
	start := time.Now()
	mfs, gatherErr := s.gatherer.Gather()
	t := ts.UnixMilli()
	app := s.app.Appender(ctx)
	current := make(map[uint64]labels.Labels, len(s.previous))
	own := map[string]bool{}
	n := 0
	var appendErr error
	add := func(l labels.Labels, v float64) {
		if appendErr != nil {
			return
		}
		if _, err := app.Append(0, l, t, v); err != nil {
			appendErr = fmt.Errorf("append %s: %w", l, err)
			return
		}
		current[l.Hash()] = l
		n++
	}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			for _, sm := range s.samples(name, mf.GetType(), m) {
				own[sm.name] = true
				add(sm.labels, sm.value)
			}
		}
	}
	up := 1.0
	if len(mfs) == 0 && gatherErr != nil {
		up = 0
	}
	add(s.labels("up", nil), up)
	add(s.labels("scrape_duration_seconds", nil), time.Since(start).Seconds())
	add(s.labels("scrape_samples_scraped", nil), float64(n))
	for h, l := range s.previous {
		if _, ok := current[h]; !ok && appendErr == nil {
			if _, err := app.Append(0, l, t, math.Float64frombits(value.StaleNaN)); err != nil {
				appendErr = fmt.Errorf("append stale marker %s: %w", l, err)
			}
		}
	}
	if appendErr != nil {
		_ = app.Rollback()
		return appendErr
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("commit self-recorded samples: %w", err)
	}
	s.previous = current
	s.mu.Lock()
	s.ownNames = own
	s.mu.Unlock()
	if gatherErr != nil {
		return fmt.Errorf("gather (recorded what was gathered): %w", gatherErr)
	}
	return nil
}

type selfSample struct {
	name   string
	labels labels.Labels
	value  float64
}

func (s *selfRecorder) samples(name string, typ dto.MetricType, m *dto.Metric) []selfSample {
	one := func(n string, v float64, extra ...string) selfSample {
		return selfSample{name: n, labels: s.labels(n, m.GetLabel(), extra...), value: v}
	}
	switch typ {
	case dto.MetricType_COUNTER:
		return []selfSample{one(name, m.GetCounter().GetValue())}
	case dto.MetricType_GAUGE:
		return []selfSample{one(name, m.GetGauge().GetValue())}
	case dto.MetricType_UNTYPED:
		return []selfSample{one(name, m.GetUntyped().GetValue())}
	case dto.MetricType_SUMMARY:
		sum := m.GetSummary()
		out := make([]selfSample, 0, len(sum.GetQuantile())+2)
		for _, q := range sum.GetQuantile() {
			out = append(out, one(name, q.GetValue(), model.QuantileLabel, formatFloat(q.GetQuantile())))
		}
		return append(out, one(name+"_sum", sum.GetSampleSum()), one(name+"_count", float64(sum.GetSampleCount())))
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		h := m.GetHistogram()
		out := make([]selfSample, 0, len(h.GetBucket())+3)
		infSeen := false
		for _, b := range h.GetBucket() {
			if math.IsInf(b.GetUpperBound(), 1) {
				infSeen = true
			}
			out = append(out, one(name+"_bucket", float64(b.GetCumulativeCount()), model.BucketLabel, formatFloat(b.GetUpperBound())))
		}
		if !infSeen {
			out = append(out, one(name+"_bucket", float64(h.GetSampleCount()), model.BucketLabel, "+Inf"))
		}
		return append(out, one(name+"_sum", h.GetSampleSum()), one(name+"_count", float64(h.GetSampleCount())))
	}
	return nil
}

// labels builds a series' labels: name, the metric's labels (job and instance renamed to
// exported_*), then job and instance of the recorder.
func (s *selfRecorder) labels(name string, lps []*dto.LabelPair, extra ...string) labels.Labels {
	b := labels.NewScratchBuilder(len(lps) + 4)
	b.Add(labels.MetricName, name)
	for _, lp := range lps {
		n := lp.GetName()
		if n == model.JobLabel || n == model.InstanceLabel {
			n = model.ExportedLabelPrefix + n
		}
		b.Add(n, lp.GetValue())
	}
	for i := 0; i+1 < len(extra); i += 2 {
		b.Add(extra[i], extra[i+1])
	}
	b.Add(model.JobLabel, s.job)
	if s.instance != "" {
		b.Add(model.InstanceLabel, s.instance)
	}
	b.Sort()
	return b.Labels()
}

func formatFloat(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}
