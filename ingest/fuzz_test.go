package ingest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// FuzzDecodeWriteRequest feeds arbitrary bodies, as RW1 or RW2 and raw or snappy-compressed by
// the harness (so the fuzzer also explores the protobuf layer), to the write path of a real
// node. Garbage must never crash the handler nor get a 5xx (which would make senders retry it
// forever).
func FuzzDecodeWriteRequest(f *testing.F) {
	now := time.Now().UnixMilli()
	valid := []series{
		{labels: lbls("__name__", "up", "job", "a"), samples: samplesAt(now, 3, 1)},
		{labels: lbls("__name__", "dup", "job", "a", "job", "b"), samples: samplesAt(now, 1, 1)},
	}
	for _, v2 := range []bool{false, true} {
		var body []byte
		if v2 {
			body = rw2(f, valid...)
		} else {
			body = rw1(f, valid...)
		}
		f.Add(body, v2, false)
		raw, err := snappy.Decode(nil, body)
		require.NoError(f, err)
		f.Add(raw, v2, true)
	}
	rw2Meta := &writev2.Request{Symbols: []string{"", "__name__", "m"}, Timeseries: []writev2.TimeSeries{{
		LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: now}},
		Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: 2, UnitRef: 0},
	}}}
	raw, err := rw2Meta.Marshal()
	require.NoError(f, err)
	f.Add(raw, true, true)
	// Metadata and exemplars, good and bad, so that the fuzzer explores their decoding too.
	lat := series{labels: lbls("__name__", "latency_seconds_bucket", "le", "1"), samples: samplesAt(now, 1, 1)}
	for _, c := range []struct {
		body []byte
		v2   bool
	}{
		{rw1With(f, lat, []prompb.Exemplar{{Labels: lbls("trace_id", "a"), Value: 1, Timestamp: now}, {Labels: lbls("\xff", "b"), Value: 1, Timestamp: now}},
			prompb.MetricMetadata{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "latency_seconds", Help: "Latency.", Unit: "seconds"},
			prompb.MetricMetadata{Type: 99, Help: "\xff"}), false},
		{rw2With(f, lat, writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM}, "Latency.", "seconds", map[string]prompb.Sample{"t": {Value: 1, Timestamp: now}}), true},
	} {
		raw, err := snappy.Decode(nil, c.body)
		require.NoError(f, err)
		f.Add(raw, c.v2, true)
	}
	f.Add([]byte("not a remote write body"), false, false)

	cfg := Config{
		ExternalLabels: valid[0].toLabels(),
		TSDBPath:       f.TempDir(),
		HTTPAddress:    "127.0.0.1:0",
		GRPCAddress:    "127.0.0.1:0",
		MaxBodySize:    1 << 20,
		MaxExemplars:   1000,
	}
	node, err := New(testLogger(), prometheus.NewRegistry(), cfg)
	require.NoError(f, err)
	require.NoError(f, node.openTSDB())
	f.Cleanup(func() {
		require.NoError(f, node.DB().Close())
		_ = node.httpLn.Close()
		_ = node.grpcLn.Close()
	})
	handler := node.Handler()

	f.Fuzz(func(t *testing.T, body []byte, v2, compress bool) {
		if compress {
			body = snappy.Encode(nil, body)
		}
		ct := rw1ContentType
		if v2 {
			ct = rw2ContentType
		}
		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Content-Encoding", "snappy")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		require.Less(t, rec.Code, 500, "status %d for garbage: %s", rec.Code, rec.Body.String())
	})
}
