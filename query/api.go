package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/grafana/regexp"
	"github.com/klauspost/compress/gzhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/features"
	"github.com/prometheus/prometheus/util/httputil"
	"github.com/prometheus/prometheus/util/notifications"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/meridian-obs/meridian/internal/storeapi"
)

// partialResponseParam is the request parameter (query string or form body) that overrides the
// querier's partial-response default for one request, as in Thanos Query.
const (
	partialResponseParam = "partial_response"
	dedupParam           = "dedup"
)

// APIOptions configures the querier's HTTP API.
type APIOptions struct {
	Logger *slog.Logger
	// Registerer receives the API's own metrics (requests by handler and code, and the
	// remote-read handler's gauge); nil registers nothing.
	Registerer prometheus.Registerer
	// Gatherer is served on /metrics; nil leaves /metrics out.
	Gatherer prometheus.Gatherer
	// Engine evaluates PromQL; it should have per-step statistics enabled so that stats=all works.
	Engine promql.QueryEngine
	// Queryable is the data behind every endpoint, normally the Fanout.
	Queryable storage.Queryable
	// Stores lists the store set for GET /api/v1/stores; nil serves an empty list.
	Stores func() []StoreStatus
	// Ready tells /-/ready whether the querier is ready: nil, or a nil error, means ready; an
	// error is served with the 503 as the reason (the store set has not finished its first
	// probe round, or `meridian dev` has not stored and seen its backfill).
	Ready func() error
	// Flags is served on /api/v1/status/flags.
	Flags map[string]string
	// Features is served on /api/v1/features; pass the registry the engine was built with.
	Features features.Collector
	// CORSOrigin restricts cross-origin requests; nil allows every origin, like Prometheus's default.
	CORSOrigin *regexp.Regexp
	// Metadata answers /api/v1/metadata and Exemplars /api/v1/query_exemplars, normally the
	// Fanout over the stores that serve them; nil answers them empty.
	Metadata  storeapi.MetadataSource
	Exemplars storeapi.ExemplarSource
}

// RuleSource is what /api/v1/rules, /api/v1/alerts and /api/v1/alertmanagers show: the rule
// groups of the ruler running in the querier's process and the Alertmanagers it sends to.
// Prometheus's own handlers render them, so Grafana's alert list and the Prometheus UI read
// them as they read a Prometheus's.
type RuleSource interface {
	v1.RulesRetriever
	v1.AlertmanagerRetriever
}

// API is the querier's HTTP surface: Prometheus's /api/v1 (served by Prometheus's own web/api/v1
// package so that Grafana and other clients see exactly Prometheus's behaviour, error types and
// status codes included), plus /api/v1/stores, /-/healthy, /-/ready and /metrics.
type API struct {
	opts    APIOptions
	logger  *slog.Logger
	prom    *v1.API
	metrics *apiMetrics
	build   buildInfo
	// compress gzips answers for clients that accept it, from pooled writers.
	compress func(http.Handler) http.HandlerFunc
	// rules is the RuleSource set by ServeRules; nil serves no rules and no Alertmanagers.
	rules atomic.Pointer[RuleSource]
}

// ServeRules makes /api/v1/rules, /api/v1/alerts and /api/v1/alertmanagers answer from src.
func (a *API) ServeRules(src RuleSource) { a.rules.Store(&src) }

func (a *API) ruleSource() RuleSource {
	if p := a.rules.Load(); p != nil && *p != nil {
		return *p
	}
	return noRules{}
}

// responseCompressionMinSize is the answer size below which the API answers uncompressed: a
// gzip frame does not pay for itself on a short label list.
const responseCompressionMinSize = 1024

type apiMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newAPIMetrics(reg prometheus.Registerer) *apiMetrics {
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_query_http_requests_total",
			Help: "HTTP requests served by the querier, by handler and status code.",
		}, []string{"handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        "meridian_query_http_request_duration_seconds",
			Help:                        "Time to serve HTTP requests of the querier, by handler.",
			Buckets:                     prometheus.DefBuckets,
			NativeHistogramBucketFactor: 1.1,
		}, []string{"handler"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

// NewAPI builds the HTTP API over opts.Queryable and opts.Engine.
func NewAPI(opts APIOptions) (*API, error) {
	if opts.Engine == nil {
		return nil, errors.New("new query API: no PromQL engine")
	}
	if opts.Queryable == nil {
		return nil, errors.New("new query API: no queryable")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Features == nil {
		opts.Features = features.NewRegistry()
	}
	if opts.CORSOrigin == nil {
		opts.CORSOrigin = regexp.MustCompile(".*")
	}
	compress, err := gzhttp.NewWrapper(gzhttp.MinSize(responseCompressionMinSize))
	if err != nil {
		return nil, fmt.Errorf("new query API: response compression: %w", err)
	}
	a := &API{opts: opts, logger: opts.Logger, metrics: newAPIMetrics(opts.Registerer), build: newBuildInfo(), compress: compress}
	promVersion := a.build.PrometheusVersion
	a.prom = v1.NewAPI(
		opts.Engine,
		sampleAndChunkQueryable(opts.Queryable),
		nil, // no appender: the querier takes no writes
		emptyExemplarQueryable{},
		func(_ context.Context) v1.ScrapePoolsRetriever { return noScrapes{} },
		func(_ context.Context) v1.TargetRetriever { return noScrapes{} },
		func(_ context.Context) v1.AlertmanagerRetriever { return a.ruleSource() },
		func() config.Config { return config.DefaultConfig },
		opts.Flags,
		v1.GlobalURLOptions{},
		func(h http.HandlerFunc) http.HandlerFunc { return h }, // queries are served before the first probe round: missing stores are reported per answer
		noLocalTSDB{},
		"",
		false, // no admin endpoints: there is no local TSDB to administer
		opts.Logger,
		func(_ context.Context) v1.RulesRetriever { return a.ruleSource() },
		0,       // remote read: no sample limit
		1,       // remote read: concurrency
		1048576, // remote read: max bytes per frame, Prometheus's default
		false,   // not an agent
		opts.CORSOrigin,
		runtimeInfo(time.Now()),
		&promVersion,
		func() []notifications.Notification { return []notifications.Notification{} },
		func() (<-chan notifications.Notification, func(), bool) { return nil, func() {}, false },
		gathererOrEmpty(opts.Gatherer),
		opts.Registerer,
		nil,   // default stats renderer
		false, // no remote-write receiver
		nil,
		false, false, false, // no OTLP receiver
		false,
		0,
		false,
		false,
		overrideErrorCode,
		opts.Features,
	)
	return a, nil
}

// Register mounts the API on r: Prometheus's endpoints under /api/v1, /api/v1/stores,
// /-/healthy, /-/ready and /metrics. Later roles (the SLO engine's /api/v1/slos and readiness
// endpoints) register on the same router.
func (a *API) Register(r *route.Router) {
	a.prom.Register(r.WithPrefix("/api/v1").WithInstrumentation(a.instrumentV1))
	inst := r.WithInstrumentation(a.instrument)
	inst.Get("/api/v1/stores", a.stores)
	inst.Get("/-/healthy", healthy)
	inst.Head("/-/healthy", healthy)
	inst.Get("/-/ready", a.ready)
	inst.Head("/-/ready", a.ready)
	if a.opts.Gatherer != nil {
		inst.Get("/metrics", promhttp.HandlerFor(a.opts.Gatherer, promhttp.HandlerOpts{}).ServeHTTP)
	}
	// Go's profiler, where Prometheus and Thanos serve it.
	r.Get("/debug/pprof/*subpath", servePprof)
}

func servePprof(w http.ResponseWriter, r *http.Request) {
	switch route.Param(r.Context(), "subpath") {
	case "/cmdline":
		pprof.Cmdline(w, r)
	case "/profile":
		pprof.Profile(w, r)
	case "/symbol":
		pprof.Symbol(w, r)
	case "/trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r)
	}
}

// instrumentV1 wraps each of Prometheus's /api/v1 handlers: it replaces buildinfo, metadata
// and query_exemplars (answered from the stores, with the fan-out's warnings) with ours and
// puts the partial-response middleware and the request metrics in front of every endpoint.
func (a *API) instrumentV1(name string, h http.HandlerFunc) http.HandlerFunc {
	switch {
	case name == "/status/buildinfo":
		h = a.serveBuildInfo
	case name == "/metadata" && a.opts.Metadata != nil:
		h = a.serveMetadata
	case name == "/query_exemplars" && a.opts.Exemplars != nil:
		h = a.serveExemplars
	}
	if !slices.Contains(uncompressedEndpoints, name) {
		h = a.compress(uncompressed(h))
	}
	return a.instrument("/api/v1"+name, withPartialResponse(h))
}

// uncompressedEndpoints are the /api/v1 endpoints Prometheus does not compress: remote read
// (snappy already), the receivers, and the live notification stream.
var uncompressedEndpoints = []string{"/read", "/write", "/otlp/v1/metrics", "/status/walreplay", "/notifications", "/notifications/live"}

// uncompressed hides the client's Accept-Encoding from h. Prometheus's handlers compress their
// answers themselves with a new gzip writer per request (about 1 MiB of compressor state to
// allocate and clear, which made a 24-value label list cost 2-3 ms of CPU and garbage
// collection); the API compresses in front of them instead, with pooled writers, and leaves
// short answers uncompressed.
func uncompressed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "" {
			r = r.Clone(r.Context())
			r.Header.Del("Accept-Encoding")
		}
		h(w, r)
	}
}

func (a *API) instrument(name string, h http.HandlerFunc) http.HandlerFunc {
	labels := prometheus.Labels{"handler": name}
	return promhttp.InstrumentHandlerDuration(a.metrics.duration.MustCurryWith(labels),
		promhttp.InstrumentHandlerCounter(a.metrics.requests.MustCurryWith(labels), h))
}

// withPartialResponse reads the fan-out's per-request choices, as Thanos Query names them,
// from the query string or form body into the request context: partial_response=true|false and
// dedup=true|false. An invalid value is a bad_data error, like any bad parameter.
func withPartialResponse(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			writeError(w, "bad_data", http.StatusBadRequest, fmt.Errorf("error parsing form values: %w", err))
			return
		}
		ctx := r.Context()
		for _, p := range []struct {
			name string
			set  func(context.Context, bool) context.Context
		}{
			{partialResponseParam, WithPartialResponse},
			{dedupParam, WithDedup},
		} {
			v := r.Form.Get(p.name)
			if v == "" {
				continue
			}
			enabled, err := strconv.ParseBool(v)
			if err != nil {
				writeError(w, "bad_data", http.StatusBadRequest, fmt.Errorf("invalid parameter %q: %w", p.name, err))
				return
			}
			ctx = p.set(ctx, enabled)
		}
		next(w, r.WithContext(ctx))
	}
}

func (a *API) stores(w http.ResponseWriter, r *http.Request) {
	httputil.SetCORS(w, a.opts.CORSOrigin, r)
	data := []StoreStatus{}
	if a.opts.Stores != nil {
		if s := a.opts.Stores(); s != nil {
			data = s
		}
	}
	a.writeSuccess(w, data)
}

func (a *API) serveBuildInfo(w http.ResponseWriter, r *http.Request) {
	httputil.SetCORS(w, a.opts.CORSOrigin, r)
	a.writeSuccess(w, a.build)
}

func (a *API) ready(w http.ResponseWriter, _ *http.Request) {
	if a.opts.Ready != nil {
		if err := a.opts.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "Meridian querier is not ready: %v.\n", err)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
	fmt.Fprintln(w, "Meridian querier is ready.")
}

func healthy(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusOK)
	fmt.Fprintln(w, "Meridian querier is healthy.")
}

func (a *API) writeSuccess(w http.ResponseWriter, data any) {
	b, err := json.Marshal(&v1.Response{Status: "success", Data: data})
	if err != nil {
		a.logger.Error("marshal API response", "err", err)
		writeError(w, "internal", http.StatusInternalServerError, fmt.Errorf("marshal response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// writeError answers in Prometheus's error format: {"status":"error","errorType":...,"error":...}.
func writeError(w http.ResponseWriter, errorType string, code int, err error) {
	b, _ := json.Marshal(&v1.Response{Status: "error", ErrorType: errorType, Error: err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// overrideErrorCode keeps Prometheus's status codes except for two cases it cannot know about:
// a store call that ran out of time with partial response off is a timeout (503) rather than a
// generic execution error (422), so is a query that waited past its deadline for one of the
// --query.max-concurrent slots (Prometheus reports that as bad_data), and endpoints that need a
// local TSDB answer 404.
//
// It is generic only because v1.OverrideErrorCode's first parameter has an unexported type: the
// compiler infers it where the function is passed to v1.NewAPI.
func overrideErrorCode[N ~int](num N, err error) (int, bool) {
	switch {
	case errors.Is(err, errNoLocalTSDB):
		return http.StatusNotFound, true
	case int(num) == int(v1.ErrorExec) && errors.Is(err, context.DeadlineExceeded),
		int(num) == int(v1.ErrorBadData) && errors.As(err, new(promql.ErrQueryTimeout)): // timed out waiting for a query slot
		return http.StatusServiceUnavailable, true
	}
	return 0, false
}
