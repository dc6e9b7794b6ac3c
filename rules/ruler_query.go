package rules

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/meridian-obs/meridian/query"
)

// iteration collects, during one evaluation of a group, the regions its queries missed.
type iteration struct {
	mu      sync.Mutex
	regions map[string]bool
}

func (it *iteration) add(regions []string) {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.regions == nil {
		it.regions = map[string]bool{}
	}
	for _, r := range regions {
		it.regions[r] = true
	}
}

func (it *iteration) missed() bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	return len(it.regions) > 0
}

type iterationKey struct{}

// evalIteration is Prometheus's group evaluation with the missing-region accounting around it:
// the query function records in the context which regions a query missed, and an evaluation
// in which any did counts once for its group.
func (r *Ruler) evalIteration(ctx context.Context, g *promrules.Group, ts time.Time) {
	it := &iteration{}
	promrules.DefaultEvalIterationFunc(context.WithValue(ctx, iterationKey{}, it), g, ts)
	if !it.missed() {
		return
	}
	r.metrics.missingRegions.WithLabelValues(promrules.GroupKey(g.File(), g.Name()), r.opts.PartialResponseStrategy).Inc()
	for _, rule := range g.Rules() {
		ar, ok := rule.(*promrules.AlertingRule)
		if ok && errors.As(ar.LastError(), new(*regionsMissingError)) {
			r.holdAlerts(ctx, ar, ts, g.Interval())
		}
	}
}

// holdAlerts re-sends the alerts of a rule whose evaluation was aborted for a missing region,
// as they stood, the way the rule manager re-sends alerts it evaluated: Alertmanager resolves
// an alert that is not re-sent before its end time (four evaluation intervals or resend
// delays), so without this an outage of a region would resolve every firing alert that needs
// it, which is what the abort strategy exists to prevent.
func (r *Ruler) holdAlerts(ctx context.Context, ar *promrules.AlertingRule, ts time.Time, interval time.Duration) {
	var alerts []*promrules.Alert
	ar.ForEachActiveAlert(func(a *promrules.Alert) {
		if a.State != promrules.StateFiring || !a.ResolvedAt.IsZero() {
			return
		}
		if !a.LastSentAt.Add(r.opts.ResendDelay).Before(ts) {
			return
		}
		a.LastSentAt = ts
		a.ValidUntil = ts.Add(4 * max(interval, r.opts.ResendDelay))
		held := *a
		held.Labels = a.Labels.Copy()
		alerts = append(alerts, &held)
	})
	if len(alerts) > 0 {
		r.notify(ctx, ar.Query().String(), alerts...)
	}
}

// regionsMissingError is a rule query that failed because regions did not answer (abort).
type regionsMissingError struct {
	regions []string
	err     error
}

func (e *regionsMissingError) Error() string {
	return fmt.Sprintf("regions %s missing, rule not evaluated (partial response strategy abort): %v", strings.Join(e.regions, ", "), e.err)
}

func (e *regionsMissingError) Unwrap() error { return e.err }

// queryFunc evaluates a rule's expression at ts with the ruler's engine. Under the abort
// strategy the fan-out runs with partial response off, so a query that misses a region fails,
// and its error (the rule's lastError in /api/v1/rules) names the regions; under warn it is
// answered by the regions that answered.
func (r *Ruler) queryFunc(ctx context.Context, qs string, ts time.Time) (promql.Vector, error) {
	warn := r.opts.PartialResponseStrategy == StrategyWarn
	ctx = query.WithPartialResponse(ctx, warn)
	q, err := r.engine.NewInstantQuery(ctx, r.ruleQueryable(), nil, qs, ts)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(ctx)
	regions := missingRegions(res.Err, res.Warnings)
	if len(regions) > 0 {
		if it, ok := ctx.Value(iterationKey{}).(*iteration); ok {
			it.add(regions)
		}
	}
	if res.Err != nil {
		if len(regions) > 0 {
			return nil, &regionsMissingError{regions: regions, err: res.Err}
		}
		return nil, res.Err
	}
	var out promql.Vector
	switch v := res.Value.(type) {
	case promql.Vector:
		out = make(promql.Vector, len(v))
		for i, s := range v {
			s.Metric = s.Metric.Copy() // the engine reuses the vector's memory after Close
			out[i] = s
		}
	case promql.Scalar:
		out = promql.Vector{{T: v.T, F: v.V, Metric: labels.EmptyLabels()}}
	default:
		return nil, errors.New("rule result is not a vector or scalar")
	}
	return out, nil
}

// warningRegion finds the region in a message of the fan-out that crossed a process boundary
// (a stacked querier's warning): `region "eu-west-1" (store ...): ...`.
var warningRegion = regexp.MustCompile(`region "([^"]+)"`)

// missingRegions lists, sorted, the regions named by the fan-out's store errors in err and ws;
// a store whose region is unknown is named by its address.
func missingRegions(err error, ws annotations.Annotations) []string {
	seen := map[string]bool{}
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		var se *query.StoreError
		if errors.As(e, &se) && se != nil {
			if se.Region != "" {
				seen[se.Region] = true
			} else {
				seen["store "+se.Store] = true
			}
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	for _, w := range ws {
		walk(w)
		for _, m := range warningRegion.FindAllStringSubmatch(w.Error(), -1) {
			seen[m[1]] = true
		}
	}
	if err != nil && len(seen) == 0 {
		for _, m := range warningRegion.FindAllStringSubmatch(err.Error(), -1) {
			seen[m[1]] = true
		}
	}
	out := make([]string, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// ruleQueryable is what rules read: the querier's fan-out with the store beside it, except
// that a selector of one of the querier's own metrics (self-recorded into the store, see
// selfRecorder) reads the store alone. Those series exist only there: the regions cannot
// add to them, so a region that is down must not fail, or delay, a platform or readiness rule
// built on them (the alert that says a store is down would otherwise never evaluate while it is).
func (r *Ruler) ruleQueryable() storage.Queryable {
	if r.self == nil {
		return r.opts.Queryable
	}
	return ownMetricsQueryable{all: r.opts.Queryable, store: r.opts.Store, own: r.self.owns}
}

type ownMetricsQueryable struct {
	all   storage.Queryable
	store storage.Queryable
	own   func(name string) bool
}

func (o ownMetricsQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	all, err := o.all.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return &ownMetricsQuerier{Querier: all, o: o, mint: mint, maxt: maxt}, nil
}

type ownMetricsQuerier struct {
	storage.Querier
	o          ownMetricsQueryable
	mint, maxt int64

	mu    sync.Mutex
	local storage.Querier
}

func (q *ownMetricsQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	for _, m := range ms {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual && q.o.own(m.Value) {
			local, err := q.localQuerier()
			if err != nil {
				return storage.ErrSeriesSet(err)
			}
			return local.Select(ctx, sortSeries, hints, ms...)
		}
	}
	return q.Querier.Select(ctx, sortSeries, hints, ms...)
}

func (q *ownMetricsQuerier) localQuerier() (storage.Querier, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.local == nil {
		l, err := q.o.store.Querier(q.mint, q.maxt)
		if err != nil {
			return nil, err
		}
		q.local = l
	}
	return q.local, nil
}

func (q *ownMetricsQuerier) Close() error {
	err := q.Querier.Close()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.local != nil {
		err = errors.Join(err, q.local.Close())
	}
	return err
}
