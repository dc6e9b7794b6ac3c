package simulate

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
)

func TestPushBackfillsThenGoesLiveIntoPrometheusReceiver(t *testing.T) {
	db, err := tsdb.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	defer db.Close()
	receiver := remote.NewWriteHandler(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), db,
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType}, false, false, false)
	srv := httptest.NewServer(receiver)
	defer srv.Close()

	const (
		region   = "eu-west-1"
		step     = time.Second
		backfill = 2 * time.Minute
	)
	reg := prometheus.NewRegistry()
	s, err := New(WithBackfill(backfill), WithRegisterer(reg))
	require.NoError(t, err)
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Push(ctx, region, srv.URL, step) }()

	// Wait until live samples, newer than the start, have landed.
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(s.metrics.newest.WithLabelValues(region)) > float64(start.UnixMilli())/1000+2
	}, 30*time.Second, 50*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.Zero(t, testutil.ToFloat64(s.metrics.requests.WithLabelValues(region, "dropped")), "the receiver took everything")
	require.InDelta(t, testutil.ToFloat64(s.metrics.newest.WithLabelValues(region))*1000, float64(s.Pushed(region).UnixMilli()), 1,
		"Pushed is the newest accepted sample")
	require.True(t, s.Pushed("us-east-1").IsZero(), "nothing pushed to another region")

	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"))
	firstWant := (start.Add(-backfill).UnixMilli() + step.Milliseconds() - 1) / step.Milliseconds() * step.Milliseconds()
	var series, histograms int
	var newest int64
	for set.Next() {
		sr := set.At()
		series++
		it := sr.Iterator(nil)
		first := true
		var last int64
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			ts := it.AtT()
			if first {
				require.Equal(t, firstWant, ts, "%s starts with the backfill", sr.Labels())
				first = false
			} else {
				require.Equal(t, last+step.Milliseconds(), ts, "%s has no gap", sr.Labels())
			}
			last = ts
			if vt == chunkenc.ValHistogram {
				histograms++
			}
		}
		require.NoError(t, it.Err())
		newest = max(newest, last)
	}
	require.NoError(t, set.Err())
	r := s.regions[region]
	require.Equal(t, len(r.floats)+len(r.natives), series)
	require.Greater(t, histograms, len(r.natives)*int(backfill/step), "native histograms landed")
	require.Greater(t, newest, start.UnixMilli(), "live samples landed")

	// What landed is what the simulator generates for the same instants.
	checkAt := time.UnixMilli(firstWant + 30*step.Milliseconds())
	want := valuesAt(t, s, region, checkAt)
	landed := 0
	for key, v := range want {
		l, err := parser.ParseMetric(key)
		require.NoError(t, err)
		got := valueInDB(t, q, l, checkAt.UnixMilli())
		require.Equal(t, v, got, key)
		landed++
	}
	require.Equal(t, len(r.floats), landed)
}

func valueInDB(t *testing.T, q storage.Querier, l labels.Labels, ts int64) float64 {
	t.Helper()
	var ms []*labels.Matcher
	l.Range(func(lb labels.Label) { ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, lb.Name, lb.Value)) })
	set := q.Select(context.Background(), false, nil, ms...)
	require.True(t, set.Next(), l.String())
	it := set.At().Iterator(nil)
	require.NotEqual(t, chunkenc.ValNone, it.Seek(ts))
	gotT, v := it.At()
	require.Equal(t, ts, gotT)
	require.False(t, set.Next())
	return v
}

// scriptedReceiver decodes remote-write requests and answers them with a scripted status
// (0 drops the connection), then 200 once the script is over.
type scriptedReceiver struct {
	t      *testing.T
	mu     sync.Mutex
	script []int
	bodies [][]byte
	first  []int64 // earliest sample timestamp of each request
}

func (rcv *scriptedReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if r.Header.Get("Content-Encoding") != "snappy" || r.Header.Get("Content-Type") != "application/x-protobuf" ||
		r.Header.Get("X-Prometheus-Remote-Write-Version") != "0.1.0" {
		rcv.t.Errorf("unexpected headers: %v", r.Header)
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		rcv.t.Errorf("snappy: %v", err)
	}
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		rcv.t.Errorf("protobuf: %v", err)
	}
	first := int64(math.MaxInt64)
	for _, ts := range wr.Timeseries {
		for _, s := range ts.Samples {
			first = min(first, s.Timestamp)
		}
	}
	rcv.mu.Lock()
	status := http.StatusOK
	if len(rcv.script) > 0 {
		status, rcv.script = rcv.script[0], rcv.script[1:]
	}
	rcv.bodies = append(rcv.bodies, body)
	rcv.first = append(rcv.first, first)
	rcv.mu.Unlock()
	if status == 0 {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte("scripted answer"))
}

func (rcv *scriptedReceiver) received() ([][]byte, []int64) {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	return append([][]byte(nil), rcv.bodies...), append([]int64(nil), rcv.first...)
}

func TestPushRetriesRecoverableFailuresAndDropsRejectedRequests(t *testing.T) {
	for _, tc := range []struct {
		name        string
		script      []int
		wantRetried int // the first request is sent wantRetried+1 times
		wantDropped bool
	}{
		{name: "5xx is retried until accepted", script: []int{503, 500, 502}, wantRetried: 3},
		{name: "dropped connection is retried", script: []int{0, 0}, wantRetried: 2},
		{name: "429 is retried", script: []int{429}, wantRetried: 1},
		{name: "4xx is dropped, not retried", script: []int{400, 400, 400, 400}, wantDropped: true},
		{name: "accepted at once", script: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := &scriptedReceiver{t: t, script: tc.script}
			srv := httptest.NewServer(rcv)
			defer srv.Close()
			s, err := New(WithBackfill(time.Minute), WithRetryBackoff(5*time.Millisecond, 20*time.Millisecond),
				WithRegisterer(prometheus.NewRegistry()), WithMaxSamplesPerRequest(1000))
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Push(ctx, "us-east-1", srv.URL, time.Second) }()
			require.Eventually(t, func() bool {
				bodies, _ := rcv.received()
				return len(bodies) >= len(tc.script)+3
			}, 30*time.Second, 10*time.Millisecond)
			cancel()
			require.NoError(t, <-done)

			bodies, first := rcv.received()
			for i := 1; i <= tc.wantRetried; i++ {
				require.True(t, bytes.Equal(bodies[0], bodies[i]), "attempt %d resends the same request", i+1)
			}
			require.False(t, bytes.Equal(bodies[tc.wantRetried], bodies[tc.wantRetried+1]), "after success the next request follows")
			for i := 1; i < len(first); i++ {
				require.GreaterOrEqual(t, first[i], first[i-1], "requests go forward in time")
			}
			require.Equal(t, float64(tc.wantRetried), testutil.ToFloat64(s.metrics.requests.WithLabelValues("us-east-1", "retried")))
			dropped := testutil.ToFloat64(s.metrics.requests.WithLabelValues("us-east-1", "dropped"))
			if tc.wantDropped {
				require.Equal(t, float64(len(tc.script)), dropped)
			} else {
				require.Zero(t, dropped)
			}
		})
	}
}

func TestPushRejectsBadArguments(t *testing.T) {
	s, err := New()
	require.NoError(t, err)
	for _, tc := range []struct {
		name, region, url string
		step              time.Duration
		want              string
	}{
		{"unknown region", "mars-1", "http://127.0.0.1:1/api/v1/write", time.Second, "unknown region"},
		{"relative URL", "eu-west-1", "/api/v1/write", time.Second, "absolute http(s) URL"},
		{"unsupported scheme", "eu-west-1", "ftp://example.org/write", time.Second, "absolute http(s) URL"},
		{"sub-millisecond step", "eu-west-1", "http://127.0.0.1:1/api/v1/write", time.Microsecond, "step"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorContains(t, s.Push(context.Background(), tc.region, tc.url, tc.step), tc.want)
		})
	}
}
