package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/thanos/pkg/exemplars/exemplarspb"
	"github.com/thanos-io/thanos/pkg/info/infopb"
	"github.com/thanos-io/thanos/pkg/metadata/metadatapb"
	"github.com/thanos-io/thanos/pkg/store/labelpb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/meridian-obs/meridian/internal/buildtag"
	"github.com/meridian-obs/meridian/internal/labelindex"
)

// StoreSetOptions configures the store endpoints and how they are watched.
type StoreSetOptions struct {
	// Endpoints are "host:port", "dns+host:port" (one store per A/AAAA record) or
	// "dnssrv+_grpc._tcp.name" (one store per SRV record).
	Endpoints []string
	// SDFiles are Prometheus file_sd files (YAML, or JSON by extension) listing store targets:
	// [{targets: [...], labels: {...}}]. They are re-read every FileSDInterval and applied when
	// their content changes.
	SDFiles []string
	// DialOptions are used for every store connection (TLS etc.); insecure when empty.
	DialOptions []grpc.DialOption
	// ProbeInterval is how often each store is asked for Info; default 5s.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one Info call; default 2s.
	ProbeTimeout time.Duration
	// ResolveInterval is how often dns+ and dnssrv+ endpoints are re-resolved; default 30s.
	ResolveInterval time.Duration
	// FileSDInterval is how often SDFiles are checked for changes; default 5s.
	FileSDInterval time.Duration
	// RegionLabel is the label that names a store's region in StoreStatus; default "region".
	RegionLabel string
	// LabelCache follows the label index changes of stores that publish them (Meridian ingest,
	// see package labelindex), so that the fan-out answers label calls to them from the answers
	// it already has until a change they depend on. Other stores are asked every time.
	LabelCache bool
}

// StoreStatus is what the store set knows about one store, for GET /api/v1/stores and readiness.
type StoreStatus struct {
	Address string          `json:"address"`
	Labels  []labels.Labels `json:"labelSets"` // external label sets from Info
	MinTime int64           `json:"minTime"`
	MaxTime int64           `json:"maxTime"`
	Healthy bool            `json:"healthy"`
	// Region is the region label of the store's label sets, or of its discovery labels when
	// Info never answered (StoreSetOptions.RegionLabel names it).
	Region    string    `json:"region,omitempty"`
	LastError string    `json:"lastError,omitempty"`
	LastCheck time.Time `json:"lastCheck"`
	// LastFailureReason and LastFailureTime are those of the latest failed probe or call (see
	// failure.go for the reasons); they stay after the store recovers.
	LastFailureReason string    `json:"lastFailureReason,omitempty"`
	LastFailureTime   time.Time `json:"lastFailureTime,omitzero"`
}

// StoreSet keeps a connection and the last Info answer for every configured or discovered
// StoreAPI endpoint. A store that stops answering stays in the set, unhealthy, until it is
// removed from the configuration or from discovery: the fan-out keeps accounting for it.
type StoreSet struct {
	logger  *slog.Logger
	opts    StoreSetOptions
	disc    *discovery
	metrics *storeSetMetrics
	ready   atomic.Bool

	discMu sync.Mutex // serialises discovery updates and syncs

	mu       sync.RWMutex
	stores   map[string]*storeRef
	watchCtx context.Context // Run's context, once Run has started: label version watchers run under it
}

type storeSetMetrics struct {
	up          *prometheus.GaugeVec
	probeErrors *prometheus.CounterVec
	stores      prometheus.GaugeFunc
}

// NewStoreSet validates the endpoints and creates the static stores; Run probes and discovers.
func NewStoreSet(logger *slog.Logger, reg prometheus.Registerer, opts StoreSetOptions) (*StoreSet, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.RegionLabel == "" {
		opts.RegionLabel = "region"
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = 5 * time.Second
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = 2 * time.Second
	}
	if opts.ResolveInterval <= 0 {
		opts.ResolveInterval = 30 * time.Second
	}
	if opts.FileSDInterval <= 0 {
		opts.FileSDInterval = 5 * time.Second
	}
	if len(opts.DialOptions) == 0 {
		opts.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	// gRPC's default reconnect backoff grows to two minutes, during which a store that is back
	// would still be reported missing; cap it so a recovered region rejoins within seconds.
	opts.DialOptions = append([]grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
		MinConnectTimeout: 5 * time.Second,
	})}, opts.DialOptions...)
	disc, err := newDiscovery(logger, opts.Endpoints, opts.SDFiles)
	if err != nil {
		return nil, err
	}
	// A file given at start must be good: a querier that starts on a broken file would report
	// ready and answer nothing. Later edits that break it keep the previous targets instead.
	if err := disc.readFiles(); err != nil {
		return nil, fmt.Errorf("endpoint SD files: %w", err)
	}
	s := &StoreSet{
		logger: logger,
		opts:   opts,
		disc:   disc,
		stores: map[string]*storeRef{},
	}
	s.metrics = &storeSetMetrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meridian_query_store_up",
			Help: "Whether the store answered its last Info probe (1) or not (0).",
		}, []string{"store"}),
		probeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_query_store_probe_failures_total",
			Help: "Info probes that failed, per store.",
		}, []string{"store"}),
		stores: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meridian_query_stores",
			Help: "Stores in the store set, healthy or not.",
		}, func() float64 {
			s.mu.RLock()
			defer s.mu.RUnlock()
			return float64(len(s.stores))
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.metrics.up, s.metrics.probeErrors, s.metrics.stores, newStoreStatusCollector(s)} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register store set metrics: %w", err)
			}
		}
	}
	// Static endpoints are in the set from the start, so that a query before the first probe
	// round still accounts for them.
	s.discMu.Lock()
	s.syncStores(disc.targets())
	s.discMu.Unlock()
	return s, nil
}

// Run discovers and probes stores until ctx is done. Ready reports true once the first round of
// discovery and probes has completed. Connections are closed when Run returns.
func (s *StoreSet) Run(ctx context.Context) error {
	defer s.closeAll()
	s.mu.Lock()
	s.watchCtx = ctx
	for _, ref := range s.stores {
		ref.startWatch(ctx)
	}
	s.mu.Unlock()

	s.refresh(ctx, true, true)
	s.probe(ctx)
	s.ready.Store(true)

	probeT := time.NewTicker(s.opts.ProbeInterval)
	defer probeT.Stop()
	resolveT := time.NewTicker(s.opts.ResolveInterval)
	defer resolveT.Stop()
	fileT := time.NewTicker(s.opts.FileSDInterval)
	defer fileT.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-probeT.C:
			s.probe(ctx)
		case <-resolveT.C:
			if s.disc.hasDNS() {
				s.refresh(ctx, true, false)
			}
		case <-fileT.C:
			if len(s.opts.SDFiles) > 0 {
				s.refresh(ctx, false, true)
			}
		}
	}
}

// Ready tells whether the first discovery and probe round has completed.
func (s *StoreSet) Ready() bool { return s.ready.Load() }

// Stores returns the status of every store in the set, sorted by address.
func (s *StoreSet) Stores() []StoreStatus {
	refs := s.snapshot()
	out := make([]StoreStatus, 0, len(refs))
	for _, r := range refs {
		st := r.statusCopy()
		st.Region = r.region(s.opts.RegionLabel)
		out = append(out, st)
	}
	return out
}

// refresh re-runs discovery (DNS, files or both) and applies the result to the set.
func (s *StoreSet) refresh(ctx context.Context, dns, files bool) {
	s.discMu.Lock()
	defer s.discMu.Unlock()
	if dns {
		s.disc.resolveDNS(ctx)
	}
	if files {
		_ = s.disc.readFiles() // logged per file; the previous targets stay
	}
	s.syncStores(s.disc.targets())
}

// syncStores adds stores for new targets and closes those no longer wanted. Callers hold discMu.
func (s *StoreSet) syncStores(targets []target) {
	want := make(map[string]target, len(targets))
	for _, t := range targets {
		want[t.addr] = t
	}
	var added []*storeRef
	var removed []*storeRef
	s.mu.Lock()
	for addr, ref := range s.stores {
		t, ok := want[addr]
		if ok && (t.err == nil) == (ref.conn != nil) {
			ref.setSDLabels(t.labels)
			continue
		}
		removed = append(removed, ref)
		delete(s.stores, addr)
	}
	for addr, t := range want {
		if _, ok := s.stores[addr]; ok {
			continue
		}
		ref, err := s.newStoreRef(t)
		if err != nil {
			// The dial options are broken for this address: keep it, unhealthy, with the reason.
			ref = &storeRef{addr: addr, sdLabels: t.labels, dialErr: err}
			ref.status = StoreStatus{Address: addr, LastError: err.Error(), MinTime: minTime, MaxTime: maxTime}
			ref.noteFailure(reasonDial)
		}
		s.stores[addr] = ref
		if s.watchCtx != nil {
			ref.startWatch(s.watchCtx)
		}
		added = append(added, ref)
	}
	s.mu.Unlock()

	for _, ref := range removed {
		s.logger.Info("store removed from the store set", "store", ref.addr)
		s.metrics.up.DeleteLabelValues(ref.addr)
		s.metrics.probeErrors.DeleteLabelValues(ref.addr)
		ref.stopWatch()
		if ref.conn != nil {
			_ = ref.conn.Close()
		}
	}
	for _, ref := range added {
		s.logger.Info("store added to the store set", "store", ref.addr)
		s.metrics.up.WithLabelValues(ref.addr).Set(0)
	}
}

// Bounds used while a store's time range is unknown: it may hold anything.
const (
	minTime = int64(-1 << 63)
	maxTime = int64(1<<63 - 1)
)

func (s *StoreSet) newStoreRef(t target) (*storeRef, error) {
	ref := &storeRef{addr: t.addr, sdLabels: t.labels}
	ref.status = StoreStatus{Address: t.addr, MinTime: minTime, MaxTime: maxTime}
	if t.err != nil {
		ref.dialErr = t.err
		ref.status.LastError = t.err.Error()
		ref.noteFailure(reasonDNS)
		return ref, nil
	}
	conn, err := grpc.NewClient(t.addr, s.opts.DialOptions...)
	if err != nil {
		return nil, fmt.Errorf("dial store %s: %w", t.addr, err)
	}
	ref.conn = conn
	ref.store = storepb.NewStoreClient(conn)
	ref.info = infopb.NewInfoClient(conn)
	ref.metadata = metadatapb.NewMetadataClient(conn)
	ref.exemplars = exemplarspb.NewExemplarsClient(conn)
	if s.opts.LabelCache {
		ref.watcher = labelindex.NewWatcher(conn, labelindex.WatcherOptions{})
	}
	return ref, nil
}

// probe asks every store for Info concurrently and records the answers.
func (s *StoreSet) probe(ctx context.Context) {
	var wg sync.WaitGroup
	for _, ref := range s.snapshot() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.probeOne(ctx, ref)
		}()
	}
	wg.Wait()
}

func (s *StoreSet) probeOne(ctx context.Context, ref *storeRef) {
	if ref.dialErr != nil {
		ref.recordProbe(nil, ref.dialErr)
		ref.noteCallFailure(ref.dialErr, false)
		s.metrics.up.WithLabelValues(ref.addr).Set(0)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, s.opts.ProbeTimeout)
	defer cancel()
	resp, err := ref.info.Info(pctx, &infopb.InfoRequest{})
	if err == nil && resp.Store == nil {
		err = errNotAStore
	}
	if err != nil {
		if ctx.Err() != nil {
			return // shutting down: not the store's fault
		}
		ref.noteCallFailure(err, errors.Is(pctx.Err(), context.DeadlineExceeded))
		err = fmt.Errorf("info probe: %s", callErrorReason(err, pctx, s.opts.ProbeTimeout))
		if ref.recordProbe(nil, err) {
			s.logger.Warn("store is unhealthy", "store", ref.addr, "err", err)
		}
		s.metrics.up.WithLabelValues(ref.addr).Set(0)
		s.metrics.probeErrors.WithLabelValues(ref.addr).Inc()
		return
	}
	if ref.recordProbe(resp, nil) {
		s.logger.Info("store is healthy", "store", ref.addr, "labels", labelpb.PromLabelSetsToString(ref.statusCopy().Labels))
	}
	s.metrics.up.WithLabelValues(ref.addr).Set(1)
}

// snapshot returns the current stores sorted by address.
func (s *StoreSet) snapshot() []*storeRef {
	s.mu.RLock()
	out := make([]*storeRef, 0, len(s.stores))
	for _, r := range s.stores {
		out = append(out, r)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return out
}

func (s *StoreSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ref := range s.stores {
		if ref.conn != nil {
			_ = ref.conn.Close()
		}
	}
}

// storeRef is one store of the set: its connection and what its last Info said.
type storeRef struct {
	addr      string
	conn      *grpc.ClientConn
	store     storepb.StoreClient
	info      infopb.InfoClient
	metadata  metadatapb.MetadataClient
	exemplars exemplarspb.ExemplarsClient
	dialErr   error // set when the store cannot be dialled at all (e.g. unresolvable name)

	watcher     *labelindex.Watcher // nil without the label cache
	cancelWatch context.CancelFunc  // stops the watcher; set under StoreSet.mu
	labels      labelCache

	mu                    sync.RWMutex
	sdLabels              labels.Labels // labels from file SD, to name the region before Info answers
	status                StoreStatus
	known                 bool // Info has answered at least once: labels and time range are real
	withoutReplicaSupport bool
	apis                  storeAPIs
}

// storeAPIs are the services besides Store that a store's Info announced, and its component
// type (a querier evaluates matchers on its stores' external labels itself).
type storeAPIs struct {
	metadata, exemplars bool
	component           string
}

// recordProbe stores an Info answer or failure; it reports whether health changed.
func (r *storeRef) recordProbe(resp *infopb.InfoResponse, err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	was := r.status.Healthy
	r.status.LastCheck = time.Now()
	if err != nil {
		r.status.Healthy = false
		r.status.LastError = err.Error()
		return was
	}
	lsets := labelpb.ZLabelSetsToPromLabelSets(resp.LabelSets...)
	for i := range lsets {
		lsets[i] = lsets[i].Copy() // detach from the response buffer
	}
	r.status.Labels = lsets
	r.status.MinTime = resp.Store.MinTime
	r.status.MaxTime = resp.Store.MaxTime
	r.status.Healthy = true
	r.status.LastError = ""
	r.withoutReplicaSupport = resp.Store.SupportsWithoutReplicaLabels
	r.apis = storeAPIs{metadata: resp.MetricMetadata != nil, exemplars: resp.Exemplars != nil, component: resp.ComponentType}
	r.known = true
	return !was
}

func (r *storeRef) setSDLabels(l labels.Labels) {
	r.mu.Lock()
	r.sdLabels = l
	r.mu.Unlock()
}

func (r *storeRef) statusCopy() StoreStatus {
	r.mu.RLock()
	defer r.mu.RUnlock()
	st := r.status
	st.Labels = append([]labels.Labels(nil), r.status.Labels...)
	return st
}

// view is a consistent copy of what the fan-out needs from a store.
type storeView struct {
	ref                   *storeRef
	labelSets             []labels.Labels
	minTime, maxTime      int64
	known                 bool
	withoutReplicaSupport bool
	region                string
	apis                  storeAPIs
}

func (r *storeRef) view(regionLabel string) storeView {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v := storeView{
		ref:                   r,
		labelSets:             r.status.Labels,
		minTime:               r.status.MinTime,
		maxTime:               r.status.MaxTime,
		known:                 r.known,
		withoutReplicaSupport: r.withoutReplicaSupport,
		region:                r.regionLocked(regionLabel),
		apis:                  r.apis,
	}
	return v
}

// region names the store's region: the label of its first label set that has one, else the
// label its discovery gave it (so that a store that never answered Info is still named).
func (r *storeRef) region(regionLabel string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.regionLocked(regionLabel)
}

func (r *storeRef) regionLocked(regionLabel string) string {
	for _, ls := range r.status.Labels {
		if region := ls.Get(regionLabel); region != "" {
			return region
		}
	}
	return r.sdLabels.Get(regionLabel)
}

// matches tells whether the store may hold series for these matchers in [mint, maxt]: its time
// range overlaps and at least one of its external label sets is compatible with every matcher
// that names one of its labels. Stores whose Info never answered may hold anything.
func (v storeView) matches(mint, maxt int64, ms []*labels.Matcher) bool {
	if !v.known {
		return true
	}
	if v.minTime > maxt || v.maxTime < mint {
		return false
	}
	if len(v.labelSets) == 0 {
		return true
	}
	for _, ls := range v.labelSets {
		if labelSetMatches(ls, ms) {
			return true
		}
	}
	return false
}

func labelSetMatches(ls labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !ls.Has(m.Name) {
			continue
		}
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}
