package storeapi

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/thanos-io/thanos/pkg/exemplars/exemplarspb"
	"github.com/thanos-io/thanos/pkg/store/labelpb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const methodExemplars = "Exemplars"

// ExemplarSource is what the Exemplars service serves: the exemplars of the series matching any
// of the selectors in [mint, maxt] (milliseconds), as Prometheus's storage.ExemplarQuerier
// selects them, with warnings for what could not be read (a querier's missing region).
type ExemplarSource interface {
	Exemplars(ctx context.Context, mint, maxt int64, selectors [][]*labels.Matcher) ([]exemplar.QueryResult, annotations.Annotations, error)
}

// exemplarsServer serves Thanos's exemplarspb.Exemplars service from an ExemplarSource.
type exemplarsServer struct {
	exemplarspb.UnimplementedExemplarsServer
	s   *Server
	src ExemplarSource
}

// Exemplars answers a PromQL query's selectors. A server with external labels works as
// Thanos's exemplars.TSDB: selectors that contradict the external labels are dropped (all of
// them: an empty answer), matchers on external labels are answered by them and not passed on,
// and every series is sent with the external labels added. A server with label sets passes the
// selectors on whole, its series already carrying the labels, and answers empty when no label
// set can match any selector.
func (e exemplarsServer) Exemplars(r *exemplarspb.ExemplarsRequest, srv exemplarspb.Exemplars_ExemplarsServer) (err error) {
	start := time.Now()
	defer func() { e.s.metrics.observe(methodExemplars, start, err) }()
	ctx := e.s.callContext(srv.Context(), false, r.PartialResponseStrategy)

	expr, err := parser.ParseExpr(r.Query)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "parse exemplar query %q: %v", r.Query, err)
	}
	selectors, ok := e.s.exemplarSelectors(parser.ExtractSelectors(expr))
	if !ok {
		return nil
	}
	if len(selectors) == 0 {
		return status.Error(codes.InvalidArgument, "no matchers specified (excluding external labels)")
	}
	res, warns, err := e.src.Exemplars(ctx, r.Start, r.End, selectors)
	if err != nil {
		return e.s.storageError(ctx, methodExemplars, "select exemplars", err)
	}
	for _, w := range warningStrings(warns) {
		if r.PartialResponseStrategy == storepb.PartialResponseStrategy_ABORT {
			return status.Error(codes.Aborted, w)
		}
		if err := srv.Send(exemplarspb.NewWarningExemplarsResponse(fmt.Errorf("%s", w))); err != nil {
			return sendError(ctx, err)
		}
	}
	b := labels.NewBuilder(labels.EmptyLabels())
	for _, qr := range res {
		if len(qr.Exemplars) == 0 {
			continue
		}
		series := qr.SeriesLabels
		if !e.s.extLabels.IsEmpty() {
			series = finalLabels(b, series, e.s.extLabels, nil)
		}
		data := &exemplarspb.ExemplarData{
			SeriesLabels: labelpb.ZLabelSet{Labels: labelpb.ZLabelsFromPromLabels(series)},
			Exemplars:    exemplarspb.ExemplarsFromPromExemplars(qr.Exemplars),
		}
		if err := srv.Send(exemplarspb.NewExemplarsResponse(data)); err != nil {
			return sendError(ctx, err)
		}
	}
	return nil
}

// exemplarSelectors is Thanos's selectorsMatchesExternalLabels: ok is false when every selector
// contradicts the server's external labels (or, with label sets, when no set can match any),
// and the selectors returned are those that may match, without their matchers on external
// labels, and without those left empty by that.
func (s *Server) exemplarSelectors(selectors [][]*labels.Matcher) (_ [][]*labels.Matcher, ok bool) {
	var out [][]*labels.Matcher
	for _, sel := range selectors {
		if s.labelSets != nil {
			if anyLabelSetMatches(s.labelSets(), sel) {
				ok = true
				out = append(out, sel)
			}
			continue
		}
		remaining := make([]*labels.Matcher, 0, len(sel))
		matches := true
		for _, m := range sel {
			if !s.extLabels.Has(m.Name) {
				remaining = append(remaining, m)
				continue
			}
			if !m.Matches(s.extLabels.Get(m.Name)) {
				matches = false
				break
			}
		}
		if !matches {
			continue
		}
		ok = true
		if len(remaining) > 0 {
			out = append(out, remaining)
		}
	}
	return out, ok
}

// SelectorsQuery renders selectors as the PromQL query of an ExemplarsRequest, as Thanos's
// exemplars proxy does ("{a="1"}+{b=~"2"}"): the query's own expression is not needed, only
// which series it selects.
func SelectorsQuery(selectors [][]*labels.Matcher) string {
	parts := make([]string, 0, len(selectors))
	for _, sel := range selectors {
		ms := make([]string, 0, len(sel))
		for _, m := range sel {
			ms = append(ms, m.String())
		}
		parts = append(parts, "{"+strings.Join(ms, ", ")+"}")
	}
	return strings.Join(parts, "+")
}

// FromExemplarQueryable adapts a Prometheus exemplar storage (a TSDB's) to an ExemplarSource.
func FromExemplarQueryable(q storage.ExemplarQueryable) ExemplarSource {
	return exemplarQueryable{q: q}
}

type exemplarQueryable struct{ q storage.ExemplarQueryable }

func (e exemplarQueryable) Exemplars(ctx context.Context, mint, maxt int64, selectors [][]*labels.Matcher) ([]exemplar.QueryResult, annotations.Annotations, error) {
	eq, err := e.q.ExemplarQuerier(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("exemplar querier: %w", err)
	}
	res, err := eq.Select(mint, maxt, selectors...)
	return res, nil, err
}
