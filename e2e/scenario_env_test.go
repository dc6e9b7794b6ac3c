package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/store/storepb"

	"github.com/meridian-obs/meridian/internal/faultproxy"
)

// scrapeInterval is how often each region's Prometheus scrapes its test exporter.
const scrapeInterval = time.Second

// storeTimeout is the querier's --store.response-timeout in every scenario.
const storeTimeout = 2 * time.Second

// regionNames are the regions of the shared environment, in the order they are started.
var regionNames = []string{"eu-west-1", "us-east-1", "ap-southeast-1"}

// spawnOwned starts bin like startProcess, but ties the process's lifetime to owner (the test that
// owns the environment) while failures are reported on t (the scenario that started it).
func spawnOwned(t, owner testing.TB, name, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(bin, args...), out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	require.NoError(t, p.cmd.Start(), "start %s", name)
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	owner.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if owner.Failed() {
			owner.Logf("--- output of %s (%s) ---\n%s", name, bin, tail(p.out.String(), 8000))
		}
	})
	return p
}

// simRegion is one simulated region of an environment: a test exporter (`meridian simulate`), a
// real Prometheus scraping it every second and remote-writing to the region's `meridian
// ingest`, and a fault proxy that the querier dials instead of the ingest's StoreAPI.
type simRegion struct {
	name      string
	labels    []string // external labels of the ingest, name=value
	simAddr   string
	promAddr  string
	sim       *process
	prom      *process
	ingest    *ingestProcess
	proxy     *faultproxy.Proxy
	startedAt time.Time
}

// startRegionSimulator runs `meridian simulate` for name as a scrape target on a free port.
func startRegionSimulator(t, owner testing.TB, name string, extraArgs ...string) (*process, string) {
	t.Helper()
	addr := freeAddr(t)
	args := append([]string{"simulate", "--region", name, "--web.listen-address", addr}, extraArgs...)
	p := spawnOwned(t, owner, "meridian simulate "+name, meridianBinary, args...)
	waitReady(t, p, "http://"+addr+"/controls", 30*time.Second)
	return p, addr
}

// startIngestOn runs `meridian ingest` on the given addresses and directory (a restart reuses
// them) and waits until it is ready.
func startIngestOn(t, owner testing.TB, httpAddr, grpcAddr, tsdbPath string, extLabels []string) *ingestProcess {
	t.Helper()
	ip := &ingestProcess{httpAddr: httpAddr, grpcAddr: grpcAddr, tsdbPath: tsdbPath}
	args := []string{"ingest", "--tsdb.path", tsdbPath, "--http-address", httpAddr, "--grpc-address", grpcAddr}
	for _, l := range extLabels {
		args = append(args, "--label", l)
	}
	ip.process = spawnOwned(t, owner, "meridian ingest "+strings.Join(extLabels, ","), meridianBinary, args...)
	waitReady(t, ip.process, "http://"+httpAddr+"/-/ready", 60*time.Second)
	return ip
}

// regionPrometheusConfig scrapes simAddr every second (keeping the exporter's own job and
// instance labels) and remote-writes to writeURL through one shard, so that samples are sent in
// the order they were scraped and the highest acknowledged timestamp bounds what was acked.
func regionPrometheusConfig(simAddr, writeURL string) string {
	return fmt.Sprintf(`
global:
  scrape_interval: %[3]s
  evaluation_interval: %[3]s
scrape_configs:
  - job_name: simulate
    honor_labels: true
    static_configs:
      - targets: ['%[1]s']
remote_write:
  - url: %[2]s
    queue_config:
      batch_send_deadline: 1s
      min_shards: 1
      max_shards: 1
      min_backoff: 100ms
      max_backoff: 1s
`, simAddr, writeURL, scrapeInterval)
}

// startRegion starts a region's exporter, ingest, Prometheus and fault proxy, all owned by owner.
func startRegion(t, owner testing.TB, name string, extLabels []string, simAddr string) *simRegion {
	t.Helper()
	r := &simRegion{name: name, labels: extLabels, simAddr: simAddr, startedAt: time.Now()}
	if r.simAddr == "" {
		r.sim, r.simAddr = startRegionSimulator(t, owner, name)
	}
	r.ingest = startIngestOn(t, owner, freeAddr(t), freeAddr(t), owner.TempDir(), extLabels)
	r.startPrometheus(t, owner)
	proxy, err := faultproxy.New("127.0.0.1:0", r.ingest.grpcAddr)
	require.NoError(t, err)
	owner.Cleanup(func() { _ = proxy.Close() })
	r.proxy = proxy
	return r
}

// startPrometheus (re)starts the region's Prometheus on a fresh data directory.
func (r *simRegion) startPrometheus(t, owner testing.TB) {
	t.Helper()
	if r.promAddr == "" {
		r.promAddr = freeAddr(t)
	}
	dir := owner.TempDir()
	cfg := dir + "/prometheus.yml"
	require.NoError(t, writeTestFile(cfg, regionPrometheusConfig(r.simAddr, r.ingest.writeURL())))
	r.prom = spawnOwned(t, owner, "prometheus "+r.name, prometheusBinary,
		"--config.file="+cfg, "--storage.tsdb.path="+dir+"/data", "--web.listen-address="+r.promAddr)
	waitReady(t, r.prom, "http://"+r.promAddr+"/-/ready", 60*time.Second)
}

// restartIngest starts the region's ingest again on its directory and ports after it was
// stopped or killed.
func (r *simRegion) restartIngest(t, owner testing.TB) {
	t.Helper()
	require.True(t, r.ingest.exited(), "restart of a running ingest")
	r.ingest = startIngestOn(t, owner, r.ingest.httpAddr, r.ingest.grpcAddr, r.ingest.tsdbPath, r.labels)
}

// highestSentMillis reads what Prometheus's remote-write queue reports as the highest timestamp
// it has sent and had acknowledged, in milliseconds.
func (r *simRegion) highestSentMillis(t testing.TB) int64 {
	t.Helper()
	resp, err := http.Get("http://" + r.promAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds{") &&
			!strings.HasPrefix(line, "prometheus_remote_storage_highest_sent_timestamp_seconds{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(t, err, "line %q", line)
		return int64(v * 1000)
	}
	require.NoError(t, sc.Err())
	t.Fatalf("prometheus %s exposes no highest sent timestamp", r.promAddr)
	return 0
}

// waitStoreHolds waits until the region's store holds a sample of selector (exact name match on
// __name__ and job) at or after atMillis.
func waitStoreHolds(t testing.TB, grpcAddr, name, job string, atMillis int64, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, s := range storeSeries(t, grpcAddr, atMillis, math.MaxInt64, eqMatcher(labels.MetricName, name), eqMatcher("job", job)) {
			if len(s.Samples) > 0 {
				return true
			}
		}
		return false
	}, timeout, 250*time.Millisecond, "store %s has no %s{job=%q} sample at or after %d", grpcAddr, name, job, atMillis)
}

// globalQuerier is a running `meridian query`.
type globalQuerier struct {
	*process
	httpAddr, grpcAddr string
}

// startGlobalQuerier runs `meridian query` over endpoints with a 2s store timeout and waits until it
// is ready (every store probed once).
func startGlobalQuerier(t, owner testing.TB, endpoints []string, extraArgs ...string) *globalQuerier {
	t.Helper()
	q := &globalQuerier{httpAddr: freeAddr(t), grpcAddr: freeAddr(t)}
	args := []string{"query", "--http-address", q.httpAddr, "--grpc-address", q.grpcAddr,
		"--store.response-timeout", storeTimeout.String(), "--endpoint.probe-interval", "1s"}
	for _, e := range endpoints {
		args = append(args, "--endpoint", e)
	}
	q.process = spawnOwned(t, owner, "meridian query", meridianBinary, append(args, extraArgs...)...)
	waitReady(t, q.process, "http://"+q.httpAddr+"/-/ready", 60*time.Second)
	return q
}

// apiEnvelope is Prometheus's HTTP API envelope.
type apiEnvelope struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

// apiAnswer is what a call to the HTTP API returned, with its wall-clock time.
type apiAnswer struct {
	Code    int
	Body    apiEnvelope
	Raw     string
	Elapsed time.Duration
}

// callAPI calls GET addr+path with params and decodes the Prometheus JSON envelope.
func callAPI(t testing.TB, addr, path string, params url.Values) apiAnswer {
	t.Helper()
	start := time.Now()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + addr + path + "?" + params.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	res := apiAnswer{Code: resp.StatusCode, Raw: string(raw), Elapsed: time.Since(start)}
	require.NoError(t, json.Unmarshal(raw, &res.Body), "not Prometheus's JSON: %s", raw)
	return res
}

// vectorSample is one element of an instant vector result.
type vectorSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// matrixSeries is one element of a range result.
type matrixSeries struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

// queryData is the data of a query answer.
type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

// promQuery runs expr at atMillis and returns the decoded vector (or matrix) and warnings.
func promQuery(t testing.TB, addr, expr string, atMillis int64, extra url.Values) apiAnswer {
	t.Helper()
	params := url.Values{"query": {expr}, "time": {millisParam(atMillis)}}
	for k, v := range extra {
		params[k] = v
	}
	return callAPI(t, addr, "/api/v1/query", params)
}

// decodeVector decodes a successful vector answer into "labels" -> value string.
func decodeVector(t testing.TB, res apiAnswer) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range vectorOf(t, res) {
		out[labels.FromMap(s.Metric).String()] = s.Value[1].(string)
	}
	return out
}

// vectorOf decodes a successful vector answer.
func vectorOf(t testing.TB, res apiAnswer) []vectorSample {
	t.Helper()
	require.Equal(t, http.StatusOK, res.Code, res.Raw)
	var d queryData
	require.NoError(t, json.Unmarshal(res.Body.Data, &d))
	require.Equal(t, "vector", d.ResultType)
	var vec []vectorSample
	require.NoError(t, json.Unmarshal(d.Result, &vec))
	return vec
}

// decodeMatrix decodes a successful matrix answer (a range selector at an instant, or a range
// query) into series with float samples.
func decodeMatrix(t testing.TB, res apiAnswer) []seriesSamples {
	t.Helper()
	require.Equal(t, http.StatusOK, res.Code, res.Raw)
	var d queryData
	require.NoError(t, json.Unmarshal(res.Body.Data, &d))
	require.Equal(t, "matrix", d.ResultType)
	var mat []matrixSeries
	require.NoError(t, json.Unmarshal(d.Result, &mat))
	var out []seriesSamples
	for _, m := range mat {
		ss := seriesSamples{Labels: labels.FromMap(m.Metric)}
		for _, v := range m.Values {
			ts := v[0].(float64)
			f, err := strconv.ParseFloat(v[1].(string), 64)
			require.NoError(t, err)
			ss.Samples = append(ss.Samples, sample{T: int64(math.Round(ts * 1000)), V: f})
		}
		out = append(out, ss)
	}
	return out
}

// bySeries keys series by their label string, dropping stale markers (a range selector never
// returns them).
func bySeries(in []seriesSamples, drop ...string) map[string][]sample {
	out := map[string][]sample{}
	for _, s := range in {
		key := labels.NewBuilder(s.Labels).Del(drop...).Labels().String()
		for _, smp := range s.Samples {
			if value.IsStaleNaN(smp.V) {
				continue
			}
			out[key] = append(out[key], smp)
		}
	}
	return out
}

// maxGap returns the longest interval between consecutive samples, and where it starts.
func maxGap(samples []sample) (gap time.Duration, at int64) {
	for i := 1; i < len(samples); i++ {
		if d := time.Duration(samples[i].T-samples[i-1].T) * time.Millisecond; d > gap {
			gap, at = d, samples[i-1].T
		}
	}
	return gap, at
}

func millisParam(ms int64) string {
	return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)
}

// warningFor returns the first warning that names region, or "".
func warningFor(warnings []string, region string) string {
	prefix := fmt.Sprintf("region %q (store ", region)
	for _, w := range warnings {
		if strings.HasPrefix(w, prefix) {
			return w
		}
	}
	return ""
}

// eqMatcher is a StoreAPI equality matcher.
func eqMatcher(name, value string) storepb.LabelMatcher {
	return storepb.LabelMatcher{Type: storepb.LabelMatcher_EQ, Name: name, Value: value}
}

// writeTestFile writes content to path, readable by the test user only.
func writeTestFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o600)
}
