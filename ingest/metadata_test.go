package ingest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/internal/storeapi"
)

// rw1With is an RW1 body with one series carrying exemplars, and metadata messages.
func rw1With(t testing.TB, s series, exemplars []prompb.Exemplar, md ...prompb.MetricMetadata) []byte {
	req := &prompb.WriteRequest{Metadata: md}
	if s.labels != nil {
		req.Timeseries = []prompb.TimeSeries{{Labels: s.labels, Samples: s.samples, Exemplars: exemplars}}
	}
	raw, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

// rw2With is an RW2 body with one series, its metadata and exemplars (labels name=value pairs).
func rw2With(t testing.TB, s series, md writev2.Metadata, help, unit string, exemplars map[string]prompb.Sample) []byte {
	st := writev2.NewSymbolTable()
	ts := writev2.TimeSeries{}
	for _, l := range s.labels {
		ts.LabelsRefs = append(ts.LabelsRefs, st.Symbolize(l.Name), st.Symbolize(l.Value))
	}
	for _, smp := range s.samples {
		ts.Samples = append(ts.Samples, writev2.Sample{Value: smp.Value, Timestamp: smp.Timestamp})
	}
	md.HelpRef, md.UnitRef = st.Symbolize(help), st.Symbolize(unit)
	ts.Metadata = md
	for trace, smp := range exemplars {
		ts.Exemplars = append(ts.Exemplars, writev2.Exemplar{LabelsRefs: []uint32{st.Symbolize("trace_id"), st.Symbolize(trace)}, Value: smp.Value, Timestamp: smp.Timestamp})
	}
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{ts}, Symbols: st.Symbols()}
	raw, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

func nodeMetadata(t *testing.T, n *Node) map[string][]metadata.Metadata {
	t.Helper()
	md, _, err := n.meta.MetricMetadata(context.Background(), storeapi.MetadataRequest{Limit: -1})
	require.NoError(t, err)
	return md
}

func nodeExemplars(t *testing.T, n *Node, metric string) map[string][]string {
	t.Helper()
	eq, err := n.DB().ExemplarQuerier(context.Background())
	require.NoError(t, err)
	res, err := eq.Select(0, time.Now().Add(time.Hour).UnixMilli(), []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metric)})
	require.NoError(t, err)
	out := map[string][]string{}
	for _, r := range res {
		for _, e := range r.Exemplars {
			out[r.SeriesLabels.String()] = append(out[r.SeriesLabels.String()], e.Labels.Get("trace_id"))
		}
	}
	return out
}

func TestWriteKeepsMetadataAndExemplarsAndRefusesBadOnes(t *testing.T) {
	now := time.Now().UnixMilli()
	lat := series{labels: lbls("__name__", "latency_seconds_bucket", "le", "0.5"), samples: samplesAt(now, 1, 3)}
	const latKey = `{__name__="latency_seconds_bucket", le="0.5"}`
	ex := func(trace string, ts int64, kv ...string) prompb.Exemplar {
		return prompb.Exemplar{Labels: lbls(append([]string{"trace_id", trace}, kv...)...), Value: 0.3, Timestamp: ts}
	}
	counter := prompb.MetricMetadata{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests served.", Unit: ""}
	hist := prompb.MetricMetadata{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "latency_seconds", Help: "Latency.", Unit: "seconds"}
	counterMeta := metadata.Metadata{Type: model.MetricTypeCounter, Help: "Requests served."}
	histMeta := metadata.Metadata{Type: model.MetricTypeHistogram, Help: "Latency.", Unit: "seconds"}

	for _, tc := range []struct {
		name          string
		contentType   string
		before        func(t *testing.T) []byte // an earlier request, if any
		body          func(t *testing.T) []byte
		wantCode      int
		wantMsg       []string
		wantMeta      map[string][]metadata.Metadata
		wantExemplars map[string][]string
		wantStored    bool // lat's sample stored
		wantRejected  map[string]float64
	}{
		{
			name: "rw1 metadata messages and exemplars are kept", contentType: rw1ContentType,
			body: func(t *testing.T) []byte {
				return rw1With(t, lat, []prompb.Exemplar{ex("t1", now), ex("t2", now+1)}, counter, hist)
			},
			wantCode: http.StatusNoContent, wantStored: true,
			wantMeta:      map[string][]metadata.Metadata{"http_requests_total": {counterMeta}, "latency_seconds": {histMeta}},
			wantExemplars: map[string][]string{latKey: {"t1", "t2"}},
		},
		{
			name: "rw1 bad metadata is refused naming it, the rest is kept", contentType: rw1ContentType,
			body: func(t *testing.T) []byte {
				return rw1With(t, lat, nil, counter,
					prompb.MetricMetadata{Type: prompb.MetricMetadata_GAUGE, Help: "no name"},
					prompb.MetricMetadata{Type: 42, MetricFamilyName: "weird"},
					prompb.MetricMetadata{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "bad_help", Help: "\xff"})
			},
			wantCode: http.StatusBadRequest, wantStored: true,
			wantMsg:      []string{"3 metadata rejected:", "metadata without metric family name", `metadata of "weird": unknown metric type 42`, `metadata of "bad_help": family name, help and unit must be UTF-8`},
			wantMeta:     map[string][]metadata.Metadata{"http_requests_total": {counterMeta}},
			wantRejected: map[string]float64{"meridian_ingest_metadata_rejected_total/invalid_metadata": 3},
		},
		{
			name: "rw1 bad exemplars are refused naming them, the series and good exemplars are kept", contentType: rw1ContentType,
			body: func(t *testing.T) []byte {
				return rw1With(t, lat, []prompb.Exemplar{
					ex("good", now),
					ex("dup", now+1, "trace_id", "again"),
					ex("x", now+2, "\xff", "v"),
					{Labels: lbls("trace_id", stringOf('a', 130)), Value: 1, Timestamp: now + 3},
				})
			},
			wantCode: http.StatusBadRequest, wantStored: true,
			wantMsg:       []string{"3 exemplars rejected:", `label "trace_id" twice`, "invalid exemplar labels", "exceeds maximum of 128"},
			wantExemplars: map[string][]string{latKey: {"good"}},
			wantMeta:      map[string][]metadata.Metadata{},
			wantRejected: map[string]float64{
				"meridian_ingest_exemplars_rejected_total/invalid_labels":     2,
				"meridian_ingest_exemplars_rejected_total/label_set_too_long": 1,
			},
		},
		{
			name: "rw1 out-of-order exemplars are counted, not refused", contentType: rw1ContentType,
			before: func(t *testing.T) []byte {
				return rw1With(t, series{labels: lat.labels, samples: samplesAt(now-1000, 1, 1)}, []prompb.Exemplar{ex("late", now+10)})
			},
			body: func(t *testing.T) []byte {
				return rw1With(t, lat, []prompb.Exemplar{ex("early", now)})
			},
			wantCode: http.StatusNoContent, wantStored: true,
			wantExemplars: map[string][]string{latKey: {"late"}},
			wantMeta:      map[string][]metadata.Metadata{},
			wantRejected:  map[string]float64{"meridian_ingest_exemplars_rejected_total/out_of_order": 1},
		},
		{
			name: "rw2 series metadata is kept under its family, and exemplars", contentType: rw2ContentType,
			body: func(t *testing.T) []byte {
				return rw2With(t, lat, writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM}, "Latency.", "seconds", map[string]prompb.Sample{"t9": {Value: 0.4, Timestamp: now}})
			},
			wantCode: http.StatusNoContent, wantStored: true,
			wantMeta:      map[string][]metadata.Metadata{"latency_seconds": {histMeta}},
			wantExemplars: map[string][]string{latKey: {"t9"}},
		},
		{
			name: "rw2 metadata that is not UTF-8 is refused, the samples kept", contentType: rw2ContentType,
			body: func(t *testing.T) []byte {
				return rw2With(t, lat, writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM}, "bad \xff", "", nil)
			},
			wantCode: http.StatusBadRequest, wantStored: true,
			wantMsg:      []string{"1 metadata rejected:", `metadata of "latency_seconds_bucket": help and unit must be UTF-8`},
			wantMeta:     map[string][]metadata.Metadata{},
			wantRejected: map[string]float64{"meridian_ingest_metadata_rejected_total/invalid_metadata": 1},
		},
		{
			name: "a metadata field of the wrong wire type makes the body malformed", contentType: rw1ContentType,
			body:     func(*testing.T) []byte { return snappy.Encode(nil, []byte{0x18, 0x01}) },
			wantCode: http.StatusBadRequest, wantMsg: []string{"metadata field has wire type 0"},
			wantMeta: map[string][]metadata.Metadata{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MaxExemplars = 100
			reg := prometheus.NewRegistry()
			n, _ := runNode(t, cfg, reg)
			if tc.before != nil {
				code, msg := post(t, n.Handler(), tc.contentType, tc.before(t))
				require.Equal(t, http.StatusNoContent, code, msg)
			}
			code, msg := post(t, n.Handler(), tc.contentType, tc.body(t))
			require.Equal(t, tc.wantCode, code, msg)
			for _, m := range tc.wantMsg {
				require.Contains(t, msg, m)
			}
			require.Equal(t, tc.wantMeta, nodeMetadata(t, n))
			if tc.wantExemplars != nil {
				require.Equal(t, tc.wantExemplars, nodeExemplars(t, n, "latency_seconds_bucket"))
			}
			if tc.wantStored {
				require.Subset(t, stored(t, n)[latKey], lat.samples)
			}
			for key, want := range tc.wantRejected {
				name, reason, _ := cut(key)
				require.Equal(t, want, counterValue(t, reg, name, map[string]string{"reason": reason}), key)
			}
		})
	}
}

func cut(s string) (string, string, bool) {
	for i := range s {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func stringOf(c byte, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func TestExemplarStorageOffDropsExemplarsAndServesNoExemplarsAPI(t *testing.T) {
	now := time.Now().UnixMilli()
	reg := prometheus.NewRegistry()
	n, _ := runNode(t, testConfig(t), reg) // exemplar storage off, the default
	lat := series{labels: lbls("__name__", "latency_seconds_bucket", "le", "0.5"), samples: samplesAt(now, 1, 3)}
	code, msg := post(t, n.Handler(), rw1ContentType, rw1With(t, lat, []prompb.Exemplar{{Labels: lbls("trace_id", "a"), Value: 1, Timestamp: now}}))
	require.Equal(t, http.StatusNoContent, code, msg)
	lat.samples = samplesAt(now+1, 1, 3)
	code, msg = post(t, n.Handler(), rw2ContentType, rw2With(t, lat, writev2.Metadata{}, "", "", map[string]prompb.Sample{"b": {Value: 1, Timestamp: now + 1}}))
	require.Equal(t, http.StatusNoContent, code, msg)
	require.Empty(t, nodeExemplars(t, n, "latency_seconds_bucket"))
	require.Zero(t, counterValue(t, reg, "meridian_ingest_exemplars_appended_total", nil), "nothing was stored")
	unkept := map[string]string{"reason": "storage_disabled"}
	require.Equal(t, 2.0, counterValue(t, reg, "meridian_ingest_exemplars_rejected_total", unkept), "one exemplar of each protocol dropped")

	// Bad exemplars are refused as with storage on, the samples kept.
	lat.samples = samplesAt(now+2, 1, 3)
	code, msg = post(t, n.Handler(), rw1ContentType, rw1With(t, lat, []prompb.Exemplar{
		{Labels: lbls("trace_id", "c", "trace_id", "again"), Value: 1, Timestamp: now + 2},
		{Labels: lbls("trace_id", stringOf('a', 130)), Value: 1, Timestamp: now + 2},
	}))
	require.Equal(t, http.StatusBadRequest, code, msg)
	require.Contains(t, msg, `label "trace_id" twice`)
	require.Contains(t, msg, "exceeds maximum of 128")
	require.Subset(t, stored(t, n)[`{__name__="latency_seconds_bucket", le="0.5"}`], lat.samples)
	require.Equal(t, 1.0, counterValue(t, reg, "meridian_ingest_exemplars_rejected_total", map[string]string{"reason": "label_set_too_long"}))
	require.Equal(t, 2.0, counterValue(t, reg, "meridian_ingest_exemplars_rejected_total", unkept), "refused ones are not counted as dropped for want of storage")
}

func TestMetadataStoreLimitsAndForgets(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newMetadataStore(func() time.Time { return now })
	gauge := metadata.Metadata{Type: model.MetricTypeGauge, Help: "h"}
	require.True(t, s.add("a", gauge))
	require.True(t, s.add("a", metadata.Metadata{Type: model.MetricTypeGauge, Help: "h2"}))
	require.True(t, s.add("b", gauge))
	require.True(t, s.add("c", gauge))

	for _, tc := range []struct {
		name string
		req  storeapi.MetadataRequest
		want map[string]int
	}{
		{"all", storeapi.MetadataRequest{Limit: -1}, map[string]int{"a": 2, "b": 1, "c": 1}},
		{"one metric", storeapi.MetadataRequest{Metric: "a", Limit: -1}, map[string]int{"a": 2}},
		{"unknown metric", storeapi.MetadataRequest{Metric: "z", Limit: -1}, map[string]int{}},
		{"limit", storeapi.MetadataRequest{Limit: 2}, map[string]int{"a": 2, "b": 1}},
		{"limit 0 is empty, as in Prometheus", storeapi.MetadataRequest{Limit: 0}, map[string]int{}},
		{"limit per metric", storeapi.MetadataRequest{Limit: -1, LimitPerMetric: 1}, map[string]int{"a": 1, "b": 1, "c": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md, _, err := s.MetricMetadata(context.Background(), tc.req)
			require.NoError(t, err)
			got := map[string]int{}
			for k, v := range md {
				got[k] = len(v)
			}
			require.Equal(t, tc.want, got)
		})
	}

	now = now.Add(metadataTTL / 2)
	require.True(t, s.add("c", gauge)) // refreshed
	now = now.Add(metadataTTL/2 + time.Second)
	md, _, err := s.MetricMetadata(context.Background(), storeapi.MetadataRequest{Limit: -1})
	require.NoError(t, err)
	require.Equal(t, map[string][]metadata.Metadata{"c": {gauge}}, md, "what was not repeated within the TTL is forgotten")
}

func TestMetricFamily(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  model.MetricType
		want string
	}{
		{"latency_seconds_bucket", model.MetricTypeHistogram, "latency_seconds"},
		{"latency_seconds_count", model.MetricTypeHistogram, "latency_seconds"},
		{"rpc_seconds_sum", model.MetricTypeSummary, "rpc_seconds"},
		{"rpc_seconds", model.MetricTypeSummary, "rpc_seconds"},
		{"http_requests_total", model.MetricTypeCounter, "http_requests_total"},
		{"queue_count", model.MetricTypeGauge, "queue_count"},
		{"_count", model.MetricTypeHistogram, "_count"},
	} {
		require.Equal(t, tc.want, metricFamily(tc.name, tc.typ), tc.name)
	}
}
