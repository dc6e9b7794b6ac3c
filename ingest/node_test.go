package ingest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	_ "github.com/meridian-obs/meridian/internal/grpccodec"
)

const (
	rw1ContentType = "application/x-protobuf;proto=prometheus.WriteRequest"
	rw2ContentType = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
)

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testConfig is a node on loopback with free ports and a fresh TSDB directory.
func testConfig(t testing.TB) Config {
	return Config{
		ExternalLabels: labels.FromStrings("region", "eu-west-1"),
		TSDBPath:       t.TempDir(),
		HTTPAddress:    "127.0.0.1:0",
		GRPCAddress:    "127.0.0.1:0",
	}
}

// startNode runs a node until the test ends and waits until its TSDB is open.
func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, _ := runNode(t, cfg, prometheus.NewRegistry())
	return n
}

// runNode runs a node with its metrics on reg, waits until its TSDB is open, and returns a
// function that stops it (at the latest when the test ends).
func runNode(t testing.TB, cfg Config, reg *prometheus.Registry) (*Node, func()) {
	t.Helper()
	n, err := New(testLogger(), reg, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("node did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	require.Eventually(t, n.Ready, 30*time.Second, 10*time.Millisecond, "tsdb did not open")
	return n, stop
}

// post sends a remote-write body through the node's real handler.
func post(t testing.TB, h http.Handler, contentType string, body []byte) (int, string) {
	t.Helper()
	rec := postRecorded(h, contentType, body)
	return rec.Code, rec.Body.String()
}

// postRecorded is post's answer whole, headers with it.
func postRecorded(h http.Handler, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// series is one test series: its labels in wire order (may be invalid) and float samples.
type series struct {
	labels  []prompb.Label
	samples []prompb.Sample
}

func (s series) toLabels() labels.Labels {
	b := labels.NewScratchBuilder(len(s.labels))
	for _, l := range s.labels {
		b.Add(l.Name, l.Value)
	}
	b.Sort()
	return b.Labels()
}

func lbls(kv ...string) []prompb.Label {
	out := make([]prompb.Label, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func samplesAt(start int64, n int, value float64) []prompb.Sample {
	out := make([]prompb.Sample, n)
	for i := range out {
		out[i] = prompb.Sample{Timestamp: start + int64(i)*1000, Value: value + float64(i)}
	}
	return out
}

// rw1 is the snappy-compressed Remote-Write 1.0 body of ss.
func rw1(t testing.TB, ss ...series) []byte {
	req := &prompb.WriteRequest{}
	for _, s := range ss {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: s.labels, Samples: s.samples})
	}
	raw, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

// rw2 is the snappy-compressed Remote-Write 2.0 body of ss.
func rw2(t testing.TB, ss ...series) []byte {
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	for _, s := range ss {
		ts := writev2.TimeSeries{}
		for _, l := range s.labels {
			ts.LabelsRefs = append(ts.LabelsRefs, st.Symbolize(l.Name), st.Symbolize(l.Value))
		}
		for _, smp := range s.samples {
			ts.Samples = append(ts.Samples, writev2.Sample{Value: smp.Value, Timestamp: smp.Timestamp})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

// stored returns every float sample of the series matching the matchers, keyed by series.
func stored(t *testing.T, n *Node, ms ...*labels.Matcher) map[string][]prompb.Sample {
	t.Helper()
	q, err := n.DB().Querier(0, time.Now().Add(time.Hour).UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	if len(ms) == 0 {
		ms = []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+")}
	}
	set := q.Select(context.Background(), true, nil, ms...)
	out := map[string][]prompb.Sample{}
	var it chunkenc.Iterator
	for set.Next() {
		s := set.At()
		it = s.Iterator(it)
		var got []prompb.Sample
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			got = append(got, prompb.Sample{Timestamp: ts, Value: v})
		}
		require.NoError(t, it.Err())
		out[s.Labels().String()] = got
	}
	require.NoError(t, set.Err())
	return out
}

var _ storage.Appendable = nodeAppendable{}
