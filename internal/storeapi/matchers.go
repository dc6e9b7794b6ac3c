package storeapi

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// matchAll selects every series that has a metric name, which is every series written through
// Prometheus remote write or scraping. It stands in for a request whose only matchers were on
// external labels: Thanos stores reject such a request, but a PromQL selector like
// {region="eu-west-1"} is valid and must return all of that region's series.
var matchAll = labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+")

// storageMatchers converts the request's matchers and evaluates those on external label names
// against the external labels. It returns ok=false when one of them does not match, in which
// case the store holds nothing for the request; otherwise it returns the remaining matchers,
// the ones the storage must evaluate. With label sets instead of external labels every matcher
// is the storage's, and ok is false when no label set can match them. Invalid matchers are a
// codes.InvalidArgument error.
func (s *Server) storageMatchers(ms []storepb.LabelMatcher) (_ []*labels.Matcher, ok bool, _ error) {
	converted, err := storepb.MatchersToPromMatchers(ms...)
	if err != nil {
		// Not storepb.MatchersToString: it panics on an unknown matcher type.
		return nil, false, status.Errorf(codes.InvalidArgument, "invalid matchers: %v", err)
	}
	if s.labelSets != nil {
		return converted, anyLabelSetMatches(s.labelSets(), converted), nil
	}
	remaining := converted[:0]
	for _, m := range converted {
		if !s.extLabels.Has(m.Name) {
			remaining = append(remaining, m)
			continue
		}
		if !m.Matches(s.extLabels.Get(m.Name)) {
			return nil, false, nil
		}
	}
	return remaining, true, nil
}

// anyLabelSetMatches tells whether series carrying one of lsets may match ms: whether one set
// contradicts none of the matchers on its label names. Matchers on other names are left to the
// storage, so a set without labels, like no sets at all, matches everything.
func anyLabelSetMatches(lsets []labels.Labels, ms []*labels.Matcher) bool {
	if len(lsets) == 0 {
		return true
	}
	for _, ls := range lsets {
		if labelSetMatches(ls, ms) {
			return true
		}
	}
	return false
}

// labelSetMatches tells whether every matcher on a name of ls matches its value there.
func labelSetMatches(ls labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if ls.Has(m.Name) && !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}

// externalLabelsWithout returns the external labels minus the names in drop.
func (s *Server) externalLabelsWithout(drop []string) labels.Labels {
	if len(drop) == 0 {
		return s.extLabels
	}
	return withoutNames(s.extLabels, drop)
}

// withoutNames returns lset minus the names in drop; lset itself when none of them is present.
func withoutNames(lset labels.Labels, drop []string) labels.Labels {
	present := false
	for _, name := range drop {
		if lset.Has(name) {
			present = true
			break
		}
	}
	if !present {
		return lset
	}
	b := labels.NewScratchBuilder(lset.Len())
	lset.Range(func(l labels.Label) {
		if !slices.Contains(drop, l.Name) {
			b.Add(l.Name, l.Value)
		}
	})
	return b.Labels()
}

// finalLabels is a series' label set as the store announces it: the series' own labels minus
// the dropped replica labels, with ext (already without them) added over it.
func finalLabels(b *labels.Builder, series, ext labels.Labels, drop []string) labels.Labels {
	b.Reset(series)
	for _, name := range drop {
		b.Del(name)
	}
	ext.Range(func(l labels.Label) {
		b.Set(l.Name, l.Value)
	})
	return b.Labels()
}

// storageError turns an error of the underlying storage into a gRPC status: cancellation and
// deadlines keep their codes, anything else is codes.Internal with what was being done.
func (s *Server) storageError(ctx context.Context, method, what string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return status.FromContextError(fmt.Errorf("%s: %w", what, ctxErr)).Err()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "%s: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "%s: %v", what, err)
	}
	if st, ok := status.FromError(err); ok && (st.Code() == codes.Canceled || st.Code() == codes.DeadlineExceeded) {
		return status.Errorf(st.Code(), "%s: %v", what, st.Message())
	}
	s.logger.Warn("storage error", "method", method, "op", what, "err", err)
	return status.Errorf(codes.Internal, "%s: %v", what, err)
}

// sendError turns a failure to send a frame into a gRPC status.
func sendError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return status.FromContextError(fmt.Errorf("send series: %w", ctxErr)).Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Errorf(codes.Aborted, "send series: %v", err)
}
