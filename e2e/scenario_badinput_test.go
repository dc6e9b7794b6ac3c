package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// postRaw posts body to rawURL with headers and returns the status and the answer.
func postRaw(t testing.TB, rawURL string, body []byte, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg)
}

var remoteWriteHeaders = map[string]string{
	"Content-Type":                      "application/x-protobuf",
	"Content-Encoding":                  "snappy",
	"X-Prometheus-Remote-Write-Version": "0.1.0",
}

// storeSnapshot is every sample of a region's http_requests_total up to atMillis.
func storeSnapshot(t testing.TB, grpcAddr string, atMillis int64) map[string][]sample {
	t.Helper()
	return bySeries(storeSeries(t, grpcAddr, 0, atMillis, eqMatcher(labels.MetricName, "http_requests_total")))
}

// testBadInputOnRunningProcesses sends bad input to every public entry point of the running
// environment: each is refused with a clear error, the process keeps serving and the data it
// held before is unchanged.
func testBadInputOnRunningProcesses(t *testing.T, env *coreEnv) {
	r := env.region(t, "eu-west-1")
	before := time.Now().Add(-2 * time.Second).UnixMilli()
	waitStoreHolds(t, r.ingest.grpcAddr, "up", "simulate", before, 30*time.Second)
	snapshot := storeSnapshot(t, r.ingest.grpcAddr, before)
	require.NotEmpty(t, snapshot)

	t.Run("remote write", func(t *testing.T) {
		good := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "e2e_bad_input_probe"}},
			Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: 1}},
		}}}
		goodRaw, err := good.Marshal()
		require.NoError(t, err)
		withLabels := func(ls ...prompb.Label) []byte {
			req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: ls, Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: 1}}}}}
			raw, err := req.Marshal()
			require.NoError(t, err)
			return snappy.Encode(nil, raw)
		}
		for _, tc := range []struct {
			name, want string
			body       []byte
		}{
			{"not snappy", "snappy", goodRaw},
			{"garbage in snappy", "decode", snappy.Encode(nil, []byte("\xff\xff\xff\xff garbage that is no protobuf"))},
			{"empty label name", "", withLabels(prompb.Label{Name: "__name__", Value: "x"}, prompb.Label{Name: "", Value: "v"})},
			{"duplicate label", "", withLabels(prompb.Label{Name: "__name__", Value: "x"}, prompb.Label{Name: "a", Value: "1"}, prompb.Label{Name: "a", Value: "2"})},
			{"invalid utf-8 value", "", withLabels(prompb.Label{Name: "__name__", Value: "x"}, prompb.Label{Name: "a", Value: "\xff\xfe"})},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, msg := postRaw(t, r.ingest.writeURL(), tc.body, remoteWriteHeaders)
				require.Equal(t, http.StatusBadRequest, code, msg)
				require.NotEmpty(t, strings.TrimSpace(msg))
				require.Contains(t, msg, tc.want)
			})
		}
		code, msg := postRaw(t, r.ingest.writeURL(), snappy.Encode(nil, goodRaw), remoteWriteHeaders)
		require.Equal(t, http.StatusNoContent, code, "a good write after the bad ones: %s", msg)
		require.False(t, r.ingest.exited())
	})

	t.Run("PromQL and label APIs", func(t *testing.T) {
		now := millisParam(time.Now().UnixMilli())
		earlier := millisParam(time.Now().Add(-time.Minute).UnixMilli())
		for _, tc := range []struct {
			name, path string
			params     url.Values
		}{
			{"unparsable expression", "/api/v1/query", url.Values{"query": {"sum(rate(http_requests_total[5m])"}}},
			{"unknown function", "/api/v1/query", url.Values{"query": {"no_such_function(up)"}}},
			{"empty expression", "/api/v1/query", url.Values{"query": {""}}},
			{"bad time", "/api/v1/query", url.Values{"query": {"up"}, "time": {"yesterday"}}},
			{"bad timeout", "/api/v1/query", url.Values{"query": {"up"}, "timeout": {"soon"}}},
			{"bad partial_response", "/api/v1/query", url.Values{"query": {"up"}, "partial_response": {"maybe"}}},
			{"zero step", "/api/v1/query_range", url.Values{"query": {"up"}, "start": {earlier}, "end": {now}, "step": {"0"}}},
			{"negative step", "/api/v1/query_range", url.Values{"query": {"up"}, "start": {earlier}, "end": {now}, "step": {"-15"}}},
			{"bad step", "/api/v1/query_range", url.Values{"query": {"up"}, "start": {earlier}, "end": {now}, "step": {"often"}}},
			{"too many points", "/api/v1/query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {now}, "step": {"0.001"}}},
			{"end before start", "/api/v1/query_range", url.Values{"query": {"up"}, "start": {now}, "end": {earlier}, "step": {"15"}}},
			{"bad start", "/api/v1/query_range", url.Values{"query": {"up"}, "start": {"dawn"}, "end": {now}, "step": {"15"}}},
			{"series without match", "/api/v1/series", url.Values{}},
			{"series bad matcher", "/api/v1/series", url.Values{"match[]": {`up{job=~"("}`}}},
			{"labels bad matcher", "/api/v1/labels", url.Values{"match[]": {`{`}}},
			{"label values bad matcher", "/api/v1/label/job/values", url.Values{"match[]": {`up{job="x"`}}},
			{"label values bad name", "/api/v1/label/" + url.PathEscape("\xff") + "/values", url.Values{}},
			{"labels bad start", "/api/v1/labels", url.Values{"start": {"then"}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := callAPI(t, env.querier.httpAddr, tc.path, tc.params)
				require.Equal(t, http.StatusBadRequest, res.Code, res.Raw)
				require.Equal(t, "error", res.Body.Status)
				require.Equal(t, "bad_data", res.Body.ErrorType)
				require.NotEmpty(t, res.Body.Error)
			})
		}
		require.False(t, env.querier.exited())
	})

	t.Run("test exporter chaos endpoints", func(t *testing.T) {
		controlsBefore := getBody(t, "http://"+r.simAddr+"/controls")
		for _, tc := range []struct{ name, path string }{
			{"missing ratio", "/errors"},
			{"ratio not a number", "/errors?ratio=lots"},
			{"ratio above one", "/errors?ratio=1.5"},
			{"negative capacity", "/capacity?factor=-1"},
			{"NaN traffic", "/traffic?factor=NaN"},
			{"infinite lag", "/lag?seconds=Inf"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, msg := postRaw(t, "http://"+r.simAddr+tc.path, nil, nil)
				require.Equal(t, http.StatusBadRequest, code, msg)
				var body struct {
					Error string `json:"error"`
				}
				require.NoError(t, json.Unmarshal([]byte(msg), &body), msg)
				require.NotEmpty(t, body.Error)
			})
		}
		code, _ := postRaw(t, "http://"+r.simAddr+"/no-such-control?x=1", nil, nil)
		require.Equal(t, http.StatusNotFound, code)
		require.Equal(t, controlsBefore, getBody(t, "http://"+r.simAddr+"/controls"), "bad requests changed the controls")
		require.NotEmpty(t, getBody(t, "http://"+r.simAddr+"/metrics"))
	})

	// Every process is still serving and the data held before is intact; scraping went on.
	for _, p := range []*process{r.sim, r.ingest.process, r.prom, env.querier.process} {
		require.False(t, p.exited(), "%s exited", p.name)
	}
	require.Equal(t, snapshot, storeSnapshot(t, r.ingest.grpcAddr, before))
	waitStoreHolds(t, r.ingest.grpcAddr, "up", "simulate", time.Now().UnixMilli(), 30*time.Second)
	env.waitAllRegionsBack(t, 30*time.Second)
}

// getBody GETs rawURL and returns its body, requiring 200.
func getBody(t testing.TB, rawURL string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(rawURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", rawURL, b)
	return string(b)
}

// runMeridian runs the binary to completion (bounded) and returns its exit code and output.
func runMeridian(t testing.TB, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(meridianBinary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			return 0, out.String()
		}
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit)
		return exit.ExitCode(), out.String()
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("meridian %s still running after %s; output:\n%s", strings.Join(args, " "), timeout, out.String())
		return 0, ""
	}
}

// TestBadConfigFilesAreRefusedWithFileAndLine: SLO spec files and endpoint SD files that do not
// parse are reported with their file (and line where the format has one); a querier that already
// runs keeps its last good targets.
func TestBadConfigFilesAreRefusedWithFileAndLine(t *testing.T) {
	dir := t.TempDir()

	t.Run("slo validate", func(t *testing.T) {
		for _, tc := range []struct {
			name, content, want string
		}{
			{"unknown field", "version: \"prometheus/v1\"\nservice: shop\nslos:\n  - name: availability\n    objective: 99.9\n    sli:\n      events:\n        error_query: sum(rate(http_requests_total{code=~\"5..\"}[{{.window}}]))\n        total_query: sum(rate(http_requests_total[{{.window}}]))\n    alerting:\n      page_alert:\n        labls: {severity: page}\n", ":12"},
			{"bad PromQL", "version: \"prometheus/v1\"\nservice: shop\nslos:\n  - name: availability\n    objective: 99.9\n    sli:\n      events:\n        error_query: sum(rate(http_requests_total{code=~\"5..\"}[{{.window}}])\n        total_query: sum(rate(http_requests_total[{{.window}}]))\n", ":8"},
			{"objective out of range", "version: \"prometheus/v1\"\nservice: shop\nslos:\n  - name: availability\n    objective: 100.5\n    sli:\n      events:\n        error_query: sum(rate(http_requests_total{code=~\"5..\"}[{{.window}}]))\n        total_query: sum(rate(http_requests_total[{{.window}}]))\n", ":5"},
			{"not YAML", "version: [prometheus/v1\n", ":"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
				require.NoError(t, writeTestFile(path, tc.content))
				code, out := runMeridian(t, 30*time.Second, "slo", "validate", path)
				require.Equal(t, 1, code, out)
				require.Contains(t, out, path+tc.want, out)
			})
		}
		good := filepath.Join(dir, "good.yaml")
		require.NoError(t, writeTestFile(good, "version: \"prometheus/v1\"\nservice: shop\nslos:\n  - name: availability\n    objective: 99.9\n    sli:\n      events:\n        error_query: sum(rate(http_requests_total{code=~\"5..\"}[{{.window}}]))\n        total_query: sum(rate(http_requests_total[{{.window}}]))\n"))
		code, out := runMeridian(t, 30*time.Second, "slo", "validate", good)
		require.Equal(t, 0, code, out)
	})

	t.Run("endpoint SD file broken on reload keeps the previous targets", func(t *testing.T) {
		ingest := startIngest(t, t.TempDir(), []string{"region=eu-west-1"})
		code, msg := remoteWrite(t, ingest.writeURL(), &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "e2e_sd_probe"}},
			Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: 1}},
		}}})
		require.Equal(t, http.StatusNoContent, code, msg)
		sd := filepath.Join(dir, "stores.yaml")
		require.NoError(t, writeTestFile(sd, "- targets: ['"+ingest.grpcAddr+"']\n"))
		q := startGlobalQuerier(t, t, nil, "--endpoint.sd-files", sd)
		storesListed := func() []string {
			res := callAPI(t, q.httpAddr, "/api/v1/stores", nil)
			require.Equal(t, http.StatusOK, res.Code, res.Raw)
			return addressesIn(t, res.Body.Data)
		}
		require.Eventually(t, func() bool { return strings.Contains(strings.Join(storesListed(), ","), ingest.grpcAddr) },
			30*time.Second, 200*time.Millisecond)

		require.NoError(t, writeTestFile(sd, "- targets: ['"+ingest.grpcAddr+"'\n  bogus: {\n"))
		require.Eventually(t, func() bool {
			return strings.Contains(q.out.String(), sd) && strings.Contains(q.out.String(), "keeping previous targets")
		},
			30*time.Second, 200*time.Millisecond, "the querier did not report the broken file")
		require.Contains(t, strings.Join(storesListed(), ","), ingest.grpcAddr)
		require.False(t, q.exited())
		res := callAPI(t, q.httpAddr, "/api/v1/label/region/values", nil)
		require.Equal(t, http.StatusOK, res.Code, res.Raw)
		require.JSONEq(t, `["eu-west-1"]`, string(res.Body.Data))
	})

	t.Run("querier with an endpoint SD file broken at start refuses to start, naming file and line", func(t *testing.T) {
		sd := filepath.Join(dir, "broken-from-start.yaml")
		require.NoError(t, writeTestFile(sd, "- targets: ['127.0.0.1:1'\n  bogus: {\n"))
		code, out := runMeridian(t, 30*time.Second, "query", "--endpoint.sd-files", sd, "--http-address", freeAddr(t), "--grpc-address", freeAddr(t))
		require.NotEqual(t, 0, code, out)
		require.Contains(t, out, "parse "+sd+": yaml: line 1")
	})

	t.Run("querier with a malformed endpoint refuses to start", func(t *testing.T) {
		code, out := runMeridian(t, 30*time.Second, "query", "--endpoint", "no-port", "--http-address", freeAddr(t), "--grpc-address", freeAddr(t))
		require.NotEqual(t, 0, code, out)
		require.Contains(t, out, "no-port")
		require.Contains(t, out, "missing port")
	})
}

// addressesIn lists the store addresses of a /api/v1/stores answer.
func addressesIn(t testing.TB, data json.RawMessage) []string {
	t.Helper()
	var stores []struct {
		Address string `json:"address"`
	}
	require.NoError(t, json.Unmarshal(data, &stores), string(data))
	var out []string
	for _, s := range stores {
		out = append(out, s.Address)
	}
	return out
}
