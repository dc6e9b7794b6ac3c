package query

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/internal/storeapi"
)

// fixedMetadata is a store's metadata source with a fixed answer, as an ingest node's is once
// remote write has filled it.
type fixedMetadata map[string][]metadata.Metadata

func (m fixedMetadata) MetricMetadata(_ context.Context, req storeapi.MetadataRequest) (map[string][]metadata.Metadata, annotations.Annotations, error) {
	if req.Metric != "" {
		if v, ok := m[req.Metric]; ok {
			return map[string][]metadata.Metadata{req.Metric: v}, nil, nil
		}
		return map[string][]metadata.Metadata{}, nil, nil
	}
	return m, nil, nil
}

var (
	reqMeta  = metadata.Metadata{Type: model.MetricTypeCounter, Help: "Requests served."}
	latMeta  = metadata.Metadata{Type: model.MetricTypeHistogram, Help: "Latency.", Unit: "seconds"}
	latMeta2 = metadata.Metadata{Type: model.MetricTypeHistogram, Help: "Request latency.", Unit: "seconds"}
)

const exemplarT = int64(1_700_000_000_000)

// startExemplarStore serves a TSDB with exemplar storage whose latency bucket series has one
// exemplar per trace id given (one second apart), and md as its metadata.
func startExemplarStore(t *testing.T, ext labels.Labels, md fixedMetadata, traces ...string) *testStore {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.EnableExemplarStorage = true
	opts.MaxExemplars = 100
	db, err := tsdb.Open(t.TempDir(), nil, nil, opts, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	lset := labels.FromStrings("__name__", "latency_seconds_bucket", "le", "0.5")
	app := db.Appender(context.Background())
	ref, err := app.Append(0, lset, exemplarT, 1)
	require.NoError(t, err)
	for i, tr := range traces {
		_, err := app.AppendExemplar(ref, lset, exemplar.Exemplar{Labels: labels.FromStrings("trace_id", tr), Value: 0.2, Ts: exemplarT + int64(i)*1000, HasTs: true})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	return serveStore(t, db, storeapi.Options{
		ExternalLabels: ext,
		TimeRange:      func() (int64, int64) { return exemplarT, exemplarT + time.Hour.Milliseconds() },
		Metadata:       md,
		Exemplars:      storeapi.FromExemplarQueryable(db),
	})
}

func startMetaQuerier(t *testing.T, endpoints ...string) (*Server, *apiFixture) {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv, err := NewServer(ServerConfig{
		Registerer:  reg,
		StoreSet:    StoreSetOptions{Endpoints: endpoints, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: time.Second},
		Fanout:      FanoutOptions{StoreResponseTimeout: 2 * time.Second, PartialResponse: true, ReplicaLabels: []string{"replica"}},
		HTTPAddress: "127.0.0.1:0",
		GRPCAddress: "127.0.0.1:0",
	})
	require.NoError(t, err)
	runServer(t, srv)
	f := &apiFixture{url: "http://" + srv.HTTPAddr()}
	require.Eventually(t, func() bool { return srv.set.Ready() }, 10*time.Second, 10*time.Millisecond)
	return srv, f
}

type exemplarJSON struct {
	SeriesLabels map[string]string `json:"seriesLabels"`
	Exemplars    []struct {
		Labels    map[string]string `json:"labels"`
		Value     string            `json:"value"`
		Timestamp float64           `json:"timestamp"`
	} `json:"exemplars"`
}

// exemplarTraces is region (and replica) -> trace ids of an exemplar answer.
func exemplarTraces(t *testing.T, raw json.RawMessage) map[string][]string {
	t.Helper()
	var data []exemplarJSON
	require.NoError(t, json.Unmarshal(raw, &data))
	out := map[string][]string{}
	for _, d := range data {
		require.Equal(t, "latency_seconds_bucket", d.SeriesLabels["__name__"])
		key := d.SeriesLabels["region"]
		if r := d.SeriesLabels["replica"]; r != "" {
			key += "/" + r
		}
		for _, e := range d.Exemplars {
			out[key] = append(out[key], e.Labels["trace_id"])
			require.Equal(t, "0.2", e.Value)
		}
	}
	return out
}

func TestMetadataAndExemplarsFanOutMergeAndDedup(t *testing.T) {
	eu := startExemplarStore(t, labels.FromStrings("region", "eu-west-1", "replica", "a"), fixedMetadata{"http_requests_total": {reqMeta}, "latency_seconds": {latMeta}}, "eu1", "eu2")
	euB := startExemplarStore(t, labels.FromStrings("region", "eu-west-1", "replica", "b"), fixedMetadata{"http_requests_total": {reqMeta}, "latency_seconds": {latMeta}}, "eu1", "eu2", "eu3")
	us := startExemplarStore(t, labels.FromStrings("region", "us-east-1"), fixedMetadata{"http_requests_total": {reqMeta}, "latency_seconds": {latMeta2}}, "us1")
	ap := startExemplarStore(t, labels.FromStrings("region", "ap-southeast-1"), fixedMetadata{"http_requests_total": {reqMeta}}, "ap1")
	srv, f := startMetaQuerier(t, eu.addr, euB.addr, us.addr, ap.addr)

	t.Run("metadata of three regions is merged, identical entries once", func(t *testing.T) {
		for _, tc := range []struct {
			params url.Values
			want   map[string][]metadata.Metadata
		}{
			{nil, map[string][]metadata.Metadata{"http_requests_total": {reqMeta}, "latency_seconds": {latMeta, latMeta2}}},
			{url.Values{"metric": {"latency_seconds"}}, map[string][]metadata.Metadata{"latency_seconds": {latMeta, latMeta2}}},
			{url.Values{"limit_per_metric": {"1"}}, map[string][]metadata.Metadata{"http_requests_total": {reqMeta}, "latency_seconds": {latMeta}}},
			{url.Values{"limit": {"1"}}, map[string][]metadata.Metadata{"http_requests_total": {reqMeta}}},
			{url.Values{"metric": {"nope"}}, map[string][]metadata.Metadata{}},
		} {
			code, resp := f.call(t, http.MethodGet, "/api/v1/metadata", tc.params)
			require.Equal(t, http.StatusOK, code, resp.Error)
			require.Empty(t, resp.Warnings)
			var got map[string][]metadata.Metadata
			require.NoError(t, json.Unmarshal(resp.Data, &got))
			require.Equal(t, tc.want, got, tc.params.Encode())
		}
		code, resp := f.call(t, http.MethodGet, "/api/v1/metadata", url.Values{"limit": {"x"}})
		require.Equal(t, http.StatusBadRequest, code)
		require.Equal(t, "bad_data", resp.ErrorType)
	})

	t.Run("exemplars keep their region, replicas deduplicated", func(t *testing.T) {
		params := url.Values{"query": {`histogram_quantile(0.9, rate(latency_seconds_bucket[5m]))`}, "start": {"1699999999"}, "end": {"1700000100"}}
		code, resp := f.call(t, http.MethodGet, "/api/v1/query_exemplars", params)
		require.Equal(t, http.StatusOK, code, resp.Error)
		require.Empty(t, resp.Warnings)
		require.Equal(t, map[string][]string{"eu-west-1": {"eu1", "eu2", "eu3"}, "us-east-1": {"us1"}, "ap-southeast-1": {"ap1"}}, exemplarTraces(t, resp.Data))

		params.Set("dedup", "false")
		_, resp = f.call(t, http.MethodGet, "/api/v1/query_exemplars", params)
		require.Equal(t, map[string][]string{"eu-west-1/a": {"eu1", "eu2"}, "eu-west-1/b": {"eu1", "eu2", "eu3"}, "us-east-1": {"us1"}, "ap-southeast-1": {"ap1"}}, exemplarTraces(t, resp.Data))

		params = url.Values{"query": {`latency_seconds_bucket{region="us-east-1"}`}}
		_, resp = f.call(t, http.MethodGet, "/api/v1/query_exemplars", params)
		require.Equal(t, map[string][]string{"us-east-1": {"us1"}}, exemplarTraces(t, resp.Data), "stores pruned by the region matcher")

		params = url.Values{"query": {`latency_seconds_bucket`}, "start": {"1700000001.5"}, "end": {"1700000100"}}
		_, resp = f.call(t, http.MethodGet, "/api/v1/query_exemplars", params)
		require.Equal(t, map[string][]string{"eu-west-1": {"eu3"}}, exemplarTraces(t, resp.Data), "time range")

		code, resp = f.call(t, http.MethodGet, "/api/v1/query_exemplars", url.Values{"query": {"rate("}})
		require.Equal(t, http.StatusBadRequest, code)
		require.Equal(t, "bad_data", resp.ErrorType)
	})

	t.Run("a querier stacked over it serves both over its StoreAPI", func(t *testing.T) {
		_, top := startMetaQuerier(t, srv.GRPCAddr())
		require.Eventually(t, func() bool {
			_, resp := top.call(t, http.MethodGet, "/api/v1/query_exemplars", url.Values{"query": {"latency_seconds_bucket"}})
			return resp.Status == "success" && len(exemplarTraces(t, resp.Data)) == 3
		}, 10*time.Second, 50*time.Millisecond)
		_, resp := top.call(t, http.MethodGet, "/api/v1/query_exemplars", url.Values{"query": {`latency_seconds_bucket{region="eu-west-1"}`}})
		require.Equal(t, map[string][]string{"eu-west-1": {"eu1", "eu2", "eu3"}}, exemplarTraces(t, resp.Data))
		_, resp = top.call(t, http.MethodGet, "/api/v1/metadata", nil)
		var got map[string][]metadata.Metadata
		require.NoError(t, json.Unmarshal(resp.Data, &got))
		require.Equal(t, map[string][]metadata.Metadata{"http_requests_total": {reqMeta}, "latency_seconds": {latMeta, latMeta2}}, got)
	})

	t.Run("a region down is a warning, or the error with partial response off", func(t *testing.T) {
		ap.srv.Stop()
		for _, path := range []string{"/api/v1/metadata", "/api/v1/query_exemplars"} {
			params := url.Values{"query": {"latency_seconds_bucket"}}
			code, resp := f.call(t, http.MethodGet, path, params)
			require.Equal(t, http.StatusOK, code, resp.Error)
			require.Len(t, resp.Warnings, 1, path)
			require.Contains(t, resp.Warnings[0], `region "ap-southeast-1" (store `+ap.addr+`)`)

			params.Set("partial_response", "false")
			code, resp = f.call(t, http.MethodGet, path, params)
			require.Equal(t, http.StatusUnprocessableEntity, code, path)
			require.Contains(t, resp.Error, `region "ap-southeast-1"`)
		}
	})
}
