package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// exemplarStorage turns on the ingest nodes' exemplar storage (off by default, as in Thanos
// Receive) at Prometheus's size.
var exemplarStorage = []string{"--tsdb.max-exemplars", "100000"}

// restartIngestAt runs `meridian ingest` again on the directory and addresses of a node that
// was killed, so that the queriers over it find it where it was.
func restartIngestAt(t testing.TB, old *ingestProcess, extLabels []string) *ingestProcess {
	t.Helper()
	ip := &ingestProcess{httpAddr: old.httpAddr, grpcAddr: old.grpcAddr, tsdbPath: old.tsdbPath}
	args := []string{"ingest", "--tsdb.path", ip.tsdbPath, "--http-address", ip.httpAddr, "--grpc-address", ip.grpcAddr}
	for _, l := range extLabels {
		args = append(args, "--label", l)
	}
	args = append(args, exemplarStorage...)
	ip.process = startProcess(t, "meridian ingest "+ip.httpAddr, meridianBinary, args...)
	waitReady(t, ip.process, "http://"+ip.httpAddr+"/-/ready", 60*time.Second)
	return ip
}

// remoteWriteV2 posts req as a snappy Remote-Write 2.0 body.
func remoteWriteV2(t testing.TB, writeURL string, req *writev2.Request) (int, string) {
	t.Helper()
	raw, err := req.Marshal()
	require.NoError(t, err)
	hreq, err := http.NewRequest(http.MethodPost, writeURL, bytes.NewReader(snappy.Encode(nil, raw)))
	require.NoError(t, err)
	hreq.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(hreq)
	require.NoError(t, err)
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg)
}

// exemplarKey is one exemplar as an answer shows it: series labels, exemplar labels, value and
// timestamp, so that two queriers' answers compare whatever their order and number format.
type exemplarKey struct {
	Series, Labels, Value string
	TSMillis              int64
}

func exemplarKeys(t testing.TB, res apiAnswer) []exemplarKey {
	t.Helper()
	require.Equal(t, http.StatusOK, res.Code, res.Raw)
	require.Equal(t, "success", res.Body.Status, res.Raw)
	var data []struct {
		SeriesLabels map[string]string `json:"seriesLabels"`
		Exemplars    []struct {
			Labels    map[string]string `json:"labels"`
			Value     string            `json:"value"`
			Timestamp json.Number       `json:"timestamp"`
		} `json:"exemplars"`
	}
	require.NoError(t, json.Unmarshal(res.Body.Data, &data), res.Raw)
	var out []exemplarKey
	for _, d := range data {
		for _, e := range d.Exemplars {
			ts, err := e.Timestamp.Float64()
			require.NoError(t, err)
			out = append(out, exemplarKey{Series: fmt.Sprint(d.SeriesLabels), Labels: fmt.Sprint(e.Labels), Value: e.Value, TSMillis: int64(ts*1000 + 0.5)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
	return out
}

type metaEntry struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

func metadataOf(t testing.TB, res apiAnswer) map[string][]metaEntry {
	t.Helper()
	require.Equal(t, http.StatusOK, res.Code, res.Raw)
	var md map[string][]metaEntry
	require.NoError(t, json.Unmarshal(res.Body.Data, &md), res.Raw)
	for _, v := range md {
		sort.Slice(v, func(i, j int) bool { return fmt.Sprint(v[i]) < fmt.Sprint(v[j]) })
	}
	return md
}

// TestMetadataAndExemplarsEndToEnd runs three `meridian ingest` regions with exemplar storage at
// its default size. A real Prometheus scrapes itself and remote-writes into one of them with
// metadata sending on; exemplars are written over RW1 and RW2. The metadata Prometheus lists
// for its own targets comes back through `meridian query` unchanged, the exemplars come back
// from every region with its region label, they survive a kill -9 of their node (the WAL keeps
// them), and a real Thanos Query over the same nodes answers both endpoints with the same
// content.
func TestMetadataAndExemplarsEndToEnd(t *testing.T) {
	t.Parallel()
	regions := []string{"eu-west-1", "us-east-1", "ap-southeast-1"}
	var nodes []*ingestProcess
	var stores []string
	for _, r := range regions {
		n := startIngest(t, t.TempDir(), []string{"region=" + r}, exemplarStorage...)
		nodes = append(nodes, n)
		stores = append(stores, n.grpcAddr)
	}
	promAddr := freeAddr(t)
	startPrometheus(t, promAddr, fmt.Sprintf(`
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['%s']
remote_write:
  - url: %s
    metadata_config:
      send: true
      send_interval: 1s
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
`, promAddr, nodes[0].writeURL()))
	meridian := startGlobalQuerier(t, t, stores)
	thanos := startThanosQuery(t, stores)

	t.Run("Prometheus's metadata comes back through meridian query", func(t *testing.T) {
		var want, got map[string][]metaEntry
		require.Eventually(t, func() bool {
			want = metadataOf(t, callAPI(t, promAddr, "/api/v1/metadata", nil))
			got = metadataOf(t, callAPI(t, meridian.httpAddr, "/api/v1/metadata", nil))
			return len(want) > 50 && fmt.Sprint(want) == fmt.Sprint(got)
		}, time.Minute, time.Second, "meridian query's metadata never equalled Prometheus's")
		require.Equal(t, want, got)
		require.Equal(t, []metaEntry{{Type: "counter", Help: "Total number of scrapes by HTTP status code.", Unit: ""}}, got["promhttp_metric_handler_requests_total"])
		require.Equal(t, "histogram", got["prometheus_http_request_duration_seconds"][0].Type)

		one := metadataOf(t, callAPI(t, meridian.httpAddr, "/api/v1/metadata", url.Values{"metric": {"prometheus_http_request_duration_seconds"}}))
		require.Equal(t, map[string][]metaEntry{"prometheus_http_request_duration_seconds": want["prometheus_http_request_duration_seconds"]}, one)
		require.Len(t, metadataOf(t, callAPI(t, meridian.httpAddr, "/api/v1/metadata", url.Values{"limit": {"5"}})), 5)
	})

	now := time.Now().UnixMilli()
	bucket := func(region string) []prompb.Label {
		return []prompb.Label{{Name: "__name__", Value: "checkout_latency_seconds_bucket"}, {Name: "le", Value: "0.5"}, {Name: "shard", Value: region}}
	}
	traces := map[string][]string{}
	for i, region := range regions {
		for k := range 3 {
			traces[region] = append(traces[region], fmt.Sprintf("%s-%032x", region[:2], i*10+k))
		}
		ts := now + int64(i)
		if region == "ap-southeast-1" {
			st := writev2.NewSymbolTable()
			series := writev2.TimeSeries{Samples: []writev2.Sample{{Value: 3, Timestamp: ts}}}
			for _, l := range bucket(region) {
				series.LabelsRefs = append(series.LabelsRefs, st.Symbolize(l.Name), st.Symbolize(l.Value))
			}
			series.Metadata = writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, HelpRef: st.Symbolize("Checkout latency."), UnitRef: st.Symbolize("seconds")}
			for k, tr := range traces[region] {
				series.Exemplars = append(series.Exemplars, writev2.Exemplar{LabelsRefs: []uint32{st.Symbolize("trace_id"), st.Symbolize(tr)}, Value: 0.1 * float64(k+1), Timestamp: ts + int64(k)})
			}
			code, msg := remoteWriteV2(t, nodes[i].writeURL(), &writev2.Request{Symbols: st.Symbols(), Timeseries: []writev2.TimeSeries{series}})
			require.Equal(t, http.StatusNoContent, code, msg)
			continue
		}
		series := prompb.TimeSeries{Labels: bucket(region), Samples: []prompb.Sample{{Value: 3, Timestamp: ts}}}
		for k, tr := range traces[region] {
			series.Exemplars = append(series.Exemplars, prompb.Exemplar{Labels: []prompb.Label{{Name: "trace_id", Value: tr}}, Value: 0.1 * float64(k+1), Timestamp: ts + int64(k)})
		}
		code, msg := remoteWrite(t, nodes[i].writeURL(), &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series}})
		require.Equal(t, http.StatusNoContent, code, msg)
	}
	exemplarQuery := url.Values{
		"query": {`histogram_quantile(0.99, sum by (le, region) (rate(checkout_latency_seconds_bucket[5m])))`},
		"start": {fmt.Sprint(now/1000 - 60)}, "end": {fmt.Sprint(now/1000 + 60)},
	}
	wantExemplars := func(regions ...string) []exemplarKey {
		var out []exemplarKey
		for _, region := range regions {
			i := map[string]int{"eu-west-1": 0, "us-east-1": 1, "ap-southeast-1": 2}[region]
			series := map[string]string{"__name__": "checkout_latency_seconds_bucket", "le": "0.5", "shard": region, "region": region}
			for k, tr := range traces[region] {
				out = append(out, exemplarKey{Series: fmt.Sprint(series), Labels: fmt.Sprint(map[string]string{"trace_id": tr}), Value: fmt.Sprint(0.1 * float64(k+1)), TSMillis: now + int64(i) + int64(k)})
			}
		}
		sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
		return out
	}

	t.Run("exemplars of RW1 and RW2 come back from every region", func(t *testing.T) {
		res := callAPI(t, meridian.httpAddr, "/api/v1/query_exemplars", exemplarQuery)
		require.Empty(t, res.Body.Warnings)
		require.Equal(t, wantExemplars(regions...), exemplarKeys(t, res))

		one := url.Values{"query": {`checkout_latency_seconds_bucket{region="ap-southeast-1"}`}, "start": exemplarQuery["start"], "end": exemplarQuery["end"]}
		require.Equal(t, wantExemplars("ap-southeast-1"), exemplarKeys(t, callAPI(t, meridian.httpAddr, "/api/v1/query_exemplars", one)))

		md := metadataOf(t, callAPI(t, meridian.httpAddr, "/api/v1/metadata", url.Values{"metric": {"checkout_latency_seconds"}}))
		require.Equal(t, map[string][]metaEntry{"checkout_latency_seconds": {{Type: "histogram", Help: "Checkout latency.", Unit: "seconds"}}}, md, "RW2 series metadata under its family")
	})

	t.Run("thanos query over meridian ingest answers the same", func(t *testing.T) {
		require.Eventually(t, func() bool {
			res := callAPI(t, thanos.httpAddr, "/api/v1/query_exemplars", exemplarQuery)
			return res.Code == http.StatusOK && len(exemplarKeys(t, res)) == 9
		}, time.Minute, 500*time.Millisecond, "thanos query never saw the exemplars of every region")
		require.Equal(t, exemplarKeys(t, callAPI(t, meridian.httpAddr, "/api/v1/query_exemplars", exemplarQuery)),
			exemplarKeys(t, callAPI(t, thanos.httpAddr, "/api/v1/query_exemplars", exemplarQuery)))
		require.Eventually(t, func() bool {
			m := metadataOf(t, callAPI(t, meridian.httpAddr, "/api/v1/metadata", nil))
			th := metadataOf(t, callAPI(t, thanos.httpAddr, "/api/v1/metadata", nil))
			return len(m) > 50 && fmt.Sprint(m) == fmt.Sprint(th)
		}, 30*time.Second, time.Second, "thanos query's metadata differs from meridian query's")
	})

	t.Run("a kill -9 of an ingest node keeps its acknowledged exemplars", func(t *testing.T) {
		nodes[1].kill9(t)
		res := callAPI(t, meridian.httpAddr, "/api/v1/query_exemplars", exemplarQuery)
		require.Equal(t, http.StatusOK, res.Code, res.Raw)
		require.Len(t, res.Body.Warnings, 1)
		require.Contains(t, res.Body.Warnings[0], `region "us-east-1"`)
		require.Equal(t, wantExemplars("eu-west-1", "ap-southeast-1"), exemplarKeys(t, res))

		restartIngestAt(t, nodes[1], []string{"region=us-east-1"})
		require.Eventually(t, func() bool {
			res := callAPI(t, meridian.httpAddr, "/api/v1/query_exemplars", exemplarQuery)
			return res.Code == http.StatusOK && len(res.Body.Warnings) == 0
		}, 30*time.Second, 200*time.Millisecond, "us-east-1 never answered again")
		require.Equal(t, wantExemplars(regions...), exemplarKeys(t, callAPI(t, meridian.httpAddr, "/api/v1/query_exemplars", exemplarQuery)))
	})
}
