package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/annotations"
)

// DefaultRulerLabel is the external label that tells the ruler's own series (recording-rule
// results, ALERTS, the querier's self-recorded metrics) from the regions' data, as Thanos
// Ruler's --label does.
const DefaultRulerLabel = `ruler="global"`

// StoreOptions configures the ruler's local TSDB.
type StoreOptions struct {
	// Dir holds the TSDB (blocks and WAL): a restart keeps what was recorded.
	Dir string
	// ExternalLabels are added to every series read from the store and stripped from every
	// series written to it, like a Prometheus TSDB's external labels; they must not be empty,
	// or the ruler's series could not be told from a region's.
	ExternalLabels labels.Labels
	// Retention is how long recorded series are kept; default 15d, Prometheus's default.
	Retention time.Duration
	Logger    *slog.Logger
	// Registerer receives the TSDB's prometheus_tsdb_* metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Store is the ruler's TSDB: recording-rule results, ALERTS and ALERTS_FOR_STATE, and the
// querier's self-recorded metrics. The querier reads it as one more store of its own, beside
// the store set (see query.LocalStore), so what it holds is queryable through /api/v1/query and
// the querier's StoreAPI with the ruler's external labels, and never counted as a region.
type Store struct {
	db  *tsdb.DB
	ext labels.Labels
}

// OpenStore opens (or creates) the ruler's TSDB in opts.Dir, replaying its WAL.
func OpenStore(opts StoreOptions) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("open ruler store: no data directory")
	}
	if opts.ExternalLabels.IsEmpty() {
		return nil, errors.New("open ruler store: no external labels: the ruler's series must carry one (e.g. ruler=\"global\")")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	tOpts := tsdb.DefaultOptions()
	if opts.Retention > 0 {
		tOpts.RetentionDuration = opts.Retention.Milliseconds()
	}
	db, err := tsdb.Open(opts.Dir, opts.Logger.With("component", "ruler-tsdb"), opts.Registerer, tOpts, nil)
	if err != nil {
		return nil, fmt.Errorf("open ruler store %s: %w", opts.Dir, err)
	}
	return &Store{db: db, ext: opts.ExternalLabels}, nil
}

// Close flushes and closes the TSDB.
func (s *Store) Close() error { return s.db.Close() }

// ExternalLabels are the labels every series of the store carries when read.
func (s *Store) ExternalLabels() labels.Labels { return s.ext }

// TimeRange is the time range of the samples the store holds; empty (min > max) while it
// holds none.
func (s *Store) TimeRange() (mint, maxt int64) {
	mint, maxt = s.db.Head().MinTime(), s.db.Head().MaxTime()
	if blocks := s.db.Blocks(); len(blocks) > 0 {
		mint = min(mint, blocks[0].Meta().MinTime)
		maxt = max(maxt, blocks[len(blocks)-1].Meta().MaxTime)
	}
	if mint == math.MaxInt64 {
		return math.MaxInt64, math.MinInt64
	}
	return mint, maxt
}

// Appender writes to the TSDB. The store's external label names are removed from every
// series first: they are added back on read, and a rule whose query result carries them (it
// read the ruler's own series) must not record them twice.
func (s *Store) Appender(ctx context.Context) storage.Appender {
	return &stripAppender{Appender: s.db.Appender(ctx), ext: s.ext}
}

// LocalQueryable reads the TSDB as it is stored, without external labels: what the rules
// manager needs to restore the `for` state of alerts from ALERTS_FOR_STATE.
func (s *Store) LocalQueryable() storage.Queryable { return s.db }

// Querier reads the store with its external labels on every series; matchers on an external
// label name are evaluated against the external labels.
func (s *Store) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := s.db.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return &extQuerier{q: q, ext: s.ext}, nil
}

type stripAppender struct {
	storage.Appender
	ext labels.Labels
}

func (a *stripAppender) strip(l labels.Labels) labels.Labels {
	if a.ext.IsEmpty() {
		return l
	}
	b := labels.NewBuilder(l)
	a.ext.Range(func(e labels.Label) { b.Del(e.Name) })
	return b.Labels()
}

func (a *stripAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	return a.Appender.Append(ref, a.strip(l), t, v)
}

func (a *stripAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return a.Appender.AppendHistogram(ref, a.strip(l), t, h, fh)
}

func (a *stripAppender) AppendExemplar(ref storage.SeriesRef, l labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	return a.Appender.AppendExemplar(ref, a.strip(l), e)
}

func (a *stripAppender) UpdateMetadata(ref storage.SeriesRef, l labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	return a.Appender.UpdateMetadata(ref, a.strip(l), m)
}

// extQuerier adds the external labels to the series of a TSDB querier.
type extQuerier struct {
	q   storage.Querier
	ext labels.Labels
}

// matchAll selects every series with a metric name: it stands in for a selector whose only
// matchers were on external labels, e.g. {ruler="global"}.
var matchAll = labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+")

// storageMatchers evaluates the matchers on external label names; ok is false when one does not
// match (the store holds nothing for them). The others are returned for the TSDB.
func (q *extQuerier) storageMatchers(ms []*labels.Matcher) (_ []*labels.Matcher, ok bool) {
	out := make([]*labels.Matcher, 0, len(ms))
	for _, m := range ms {
		if !q.ext.Has(m.Name) {
			out = append(out, m)
			continue
		}
		if !m.Matches(q.ext.Get(m.Name)) {
			return nil, false
		}
	}
	if len(out) == 0 {
		out = append(out, matchAll)
	}
	return out, true
}

func (q *extQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	sms, ok := q.storageMatchers(ms)
	if !ok {
		return storage.EmptySeriesSet()
	}
	// Adding a label can change the order of two series ({a="1",b="1"} sorts after {a="1"},
	// but before it once ruler="global" is added to both), so a sorted answer is re-sorted.
	set := q.q.Select(ctx, true, hints, sms...)
	var out []storage.Series
	for set.Next() {
		s := set.At()
		b := labels.NewBuilder(s.Labels())
		q.ext.Range(func(e labels.Label) { b.Set(e.Name, e.Value) })
		out = append(out, &labeledSeries{Series: s, lset: b.Labels()})
	}
	if err := set.Err(); err != nil {
		return storage.ErrSeriesSet(err)
	}
	if sortSeries {
		slices.SortFunc(out, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	}
	return &sliceSeriesSet{series: out, ws: set.Warnings()}
}

func (q *extQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	sms, ok := q.storageMatchers(ms)
	if !ok {
		return nil, nil, nil
	}
	if q.ext.Has(name) {
		// The value is the external label's, if the store holds any series at all for ms.
		names, ws, err := q.q.LabelNames(ctx, hints, sms...)
		if err != nil || len(names) == 0 {
			return nil, ws, err
		}
		return []string{q.ext.Get(name)}, ws, nil
	}
	return q.q.LabelValues(ctx, name, hints, sms...)
}

func (q *extQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	sms, ok := q.storageMatchers(ms)
	if !ok {
		return nil, nil, nil
	}
	names, ws, err := q.q.LabelNames(ctx, hints, sms...)
	if err != nil || len(names) == 0 {
		return names, ws, err
	}
	q.ext.Range(func(e labels.Label) { names = append(names, e.Name) })
	slices.Sort(names)
	return slices.Compact(names), ws, nil
}

func (q *extQuerier) Close() error { return q.q.Close() }

type labeledSeries struct {
	storage.Series
	lset labels.Labels
}

func (s *labeledSeries) Labels() labels.Labels { return s.lset }

type sliceSeriesSet struct {
	series []storage.Series
	cur    int
	ws     annotations.Annotations
}

func (s *sliceSeriesSet) Next() bool {
	if s.cur >= len(s.series) {
		return false
	}
	s.cur++
	return true
}

func (s *sliceSeriesSet) At() storage.Series                { return s.series[s.cur-1] }
func (s *sliceSeriesSet) Err() error                        { return nil }
func (s *sliceSeriesSet) Warnings() annotations.Annotations { return s.ws }
