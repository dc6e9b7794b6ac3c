package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/features"
	"google.golang.org/grpc"

	"github.com/meridian-obs/meridian/internal/serve"
	"github.com/meridian-obs/meridian/internal/storeapi"
)

// ServerConfig is everything a querier is made of; `meridian query` fills it from flags and
// `meridian dev` in code.
type ServerConfig struct {
	Logger *slog.Logger
	// Registerer receives every component's metrics; Gatherer is served on /metrics. Both may
	// be nil (no metrics, no /metrics).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer

	StoreSet StoreSetOptions
	Fanout   FanoutOptions
	Engine   EngineOptions

	// HTTPAddress is where the HTTP API listens, e.g. "127.0.0.1:9090"; port 0 picks a free
	// port, readable from Server.HTTPAddr.
	HTTPAddress string
	// HTTPConfigFile is an exporter-toolkit web configuration (TLS, basic auth); empty serves
	// plain HTTP.
	HTTPConfigFile string

	// GRPCAddress is where the querier serves StoreAPI (so that another querier can sit on top
	// of it); empty serves none. Port 0 picks a free port, readable from Server.GRPCAddr.
	GRPCAddress   string
	GRPCServerTLS ServerTLS
	// ExternalLabels, when set, are announced by, and added to every series of, the querier's
	// StoreAPI, as a store's are. Without them the StoreAPI announces the label sets of the
	// querier's stores, which its series already carry, as Thanos Query does.
	ExternalLabels labels.Labels

	// Ready, when set, is a further condition of /-/ready after the store set's first probe
	// round: a non-nil error is the reason the querier is not ready yet. `meridian dev` uses
	// it so that /-/ready means its regions hold their backfill and the querier sees them.
	Ready func() error

	// LocalStores are TSDBs of this process read beside the store set (the ruler's): their
	// series are answered by the HTTP API and the StoreAPI, but they are no region.
	LocalStores []LocalStore

	// Flags are served on /api/v1/status/flags.
	Flags map[string]string
}

// Server is a running querier: store set, fan-out, PromQL engine, HTTP API and (stackable)
// StoreAPI server. Its listeners are bound by NewServer, so addresses are known before Run.
type Server struct {
	cfg    ServerConfig
	logger *slog.Logger

	set    *StoreSet
	fanout *Fanout
	// queryable is the fan-out and the local stores together: what every endpoint reads.
	queryable storage.Queryable
	engine    *promql.Engine
	api       *API
	router    *route.Router

	httpLis net.Listener
	httpSrv *http.Server
	grpcLis net.Listener
	grpcSrv *grpc.Server
}

// NewServer builds a querier and binds its listeners; Run serves until its context ends.
func NewServer(cfg ServerConfig) (_ *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := web.Validate(cfg.HTTPConfigFile); err != nil {
		return nil, fmt.Errorf("http config %s: %w", cfg.HTTPConfigFile, err)
	}
	s := &Server{cfg: cfg, logger: cfg.Logger}
	defer func() {
		if err != nil {
			s.closeListeners()
		}
	}()

	if cfg.StoreSet.RegionLabel == "" {
		cfg.StoreSet.RegionLabel = cfg.Fanout.RegionLabel
	}
	if s.set, err = NewStoreSet(cfg.Logger.With("component", "storeset"), cfg.Registerer, cfg.StoreSet); err != nil {
		return nil, fmt.Errorf("store set: %w", err)
	}
	s.fanout = NewFanout(cfg.Logger.With("component", "fanout"), cfg.Registerer, s.set, cfg.Fanout)
	s.queryable = s.fanout
	if len(cfg.LocalStores) > 0 {
		s.queryable = withLocalStores{fanout: s.fanout, local: cfg.LocalStores}
	}
	feat := features.NewRegistry()
	s.engine = NewEngine(cfg.Logger.With("component", "engine"), cfg.Registerer, feat, cfg.Engine)
	if s.api, err = NewAPI(APIOptions{
		Logger:     cfg.Logger.With("component", "api"),
		Registerer: cfg.Registerer,
		Gatherer:   cfg.Gatherer,
		Engine:     s.engine,
		Queryable:  s.queryable,
		Stores:     s.set.Stores,
		Ready:      s.ready,
		Flags:      cfg.Flags,
		Features:   feat,
		Metadata:   s.fanout,
		Exemplars:  s.fanout,
	}); err != nil {
		return nil, err
	}
	s.router = route.New()
	s.api.Register(s.router)

	if s.httpLis, err = net.Listen("tcp", cfg.HTTPAddress); err != nil {
		return nil, fmt.Errorf("listen http %s: %w", cfg.HTTPAddress, err)
	}
	s.httpSrv = &http.Server{Handler: s.router, ReadHeaderTimeout: 30 * time.Second}

	if cfg.GRPCAddress == "" {
		return s, nil
	}
	if err := s.newStoreAPIServer(); err != nil {
		return nil, err
	}
	return s, nil
}

// errFirstProbeRound is the reason /-/ready gives until every store was probed once.
var errFirstProbeRound = errors.New("the first probe round of the store set has not completed")

func (s *Server) ready() error {
	if !s.set.Ready() {
		return errFirstProbeRound
	}
	if s.cfg.Ready != nil {
		return s.cfg.Ready()
	}
	return nil
}

// newStoreAPIServer serves the fan-out as a StoreAPI store, so that a querier can be an
// endpoint of another querier. A request's PartialResponseDisabled becomes this querier's
// partial-response choice for the fan-out underneath, and the fan-out's warnings (a missing
// region) travel up as StoreAPI warnings.
func (s *Server) newStoreAPIServer() (err error) {
	opts := storeapi.Options{
		ExternalLabels: s.cfg.ExternalLabels,
		TimeRange:      s.storesTimeRange,
		ComponentType:  "query",
		RequestContext: func(ctx context.Context, partialResponseDisabled bool) context.Context {
			return WithPartialResponse(ctx, !partialResponseDisabled)
		},
		Metadata:   s.fanout,
		Exemplars:  s.fanout,
		Logger:     s.logger.With("component", "storeapi"),
		Registerer: s.cfg.Registerer,
	}
	if s.cfg.ExternalLabels.IsEmpty() {
		opts.LabelSets = s.storesLabelSets
	}
	srv, err := storeapi.NewServer(storeapi.FromQueryable(s.queryable), opts)
	if err != nil {
		return fmt.Errorf("storeapi server: %w", err)
	}
	grpcOpts, err := s.cfg.GRPCServerTLS.ServerOptions()
	if err != nil {
		return err
	}
	s.grpcSrv = grpc.NewServer(grpcOpts...)
	srv.Register(s.grpcSrv)
	if s.grpcLis, err = net.Listen("tcp", s.cfg.GRPCAddress); err != nil {
		return fmt.Errorf("listen grpc %s: %w", s.cfg.GRPCAddress, err)
	}
	return nil
}

// storesTimeRange announces the union of the healthy stores' and the local stores' time ranges;
// nothing at all when there is none, so that a querier above prunes this one instead of waiting
// on it.
func (s *Server) storesTimeRange() (int64, int64) {
	mint, maxt := int64(math.MaxInt64), int64(math.MinInt64)
	for _, l := range s.cfg.LocalStores {
		lmin, lmax := l.TimeRange()
		if lmin <= lmax {
			mint, maxt = min(mint, lmin), max(maxt, lmax)
		}
	}
	for _, st := range s.set.Stores() {
		if !st.Healthy {
			continue
		}
		mint, maxt = min(mint, st.MinTime), max(maxt, st.MaxTime)
	}
	return mint, maxt
}

// storesLabelSets is the union of the store set's label sets, sorted and without duplicates:
// what a querier above needs to prune this one. Unhealthy stores count, since the fan-out
// still accounts for them (a missing region is a warning, not silence). A store that has not
// announced any label set, e.g. because it never answered Info, may hold any series, as the
// fan-out assumes: it contributes the empty label set, which matches every request, so that
// neither this querier nor one above prunes it away.
func (s *Server) storesLabelSets() []labels.Labels {
	var out []labels.Labels
	for _, l := range s.cfg.LocalStores {
		out = append(out, l.ExternalLabels())
	}
	for _, st := range s.set.Stores() {
		if len(st.Labels) == 0 {
			out = append(out, labels.EmptyLabels())
			continue
		}
		out = append(out, st.Labels...)
	}
	slices.SortFunc(out, labels.Compare)
	return slices.CompactFunc(out, labels.Equal)
}

// Router is the HTTP router the API is mounted on; other roles running in the same process
// (SLO engine, readiness) add their endpoints to it before Run.
func (s *Server) Router() *route.Router { return s.router }

// HTTPAddr is the bound address of the HTTP API.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// GRPCAddr is the bound address of the StoreAPI server, empty when none is served.
func (s *Server) GRPCAddr() string {
	if s.grpcLis == nil {
		return ""
	}
	return s.grpcLis.Addr().String()
}

// StoreSet is the querier's store set (for readiness and status in the same process).
func (s *Server) StoreSet() *StoreSet { return s.set }

// Queryable is the fan-out over the store set, with the local stores beside it.
func (s *Server) Queryable() storage.Queryable { return s.queryable }

// ServeRules makes /api/v1/rules, /api/v1/alerts and /api/v1/alertmanagers answer from src (the
// ruler); call it before Run.
func (s *Server) ServeRules(src RuleSource) { s.api.ServeRules(src) }

// Engine is the querier's PromQL engine, for in-process evaluation (SLO engine, ruler).
func (s *Server) Engine() *promql.Engine { return s.engine }

// Run serves until ctx ends or a component fails; each component is an actor of one run group,
// so one failing stops the others. It returns nil after an orderly shutdown.
func (s *Server) Run(ctx context.Context) error {
	defer s.closeListeners()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var g run.Group
	g.Add(func() error {
		<-ctx.Done()
		return nil
	}, func(error) { cancel() })

	setCtx, stopSet := context.WithCancel(context.Background())
	g.Add(func() error {
		if err := s.set.Run(setCtx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("store set: %w", err)
		}
		return nil
	}, func(error) { stopSet() })

	serve.HTTP(&g, s.httpLis, s.httpSrv, s.cfg.HTTPConfigFile, s.logger)

	if s.grpcSrv != nil {
		if s.cfg.ExternalLabels.IsEmpty() {
			s.logger.Info("serving StoreAPI", "address", s.GRPCAddr(), "label_sets", "from stores")
		} else {
			s.logger.Info("serving StoreAPI", "address", s.GRPCAddr(), "external_labels", s.cfg.ExternalLabels.String())
		}
		serve.GRPC(&g, s.grpcLis, s.grpcSrv, nil)
	}
	return g.Run()
}

func (s *Server) closeListeners() {
	for _, l := range []net.Listener{s.httpLis, s.grpcLis} {
		if l != nil {
			_ = l.Close()
		}
	}
}
