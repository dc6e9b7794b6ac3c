package ingest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// TestWriteBadInputIsRefusedAndLeavesStoredDataAlone sends each kind of bad request through the
// real handler into a real TSDB holding a seed series, and checks the answer, what the request
// left in the TSDB, and that the seed series is untouched.
func TestWriteBadInputIsRefusedAndLeavesStoredDataAlone(t *testing.T) {
	now := time.Now().UnixMilli()
	seed := series{labels: lbls("__name__", "seed", "job", "a"), samples: samplesAt(now-60_000, 10, 1)}
	const seedKey = `{__name__="seed", job="a"}`
	good := series{labels: lbls("__name__", "good", "job", "a"), samples: samplesAt(now, 3, 7)}
	const goodKey = `{__name__="good", job="a"}`

	rw2MetadataOutOfRange := func(t *testing.T) []byte {
		req := &writev2.Request{Timeseries: []writev2.TimeSeries{{Samples: []writev2.Sample{{Value: 1, Timestamp: now}}}}}
		raw, err := req.Marshal()
		require.NoError(t, err)
		return snappy.Encode(nil, raw)
	}
	bigButCompressible := func(t *testing.T) []byte {
		ss := make([]series, 0, 2000)
		for range 2000 {
			ss = append(ss, series{labels: lbls("__name__", "big", "padding", strings.Repeat("x", 100)), samples: samplesAt(now, 1, 1)})
		}
		body := rw1(t, ss...)
		require.Less(t, len(body), 64<<10, "compressed body must fit the limit for this case")
		return body
	}
	rawProto := func(t *testing.T) []byte {
		req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: good.labels, Samples: good.samples}}}
		raw, err := req.Marshal()
		require.NoError(t, err)
		return raw
	}

	for _, tc := range []struct {
		name        string
		ooo         time.Duration
		contentType string
		encoding    string
		method      string
		body        func(t *testing.T) []byte
		wantCode    int
		wantMsg     string
		wantStored  map[string][]prompb.Sample // besides the seed series
		wantReject  map[rejectReason]float64
		wantRefused string // requests-rejected reason
	}{
		{
			name: "valid rw1 is stored", contentType: rw1ContentType,
			body:     func(t *testing.T) []byte { return rw1(t, good) },
			wantCode: http.StatusNoContent, wantStored: map[string][]prompb.Sample{goodKey: good.samples},
		},
		{
			name: "valid rw2 is stored", contentType: rw2ContentType,
			body:     func(t *testing.T) []byte { return rw2(t, good) },
			wantCode: http.StatusNoContent, wantStored: map[string][]prompb.Sample{goodKey: good.samples},
		},
		{
			name: "body not snappy compressed", contentType: rw1ContentType,
			body:     rawProto,
			wantCode: http.StatusBadRequest, wantMsg: "not snappy-compressed", wantRefused: "not_snappy",
		},
		{
			name: "snappy body that is not protobuf", contentType: rw1ContentType,
			body:     func(*testing.T) []byte { return snappy.Encode(nil, []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}) },
			wantCode: http.StatusBadRequest, wantMsg: "malformed remote write message", wantRefused: "malformed",
		},
		{
			name: "rw1 malformed series after a valid one stores nothing", contentType: rw1ContentType,
			body: func(t *testing.T) []byte {
				raw, err := snappy.Decode(nil, rw1(t, good))
				require.NoError(t, err)
				// A second timeseries whose sample value is a varint instead of a double.
				raw = append(raw, 0x0a, 0x06, 0x12, 0x04, 0x08, 0x01, 0x10, 0x01)
				return snappy.Encode(nil, raw)
			},
			wantCode: http.StatusBadRequest, wantMsg: "sample field 1 has wire type 0", wantRefused: "malformed",
			wantReject: map[rejectReason]float64{reasonRolledBack: 0},
		},
		{
			name: "compressed body larger than the limit", contentType: rw1ContentType,
			body:     func(*testing.T) []byte { return bytes.Repeat([]byte{0xab}, 65<<10) },
			wantCode: http.StatusRequestEntityTooLarge, wantMsg: "write request too large", wantRefused: "too_large",
		},
		{
			name: "decompressed body larger than the limit", contentType: rw1ContentType,
			body:     bigButCompressible,
			wantCode: http.StatusRequestEntityTooLarge, wantMsg: "decompressed body", wantRefused: "too_large",
		},
		{
			name: "rw1 invalid label name keeps the valid series", contentType: rw1ContentType,
			body: func(t *testing.T) []byte {
				return rw1(t, good, series{labels: lbls("__name__", "bad", "\xff", "v"), samples: samplesAt(now, 2, 1)})
			},
			wantCode: http.StatusBadRequest, wantMsg: "invalid label name or value",
			wantStored: map[string][]prompb.Sample{goodKey: good.samples},
			wantReject: map[rejectReason]float64{reasonInvalidLabels: 2},
		},
		{
			name: "rw1 empty label name", contentType: rw1ContentType,
			body: func(t *testing.T) []byte {
				return rw1(t, series{labels: lbls("__name__", "bad", "", "v"), samples: samplesAt(now, 1, 1)})
			},
			wantCode: http.StatusBadRequest, wantMsg: "invalid label name or value",
			wantReject: map[rejectReason]float64{reasonInvalidLabels: 1},
		},
		{
			name: "rw1 missing metric name", contentType: rw1ContentType,
			body: func(t *testing.T) []byte {
				return rw1(t, series{labels: lbls("job", "a"), samples: samplesAt(now, 1, 1)})
			},
			wantCode: http.StatusBadRequest, wantMsg: "missing metric name",
			wantReject: map[rejectReason]float64{reasonInvalidLabels: 1},
		},
		{
			name: "rw1 duplicate label names keeps the valid series", contentType: rw1ContentType,
			body: func(t *testing.T) []byte {
				return rw1(t, series{labels: lbls("__name__", "dup", "job", "a", "job", "b"), samples: samplesAt(now, 3, 1)}, good)
			},
			wantCode: http.StatusBadRequest, wantMsg: `duplicate label name "job"`,
			wantStored: map[string][]prompb.Sample{goodKey: good.samples},
			wantReject: map[rejectReason]float64{reasonDuplicateLabels: 3},
		},
		{
			name: "rw2 invalid label name keeps the valid series", contentType: rw2ContentType,
			body: func(t *testing.T) []byte {
				return rw2(t, good, series{labels: lbls("__name__", "bad", "\xff", "v"), samples: samplesAt(now, 2, 1)})
			},
			wantCode: http.StatusBadRequest, wantMsg: `invalid label name or value "\xff"="v"`,
			wantStored: map[string][]prompb.Sample{goodKey: good.samples},
			wantReject: map[rejectReason]float64{reasonInvalidLabels: 2},
		},
		{
			name: "rw2 duplicate label names", contentType: rw2ContentType,
			body: func(t *testing.T) []byte {
				return rw2(t, series{labels: lbls("__name__", "dup", "job", "a", "job", "b"), samples: samplesAt(now, 1, 1)})
			},
			wantCode: http.StatusBadRequest, wantMsg: `duplicate label name "job"`,
			wantReject: map[rejectReason]float64{reasonDuplicateLabels: 1},
		},
		{
			name: "rw2 metadata outside the symbols table", contentType: rw2ContentType,
			body:     rw2MetadataOutOfRange,
			wantCode: http.StatusBadRequest, wantMsg: "outside the symbols table", wantRefused: "malformed",
		},
		{
			name: "rw1 out-of-order sample rejects the whole request", contentType: rw1ContentType,
			body: func(t *testing.T) []byte {
				return rw1(t, good, series{labels: seed.labels, samples: []prompb.Sample{{Timestamp: now - 55_500, Value: 42}}})
			},
			wantCode: http.StatusBadRequest, wantMsg: `out of order sample for series {__name__="seed", job="a"}`,
			wantReject: map[rejectReason]float64{reasonOutOfOrder: 1, reasonRolledBack: 3},
		},
		{
			name: "rw2 out-of-order sample keeps the valid series", contentType: rw2ContentType,
			body: func(t *testing.T) []byte {
				return rw2(t, good, series{labels: seed.labels, samples: []prompb.Sample{{Timestamp: now - 55_500, Value: 42}}})
			},
			wantCode: http.StatusBadRequest, wantMsg: "out of order sample",
			wantStored: map[string][]prompb.Sample{goodKey: good.samples},
			wantReject: map[rejectReason]float64{reasonOutOfOrder: 1},
		},
		{
			name: "sample older than the head without out-of-order window", contentType: rw1ContentType,
			body: func(t *testing.T) []byte {
				return rw1(t, series{labels: lbls("__name__", "old"), samples: []prompb.Sample{{Timestamp: now - 3*3600_000, Value: 1}}})
			},
			wantCode: http.StatusBadRequest, wantMsg: "out of bounds",
			wantReject: map[rejectReason]float64{reasonOutOfBounds: 1},
		},
		{
			name: "sample older than the out-of-order window", contentType: rw1ContentType, ooo: 10 * time.Minute,
			body: func(t *testing.T) []byte {
				return rw1(t, series{labels: seed.labels, samples: []prompb.Sample{{Timestamp: now - 3600_000, Value: 1}}})
			},
			wantCode: http.StatusBadRequest, wantMsg: "too old sample",
			wantReject: map[rejectReason]float64{reasonTooOld: 1},
		},
		{
			name: "out-of-order sample inside the window is stored", contentType: rw1ContentType, ooo: 10 * time.Minute,
			body: func(t *testing.T) []byte {
				return rw1(t, series{labels: lbls("__name__", "late"), samples: []prompb.Sample{{Timestamp: now - 120_000, Value: 5}}})
			},
			wantCode:   http.StatusNoContent,
			wantStored: map[string][]prompb.Sample{`{__name__="late"}`: {{Timestamp: now - 120_000, Value: 5}}},
		},
		{
			name: "sample too far in the future", contentType: rw1ContentType,
			body: func(t *testing.T) []byte {
				return rw1(t, series{labels: lbls("__name__", "future"), samples: []prompb.Sample{{Timestamp: now + 3600_000, Value: 1}}})
			},
			wantCode: http.StatusBadRequest, wantMsg: "out of bounds",
		},
		{
			name: "unsupported content encoding", contentType: rw1ContentType, encoding: "gzip",
			body:     func(t *testing.T) []byte { return rw1(t, good) },
			wantCode: http.StatusUnsupportedMediaType, wantMsg: "gzip encoding",
		},
		{
			name: "unknown protobuf message type", contentType: "application/x-protobuf;proto=foo.Bar",
			body:     func(t *testing.T) []byte { return rw1(t, good) },
			wantCode: http.StatusUnsupportedMediaType, wantMsg: "foo.Bar",
		},
		{
			name: "GET is not allowed", method: http.MethodGet, contentType: rw1ContentType,
			body:     func(*testing.T) []byte { return nil },
			wantCode: http.StatusMethodNotAllowed,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MaxBodySize = 64 << 10
			cfg.OutOfOrderTimeWindow = tc.ooo
			n := startNode(t, cfg)
			code, msg := post(t, n.Handler(), rw1ContentType, rw1(t, seed))
			require.Equal(t, http.StatusNoContent, code, msg)

			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "/api/v1/write", bytes.NewReader(tc.body(t)))
			req.Header.Set("Content-Type", tc.contentType)
			req.Header.Set("Content-Encoding", "snappy")
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			rec := httptest.NewRecorder()
			n.Handler().ServeHTTP(rec, req)
			require.Equal(t, tc.wantCode, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), tc.wantMsg)

			want := map[string][]prompb.Sample{seedKey: seed.samples}
			for k, v := range tc.wantStored {
				if k == seedKey {
					want[k] = append(append([]prompb.Sample(nil), seed.samples...), v...)
					continue
				}
				want[k] = v
			}
			require.Equal(t, want, stored(t, n))

			for reason, v := range tc.wantReject {
				require.Equal(t, v, testutil.ToFloat64(n.metrics.samplesRejected.WithLabelValues(string(reason))), "rejected samples, reason %s", reason)
			}
			if tc.wantRefused != "" {
				require.Equal(t, 1.0, testutil.ToFloat64(n.metrics.requestsRejected.WithLabelValues(tc.wantRefused)))
			}
		})
	}
}
