// Package storeapi serves the Thanos StoreAPI Store and Info gRPC services over a Prometheus
// storage.ChunkQueryable, and Thanos's Metadata and Exemplars services over a metadata and an
// exemplar source.
//
// A store's server has external labels: every series gets them (they override a series' own
// label of the same name, as in Thanos), so a querier can tell regions apart and prune stores.
// Matchers on external label names are answered from the external labels alone: a request that
// contradicts them is answered empty without touching the storage.
//
// A querier's server, stacked under another querier, has label sets instead: the external
// labels of the stores underneath, which the series it serves already carry. It adds no labels
// and passes every matcher on, but announces the label sets so that the querier above can
// prune it, and answers empty, without touching the storage, a request that none of them can
// match. Chunks are passed on as
// the storage holds them (XOR, histogram and float histogram encodings); FromQueryable turns a
// sample-based storage.Queryable into chunks for servers stacked on a querier.
package storeapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/thanos-io/thanos/pkg/exemplars/exemplarspb"
	"github.com/thanos-io/thanos/pkg/info/infopb"
	"github.com/thanos-io/thanos/pkg/metadata/metadatapb"
	"github.com/thanos-io/thanos/pkg/store/labelpb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc"

	_ "github.com/meridian-obs/meridian/internal/buildtag"
)

// DefaultMaxFrameBytes is the chunk payload after which a series is continued in a further
// frame, the same limit Thanos's TSDB store uses; it keeps every frame well below gRPC's
// default 4 MiB receive limit.
const DefaultMaxFrameBytes = 1 << 20

// Options configures a Server.
type Options struct {
	// ExternalLabels identify the store (at least the region). They are added to every series
	// and override a series' own label of the same name. Exactly one of ExternalLabels and
	// LabelSets is required.
	ExternalLabels labels.Labels
	// LabelSets, for a server that adds no labels (a querier over stores), returns the label
	// sets of the data it serves: every series carries all the labels of one of them. It is
	// called by every Info and on every request, so it should be cheap; its sets should be
	// sorted and unique, as Info announces them as given. A request that no set can match is
	// answered empty without touching the storage; a set without labels matches everything.
	LabelSets func() []labels.Labels
	// TimeRange returns the time range in milliseconds announced by Info. Nil announces
	// math.MinInt64 to math.MaxInt64.
	TimeRange func() (mint, maxt int64)
	// ComponentType is the infopb component type announced by Info ("store", "receive",
	// "query", ...). Empty announces "store".
	ComponentType string
	// RequestContext, when set, derives the context of each call from the request, e.g. to carry
	// whether partial responses are disabled to a fan-out querier underneath.
	RequestContext func(ctx context.Context, partialResponseDisabled bool) context.Context
	// MaxFrameBytes bounds the chunk bytes of one Series frame: a series whose chunks exceed it
	// is sent as consecutive frames with the same labels, as the StoreAPI allows. Zero means
	// DefaultMaxFrameBytes; negative means one frame per series whatever its size.
	MaxFrameBytes int
	// LabelVersion, when set, returns the version token of the label index (see package
	// labelindex) for a label request over [mint, maxt], and whether the answer stays right until
	// a change the store records after that token. It is called before the storage is read, and
	// the token is sent with the answer, so that a querier may keep the answer until such a
	// change.
	LabelVersion func(mint, maxt int64) (token string, ok bool)
	// Metadata, when set, is served as Thanos's Metadata service and announced in Info, so that
	// Thanos Query and Meridian's querier ask this store for /api/v1/metadata.
	Metadata MetadataSource
	// Exemplars, when set, is served as Thanos's Exemplars service and announced in Info; the
	// series labels of exemplars get the external labels, as those of Series do.
	Exemplars ExemplarSource
	// Logger receives storage errors; nil discards them.
	Logger *slog.Logger
	// Registerer, when set, receives the server's metrics.
	Registerer prometheus.Registerer
}

// Server implements the StoreAPI Store (storepb.StoreServer) and Info (infopb.InfoServer)
// services over a storage.ChunkQueryable. It is safe for concurrent use.
type Server struct {
	storepb.UnimplementedStoreServer
	infopb.UnimplementedInfoServer

	queryable      storage.ChunkQueryable
	extLabels      labels.Labels
	labelSets      func() []labels.Labels // nil when extLabels are set
	timeRange      func() (int64, int64)
	componentType  string
	requestContext func(context.Context, bool) context.Context
	labelVersion   func(int64, int64) (string, bool)
	metadata       MetadataSource
	exemplars      ExemplarSource
	maxFrameBytes  int
	logger         *slog.Logger
	metrics        *metrics
	shardBuffers   sync.Pool
}

var (
	_ storepb.StoreServer = (*Server)(nil)
	_ infopb.InfoServer   = (*Server)(nil)
)

// NewServer returns a StoreAPI server over q.
func NewServer(q storage.ChunkQueryable, opts Options) (*Server, error) {
	if q == nil {
		return nil, errors.New("storeapi: nil queryable")
	}
	switch {
	case opts.LabelSets != nil && !opts.ExternalLabels.IsEmpty():
		return nil, fmt.Errorf("storeapi: external labels %s and label sets are exclusive: a store adds its external labels, a querier announces its stores' label sets", opts.ExternalLabels)
	case opts.LabelSets == nil:
		if err := validateExternalLabels(opts.ExternalLabels); err != nil {
			return nil, err
		}
	}
	s := &Server{
		queryable:      q,
		extLabels:      opts.ExternalLabels.Copy(),
		labelSets:      opts.LabelSets,
		timeRange:      opts.TimeRange,
		componentType:  opts.ComponentType,
		requestContext: opts.RequestContext,
		labelVersion:   opts.LabelVersion,
		metadata:       opts.Metadata,
		exemplars:      opts.Exemplars,
		maxFrameBytes:  opts.MaxFrameBytes,
		logger:         opts.Logger,
		shardBuffers: sync.Pool{New: func() any {
			b := make([]byte, 0, 1024)
			return &b
		}},
	}
	if s.timeRange == nil {
		s.timeRange = func() (int64, int64) { return math.MinInt64, math.MaxInt64 }
	}
	if s.componentType == "" {
		s.componentType = "store"
	}
	if s.maxFrameBytes == 0 {
		s.maxFrameBytes = DefaultMaxFrameBytes
	}
	if s.logger == nil {
		s.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

func validateExternalLabels(ext labels.Labels) error {
	if ext.IsEmpty() {
		return errors.New("storeapi: external labels (at least the region) or label sets are required")
	}
	if name, dup := ext.HasDuplicateLabelNames(); dup {
		return fmt.Errorf("storeapi: external label %q set twice", name)
	}
	var err error
	ext.Range(func(l labels.Label) {
		if err == nil && (l.Name == "" || l.Value == "") {
			err = fmt.Errorf("storeapi: external label %q=%q: name and value must be non-empty", l.Name, l.Value)
		}
	})
	return err
}

// Register registers the Store and Info services on g, and the Metadata and Exemplars services
// when the options have their sources.
func (s *Server) Register(g *grpc.Server) {
	storepb.RegisterStoreServer(g, s)
	infopb.RegisterInfoServer(g, s)
	if s.metadata != nil {
		metadatapb.RegisterMetadataServer(g, metadataServer{s: s, src: s.metadata})
	}
	if s.exemplars != nil {
		exemplarspb.RegisterExemplarsServer(g, exemplarsServer{s: s, src: s.exemplars})
	}
}

// ExternalLabels returns a copy of the labels the server adds to every series; none for a
// server with label sets.
func (s *Server) ExternalLabels() labels.Labels {
	return s.extLabels.Copy()
}

// announcedLabelSets are the label sets Info announces: the external labels, or the label sets
// of the data served.
func (s *Server) announcedLabelSets() []labels.Labels {
	if s.labelSets == nil {
		return []labels.Labels{s.extLabels}
	}
	return s.labelSets()
}

// Info announces the label sets, the time range and the StoreAPI capabilities, which is what a
// Thanos or Meridian querier needs to add the server to its store set and prune it. As Thanos
// does, a querier announces one TSDB per label set of its stores, here with its whole range.
// The Metadata and Exemplars services are announced when served, as Thanos's sidecar and
// Receive announce theirs (exemplars over the store's time range).
func (s *Server) Info(context.Context, *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	mint, maxt := s.timeRange()
	lsets := labelpb.ZLabelSetsFromPromLabels(s.announcedLabelSets()...)
	tsdbs := make([]infopb.TSDBInfo, len(lsets))
	for i, ls := range lsets {
		tsdbs[i] = infopb.TSDBInfo{Labels: ls, MinTime: mint, MaxTime: maxt}
	}
	resp := &infopb.InfoResponse{
		LabelSets:     lsets,
		ComponentType: s.componentType,
		Store: &infopb.StoreInfo{
			MinTime:                      mint,
			MaxTime:                      maxt,
			SupportsSharding:             true,
			SupportsWithoutReplicaLabels: true,
			TsdbInfos:                    tsdbs,
		},
	}
	if s.metadata != nil {
		resp.MetricMetadata = &infopb.MetricMetadataInfo{}
	}
	if s.exemplars != nil {
		resp.Exemplars = &infopb.ExemplarsInfo{MinTime: mint, MaxTime: maxt}
	}
	return resp, nil
}

// callContext derives the context of one call from the request.
func (s *Server) callContext(ctx context.Context, partialResponseDisabled bool, strategy storepb.PartialResponseStrategy) context.Context {
	if s.requestContext == nil {
		return ctx
	}
	return s.requestContext(ctx, partialResponseDisabled || strategy == storepb.PartialResponseStrategy_ABORT)
}

// closeQuerier closes q, logging a failure: the answer is already complete by then.
func (s *Server) closeQuerier(method string, q storage.ChunkQuerier) {
	if err := q.Close(); err != nil {
		s.logger.Warn("close querier", "method", method, "err", err)
	}
}
