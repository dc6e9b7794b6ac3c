package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// replicaMerge merges series that are equal once their replica labels are removed (HA pairs).
var replicaMerge storage.VerticalSeriesMergeFunc = DedupSeriesMerge

// FanoutOptions configures how queries are spread over the store set.
type FanoutOptions struct {
	// ReplicaLabels are removed from series (by the stores when they support it) so that
	// replicas of one series are merged into one. Empty: no deduplication.
	ReplicaLabels []string
	// StoreResponseTimeout bounds the time spent waiting for each store in one call; 0 = none.
	// For Series it counts only the time waiting for the store, not the time the querier spends
	// consuming what the store already sent.
	StoreResponseTimeout time.Duration
	// PartialResponse is the default when the request context carries no choice
	// (see WithPartialResponse).
	PartialResponse bool
	// RegionLabel is the external label that names a store's region in warnings; default "region".
	RegionLabel string
}

// Fanout answers storage queries by calling the stores of a StoreSet that can match, concurrently,
// and merging their answers. It is a storage.Queryable for Prometheus's engine and web API.
type Fanout struct {
	logger  *slog.Logger
	set     *StoreSet
	opts    FanoutOptions
	metrics *fanoutMetrics
}

type fanoutMetrics struct {
	duration   *prometheus.HistogramVec
	failures   *prometheus.CounterVec
	labelCache *prometheus.CounterVec
}

// NewFanout creates a fan-out over set. Metrics are registered on reg when it is not nil.
func NewFanout(logger *slog.Logger, reg prometheus.Registerer, set *StoreSet, opts FanoutOptions) *Fanout {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.RegionLabel == "" {
		opts.RegionLabel = "region"
	}
	m := &fanoutMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        "meridian_query_store_request_duration_seconds",
			Help:                        "Duration of StoreAPI calls made by the fan-out, per store and method.",
			Buckets:                     []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
			NativeHistogramBucketFactor: 1.1,
		}, []string{"store", "method"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_query_store_request_failures_total",
			Help: "StoreAPI calls that failed or timed out, per store, method and reason (error, timeout).",
		}, []string{"store", "method", "reason"}),
		labelCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_query_label_cache_requests_total",
			Help: "Label calls to stores with a label cache, per method and result: hit (answered from the cache, store not called) or miss.",
		}, []string{"method", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.duration, m.failures, m.labelCache)
	}
	return &Fanout{logger: logger, set: set, opts: opts, metrics: m}
}

type dedupKey struct{}

// WithDedup records whether a request wants replica deduplication (the dedup parameter of the
// HTTP API). Without it, deduplication is on whenever replica labels are configured.
func WithDedup(ctx context.Context, enabled bool) context.Context {
	return context.WithValue(ctx, dedupKey{}, enabled)
}

func (f *Fanout) dedup(ctx context.Context) bool {
	if len(f.opts.ReplicaLabels) == 0 {
		return false
	}
	if v, ok := ctx.Value(dedupKey{}).(bool); ok {
		return v
	}
	return true
}

// Querier returns a querier over [mint, maxt]. Each call it makes goes to the stores that can
// match at that moment.
func (f *Fanout) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{f: f, mint: mint, maxt: maxt}, nil
}

// StoreError is a store that failed or timed out in a call. Its message is the warning shown to
// users: `region "eu-west-1" (store 10.0.0.7:10901): <reason>`, or `store <addr>: <reason>`
// when the store's region is not known.
type StoreError struct {
	Store  string
	Region string
	Err    error
}

func (e *StoreError) Error() string {
	if e.Region != "" {
		return fmt.Sprintf("region %q (store %s): %v", e.Region, e.Store, e.Err)
	}
	return fmt.Sprintf("store %s: %v", e.Store, e.Err)
}

func (e *StoreError) Unwrap() error { return e.Err }

// seriesBatchSize is how many series a store may pack into one Series message (stores that do
// not batch ignore it): one message, Recv and hand-over per 64 small series rather than per one.
const seriesBatchSize = 64

// errStoreTimeout is the reason of a store that did not answer within StoreResponseTimeout.
type errStoreTimeout struct{ after time.Duration }

func (e errStoreTimeout) Error() string { return fmt.Sprintf("timed out after %s", e.after) }

// callErrorReason turns a gRPC error into a short reason: "unavailable: connection refused", or
// "timed out after 2s" when ctx's deadline (of length timeout) expired.
func callErrorReason(err error, ctx context.Context, timeout time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && timeout > 0 {
		return errStoreTimeout{after: timeout}.Error()
	}
	return grpcReason(err)
}

func grpcReason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	code := st.Code()
	var name string
	switch code {
	case codes.DeadlineExceeded:
		name = "deadline exceeded"
	case codes.ResourceExhausted:
		name = "resource exhausted"
	case codes.InvalidArgument:
		name = "invalid argument"
	case codes.FailedPrecondition:
		name = "failed precondition"
	default:
		name = strings.ToLower(code.String())
	}
	return name + ": " + st.Message()
}

// pick returns the stores that can hold series matching ms in [mint, maxt]. It fails only when
// the store set is empty: a query over no store at all is never an empty success.
//
// Unhealthy stores are picked like healthy ones, by their last known labels and time range (or
// always, when Info never answered): a store that is back answers, and one still down fails at
// once (gRPC reports a broken connection without waiting) or within StoreResponseTimeout. Either
// way the answer accounts for it, and latency stays bounded by the timeout.
func (f *Fanout) pick(mint, maxt int64, ms []*labels.Matcher) ([]storeView, error) {
	refs := f.set.snapshot()
	if len(refs) == 0 {
		return nil, errors.New("no store endpoints configured or discovered")
	}
	out := make([]storeView, 0, len(refs))
	for _, r := range refs {
		v := r.view(f.opts.RegionLabel)
		if v.matches(mint, maxt, ms) {
			out = append(out, v)
		}
	}
	return out, nil
}

func (f *Fanout) storeError(v storeView, err error) *StoreError {
	return &StoreError{Store: v.ref.addr, Region: v.region, Err: err}
}

// querier is one query's view of the fan-out. Close cancels the streams it started.
type querier struct {
	f          *Fanout
	mint, maxt int64

	mu      sync.Mutex
	cancels []context.CancelFunc
}

func (q *querier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	limit := 0
	var qh *storepb.QueryHints
	skipChunks := false
	if hints != nil {
		mint, maxt, limit = hints.Start, hints.End, hints.Limit
		skipChunks = hints.Func == "series"
		qh = &storepb.QueryHints{
			StepMillis: hints.Step,
			Func:       &storepb.Func{Name: hints.Func},
			Range:      &storepb.Range{Millis: hints.Range},
		}
		if len(hints.Grouping) > 0 || hints.By {
			// Cloned: the engine sorts hints.Grouping in place while the request is being sent.
			qh.Grouping = &storepb.Grouping{By: hints.By, Labels: slices.Clone(hints.Grouping)}
		}
	}
	stores, err := q.f.pick(mint, maxt, ms)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if len(stores) == 0 {
		return storage.EmptySeriesSet()
	}
	matchers, err := storepb.PromMatchersToMatchers(ms...)
	if err != nil {
		return storage.ErrSeriesSet(fmt.Errorf("convert matchers: %w", err))
	}
	partial := PartialResponse(ctx, q.f.opts.PartialResponse)
	dedup := q.f.dedup(ctx)
	req := &storepb.SeriesRequest{
		MinTime:                 mint,
		MaxTime:                 maxt,
		Matchers:                matchers,
		SkipChunks:              skipChunks,
		QueryHints:              qh,
		Limit:                   int64(limit),
		PartialResponseDisabled: !partial,
		PartialResponseStrategy: storepb.PartialResponseStrategy_WARN,
		ResponseBatchSize:       seriesBatchSize,
	}
	if !partial {
		req.PartialResponseStrategy = storepb.PartialResponseStrategy_ABORT
	}
	mergeFn := storage.ChainedSeriesMerge
	if dedup {
		req.WithoutReplicaLabels = q.f.opts.ReplicaLabels
		mergeFn = replicaMerge
	}

	sctx, cancel := context.WithCancel(ctx)
	q.mu.Lock()
	q.cancels = append(q.cancels, cancel)
	q.mu.Unlock()

	sets := make([]*storeSeriesSet, 0, len(stores))
	for _, v := range stores {
		st := q.f.streamSeries(sctx, v, req)
		set := &storeSeriesSet{stream: st, mint: mint, maxt: maxt, mergeFn: mergeFn}
		if dedup && !v.withoutReplicaSupport {
			set.stripLabels = q.f.opts.ReplicaLabels
		}
		if dedup && len(v.labelSets) == 1 && !v.labelSets[0].IsEmpty() {
			set.source = v.labelSets[0].String()
		}
		sets = append(sets, set)
	}
	return &fanoutSeriesSet{ctx: ctx, f: q.f, stores: sets, partial: partial, limit: limit, mergeFn: mergeFn, cancel: cancel}
}

func (q *querier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	matchers, err := storepb.PromMatchersToMatchers(ms...)
	if err != nil {
		return nil, nil, fmt.Errorf("convert matchers: %w", err)
	}
	dedup := q.f.dedup(ctx)
	partial := PartialResponse(ctx, q.f.opts.PartialResponse)
	req := &storepb.LabelNamesRequest{
		Start:                   q.mint,
		End:                     q.maxt,
		Matchers:                matchers,
		PartialResponseDisabled: !partial,
		Limit:                   labelLimit(hints),
	}
	if dedup {
		req.WithoutReplicaLabels = q.f.opts.ReplicaLabels
	}
	names, ws, err := q.labelCall(ctx, "label_names", ms, hints, newLabelKey('n', req, ms), func(ctx context.Context, v storeView, opts ...grpc.CallOption) ([]string, []string, error) {
		resp, err := v.ref.store.LabelNames(ctx, req, opts...)
		if err != nil {
			return nil, nil, err
		}
		return resp.Names, resp.Warnings, nil
	})
	if err != nil || !dedup {
		return names, ws, err
	}
	return slices.DeleteFunc(names, func(n string) bool { return slices.Contains(q.f.opts.ReplicaLabels, n) }), ws, nil
}

func (q *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	matchers, err := storepb.PromMatchersToMatchers(ms...)
	if err != nil {
		return nil, nil, fmt.Errorf("convert matchers: %w", err)
	}
	partial := PartialResponse(ctx, q.f.opts.PartialResponse)
	req := &storepb.LabelValuesRequest{
		Label:                   name,
		Start:                   q.mint,
		End:                     q.maxt,
		Matchers:                matchers,
		PartialResponseDisabled: !partial,
		Limit:                   labelLimit(hints),
	}
	if q.f.dedup(ctx) {
		req.WithoutReplicaLabels = q.f.opts.ReplicaLabels
	}
	return q.labelCall(ctx, "label_values", ms, hints, newLabelKey('v', req, ms), func(ctx context.Context, v storeView, opts ...grpc.CallOption) ([]string, []string, error) {
		resp, err := v.ref.store.LabelValues(ctx, req, opts...)
		if err != nil {
			return nil, nil, err
		}
		return resp.Values, resp.Warnings, nil
	})
}

func labelLimit(hints *storage.LabelHints) int64 {
	if hints == nil {
		return 0
	}
	return int64(hints.Limit)
}

// labelCall runs call on every store that can match, concurrently, each under the store
// response timeout, and merges the sorted answers. Failures follow the partial-response policy.
// A store whose cached answer to the same request (key) still holds is not called: the cached
// answer is used.
func (q *querier) labelCall(ctx context.Context, method string, ms []*labels.Matcher, hints *storage.LabelHints, key labelKey,
	call func(context.Context, storeView, ...grpc.CallOption) (values, warnings []string, err error),
) ([]string, annotations.Annotations, error) {
	stores, err := q.f.pick(q.mint, q.maxt, ms)
	if err != nil {
		return nil, nil, err
	}
	partial := PartialResponse(ctx, q.f.opts.PartialResponse)
	type result struct {
		values   []string
		warnings []string
		err      error
	}
	results := make([]result, len(stores))
	var wg sync.WaitGroup
	for i, v := range stores {
		if values, ok := v.ref.cachedLabels(key); ok {
			results[i].values = values
			q.f.metrics.labelCache.WithLabelValues(method, "hit").Inc()
			continue
		}
		if v.ref.watcher != nil {
			q.f.metrics.labelCache.WithLabelValues(method, "miss").Inc()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			cctx, cancel := ctx, context.CancelFunc(func() {})
			if q.f.opts.StoreResponseTimeout > 0 {
				cctx, cancel = context.WithTimeout(ctx, q.f.opts.StoreResponseTimeout)
			}
			defer cancel()
			r := &results[i]
			if v.ref.dialErr != nil {
				r.err = v.ref.dialErr
			} else {
				var header metadata.MD
				r.values, r.warnings, r.err = call(cctx, v, grpc.Header(&header))
				if r.err == nil && len(r.warnings) == 0 {
					v.ref.keepLabels(key, header, r.values)
				}
			}
			q.f.metrics.duration.WithLabelValues(v.ref.addr, method).Observe(time.Since(start).Seconds())
			if r.err != nil && ctx.Err() == nil {
				reason := "error"
				if errors.Is(cctx.Err(), context.DeadlineExceeded) {
					reason = "timeout"
				}
				q.f.metrics.failures.WithLabelValues(v.ref.addr, method, reason).Inc()
				v.ref.noteCallFailure(r.err, reason == "timeout")
				if v.ref.dialErr == nil {
					r.err = errors.New(callErrorReason(r.err, cctx, q.f.opts.StoreResponseTimeout))
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	var (
		ws     annotations.Annotations
		failed []error
		all    []string
	)
	for i, r := range results {
		if r.err != nil {
			failed = append(failed, q.f.storeError(stores[i], r.err))
			continue
		}
		for _, w := range r.warnings {
			werr := q.f.storeError(stores[i], errors.New(w))
			if !partial {
				return nil, nil, werr
			}
			ws.Add(werr)
		}
		all = append(all, r.values...)
	}
	if err := q.f.failurePolicy(len(stores), failed, partial); err != nil {
		return nil, nil, err
	}
	for _, e := range failed {
		ws.Add(e)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if hints != nil && hints.Limit > 0 && len(all) > hints.Limit {
		all = all[:hints.Limit]
	}
	return all, ws, nil
}

// failurePolicy decides whether a call whose stores partly failed may still be answered: not
// when partial response is off, and never when every store it needed failed.
func (f *Fanout) failurePolicy(called int, failed []error, partial bool) error {
	if len(failed) == 0 {
		return nil
	}
	if len(failed) == called {
		return fmt.Errorf("no store answered (%d of %d failed): %w", len(failed), called, errors.Join(failed...))
	}
	if !partial {
		return fmt.Errorf("partial response disabled and %d of %d stores failed: %w", len(failed), called, errors.Join(failed...))
	}
	return nil
}

func (q *querier) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, c := range q.cancels {
		c()
	}
	q.cancels = nil
	return nil
}
