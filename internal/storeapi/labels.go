package storeapi

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meridian-obs/meridian/internal/labelindex"
)

// LabelNames returns the label names of the series matching the request in its time range:
// the storage's names plus the external label names (a server with label sets adds none: its
// series carry them), minus the replica labels the request drops. As in Thanos, a store
// without matching series announces no names at all, not even its external ones.
func (s *Server) LabelNames(ctx context.Context, r *storepb.LabelNamesRequest) (_ *storepb.LabelNamesResponse, err error) {
	start := time.Now()
	defer func() { s.metrics.observe(methodLabelNames, start, err) }()
	ctx = s.callContext(ctx, r.PartialResponseDisabled, r.PartialResponseStrategy)

	matchers, ok, err := s.storageMatchers(r.Matchers)
	if err != nil {
		return nil, err
	}
	// Names come from the index alone: the answer holds until the index changes.
	s.sendLabelVersion(ctx, r.Start, r.End)
	if !ok {
		return &storepb.LabelNamesResponse{}, nil
	}
	q, err := s.queryable.ChunkQuerier(r.Start, r.End)
	if err != nil {
		return nil, s.storageError(ctx, methodLabelNames, "open querier", err)
	}
	defer s.closeQuerier(methodLabelNames, q)

	names, warns, err := q.LabelNames(ctx, &storage.LabelHints{Limit: int(r.Limit)}, matchers...)
	if err != nil {
		return nil, s.storageError(ctx, methodLabelNames, "label names", err)
	}
	resp := &storepb.LabelNamesResponse{Warnings: warningStrings(warns)}
	if len(names) == 0 {
		return resp, nil
	}
	// The names may live in memory the querier releases on Close: copy them.
	out := make([]string, 0, len(names)+s.extLabels.Len())
	for _, n := range names {
		if !slices.Contains(r.WithoutReplicaLabels, n) && !s.extLabels.Has(n) {
			out = append(out, strings.Clone(n))
		}
	}
	s.externalLabelsWithout(r.WithoutReplicaLabels).Range(func(l labels.Label) {
		out = append(out, l.Name)
	})
	slices.Sort(out)
	if r.Limit > 0 && int64(len(out)) > r.Limit {
		out = out[:r.Limit]
	}
	resp.Names = out
	return resp, nil
}

// LabelValues returns the values of one label over the series matching the request in its
// time range. For an external label name that is the external value, provided a matching
// series exists; for a dropped replica label it is nothing.
func (s *Server) LabelValues(ctx context.Context, r *storepb.LabelValuesRequest) (_ *storepb.LabelValuesResponse, err error) {
	start := time.Now()
	defer func() { s.metrics.observe(methodLabelValues, start, err) }()
	ctx = s.callContext(ctx, r.PartialResponseDisabled, r.PartialResponseStrategy)

	if r.Label == "" {
		return nil, status.Error(codes.InvalidArgument, "label values: empty label name")
	}
	matchers, ok, err := s.storageMatchers(r.Matchers)
	if err != nil {
		return nil, err
	}
	ext := s.extLabels.Get(r.Label)
	if ext == "" {
		// Values of a stored label come from the index alone; whether an external label has a
		// value depends on samples in the range, which appends change without a new version.
		s.sendLabelVersion(ctx, r.Start, r.End)
	}
	if !ok || slices.Contains(r.WithoutReplicaLabels, r.Label) {
		return &storepb.LabelValuesResponse{}, nil
	}
	q, err := s.queryable.ChunkQuerier(r.Start, r.End)
	if err != nil {
		return nil, s.storageError(ctx, methodLabelValues, "open querier", err)
	}
	defer s.closeQuerier(methodLabelValues, q)

	if ext != "" {
		if len(matchers) == 0 {
			matchers = []*labels.Matcher{matchAll}
		}
		set := q.Select(ctx, false, &storage.SelectHints{Start: r.Start, End: r.End, Func: "series", Limit: 1}, matchers...)
		found := set.Next()
		if err := set.Err(); err != nil {
			return nil, s.storageError(ctx, methodLabelValues, "select series for external label "+r.Label, err)
		}
		resp := &storepb.LabelValuesResponse{Warnings: warningStrings(set.Warnings())}
		if found {
			resp.Values = []string{ext}
		}
		return resp, nil
	}

	values, warns, err := q.LabelValues(ctx, r.Label, &storage.LabelHints{Limit: int(r.Limit)}, matchers...)
	if err != nil {
		return nil, s.storageError(ctx, methodLabelValues, "label values of "+r.Label, err)
	}
	// The values may live in memory the querier releases on Close: copy them.
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = strings.Clone(v)
	}
	if r.Limit > 0 && int64(len(out)) > r.Limit {
		out = out[:r.Limit]
	}
	return &storepb.LabelValuesResponse{Values: out, Warnings: warningStrings(warns)}, nil
}

// sendLabelVersion sends the label index version with the answer when the store versions its
// index. It must run before the storage is read: a change made after that comes after the version.
func (s *Server) sendLabelVersion(ctx context.Context, mint, maxt int64) {
	if s.labelVersion == nil {
		return
	}
	if tok, ok := s.labelVersion(mint, maxt); ok {
		// Fails only outside a gRPC call (the server used in-process), where there is no header.
		_ = grpc.SetHeader(ctx, metadata.Pairs(labelindex.HeaderKey, tok))
	}
}
