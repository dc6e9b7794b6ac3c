package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"sync/atomic"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/prometheus/prometheus/util/compression"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/meridian-obs/meridian/internal/labelindex"
	"github.com/meridian-obs/meridian/internal/serve"
	"github.com/meridian-obs/meridian/internal/storeapi"
)

// walCompression is the WAL record compression; Prometheus enables snappy by default.
const walCompression = compression.Snappy

// Node is one ingest store: listeners bound, TSDB opened in the background by Run.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics

	httpLn, grpcLn net.Listener
	httpServer     *http.Server
	grpcServer     *grpc.Server
	health         *health.Server
	handler        http.Handler

	db       atomic.Pointer[tsdb.DB]
	headInit *headInitGate // set with db, before it
	meta     *metadataStore
	labels   *labelindex.Tracker
	shipper  *shipper // nil without a bucket
	// maxSeriesRef is the highest head series reference seen (the head numbers series in
	// creation order): a series with a higher one is newer than any seen.
	maxSeriesRef atomic.Uint64
}

// New validates cfg, binds the HTTP and gRPC listeners (so HTTPAddr and GRPCAddr are known at
// once, also for port 0) and builds the servers. reg receives the node's, the TSDB's and the
// StoreAPI's metrics and is what /metrics serves. Nothing is served before Run.
func New(logger *slog.Logger, reg *prometheus.Registry, cfg Config) (*Node, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest config: %w", err)
	}
	if cfg.HTTPConfigFile != "" {
		if err := web.Validate(cfg.HTTPConfigFile); err != nil {
			return nil, fmt.Errorf("http config %s: %w", cfg.HTTPConfigFile, err)
		}
	}
	grpcCreds, err := grpcServerCredentials(cfg.GRPCTLS)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, logger: logger, reg: reg, metrics: newMetrics(reg), meta: newMetadataStore(nil)}
	if cfg.Bucket != nil {
		n.shipper = newShipper(logger, reg, cfg.Bucket, cfg.TSDBPath, cfg.ExternalLabels)
	}
	n.labels = labelindex.NewTracker(func() (labelindex.State, bool) {
		db := n.db.Load()
		if db == nil {
			return labelindex.State{}, false
		}
		return labelindex.TSDBState(db), true
	})

	storeOpts := storeapi.Options{
		ExternalLabels: cfg.ExternalLabels,
		TimeRange:      n.timeRange,
		ComponentType:  "receive",
		LabelVersion:   n.labelVersion,
		Metadata:       n.meta,
		Logger:         logger,
		Registerer:     reg,
	}
	if cfg.MaxExemplars > 0 {
		storeOpts.Exemplars = storeapi.FromExemplarQueryable(lazyQueryable{n})
	}
	store, err := storeapi.NewServer(lazyQueryable{n}, storeOpts)
	if err != nil {
		return nil, fmt.Errorf("storeapi server: %w", err)
	}
	var opts []grpc.ServerOption
	if grpcCreds != nil {
		opts = append(opts, grpc.Creds(grpcCreds))
	}
	n.grpcServer = grpc.NewServer(opts...)
	store.Register(n.grpcServer)
	n.labels.Register(n.grpcServer)
	n.health = health.NewServer()
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(n.grpcServer, n.health)

	n.handler = n.routes(newWriteHandler(logger, reg, nodeAppendable{n}, cfg.MaxBodySize, n.metrics, n.meta, cfg.MaxExemplars > 0))
	n.httpServer = &http.Server{
		Handler:           n.handler,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
	}

	if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddress); err != nil {
		return nil, fmt.Errorf("listen http on %s: %w", cfg.HTTPAddress, err)
	}
	if n.grpcLn, err = net.Listen("tcp", cfg.GRPCAddress); err != nil {
		_ = n.httpLn.Close()
		return nil, fmt.Errorf("listen grpc on %s: %w", cfg.GRPCAddress, err)
	}
	return n, nil
}

// HTTPAddr is the bound address of the HTTP server (remote write, health, metrics).
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// GRPCAddr is the bound address of the StoreAPI server.
func (n *Node) GRPCAddr() string { return n.grpcLn.Addr().String() }

// Handler serves the node's HTTP API (also usable without the node's own listener).
func (n *Node) Handler() http.Handler { return n.handler }

// DB is the node's TSDB, or nil until Run has opened it (WAL replay done).
func (n *Node) DB() *tsdb.DB { return n.db.Load() }

// Ready reports whether the TSDB is open and the node accepts writes and queries.
func (n *Node) Ready() bool { return n.db.Load() != nil }

// Run serves HTTP and gRPC at once, opens the TSDB (replaying its WAL) meanwhile, and blocks
// until ctx is cancelled or a server fails. On return the servers are stopped and the TSDB is
// closed; a Node is not reusable.
func (n *Node) Run(ctx context.Context) error {
	var g run.Group
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			<-ctx.Done()
			return nil
		}, func(error) { cancel() })
	}
	serve.HTTP(&g, n.httpLn, n.httpServer, n.cfg.HTTPConfigFile, n.logger)
	serve.GRPC(&g, n.grpcLn, n.grpcServer, func() {
		n.health.Shutdown()
		n.labels.Shutdown()
	})
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			n.labels.Run(ctx, labelCheckInterval)
			return nil
		}, func(error) { cancel() })
	}
	{
		stop := make(chan struct{})
		g.Add(func() error {
			if err := n.openTSDB(); err != nil {
				return err
			}
			<-stop
			return nil
		}, func(error) { close(stop) })
	}
	if n.shipper != nil {
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			n.shipper.run(ctx, n.DB)
			return nil
		}, func(error) { cancel() })
	}
	n.logger.Info("ingest node starting", "http", n.HTTPAddr(), "grpc", n.GRPCAddr(), "tsdb", n.cfg.TSDBPath, "external_labels", n.cfg.ExternalLabels.String())
	err := g.Run()
	if db := n.db.Load(); db != nil {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close tsdb %s: %w", n.cfg.TSDBPath, cerr))
		}
		n.metrics.ready.Set(0)
	}
	return err
}

func (n *Node) openTSDB() error {
	start := time.Now()
	opts := tsdbOptions(n.cfg)
	if n.shipper != nil {
		n.shipper.configure(opts)
	}
	db, err := tsdb.Open(n.cfg.TSDBPath, n.logger.With("component", "tsdb"), n.reg, opts, nil)
	if err != nil {
		return fmt.Errorf("open tsdb %s: %w", n.cfg.TSDBPath, err)
	}
	if n.shipper != nil {
		n.shipper.opened(db)
	}
	took := time.Since(start)
	n.metrics.walReplay.Set(took.Seconds())
	maxRef, err := maxSeriesRef(db.Head())
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("open tsdb %s: %w", n.cfg.TSDBPath, err)
	}
	n.maxSeriesRef.Store(maxRef)
	n.headInit = newHeadInitGate(db.Head())
	n.db.Store(db)
	n.metrics.ready.Set(1)
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	n.logger.Info("tsdb open, node ready", "tsdb", n.cfg.TSDBPath, "took", took, "head_series", db.Head().NumSeries())
	return nil
}

// tsdbOptions follows Prometheus's defaults and flag handling: 2h blocks, the largest block a
// tenth of the retention (at most 31 days), snappy-compressed WAL.
func tsdbOptions(cfg Config) *tsdb.Options {
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = cfg.Retention.Milliseconds()
	opts.MaxBytes = cfg.RetentionSize
	opts.OutOfOrderTimeWindow = cfg.OutOfOrderTimeWindow.Milliseconds()
	opts.MinBlockDuration = cfg.BlockDuration.Milliseconds()
	maxBlock := min(cfg.Retention/10, 31*24*time.Hour)
	opts.MaxBlockDuration = max(maxBlock.Milliseconds(), opts.MinBlockDuration)
	opts.WALCompression = walCompression
	opts.EnableExemplarStorage = cfg.MaxExemplars > 0
	opts.MaxExemplars = cfg.MaxExemplars
	return opts
}

// timeRange is what Info announces: from the oldest sample held to "now and later", since data
// keeps arriving (as Thanos Receive does). Before the TSDB is open the node holds nothing.
func (n *Node) timeRange() (int64, int64) {
	db := n.db.Load()
	if db == nil {
		return math.MaxInt64, math.MinInt64
	}
	mint, err := db.StartTime()
	if err != nil {
		return math.MinInt64, math.MaxInt64
	}
	return mint, math.MaxInt64
}

// labelCheckInterval is how often the label index version is checked for what changes it
// without a write (compaction, head truncation, retention).
const labelCheckInterval = 100 * time.Millisecond

// labelVersion versions label answers over [mint, maxt] (storeapi.Options.LabelVersion).
func (n *Node) labelVersion(mint, _ int64) (string, bool) {
	db := n.db.Load()
	if db == nil {
		return "", false
	}
	tok := n.labels.Check()
	// A range the head has not reached yet gains the head's values as soon as a sample reaches
	// it, which creates no series and so keeps the version: such answers are not versioned.
	return tok, tok != "" && mint <= db.Head().MaxTime()
}

// nodeAppendable appends to the TSDB; the write handler only runs once it is open.
type nodeAppendable struct{ n *Node }

func (a nodeAppendable) Appender(ctx context.Context) storage.Appender {
	db := a.n.db.Load()
	app := &versioningAppender{
		head:   db.Head(),
		gate:   a.n.headInit,
		labels: a.n.labels,
		maxRef: &a.n.maxSeriesRef,
		known:  a.n.maxSeriesRef.Load(),
	}
	if app.gate.enter() {
		defer app.gate.leave()
	}
	app.Appender = db.Appender(ctx)
	return app
}

// maxSeriesRef is the highest series reference in the head.
func maxSeriesRef(h *tsdb.Head) (uint64, error) {
	ir, err := h.Index()
	if err != nil {
		return 0, fmt.Errorf("head index: %w", err)
	}
	defer ir.Close()
	name, value := index.AllPostingsKey()
	p, err := ir.Postings(context.Background(), name, value)
	if err != nil {
		return 0, fmt.Errorf("head postings: %w", err)
	}
	var maxRef uint64
	for p.Next() {
		maxRef = max(maxRef, uint64(p.At()))
	}
	return maxRef, p.Err()
}

// versioningAppender tells the label index tracker which metrics gained series, once the write
// is committed (or rolled back: created series stay) and before it is acknowledged, so that a
// querier stops using the answers that miss them. A series is taken as new when its reference
// is higher than any the node had seen when the appender was made (the head numbers series in
// creation order), or when the head's series count moved during its append (which also catches
// a series created by an append that then failed). Either may take an older series for a new
// one, which only retires a few more answers; a new one is never missed unless a failed append
// and a head truncation cancel out exactly.
type versioningAppender struct {
	storage.Appender
	head    *tsdb.Head
	gate    *headInitGate // every call that can initialize the head passes it
	labels  *labelindex.Tracker
	maxRef  *atomic.Uint64
	known   uint64              // maxRef when the appender was made
	created map[string]struct{} // metric names of the series created
}

func (a *versioningAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	if a.gate.enter() {
		defer a.gate.leave()
	}
	before := a.head.NumSeries()
	ref, err := a.Appender.Append(ref, l, t, v)
	a.noteCreated(before, ref, l)
	return ref, err
}

func (a *versioningAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	if a.gate.enter() {
		defer a.gate.leave()
	}
	before := a.head.NumSeries()
	ref, err := a.Appender.AppendHistogram(ref, l, t, h, fh)
	a.noteCreated(before, ref, l)
	return ref, err
}

func (a *versioningAppender) AppendSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64) (storage.SeriesRef, error) {
	if a.gate.enter() {
		defer a.gate.leave()
	}
	before := a.head.NumSeries()
	ref, err := a.Appender.AppendSTZeroSample(ref, l, t, st)
	a.noteCreated(before, ref, l)
	return ref, err
}

func (a *versioningAppender) AppendHistogramSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	if a.gate.enter() {
		defer a.gate.leave()
	}
	before := a.head.NumSeries()
	ref, err := a.Appender.AppendHistogramSTZeroSample(ref, l, t, st, h, fh)
	a.noteCreated(before, ref, l)
	return ref, err
}

// AppendExemplar passes the gate as well: on an empty head, the TSDB's first appender
// initializes the head from an exemplar too.
func (a *versioningAppender) AppendExemplar(ref storage.SeriesRef, l labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	if a.gate.enter() {
		defer a.gate.leave()
	}
	return a.Appender.AppendExemplar(ref, l, e)
}

// GetRef finds a series the head already has (storage.GetRef); appending to it by reference
// creates nothing.
func (a *versioningAppender) GetRef(lset labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	if g, ok := a.Appender.(storage.GetRef); ok {
		return g.GetRef(lset, hash)
	}
	return 0, labels.EmptyLabels()
}

func (a *versioningAppender) noteCreated(before uint64, ref storage.SeriesRef, l labels.Labels) {
	r := uint64(ref)
	for {
		seen := a.maxRef.Load()
		if r <= seen || a.maxRef.CompareAndSwap(seen, r) {
			break
		}
	}
	if r <= a.known && a.head.NumSeries() == before {
		return
	}
	if a.created == nil {
		a.created = map[string]struct{}{}
	}
	a.created[l.Get(labels.MetricName)] = struct{}{}
}

func (a *versioningAppender) Commit() error {
	err := a.Appender.Commit()
	a.report()
	return err
}

func (a *versioningAppender) Rollback() error {
	err := a.Appender.Rollback()
	a.report()
	return err
}

func (a *versioningAppender) report() {
	if len(a.created) > 0 {
		a.labels.SeriesCreated(slices.Collect(maps.Keys(a.created)))
		clear(a.created)
	}
	a.labels.Check() // out-of-order samples may have widened the head's out-of-order range
}

// errNotReady is what queries get while the WAL is being replayed.
var errNotReady = status.Error(codes.Unavailable, "tsdb is still opening (WAL replay)")

// lazyQueryable queries the TSDB once it is open.
type lazyQueryable struct{ n *Node }

func (q lazyQueryable) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	db := q.n.db.Load()
	if db == nil {
		return nil, errNotReady
	}
	return db.ChunkQuerier(mint, maxt)
}

func (q lazyQueryable) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	db := q.n.db.Load()
	if db == nil {
		return nil, errNotReady
	}
	return db.ExemplarQuerier(ctx)
}

func (n *Node) routes(write http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/v1/write", n.whenReady(write))
	// Go's profiler, where Prometheus and Thanos serve it.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintln(w, "Meridian ingest is Healthy.")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !n.Ready() {
			http.Error(w, "Service Unavailable: TSDB is opening (WAL replay).", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintln(w, "Meridian ingest is Ready.")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg, EnableOpenMetrics: true}))
	return mux
}

// whenReady answers 503 (which remote-write senders retry) until the TSDB is open.
func (n *Node) whenReady(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !n.Ready() {
			n.metrics.requestsRejected.WithLabelValues("not_ready").Inc()
			http.Error(w, "Service Unavailable: TSDB is opening (WAL replay).", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// grpcServerCredentials builds the StoreAPI server's TLS credentials, or nil for plaintext.
func grpcServerCredentials(c GRPCTLSConfig) (credentials.TransportCredentials, error) {
	cfg, err := serverTLSConfig(c)
	if err != nil || cfg == nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}
