package rules

import (
	"context"
	"encoding/json"

	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	_ "github.com/meridian-obs/meridian/internal/grpccodec"
	"github.com/meridian-obs/meridian/internal/storeapi"
	"github.com/meridian-obs/meridian/query"
)

// regionStore is a real TSDB served over StoreAPI on loopback with external label region.
type regionStore struct {
	region string
	db     *tsdb.DB
	addr   string
	srv    *grpc.Server
}

func startRegionStore(t *testing.T, region string) *regionStore {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = 0
	db, err := tsdb.Open(t.TempDir(), nil, nil, opts, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	rs := &regionStore{region: region, db: db}
	rs.serve(t, "127.0.0.1:0")
	return rs
}

func (rs *regionStore) serve(t *testing.T, addr string) {
	t.Helper()
	srv, err := storeapi.NewServer(rs.db, storeapi.Options{ExternalLabels: labels.FromStrings("region", rs.region), Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	var lis net.Listener
	require.Eventually(t, func() bool { // the port of a store brought back may take a moment to free
		lis, err = net.Listen("tcp", addr)
		return err == nil
	}, 5*time.Second, 50*time.Millisecond)
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	rs.addr, rs.srv = lis.Addr().String(), g
	t.Cleanup(g.Stop)
}

func (rs *regionStore) stop() { rs.srv.Stop() }

// appendRequests writes http_requests_total{code} for the last 20 minutes up to now, every 15s,
// at reqPerSec requests per second of which errRatio fail.
func (rs *regionStore) appendRequests(t *testing.T, now time.Time, reqPerSec, errRatio float64) {
	t.Helper()
	app := rs.db.Appender(context.Background())
	start := now.Add(-20 * time.Minute)
	for ts := start; !ts.After(now); ts = ts.Add(15 * time.Second) {
		elapsed := ts.Sub(start).Seconds()
		for code, share := range map[string]float64{"200": 1 - errRatio, "500": errRatio} {
			l := labels.FromStrings("__name__", "http_requests_total", "code", code, "job", "api")
			_, err := app.Append(0, l, ts.UnixMilli(), reqPerSec*share*elapsed)
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
}

// rulerFixture is a querier over region stores with a ruler in it, as `meridian query` wires
// them: store, server with the store beside the store set, ruler on the server's queryable.
type rulerFixture struct {
	srv    *query.Server
	ruler  *Ruler
	store  *Store
	reg    *prometheus.Registry
	url    string
	cancel context.CancelFunc
	done   chan error
	dir    string
}

type fixtureOptions struct {
	files      []string
	strategy   string
	interval   time.Duration
	selfRecord bool
	dataDir    string
	ams        []string
}

func startRuler(t *testing.T, stores []*regionStore, o fixtureOptions) *rulerFixture {
	t.Helper()
	f, err := newRulerFixture(t, stores, o)
	require.NoError(t, err)
	return f
}

func newRulerFixture(t *testing.T, stores []*regionStore, o fixtureOptions) (*rulerFixture, error) {
	t.Helper()
	if o.interval == 0 {
		o.interval = 200 * time.Millisecond
	}
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	var endpoints []string
	for _, s := range stores {
		endpoints = append(endpoints, s.addr)
	}
	reg := prometheus.NewRegistry()
	store, err := OpenStore(StoreOptions{Dir: o.dataDir, ExternalLabels: labels.FromStrings("ruler", "global")})
	if err != nil {
		return nil, err
	}
	srv, err := query.NewServer(query.ServerConfig{
		Registerer: reg,
		Gatherer:   reg,
		StoreSet: query.StoreSetOptions{
			Endpoints:     endpoints,
			ProbeInterval: 100 * time.Millisecond,
			ProbeTimeout:  time.Second,
		},
		Fanout:      query.FanoutOptions{StoreResponseTimeout: 2 * time.Second, PartialResponse: true},
		HTTPAddress: "127.0.0.1:0",
		GRPCAddress: "127.0.0.1:0",
		LocalStores: []query.LocalStore{store},
	})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	ruler, err := NewRuler(RulerOptions{
		Logger:                  slog.New(slog.DiscardHandler),
		Registerer:              reg,
		RuleFiles:               o.files,
		EvaluationInterval:      o.interval,
		PartialResponseStrategy: o.strategy,
		Queryable:               srv.Queryable(),
		Store:                   store,
		Alertmanagers:           o.ams,
		AlertmanagerTimeout:     2 * time.Second,
		QueryURL:                "http://" + srv.HTTPAddr(),
		ResendDelay:             100 * time.Millisecond,
		SelfRecord:              o.selfRecord,
		Gatherer:                reg,
		SelfInstance:            srv.HTTPAddr(),
	})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	srv.ServeRules(ruler)
	ruler.Register(srv.Router())
	ctx, cancel := context.WithCancel(context.Background())
	f := &rulerFixture{srv: srv, ruler: ruler, store: store, reg: reg, url: "http://" + srv.HTTPAddr(), cancel: cancel, done: make(chan error, 2), dir: o.dataDir}
	go func() { f.done <- srv.Run(ctx) }()
	go func() { f.done <- ruler.Run(ctx) }()
	t.Cleanup(f.stop)
	require.Eventually(t, func() bool { return srv.StoreSet().Ready() }, 10*time.Second, 20*time.Millisecond)
	return f, nil
}

// stop ends the querier and the ruler and closes the store; it may be called twice.
func (f *rulerFixture) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	for range 2 {
		<-f.done
	}
	_ = f.store.Close()
	f.cancel = nil
}

func writeRuleFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(strings.TrimLeft(content, "\n")), 0o644))
	return p
}

// apiResponse is Prometheus's API envelope.
type apiResponse struct {
	Status   string          `json:"status"`
	Data     json.RawMessage `json:"data"`
	Error    string          `json:"error"`
	Warnings []string        `json:"warnings"`
}

func (f *rulerFixture) get(t *testing.T, path string, params url.Values) apiResponse {
	t.Helper()
	resp, err := http.Get(f.url + path + "?" + params.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var r apiResponse
	require.NoError(t, json.Unmarshal(b, &r), string(b))
	return r
}

type vectorSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// instant runs an instant query through the HTTP API and returns its samples by label string.
func (f *rulerFixture) instant(t *testing.T, expr string) (map[string]float64, []string) {
	t.Helper()
	r := f.get(t, "/api/v1/query", url.Values{"query": {expr}})
	require.Equal(t, "success", r.Status, r.Error)
	var data struct {
		Result []vectorSample `json:"result"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &data))
	out := map[string]float64{}
	for _, s := range data.Result {
		var v float64
		_, err := fmt.Sscan(s.Value[1].(string), &v)
		require.NoError(t, err)
		out[labels.FromMap(s.Metric).String()] = v
	}
	return out, r.Warnings
}

// ruleStatus is one rule of /api/v1/rules.
type ruleStatus struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	State     string `json:"state"`
	Alerts    []struct {
		Labels map[string]string `json:"labels"`
		State  string            `json:"state"`
	} `json:"alerts"`
}

func (f *rulerFixture) rules(t *testing.T) map[string]ruleStatus {
	t.Helper()
	r := f.get(t, "/api/v1/rules", nil)
	require.Equal(t, "success", r.Status, r.Error)
	var data struct {
		Groups []struct {
			Name  string       `json:"name"`
			Rules []ruleStatus `json:"rules"`
		} `json:"groups"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &data))
	out := map[string]ruleStatus{}
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			out[r.Name] = r
		}
	}
	return out
}

// counter reads a counter or gauge of the fixture's registry summed over series matching lbls.
func (f *rulerFixture) metric(t *testing.T, name string, lbls map[string]string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range lbls {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				total += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				total += m.GetGauge().GetValue()
			}
		}
	}
	return total
}
