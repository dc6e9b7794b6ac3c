package query

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"
)

// The API tests run Prometheus's engine and API over a real TSDB. A recordingQueryable sits in
// between to observe what reaches the storage (time range, matchers, partial-response choice)
// and, when asked, to add warnings the way the fan-out does for a missing store.

const (
	testStep    = 15 * time.Second
	testSamples = 241 // one hour at 15s, both ends included
)

var testT0 = time.Unix(1_700_000_000, 0).UTC()

// testSeries is the data set: value(i) is the sample at testT0 + i*testStep.
var testSeries = []struct {
	lset  labels.Labels
	value func(i int) float64
}{
	{labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "a", "region", "eu-west-1"), func(i int) float64 { return float64(i) }},
	{labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "b", "region", "us-east-1"), func(i int) float64 { return float64(2 * i) }},
	{labels.FromStrings("__name__", "http_requests_total", "job", "db", "instance", "c", "region", "us-east-1"), func(i int) float64 { return float64(3 * i) }},
	{labels.FromStrings("__name__", "batch_runs_total", "job", "batch", "instance", "d", "region", "ap-south-1"), func(i int) float64 { return float64(i % 7) }},
}

func testTime(i int) time.Time { return testT0.Add(time.Duration(i) * testStep) }

func unixParam(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func openTestTSDB(t testing.TB) *tsdb.DB {
	t.Helper()
	db, err := tsdb.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	app := db.Appender(context.Background())
	for _, s := range testSeries {
		for i := range testSamples {
			_, err := app.Append(0, s.lset, testTime(i).UnixMilli(), s.value(i))
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	return db
}

type recordedCall struct {
	method     string
	mint, maxt int64
	matchers   string
	partial    *bool // nil when the request made no choice
	dedup      *bool // nil when the request made no choice
}

type recordingQueryable struct {
	storage.Queryable
	warning error // added to every answer when set

	mu    sync.Mutex
	calls []recordedCall
}

func (r *recordingQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := r.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return &recordingQuerier{Querier: q, parent: r, mint: mint, maxt: maxt}, nil
}

func (r *recordingQueryable) record(ctx context.Context, method string, mint, maxt int64, ms []*labels.Matcher) {
	c := recordedCall{method: method, mint: mint, maxt: maxt}
	if v, ok := ctx.Value(partialResponseKey{}).(bool); ok {
		c.partial = &v
	}
	if v, ok := ctx.Value(dedupKey{}).(bool); ok {
		c.dedup = &v
	}
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(m.String())
	}
	c.matchers = b.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

func (r *recordingQueryable) takeCalls() []recordedCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func (r *recordingQueryable) annotations() annotations.Annotations {
	if r.warning == nil {
		return nil
	}
	return annotations.New().Add(r.warning)
}

type recordingQuerier struct {
	storage.Querier
	parent     *recordingQueryable
	mint, maxt int64
}

func (q *recordingQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	q.parent.record(ctx, "Select", q.mint, q.maxt, ms)
	return warningSeriesSet{SeriesSet: q.Querier.Select(ctx, sortSeries, hints, ms...), extra: q.parent.annotations()}
}

func (q *recordingQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	q.parent.record(ctx, "LabelValues", q.mint, q.maxt, ms)
	vals, ws, err := q.Querier.LabelValues(ctx, name, hints, ms...)
	return vals, ws.Merge(q.parent.annotations()), err
}

func (q *recordingQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	q.parent.record(ctx, "LabelNames", q.mint, q.maxt, ms)
	names, ws, err := q.Querier.LabelNames(ctx, hints, ms...)
	return names, ws.Merge(q.parent.annotations()), err
}

type warningSeriesSet struct {
	storage.SeriesSet
	extra annotations.Annotations
}

func (s warningSeriesSet) Warnings() annotations.Annotations {
	ws := s.SeriesSet.Warnings()
	return ws.Merge(s.extra)
}

type apiFixture struct {
	url    string
	rec    *recordingQueryable
	ready  *atomic.Bool
	stores []StoreStatus
}

func newAPIFixture(t testing.TB, engineOpts EngineOptions) *apiFixture {
	t.Helper()
	f := &apiFixture{rec: &recordingQueryable{Queryable: openTestTSDB(t)}, ready: &atomic.Bool{}}
	f.stores = []StoreStatus{{
		Address: "127.0.0.1:10901", Labels: []labels.Labels{labels.FromStrings("region", "eu-west-1")},
		MinTime: testT0.UnixMilli(), MaxTime: testTime(testSamples - 1).UnixMilli(), Healthy: true,
		LastCheck: testT0,
	}, {
		Address: "127.0.0.1:10902", Labels: []labels.Labels{labels.FromStrings("region", "us-east-1")},
		MinTime: testT0.UnixMilli(), MaxTime: testTime(testSamples - 1).UnixMilli(), LastError: "rpc error: code = Unavailable",
		LastCheck: testT0,
	}}
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.DiscardHandler)
	api, err := NewAPI(APIOptions{
		Logger:     logger,
		Registerer: reg,
		Gatherer:   reg,
		Engine:     NewEngine(logger, reg, nil, engineOpts),
		Queryable:  f.rec,
		Stores:     func() []StoreStatus { return f.stores },
		Ready: func() error {
			if !f.ready.Load() {
				return errFirstProbeRound
			}
			return nil
		},
	})
	require.NoError(t, err)
	r := route.New()
	api.Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

// call sends params as a query string (GET) or a form body (POST) and decodes Prometheus's
// envelope.
func (f *apiFixture) call(t *testing.T, method, path string, params url.Values) (int, apiResponse) {
	t.Helper()
	var (
		resp *http.Response
		err  error
	)
	switch method {
	case http.MethodGet:
		resp, err = http.Get(f.url + path + "?" + params.Encode())
	case http.MethodPost:
		resp, err = http.PostForm(f.url+path, params)
	default:
		t.Fatalf("unsupported method %s", method)
	}
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out apiResponse
	require.NoError(t, json.Unmarshal(body, &out), "body: %s", body)
	return resp.StatusCode, out
}

type vectorSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

type matrixSeries struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

type queryData[T any] struct {
	ResultType string          `json:"resultType"`
	Result     T               `json:"result"`
	Stats      json.RawMessage `json:"stats"`
}

func sampleValue(t *testing.T, v any) float64 {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "sample value %v is not a string", v)
	f, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err)
	return f
}

func TestAPIInstantQueryReturnsTheStoredSamples(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	const at = 120
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			code, resp := f.call(t, method, "/api/v1/query", url.Values{
				"query": {`http_requests_total{job="api"}`},
				"time":  {unixParam(testTime(at))},
			})
			require.Equal(t, http.StatusOK, code, resp.Error)
			require.Equal(t, "success", resp.Status)
			var data queryData[[]vectorSample]
			require.NoError(t, json.Unmarshal(resp.Data, &data))
			require.Equal(t, "vector", data.ResultType)

			want := map[string]float64{}
			for _, s := range testSeries {
				if s.lset.Get("job") == "api" {
					want[s.lset.Get("instance")] = s.value(at)
				}
			}
			got := map[string]float64{}
			for _, s := range data.Result {
				require.Equal(t, "http_requests_total", s.Metric["__name__"])
				got[s.Metric["instance"]] = sampleValue(t, s.Value[1])
			}
			require.Equal(t, want, got)
		})
	}
}

func TestAPIRangeQuerySumsEveryStep(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	const from, to, every = 10, 70, 4 // sample indexes; every 4 samples = 1m
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			code, resp := f.call(t, method, "/api/v1/query_range", url.Values{
				"query": {`sum by (region) (http_requests_total)`},
				"start": {unixParam(testTime(from))},
				"end":   {unixParam(testTime(to))},
				"step":  {(every * testStep).String()},
			})
			require.Equal(t, http.StatusOK, code, resp.Error)
			var data queryData[[]matrixSeries]
			require.NoError(t, json.Unmarshal(resp.Data, &data))
			require.Equal(t, "matrix", data.ResultType)

			want := map[string][]float64{}
			for i := from; i <= to; i += every {
				sums := map[string]float64{}
				for _, s := range testSeries {
					if s.lset.Get("__name__") == "http_requests_total" {
						sums[s.lset.Get("region")] += s.value(i)
					}
				}
				for region, v := range sums {
					want[region] = append(want[region], v)
				}
			}
			got := map[string][]float64{}
			for _, s := range data.Result {
				for _, p := range s.Values {
					got[s.Metric["region"]] = append(got[s.Metric["region"]], sampleValue(t, p[1]))
				}
			}
			require.Equal(t, want, got)
		})
	}
}

func TestAPISeriesAndLabelEndpointsPushDownMatchersAndTimeRange(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	start, end := testTime(20), testTime(40)
	for _, tc := range []struct {
		name, method, path string
		params             url.Values
		wantMethod         string
		wantMatchers       string
		check              func(t *testing.T, data json.RawMessage)
	}{
		{
			name: "series", method: http.MethodGet, path: "/api/v1/series",
			params:     url.Values{"match[]": {`http_requests_total{region="us-east-1"}`}, "start": {unixParam(start)}, "end": {unixParam(end)}},
			wantMethod: "Select", wantMatchers: `region="us-east-1",__name__="http_requests_total"`,
			check: func(t *testing.T, data json.RawMessage) {
				var got []map[string]string
				require.NoError(t, json.Unmarshal(data, &got))
				var want []map[string]string
				for _, s := range testSeries {
					if s.lset.Get("__name__") == "http_requests_total" && s.lset.Get("region") == "us-east-1" {
						want = append(want, s.lset.Map())
					}
				}
				require.ElementsMatch(t, want, got)
			},
		},
		{
			name: "series by POST", method: http.MethodPost, path: "/api/v1/series",
			params:     url.Values{"match[]": {`batch_runs_total`}, "start": {unixParam(start)}, "end": {unixParam(end)}},
			wantMethod: "Select", wantMatchers: `__name__="batch_runs_total"`,
			check: func(t *testing.T, data json.RawMessage) {
				var got []map[string]string
				require.NoError(t, json.Unmarshal(data, &got))
				require.Equal(t, []map[string]string{testSeries[3].lset.Map()}, got)
			},
		},
		{
			name: "label names", method: http.MethodPost, path: "/api/v1/labels",
			params:     url.Values{"match[]": {`batch_runs_total`}, "start": {unixParam(start)}, "end": {unixParam(end)}},
			wantMethod: "LabelNames", wantMatchers: `__name__="batch_runs_total"`,
			check: func(t *testing.T, data json.RawMessage) {
				var got []string
				require.NoError(t, json.Unmarshal(data, &got))
				want := []string{}
				testSeries[3].lset.Range(func(l labels.Label) { want = append(want, l.Name) })
				require.Equal(t, want, got)
			},
		},
		{
			name: "label values", method: http.MethodGet, path: "/api/v1/label/instance/values",
			params:     url.Values{"match[]": {`http_requests_total{job="api"}`}, "start": {unixParam(start)}, "end": {unixParam(end)}},
			wantMethod: "LabelValues", wantMatchers: `job="api",__name__="http_requests_total"`,
			check: func(t *testing.T, data json.RawMessage) {
				var got []string
				require.NoError(t, json.Unmarshal(data, &got))
				var want []string
				for _, s := range testSeries {
					if s.lset.Get("job") == "api" {
						want = append(want, s.lset.Get("instance"))
					}
				}
				require.Equal(t, want, got)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.rec.takeCalls()
			code, resp := f.call(t, tc.method, tc.path, tc.params)
			require.Equal(t, http.StatusOK, code, resp.Error)
			tc.check(t, resp.Data)

			calls := f.rec.takeCalls()
			require.Len(t, calls, 1)
			require.Equal(t, tc.wantMethod, calls[0].method)
			require.Equal(t, start.UnixMilli(), calls[0].mint)
			require.Equal(t, end.UnixMilli(), calls[0].maxt)
			require.Equal(t, tc.wantMatchers, calls[0].matchers)
		})
	}
}

func TestAPIBadInputIsBadDataAndServerKeepsServing(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{MaxSamples: 100})
	for _, tc := range []struct {
		name, method, path string
		params             url.Values
		wantCode           int
		wantType           string
	}{
		{"unparsable PromQL", http.MethodGet, "/api/v1/query", url.Values{"query": {"sum(rate(x[5m]"}}, http.StatusBadRequest, "bad_data"},
		{"unparsable PromQL by POST", http.MethodPost, "/api/v1/query_range", url.Values{"query": {"1 +"}, "start": {"0"}, "end": {"60"}, "step": {"15"}}, http.StatusBadRequest, "bad_data"},
		{"bad time", http.MethodGet, "/api/v1/query", url.Values{"query": {"up"}, "time": {"yesterday"}}, http.StatusBadRequest, "bad_data"},
		{"range ends before it starts", http.MethodGet, "/api/v1/query_range", url.Values{"query": {"up"}, "start": {"100"}, "end": {"50"}, "step": {"15"}}, http.StatusBadRequest, "bad_data"},
		{"zero step", http.MethodGet, "/api/v1/query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"50"}, "step": {"0"}}, http.StatusBadRequest, "bad_data"},
		{"bad series matcher", http.MethodGet, "/api/v1/series", url.Values{"match[]": {`{job=~"("}`}}, http.StatusBadRequest, "bad_data"},
		{"series without match[]", http.MethodGet, "/api/v1/series", url.Values{}, http.StatusBadRequest, "bad_data"},
		{"bad label values matcher", http.MethodGet, "/api/v1/label/job/values", url.Values{"match[]": {`{job=`}}, http.StatusBadRequest, "bad_data"},
		{"bad label names time", http.MethodPost, "/api/v1/labels", url.Values{"start": {"not-a-time"}}, http.StatusBadRequest, "bad_data"},
		{"bad partial_response", http.MethodGet, "/api/v1/query", url.Values{"query": {"up"}, "partial_response": {"maybe"}}, http.StatusBadRequest, "bad_data"},
		{"bad partial_response by POST", http.MethodPost, "/api/v1/labels", url.Values{"partial_response": {"sometimes"}}, http.StatusBadRequest, "bad_data"},
		{"bad dedup", http.MethodGet, "/api/v1/query", url.Values{"query": {"up"}, "dedup": {"perhaps"}}, http.StatusBadRequest, "bad_data"},
		{"too many samples", http.MethodGet, "/api/v1/query_range", url.Values{
			"query": {"http_requests_total"}, "start": {unixParam(testT0)}, "end": {unixParam(testTime(testSamples - 1))}, "step": {"15"},
		}, http.StatusUnprocessableEntity, "execution"},
		{"timeout", http.MethodGet, "/api/v1/query", url.Values{"query": {"http_requests_total"}, "time": {unixParam(testT0)}, "timeout": {"0.000000001"}}, http.StatusServiceUnavailable, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, resp := f.call(t, tc.method, tc.path, tc.params)
			require.Equal(t, tc.wantCode, code, resp.Error)
			require.Equal(t, "error", resp.Status)
			require.Equal(t, tc.wantType, resp.ErrorType)
			require.NotEmpty(t, resp.Error)

			code, resp = f.call(t, http.MethodGet, "/api/v1/query", url.Values{"query": {"vector(1)"}})
			require.Equal(t, http.StatusOK, code, "server stopped serving after %s: %s", tc.name, resp.Error)
		})
	}
}

func TestAPIPartialResponseParameterReachesTheStorage(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	yes, no := true, false
	for _, tc := range []struct {
		name, method, path string
		params             url.Values
		want               *bool
	}{
		{"query without choice", http.MethodGet, "/api/v1/query", url.Values{"query": {"http_requests_total"}}, nil},
		{"query true", http.MethodGet, "/api/v1/query", url.Values{"query": {"http_requests_total"}, "partial_response": {"true"}}, &yes},
		{"query false by POST", http.MethodPost, "/api/v1/query", url.Values{"query": {"http_requests_total"}, "partial_response": {"false"}}, &no},
		{"range query false", http.MethodGet, "/api/v1/query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"60"}, "step": {"15"}, "partial_response": {"false"}}, &no},
		{"series true by POST", http.MethodPost, "/api/v1/series", url.Values{"match[]": {"up"}, "partial_response": {"true"}}, &yes},
		{"labels false", http.MethodGet, "/api/v1/labels", url.Values{"partial_response": {"false"}}, &no},
		{"label values false", http.MethodGet, "/api/v1/label/job/values", url.Values{"partial_response": {"false"}}, &no},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.rec.takeCalls()
			code, resp := f.call(t, tc.method, tc.path, tc.params)
			require.Equal(t, http.StatusOK, code, resp.Error)
			calls := f.rec.takeCalls()
			require.NotEmpty(t, calls)
			for _, c := range calls {
				require.Equal(t, tc.want, c.partial, "%s call", c.method)
			}
		})
	}
}

func TestAPIDedupParameterReachesTheStorage(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	no := false
	for _, tc := range []struct {
		name   string
		params url.Values
		want   *bool
	}{
		{"no choice", url.Values{"query": {"up"}}, nil},
		{"dedup off", url.Values{"query": {"up"}, "dedup": {"false"}}, &no},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.rec.takeCalls()
			code, resp := f.call(t, http.MethodGet, "/api/v1/query", tc.params)
			require.Equal(t, http.StatusOK, code, resp.Error)
			calls := f.rec.takeCalls()
			require.NotEmpty(t, calls)
			for _, c := range calls {
				require.Equal(t, tc.want, c.dedup)
			}
		})
	}
}

func TestAPIWarningsFromStorageAnnotationsAreInTheResponse(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	missing := errors.New(`region "eu-west-1" (store 127.0.0.1:10901): unavailable: connection refused`)
	f.rec.warning = missing
	for _, tc := range []struct {
		name, method, path string
		params             url.Values
	}{
		{"instant query", http.MethodGet, "/api/v1/query", url.Values{"query": {"sum(http_requests_total)"}, "time": {unixParam(testTime(5))}}},
		{"range query", http.MethodPost, "/api/v1/query_range", url.Values{"query": {"http_requests_total"}, "start": {unixParam(testT0)}, "end": {unixParam(testTime(8))}, "step": {"60"}}},
		{"series", http.MethodGet, "/api/v1/series", url.Values{"match[]": {"http_requests_total"}}},
		{"labels", http.MethodGet, "/api/v1/labels", nil},
		{"label values", http.MethodGet, "/api/v1/label/region/values", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, resp := f.call(t, tc.method, tc.path, tc.params)
			require.Equal(t, http.StatusOK, code, resp.Error)
			require.Equal(t, "success", resp.Status)
			require.Equal(t, []string{missing.Error()}, resp.Warnings)
		})
	}
}

func TestAPIStoresListsTheStoreSet(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	code, resp := f.call(t, http.MethodGet, "/api/v1/stores", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "success", resp.Status)
	var got []StoreStatus
	require.NoError(t, json.Unmarshal(resp.Data, &got))
	require.Equal(t, f.stores, got)

	var raw []map[string]any
	require.NoError(t, json.Unmarshal(resp.Data, &raw))
	for _, key := range []string{"address", "labelSets", "minTime", "maxTime", "healthy", "lastCheck"} {
		require.Contains(t, raw[0], key)
	}
	require.Equal(t, f.stores[1].LastError, raw[1]["lastError"])

	f.stores = nil
	_, resp = f.call(t, http.MethodGet, "/api/v1/stores", nil)
	require.JSONEq(t, `[]`, string(resp.Data), "an empty store set is an empty list, not null")
}

func TestAPIBuildInfoReportsPrometheusCompatibleAndMeridianVersions(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	code, resp := f.call(t, http.MethodGet, "/api/v1/status/buildinfo", nil)
	require.Equal(t, http.StatusOK, code)
	var got map[string]any
	require.NoError(t, json.Unmarshal(resp.Data, &got))
	require.Equal(t, version.Version, got["meridianVersion"])
	require.Equal(t, "Meridian", got["application"])
	require.NotContains(t, got, "features", "Grafana would stop treating the source as Prometheus")

	// Grafana enables match[] on label values from Prometheus 2.24 on.
	v, ok := got["version"].(string)
	require.True(t, ok)
	parts := strings.SplitN(v, ".", 3)
	require.Len(t, parts, 3, "version %q is not semver", v)
	major, err := strconv.Atoi(parts[0])
	require.NoError(t, err)
	minor, err := strconv.Atoi(parts[1])
	require.NoError(t, err)
	require.True(t, major > 2 || (major == 2 && minor >= 24), "version %q", v)
	for _, k := range []string{"revision", "branch", "buildUser", "buildDate", "goVersion"} {
		require.Contains(t, got, k)
	}
}

func TestPrometheusReleaseFromModuleVersion(t *testing.T) {
	for _, tc := range []struct {
		mod, want string
		ok        bool
	}{
		{"v0.309.1", "3.9.1", true},
		{"v0.300.0", "3.0.0", true},
		{"v0.310.0-rc.0", "3.10.0-rc.0", true},
		{"v0.54.1", "2.54.1", true},
		{"v1.8.2", "", false},
		{"v0.x.1", "", false},
		{"v0.309", "", false},
		{"(devel)", "", false},
	} {
		t.Run(tc.mod, func(t *testing.T) {
			got, ok := prometheusReleaseFromModule(tc.mod)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestAPIFormatQueryPrettifies(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	const q = `sum by(job)(rate(http_requests_total{job="api"}[5m]))/ on(job) group_left sum by(job)(rate(http_requests_total[5m]))`
	expr, err := parser.ParseExpr(q)
	require.NoError(t, err)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		code, resp := f.call(t, method, "/api/v1/format_query", url.Values{"query": {q}})
		require.Equal(t, http.StatusOK, code, resp.Error)
		var got string
		require.NoError(t, json.Unmarshal(resp.Data, &got))
		require.Equal(t, parser.Prettify(expr), got)
	}
}

func TestAPIStatsAllReturnsPerStepStatistics(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	code, resp := f.call(t, http.MethodGet, "/api/v1/query_range", url.Values{
		"query": {"http_requests_total"}, "start": {unixParam(testT0)}, "end": {unixParam(testTime(8))}, "step": {"60"}, "stats": {"all"},
	})
	require.Equal(t, http.StatusOK, code, resp.Error)
	var data struct {
		Stats struct {
			Samples struct {
				TotalQueryableSamples        int64    `json:"totalQueryableSamples"`
				TotalQueryableSamplesPerStep [][2]any `json:"totalQueryableSamplesPerStep"`
			} `json:"samples"`
		} `json:"stats"`
	}
	require.NoError(t, json.Unmarshal(resp.Data, &data))
	var series int
	for _, s := range testSeries {
		if s.lset.Get("__name__") == "http_requests_total" {
			series++
		}
	}
	// 9 samples per series (t0..t8 at 15s), each step of 60s taking one per series.
	require.Len(t, data.Stats.Samples.TotalQueryableSamplesPerStep, 3)
	require.Equal(t, int64(3*series), data.Stats.Samples.TotalQueryableSamples)
}

func TestAPIEndpointsOutOfScopeAnswerWellFormedEmptyResults(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	for _, tc := range []struct {
		path     string
		params   url.Values
		wantData string
	}{
		{"/api/v1/rules", nil, `{"groups":[]}`},
		{"/api/v1/alerts", nil, `{"alerts":[]}`},
		{"/api/v1/targets", nil, `{"activeTargets":[],"droppedTargets":[],"droppedTargetCounts":{}}`},
		{"/api/v1/alertmanagers", nil, `{"activeAlertmanagers":[],"droppedAlertmanagers":[]}`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, resp := f.call(t, http.MethodGet, tc.path, tc.params)
			require.Equal(t, http.StatusOK, code, resp.Error)
			require.Equal(t, "success", resp.Status)
			require.JSONEq(t, tc.wantData, string(resp.Data))
		})
	}
	code, resp := f.call(t, http.MethodGet, "/api/v1/status/tsdb", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "error", resp.Status)
}

func TestAPIHealthReadyAndMetrics(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	get := func(path string) (int, string) {
		resp, err := http.Get(f.url + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, _ := get("/-/healthy")
	require.Equal(t, http.StatusOK, code)
	code, body := get("/-/ready")
	require.Equal(t, http.StatusServiceUnavailable, code, "not ready before the first probe round")
	require.Contains(t, body, "not ready: the first probe round of the store set has not completed")
	f.ready.Store(true)
	code, _ = get("/-/ready")
	require.Equal(t, http.StatusOK, code)

	code, _ = get("/api/v1/query?query=vector(1)")
	require.Equal(t, http.StatusOK, code)
	code, body = get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `meridian_query_http_requests_total{code="200",handler="/api/v1/query"}`)
	require.Contains(t, body, "prometheus_engine_queries")
}

// FuzzQueryAPI sends arbitrary query strings through the instant and range query endpoints:
// garbage must be answered as the client's error, never as a server error.
func FuzzQueryAPI(f *testing.F) {
	for _, seed := range []string{
		"up", `sum by (job) (rate(http_requests_total{job="api"}[5m]))`, "1 +", `{__name__=~"(" }`,
		"histogram_quantile(0.9, rate(x_bucket[5m]))", "x[5m:1m] @ end()", `label_replace(up, "a", "$1", "b", "(.*)")`,
		"\x00", `"str"`, "-1 offset -5m", "count_values(\"v\", http_requests_total)", "{}", "time() > bool 1",
	} {
		f.Add(seed)
	}
	fx := newAPIFixture(f, EngineOptions{Timeout: 10 * time.Second})
	f.Fuzz(func(t *testing.T, q string) {
		for _, req := range []struct {
			path   string
			params url.Values
		}{
			{"/api/v1/query", url.Values{"query": {q}, "time": {unixParam(testTime(100))}}},
			{"/api/v1/query_range", url.Values{"query": {q}, "start": {unixParam(testT0)}, "end": {unixParam(testTime(40))}, "step": {"60"}}},
		} {
			resp, err := http.PostForm(fx.url+req.path, req.params)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Less(t, resp.StatusCode, 500, "query %q: %s", q, body)
		}
	})
}

// TestServerAnswersThroughTheFanoutOverRealStores runs the whole querier (NewServer: store set,
// fan-out, engine, API, StoreAPI) against two real StoreAPI stores and one endpoint that is down.
func TestServerAnswersThroughTheFanoutOverRealStores(t *testing.T) {
	const from, to, step = int64(1_700_000_000_000), int64(1_700_000_600_000), int64(15_000)
	eu := startTestStore(t, labels.FromStrings("region", "eu-west-1"), nil)
	us := startTestStore(t, labels.FromStrings("region", "us-east-1"), nil)
	appendFloats(t, eu.db, from, to, step, labels.FromStrings("__name__", "up", "job", "api"))
	appendFloats(t, us.db, from, to, step, labels.FromStrings("__name__", "up", "job", "api"))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := lis.Addr().String()
	require.NoError(t, lis.Close())

	reg := prometheus.NewRegistry()
	srv, err := NewServer(ServerConfig{
		Registerer: reg,
		Gatherer:   reg,
		StoreSet: StoreSetOptions{
			Endpoints:     []string{eu.addr, us.addr, down},
			ProbeInterval: 100 * time.Millisecond,
			ProbeTimeout:  time.Second,
		},
		Fanout:         FanoutOptions{StoreResponseTimeout: 2 * time.Second, PartialResponse: true},
		HTTPAddress:    "127.0.0.1:0",
		GRPCAddress:    "127.0.0.1:0",
		ExternalLabels: labels.FromStrings("querier", "global"),
	})
	require.NoError(t, err)
	runServer(t, srv)
	require.NotEmpty(t, srv.GRPCAddr())
	f := &apiFixture{url: "http://" + srv.HTTPAddr()}
	require.Eventually(t, func() bool {
		resp, err := http.Get(f.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond)

	code, resp := f.call(t, http.MethodGet, "/api/v1/stores", nil)
	require.Equal(t, http.StatusOK, code)
	var stores []StoreStatus
	require.NoError(t, json.Unmarshal(resp.Data, &stores))
	health := map[string]bool{}
	for _, s := range stores {
		health[s.Address] = s.Healthy
	}
	require.Equal(t, map[string]bool{eu.addr: true, us.addr: true, down: false}, health)

	at := strconv.FormatFloat(float64(to)/1000, 'f', 3, 64)
	code, resp = f.call(t, http.MethodPost, "/api/v1/query", url.Values{"query": {"up"}, "time": {at}})
	require.Equal(t, http.StatusOK, code, resp.Error)
	var data queryData[[]vectorSample]
	require.NoError(t, json.Unmarshal(resp.Data, &data))
	regions := map[string]float64{}
	for _, s := range data.Result {
		regions[s.Metric["region"]] = sampleValue(t, s.Value[1])
	}
	require.Equal(t, map[string]float64{"eu-west-1": float64(to), "us-east-1": float64(to)}, regions)
	require.Len(t, resp.Warnings, 1)
	require.Contains(t, resp.Warnings[0], down, "the warning names the missing store")

	code, resp = f.call(t, http.MethodGet, "/api/v1/label/region/values", url.Values{"match[]": {`up{job="api"}`}, "partial_response": {"true"}})
	require.Equal(t, http.StatusOK, code, resp.Error)
	require.JSONEq(t, `["eu-west-1","us-east-1"]`, string(resp.Data))
	require.Len(t, resp.Warnings, 1)

	code, resp = f.call(t, http.MethodGet, "/api/v1/query", url.Values{"query": {"up"}, "time": {at}, "partial_response": {"false"}})
	require.GreaterOrEqual(t, code, 400, "a missing store fails the query when partial response is off")
	require.Equal(t, "error", resp.Status)
	require.Contains(t, resp.Error, down)
}

func TestAPIServesTheProfiler(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
		"/debug/pprof/cmdline":           "",
	} {
		resp, err := http.Get(f.url + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Contains(t, string(body), want, path)
	}
}

func TestAPICompressesLargeAnswersOnceAndLeavesShortOnesPlain(t *testing.T) {
	f := newAPIFixture(t, EngineOptions{})
	rangeQuery := "/api/v1/query_range?" + url.Values{
		"query": {`http_requests_total`}, "start": {unixParam(testTime(0))}, "end": {unixParam(testTime(testSamples - 1))}, "step": {"15"},
	}.Encode()
	for _, tc := range []struct {
		name, path, acceptEncoding string
		wantGzip                   bool
	}{
		{"large answer, gzip accepted", rangeQuery, "gzip", true},
		{"large answer, gzip among others", rangeQuery, "deflate, gzip;q=0.9, br", true},
		{"large answer, no encoding accepted", rangeQuery, "", false},
		{"large answer, only deflate accepted", rangeQuery, "deflate", false},
		{"short answer, gzip accepted", "/api/v1/label/job/values", "gzip", false},
		{"error answer, gzip accepted", "/api/v1/query?query=rate(", "gzip", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, f.url+tc.path, nil)
			require.NoError(t, err)
			if tc.acceptEncoding != "" {
				// Set by hand, the transport leaves the body as the server sent it.
				req.Header.Set("Accept-Encoding", tc.acceptEncoding)
			}
			resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body := io.Reader(resp.Body)
			if tc.wantGzip {
				require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
				zr, err := gzip.NewReader(resp.Body)
				require.NoError(t, err)
				body = zr
			} else {
				require.Empty(t, resp.Header.Get("Content-Encoding"))
			}
			raw, err := io.ReadAll(body)
			require.NoError(t, err)
			var out apiResponse
			require.NoError(t, json.Unmarshal(raw, &out), "the body decoded once is Prometheus's JSON: %.80q", raw)
			require.Contains(t, resp.Header.Values("Vary"), "Accept-Encoding")
			if strings.HasPrefix(tc.name, "error") {
				require.Equal(t, http.StatusBadRequest, resp.StatusCode)
				require.Equal(t, "bad_data", out.ErrorType)
				return
			}
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, "success", out.Status)
			if tc.path == rangeQuery {
				var data queryData[[]matrixSeries]
				require.NoError(t, json.Unmarshal(out.Data, &data))
				require.Len(t, data.Result, 3)
				require.Greater(t, len(raw), responseCompressionMinSize)
			}
		})
	}
}
