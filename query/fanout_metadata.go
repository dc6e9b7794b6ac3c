package query

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/thanos-io/thanos/pkg/metadata/metadatapb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridian-obs/meridian/internal/storeapi"
)

// storeCall is one store's part of a metadata or exemplars call: what it sent, or why not.
type storeCall[T any] struct {
	view     storeView
	data     []T
	warnings []string
	err      error
	skipped  bool // the store does not serve the API after all (Unimplemented)
}

// apiStores are the stores a metadata or exemplars call goes to: those whose Info announced the
// API, and those whose Info never answered (they may serve it; a store that turns out not to
// is left out of the answer, one that is down is accounted for like in every other call). It
// fails only when the store set is empty.
func (f *Fanout) apiStores(serves func(storeAPIs) bool) ([]storeView, error) {
	refs := f.set.snapshot()
	if len(refs) == 0 {
		return nil, errors.New("no store endpoints configured or discovered")
	}
	var out []storeView
	for _, r := range refs {
		v := r.view(f.opts.RegionLabel)
		if !v.known || serves(v.apis) {
			out = append(out, v)
		}
	}
	return out, nil
}

// drainStream reads a server stream whose answers are either a warning or data, as Thanos's
// Metadata and Exemplars services send them, until it ends; data picks an answer's data and
// tells whether it has any.
func drainStream[R interface{ GetWarning() string }, T any](recv func() (R, error), data func(R) (T, bool)) ([]T, []string, error) {
	var out []T
	var warns []string
	for {
		resp, err := recv()
		if errors.Is(err, io.EOF) {
			return out, warns, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if w := resp.GetWarning(); w != "" {
			warns = append(warns, w)
		} else if d, ok := data(resp); ok {
			out = append(out, d)
		}
	}
}

// callStores runs call on every store concurrently, each under the store response timeout, and
// counts durations and failures as the other fan-out calls do.
func callStores[T any](ctx context.Context, f *Fanout, method string, stores []storeView, call func(ctx context.Context, v storeView) ([]T, []string, error)) []storeCall[T] {
	results := make([]storeCall[T], len(stores))
	var wg sync.WaitGroup
	for i, v := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			r.view = v
			if v.ref.dialErr != nil {
				r.err = v.ref.dialErr
				return
			}
			start := time.Now()
			cctx, cancel := ctx, context.CancelFunc(func() {})
			if f.opts.StoreResponseTimeout > 0 {
				cctx, cancel = context.WithTimeout(ctx, f.opts.StoreResponseTimeout)
			}
			defer cancel()
			r.data, r.warnings, r.err = call(cctx, v)
			f.metrics.duration.WithLabelValues(v.ref.addr, method).Observe(time.Since(start).Seconds())
			if r.err == nil || ctx.Err() != nil {
				return
			}
			if status.Code(r.err) == codes.Unimplemented && !v.known {
				r.skipped, r.err = true, nil
				return
			}
			reason := "error"
			if errors.Is(cctx.Err(), context.DeadlineExceeded) {
				reason = "timeout"
			}
			f.metrics.failures.WithLabelValues(v.ref.addr, method, reason).Inc()
			v.ref.noteCallFailure(r.err, reason == "timeout")
			r.err = errors.New(callErrorReason(r.err, cctx, f.opts.StoreResponseTimeout))
		}()
	}
	wg.Wait()
	return results
}

// settle applies the partial-response policy to a call's results: the stores' warnings and
// failures become warnings naming the region, or the call's error when partial response is
// off (or when every store failed).
func settle[T any](ctx context.Context, f *Fanout, results []storeCall[T], partial bool) (annotations.Annotations, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var (
		ws     annotations.Annotations
		failed []error
		called int
	)
	for _, r := range results {
		if r.skipped {
			continue
		}
		called++
		if r.err != nil {
			failed = append(failed, f.storeError(r.view, r.err))
			continue
		}
		for _, w := range r.warnings {
			werr := f.storeError(r.view, errors.New(w))
			if !partial {
				return nil, werr
			}
			ws.Add(werr)
		}
	}
	if err := f.failurePolicy(called, failed, partial); err != nil {
		return nil, err
	}
	for _, e := range failed {
		ws.Add(e)
	}
	return ws, nil
}

func partialStrategy(partial bool) storepb.PartialResponseStrategy {
	if partial {
		return storepb.PartialResponseStrategy_WARN
	}
	return storepb.PartialResponseStrategy_ABORT
}

// MetricMetadata asks every store that serves metric metadata and merges the answers: the
// same (type, help, unit) of a metric from several regions is one entry, as Thanos Query
// merges them. Limits apply to the merged answer with Prometheus's meaning (limit: families,
// negative for all, 0 for none; limit_per_metric: entries per family), families and their
// entries in a stable order. It is also the querier's storeapi.MetadataSource when stacked.
func (f *Fanout) MetricMetadata(ctx context.Context, req storeapi.MetadataRequest) (map[string][]metadata.Metadata, annotations.Annotations, error) {
	stores, err := f.apiStores(func(a storeAPIs) bool { return a.metadata })
	if err != nil {
		return nil, nil, err
	}
	partial := PartialResponse(ctx, f.opts.PartialResponse)
	// Each store may stop at the limit: the union needs no more families from any one of them.
	preq := &metadatapb.MetricMetadataRequest{Metric: req.Metric, Limit: int32(max(min(req.Limit, 1<<31-1), -1)), PartialResponseStrategy: partialStrategy(partial)}
	results := callStores(ctx, f, "metric_metadata", stores, func(ctx context.Context, v storeView) ([]*metadatapb.MetricMetadata, []string, error) {
		stream, err := v.ref.metadata.MetricMetadata(ctx, preq)
		if err != nil {
			return nil, nil, err
		}
		return drainStream(stream.Recv, func(resp *metadatapb.MetricMetadataResponse) (*metadatapb.MetricMetadata, bool) {
			md := resp.GetMetadata()
			return md, md != nil
		})
	})
	ws, err := settle(ctx, f, results, partial)
	if err != nil {
		return nil, nil, err
	}
	merged := map[string]map[metadata.Metadata]struct{}{}
	for _, r := range results {
		for _, md := range r.data {
			for name, entry := range md.Metadata {
				set := merged[name]
				if set == nil {
					set = map[metadata.Metadata]struct{}{}
					merged[name] = set
				}
				for _, m := range entry.Metas {
					set[metadata.Metadata{Type: model.MetricType(m.Type), Help: m.Help, Unit: m.Unit}] = struct{}{}
				}
			}
		}
	}
	out := make(map[string][]metadata.Metadata, len(merged))
	for _, name := range slices.Sorted(maps.Keys(merged)) {
		if req.Limit >= 0 && len(out) >= req.Limit {
			break
		}
		metas := slices.SortedFunc(maps.Keys(merged[name]), compareMetadata)
		if req.LimitPerMetric > 0 && len(metas) > req.LimitPerMetric {
			metas = metas[:req.LimitPerMetric]
		}
		out[name] = metas
	}
	return out, ws, nil
}

func compareMetadata(a, b metadata.Metadata) int {
	if c := strings.Compare(string(a.Type), string(b.Type)); c != 0 {
		return c
	}
	if c := strings.Compare(a.Help, b.Help); c != 0 {
		return c
	}
	return strings.Compare(a.Unit, b.Unit)
}
