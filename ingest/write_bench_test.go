package ingest

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// benchBody is one remote-write request of what a region's Prometheus sends for a service's
// request counters and latency histograms: series 250 series (two counters, then 18 buckets of
// a histogram, per handler) over 10 steps from step on; with meta, the series' metadata (RW1
// metadata messages, RW2 inline), and with exemplars one on the le="0.1" bucket at every step.
func benchBody(tb testing.TB, v2, meta, exemplars bool, step int) []byte {
	const series, steps = 250, 10
	start := time.Now().Add(-48 * time.Hour).Truncate(time.Minute).UnixMilli()
	req := &prompb.WriteRequest{}
	if meta {
		req.Metadata = []prompb.MetricMetadata{
			{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Total number of HTTP requests by status code, handler and method."},
			{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "http_request_duration_seconds", Help: "Duration of HTTP requests in seconds.", Unit: "seconds"},
		}
	}
	for s := range series {
		ls := []prompb.Label{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: fmt.Sprint(200 + 300*(s%2))}, {Name: "handler", Value: fmt.Sprintf("/api/%d", s/20)}}
		if s%20 >= 2 {
			ls = []prompb.Label{{Name: "__name__", Value: "http_request_duration_seconds_bucket"}, {Name: "handler", Value: fmt.Sprintf("/api/%d", s/20)}, {Name: "le", Value: fmt.Sprintf("%g", 0.005*float64(s%20-1))}}
		}
		ts := prompb.TimeSeries{Labels: ls}
		for k := step; k < step+steps; k++ {
			t := start + int64(k)*1000
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t, Value: float64(k)})
			if exemplars && s%20 == 10 {
				ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{Labels: []prompb.Label{{Name: "trace_id", Value: fmt.Sprintf("%016x%016x", t, s)}}, Value: 0.042, Timestamp: t})
			}
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	var raw []byte
	var err error
	if v2 {
		raw, err = rw2Of(req, meta).Marshal()
	} else {
		raw, err = req.Marshal()
	}
	require.NoError(tb, err)
	return snappy.Encode(nil, raw)
}

// rw2Of is req as an RW2 request; with meta, every series carries its family's metadata inline.
func rw2Of(req *prompb.WriteRequest, meta bool) *writev2.Request {
	st := writev2.NewSymbolTable()
	out := &writev2.Request{}
	for _, ts := range req.Timeseries {
		var o writev2.TimeSeries
		for _, l := range ts.Labels {
			o.LabelsRefs = append(o.LabelsRefs, st.Symbolize(l.Name), st.Symbolize(l.Value))
		}
		for _, s := range ts.Samples {
			o.Samples = append(o.Samples, writev2.Sample{Value: s.Value, Timestamp: s.Timestamp})
		}
		for _, e := range ts.Exemplars {
			o.Exemplars = append(o.Exemplars, writev2.Exemplar{LabelsRefs: []uint32{st.Symbolize(e.Labels[0].Name), st.Symbolize(e.Labels[0].Value)}, Value: e.Value, Timestamp: e.Timestamp})
		}
		if meta {
			m := req.Metadata[0]
			if ts.Labels[0].Value != m.MetricFamilyName {
				m = req.Metadata[1]
			}
			o.Metadata = writev2.Metadata{Type: writev2.Metadata_MetricType(m.Type), HelpRef: st.Symbolize(m.Help), UnitRef: st.Symbolize(m.Unit)}
		}
		out.Timeseries = append(out.Timeseries, o)
	}
	out.Symbols = st.Symbols()
	return out
}

// BenchmarkWrite is one request of 2,500 samples through the node's handler into its TSDB, as
// it is and with metadata and exemplars, in both protocols, with exemplar storage off (the
// default) and on. Its CPU profile shows where what is added costs.
func BenchmarkWrite(b *testing.B) {
	for _, proto := range []struct {
		name, contentType string
		v2                bool
	}{{"RW1", rw1ContentType, false}, {"RW2", rw2ContentType, true}} {
		for _, kind := range []struct {
			name            string
			meta, exemplars bool
			maxExemplars    int64
		}{
			{"plain", false, false, 0},
			{"metadata", true, false, 0},
			{"metadata+exemplars", true, true, 0},
			{"metadata+exemplars-stored", true, true, PrometheusMaxExemplars},
		} {
			b.Run(proto.name+"/"+kind.name, func(b *testing.B) {
				cfg := testConfig(b)
				cfg.MaxExemplars = kind.maxExemplars
				n, _ := runNode(b, cfg, prometheus.NewRegistry())
				h := n.Handler()
				// The series exist before the loop, as in a region's steady state.
				code, msg := post(b, h, proto.contentType, benchBody(b, proto.v2, kind.meta, kind.exemplars, 0))
				require.Equal(b, http.StatusNoContent, code, msg)
				bodies := make([][]byte, b.N)
				for i := range bodies {
					bodies[i] = benchBody(b, proto.v2, kind.meta, kind.exemplars, 10*(i+1))
				}
				b.ResetTimer()
				for i := range b.N {
					if code, msg := post(b, h, proto.contentType, bodies[i]); code != http.StatusNoContent {
						b.Fatalf("%d %s", code, msg)
					}
				}
				b.ReportMetric(float64(b.N*2500)/b.Elapsed().Seconds(), "samples/s")
			})
		}
	}
}
