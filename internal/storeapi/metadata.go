package storeapi

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/thanos-io/thanos/pkg/metadata/metadatapb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const methodMetricMetadata = "MetricMetadata"

// MetadataRequest is one metric metadata query, as Prometheus's /api/v1/metadata takes it.
type MetadataRequest struct {
	// Metric, when set, restricts the answer to that metric family.
	Metric string
	// Limit bounds the number of metric families; negative means no limit and 0 an empty answer,
	// as in Prometheus.
	Limit int
	// LimitPerMetric bounds the distinct entries of one family; 0 or negative means no limit.
	LimitPerMetric int
}

// MetadataSource is what the Metadata service serves: the type, help and unit of the metric
// families a store holds (an ingest node's, kept from remote write), or of a querier's stores.
type MetadataSource interface {
	MetricMetadata(ctx context.Context, req MetadataRequest) (map[string][]metadata.Metadata, annotations.Annotations, error)
}

// metadataFamiliesPerFrame bounds the metric families sent in one MetricMetadata message, so
// that a store with many families stays far below gRPC's 4 MiB message limit.
const metadataFamiliesPerFrame = 1000

// metadataServer serves Thanos's metadatapb.Metadata service from a MetadataSource.
type metadataServer struct {
	metadatapb.UnimplementedMetadataServer
	s   *Server
	src MetadataSource
}

// MetricMetadata streams the metadata of the request's metric (or of all) in frames of at
// most metadataFamiliesPerFrame families, and the source's warnings as warning frames. Metadata
// has no labels, so external labels play no part, as in Thanos's sidecar.
func (m metadataServer) MetricMetadata(r *metadatapb.MetricMetadataRequest, srv metadatapb.Metadata_MetricMetadataServer) (err error) {
	start := time.Now()
	defer func() { m.s.metrics.observe(methodMetricMetadata, start, err) }()
	ctx := m.s.callContext(srv.Context(), false, r.PartialResponseStrategy)

	md, warns, err := m.src.MetricMetadata(ctx, MetadataRequest{Metric: r.Metric, Limit: int(r.Limit)})
	if err != nil {
		return m.s.storageError(ctx, methodMetricMetadata, "metric metadata", err)
	}
	for _, w := range warningStrings(warns) {
		if r.PartialResponseStrategy == storepb.PartialResponseStrategy_ABORT {
			return status.Error(codes.Aborted, w)
		}
		if err := srv.Send(metadatapb.NewWarningMetadataResponse(fmt.Errorf("%s", w))); err != nil {
			return sendError(ctx, err)
		}
	}
	names := slices.Sorted(maps.Keys(md))
	for len(names) > 0 {
		n := min(len(names), metadataFamiliesPerFrame)
		frame := &metadatapb.MetricMetadata{Metadata: make(map[string]metadatapb.MetricMetadataEntry, n)}
		for _, name := range names[:n] {
			metas := make([]metadatapb.Meta, 0, len(md[name]))
			for _, e := range md[name] {
				metas = append(metas, metadatapb.Meta{Type: string(e.Type), Help: e.Help, Unit: e.Unit})
			}
			frame.Metadata[name] = metadatapb.MetricMetadataEntry{Metas: metas}
		}
		if err := srv.Send(metadatapb.NewMetricMetadataResponse(frame)); err != nil {
			return sendError(ctx, err)
		}
		names = names[n:]
	}
	return nil
}
