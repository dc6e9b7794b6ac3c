package ingest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestNodeIsHealthyAtOnceAndReadyOnlyOnceTheTSDBIsOpen(t *testing.T) {
	cfg := testConfig(t)
	n, err := New(testLogger(), prometheus.NewRegistry(), cfg)
	require.NoError(t, err)

	code, _ := get(t, n.Handler(), "/-/healthy")
	require.Equal(t, http.StatusOK, code)
	code, body := get(t, n.Handler(), "/-/ready")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "WAL replay")
	code, _ = post(t, n.Handler(), rw1ContentType, rw1(t, series{labels: lbls("__name__", "x"), samples: samplesAt(time.Now().UnixMilli(), 1, 1)}))
	require.Equal(t, http.StatusServiceUnavailable, code, "writes before WAL replay must be retried by the sender")
	require.Nil(t, n.DB())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + n.HTTPAddr() + "/-/ready")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 10*time.Millisecond)
	require.NotNil(t, n.DB())

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("node did not stop")
	}
	_, err = http.Get("http://" + n.HTTPAddr() + "/-/healthy")
	require.Error(t, err, "http server must be stopped after Run returns")
}

func TestNodeKeepsAcknowledgedSamplesAcrossARestart(t *testing.T) {
	cfg := testConfig(t)
	s := series{labels: lbls("__name__", "kept", "job", "a"), samples: samplesAt(time.Now().UnixMilli(), 5, 1)}

	first, stop := runNode(t, cfg, prometheus.NewRegistry())
	code, msg := post(t, first.Handler(), rw1ContentType, rw1(t, s))
	require.Equal(t, http.StatusNoContent, code, msg)
	stop()

	second := startNode(t, cfg)
	require.Equal(t, map[string][]prompb.Sample{`{__name__="kept", job="a"}`: s.samples}, stored(t, second))
}

func TestMetricsExposeIngestTSDBAndStoreAPISeries(t *testing.T) {
	n := startNode(t, testConfig(t))
	now := time.Now().UnixMilli()
	code, msg := post(t, n.Handler(), rw1ContentType, rw1(t,
		series{labels: lbls("__name__", "a"), samples: samplesAt(now, 4, 1)},
		series{labels: lbls("__name__", "b", "x", "1", "x", "2"), samples: samplesAt(now, 2, 1)},
	))
	require.Equal(t, http.StatusBadRequest, code, msg)

	resp, err := http.Get("http://" + n.HTTPAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	body := string(raw)
	for _, want := range []string{
		"meridian_ingest_samples_received_total 6",
		"meridian_ingest_samples_appended_total 4",
		`meridian_ingest_samples_rejected_total{reason="duplicate_labels"} 2`,
		`meridian_ingest_write_requests_total{code="400"} 1`,
		"meridian_ingest_write_request_duration_seconds_bucket",
		"meridian_ingest_wal_replay_duration_seconds",
		"meridian_ingest_ready 1",
		"prometheus_tsdb_head_series 1",
		"prometheus_tsdb_data_replay_duration_seconds",
		"prometheus_api_remote_write_invalid_labels_samples_total",
	} {
		require.Contains(t, body, want)
	}
	require.True(t, strings.Contains(body, "meridian_storeapi") || strings.Contains(body, "storeapi"), "storeapi metrics registered on the node's registry")
}
