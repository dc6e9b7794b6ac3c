package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// The metadata and exemplars comparison: the ingest comparison's samples sent as they are
// ("plain"), with metric metadata ("metadata"), and with metadata and exemplars ("exemplars"),
// to `meridian ingest` over RW1 and RW2. The target is held by meridian ingest as it is
// installed, with exemplar storage off (the default, as in Thanos Receive; the exemplars are
// still decoded and checked), over RW1, the protocol of the ingest comparison and Prometheus's
// default. With exemplar storage on, the same payloads go to meridian ingest
// and, as the references, to Debian's Prometheus with its exemplar storage on and to Thanos
// Receive with exemplar storage of the same size (both RW1): these rows are information, the
// cost of storing an exemplar in the TSDB all three embed.
// What is added is about what a Prometheus with exemplars and send_metadata sends, and more:
//   - RW1 bodies carry the metadata of both families in every request (Prometheus sends it in
//     requests of its own, once a minute); RW2 series carry their metadata inline, as
//     Prometheus 3 sends it;
//   - the le="0.1" bucket of every latency histogram carries an exemplar (a trace_id) at every
//     step: one exemplar for every 19 samples.
//
// Every run is a fresh process and TSDB. Within a round, each receiver's payloads are fed back
// to back, in an order that turns round by round, so that each ratio compares runs a few
// seconds apart; the receivers' order turns too. Beside throughput, the CPU time the receiver
// spent during the load (user and system, from /proc) is a second measure that the other work
// on a shared machine disturbs less than wall-clock time.
//
// Each run is 3M samples (300 steps of the ingest comparison's 10k series), three times the
// ingest comparison's: at about 2M samples/s a run of 1M lasted half a second, and round to
// round the ratios of such runs spread over 0.76-1.21x, too wide to tell 5%.
const (
	ingestMetaRounds          = 7
	ingestMetaSamplesPerSerie = 300
)

// benchMaxExemplars is the exemplar storage of every receiver that has it on: Prometheus's
// default size.
const benchMaxExemplars = 100_000

// benchMetadata is the metadata of httpSeries' families.
var benchMetadata = []prompb.MetricMetadata{
	{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Total number of HTTP requests by status code, handler and method."},
	{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "http_request_duration_seconds", Help: "Duration of HTTP requests in seconds.", Unit: "seconds"},
}

// payloadKind is what a body carries besides the samples.
type payloadKind int

const (
	plainPayload     payloadKind = iota // samples only
	metadataPayload                     // samples and metadata
	exemplarsPayload                    // samples, metadata and exemplars
)

func (k payloadKind) String() string {
	return [...]string{"plain", "metadata", "exemplars"}[k]
}

// richBatch is wb as an RW1 or RW2 body carrying what kind says, and its number of exemplars.
func richBatch(wb writeBatch, v2 bool, kind payloadKind) ([]byte, int) {
	step := benchScrapeInterval.Milliseconds()
	req := &prompb.WriteRequest{}
	if kind >= metadataPayload {
		req.Metadata = benchMetadata
	}
	exemplars := 0
	for _, s := range wb.series {
		ts := prompb.TimeSeries{Labels: s.withoutRegion}
		withExemplars := kind == exemplarsPayload && hasLabel(s.withoutRegion, "le", "0.1")
		for k := wb.from; k < wb.to; k++ {
			smp := prompb.Sample{Timestamp: wb.start + int64(k)*step, Value: s.value(float64(k) * benchScrapeInterval.Seconds())}
			ts.Samples = append(ts.Samples, smp)
			if withExemplars {
				traceID := fmt.Sprintf("%016x%016x", uint64(smp.Timestamp), uint64(s.phase*1e6)^uint64(len(ts.Exemplars)+exemplars))
				ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{Labels: []prompb.Label{{Name: "trace_id", Value: traceID}}, Value: 0.082, Timestamp: smp.Timestamp})
			}
		}
		exemplars += len(ts.Exemplars)
		req.Timeseries = append(req.Timeseries, ts)
	}
	var raw []byte
	var err error
	if v2 {
		raw, err = toV2(req, kind >= metadataPayload).Marshal()
	} else {
		raw, err = req.Marshal()
	}
	if err != nil {
		panic(fmt.Sprintf("marshal generated write request: %v", err)) // generated data always marshals
	}
	return snappy.Encode(nil, raw), exemplars
}

func hasLabel(ls []prompb.Label, name, value string) bool {
	for _, l := range ls {
		if l.Name == name && l.Value == value {
			return true
		}
	}
	return false
}

// toV2 is req as an RW2 request; with metadata, every series carries its family's inline.
func toV2(req *prompb.WriteRequest, withMetadata bool) *writev2.Request {
	st := writev2.NewSymbolTable()
	out := &writev2.Request{}
	for _, ts := range req.Timeseries {
		s := writev2.TimeSeries{}
		for _, l := range ts.Labels {
			s.LabelsRefs = append(s.LabelsRefs, st.Symbolize(l.Name), st.Symbolize(l.Value))
		}
		for _, smp := range ts.Samples {
			s.Samples = append(s.Samples, writev2.Sample{Value: smp.Value, Timestamp: smp.Timestamp})
		}
		for _, e := range ts.Exemplars {
			s.Exemplars = append(s.Exemplars, writev2.Exemplar{LabelsRefs: []uint32{st.Symbolize(e.Labels[0].Name), st.Symbolize(e.Labels[0].Value)}, Value: e.Value, Timestamp: e.Timestamp})
		}
		if withMetadata {
			md := benchMetadata[0]
			if ts.Labels[0].Value != "http_requests_total" {
				md = benchMetadata[1]
			}
			s.Metadata = writev2.Metadata{Type: writev2.Metadata_MetricType(md.Type), HelpRef: st.Symbolize(md.Help), UnitRef: st.Symbolize(md.Unit)}
		}
		out.Timeseries = append(out.Timeseries, s)
	}
	out.Symbols = st.Symbols()
	return out
}

// postWriteAs sends one snappy body as RW1 or RW2 and fails on anything but 2xx.
func postWriteAs(ctx context.Context, url string, v2 bool, body []byte) error {
	if !v2 {
		return postWrite(ctx, url, body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("remote write to %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	resp, err := writeClient.Do(req)
	if err != nil {
		return fmt.Errorf("remote write to %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("remote write to %s: %s", url, resp.Status)
	}
	return nil
}

// richPayload is the whole data set as bodies of one protocol and kind.
type richPayload struct {
	bodies    [][][]byte // by sender
	exemplars int
	bytes     int
}

// richReceiver is one receiver of the comparison, fed one protocol.
type richReceiver struct {
	name  string
	v2    bool
	kinds []payloadKind
	// start runs a fresh receiver; exemplarsMetric is the counter of exemplars its TSDB stored,
	// empty when its exemplar storage is off.
	start           func(b *testing.B) (p *process, writeURL, metricsURL string)
	exemplarsMetric string
	// target says the receiver's rows are held to the target (meridian as installed).
	target bool
}

func benchIngestMetadata(b *testing.B, table *benchTable) {
	series := httpSeries([]int{0}, 22, 24)[:ingestSeries]
	start := time.Now().Add(-ingestMetaSamplesPerSerie * benchScrapeInterval).Truncate(time.Minute).UnixMilli()
	plan := planBatches(series, ingestSenders, ingestSeriesPerBody, ingestStepsPerBody, ingestMetaSamplesPerSerie, start)
	samples := ingestSeries * ingestMetaSamplesPerSerie
	build := func(v2 bool, kind payloadKind) richPayload {
		p := richPayload{bodies: make([][][]byte, len(plan))}
		for sh, batches := range plan {
			for _, wb := range batches {
				body, n := richBatch(wb, v2, kind)
				p.bodies[sh] = append(p.bodies[sh], body)
				p.exemplars += n
				p.bytes += len(body)
			}
		}
		return p
	}
	payloads := map[bool][]richPayload{}
	for _, v2 := range []bool{false, true} {
		for _, kind := range []payloadKind{plainPayload, metadataPayload, exemplarsPayload} {
			payloads[v2] = append(payloads[v2], build(v2, kind))
		}
		p := payloads[v2]
		b.Logf("%s payloads: %.1f MiB plain, %.1f MiB with metadata, %.1f MiB with metadata and %d exemplars (snappy)", protoName(v2),
			float64(p[plainPayload].bytes)/(1<<20), float64(p[metadataPayload].bytes)/(1<<20), float64(p[exemplarsPayload].bytes)/(1<<20), p[exemplarsPayload].exemplars)
	}
	exemplars := payloads[false][exemplarsPayload].exemplars

	startMeridian := func(args ...string) func(b *testing.B) (*process, string, string) {
		return func(b *testing.B) (*process, string, string) {
			node := startIngest(b, b.TempDir(), []string{"region=eu-west-1"}, args...)
			return node.process, node.writeURL(), "http://" + node.httpAddr + "/metrics"
		}
	}
	withExemplars := startMeridian("--tsdb.max-exemplars", strconv.Itoa(benchMaxExemplars))
	allKinds := []payloadKind{plainPayload, metadataPayload, exemplarsPayload}
	stored := []payloadKind{plainPayload, exemplarsPayload}
	receivers := []richReceiver{
		{name: "meridian RW1", kinds: allKinds, start: startMeridian(), target: true},
		// RW2 bodies go through Prometheus's own RW2 handler, which unmarshals every exemplar
		// (and, for each, its trace_id as one more string of the symbols table) whether it is
		// stored or not: what the same bodies cost before exemplars were kept. Information.
		{name: "meridian RW2", v2: true, kinds: allKinds, start: startMeridian()},
		{name: "meridian RW1, exemplar storage on,", kinds: stored, start: withExemplars, exemplarsMetric: "meridian_ingest_exemplars_appended_total"},
		{name: "meridian RW2, exemplar storage on,", v2: true, kinds: stored, start: withExemplars, exemplarsMetric: "meridian_ingest_exemplars_appended_total"},
		{name: "Prometheus " + prometheusVersion() + " RW1, exemplar storage on,", kinds: stored, exemplarsMetric: "prometheus_tsdb_exemplar_exemplars_appended_total",
			start: func(b *testing.B) (*process, string, string) {
				addr := freeAddr(b)
				// max_exemplars defaults to 100000 once the feature is on.
				prom := startPrometheus(b, addr, "global:\n  scrape_interval: 1m\n", "--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage")
				return prom, "http://" + addr + "/api/v1/write", "http://" + addr + "/metrics"
			}},
		{name: "Thanos Receive RW1, exemplar storage on,", kinds: stored, exemplarsMetric: "prometheus_tsdb_exemplar_exemplars_appended_total",
			start: func(b *testing.B) (*process, string, string) {
				recv := startThanosReceiveWith(b, b.TempDir(), []string{`region="eu-west-1"`}, "--tsdb.max-exemplars", strconv.Itoa(benchMaxExemplars))
				return recv.process, recv.writeURL, "http://" + recv.httpAddr + "/metrics"
			}},
	}

	feed := func(b *testing.B, rc richReceiver, kind payloadKind) ingestRun {
		p, writeURL, metricsURL := rc.start(b)
		defer p.stop(b, time.Minute)
		pl := payloads[rc.v2][kind]
		run := feedReceiverAs(b, p, writeURL, metricsURL, rc.v2, pl.bodies, samples)
		if kind == exemplarsPayload && rc.exemplarsMetric != "" {
			got := scrapeMetrics(b, metricsURL, rc.exemplarsMetric)
			require.Equal(b, float64(pl.exemplars), got[rc.exemplarsMetric], "%s stored every exemplar", rc.name)
		}
		if kind >= metadataPayload && strings.HasPrefix(rc.name, "meridian") {
			got := scrapeMetrics(b, metricsURL, "meridian_ingest_metadata_received_total")
			require.Positive(b, got["meridian_ingest_metadata_received_total"], "%s kept metadata", rc.name)
		}
		return run
	}

	// runs[receiver][kind] are the rounds' runs.
	runs := make([][][]ingestRun, len(receivers))
	for b.Loop() {
		for i := range runs {
			runs[i] = make([][]ingestRun, len(allKinds))
		}
		for round := range ingestMetaRounds {
			for j := range receivers {
				i := (round + j) % len(receivers)
				rc := receivers[i]
				for k := range rc.kinds {
					kind := rc.kinds[(round+k)%len(rc.kinds)]
					runs[i][kind] = append(runs[i][kind], feed(b, rc, kind))
				}
			}
		}
	}

	perSample := func(r ingestRun) float64 { return r.cpuSeconds / float64(samples) }
	for i, rc := range receivers {
		plain := runs[i][plainPayload]
		for _, kind := range rc.kinds[1:] {
			rich := runs[i][kind]
			rates := ratiosOf(rich, plain, func(r ingestRun) float64 { return r.samplesPerSec })
			cpus := ratiosOf(rich, plain, perSample)
			b.Logf("%s, %s vs plain: samples/s %v vs %v; CPU s %v vs %v", rc.name, kind,
				roundRates(rich), roundRates(plain), cpuSecondsOf(rich), cpuSecondsOf(plain))
			if kind == exemplarsPayload && rc.exemplarsMetric != "" {
				meta := plain
				if slices.Contains(rc.kinds, metadataPayload) {
					meta = runs[i][metadataPayload]
				}
				extra := medianOf(cpuSecondsList(rich)) - medianOf(cpuSecondsList(meta))
				b.Logf("%s: %.2f µs of CPU per exemplar (median CPU time with exemplars minus without, over %d exemplars)", rc.name, extra/float64(exemplars)*1e6, exemplars)
			}
			b.ReportMetric(medianOf(rates), strings.NewReplacer(" ", "-", ",", "").Replace(rc.name)+"-"+kind.String()+"/plain")
			what := "metadata"
			if kind == exemplarsPayload {
				what = fmt.Sprintf("metadata and exemplars (%dk, 1 per 19 samples)", exemplars/1000)
			}
			row := benchRow{
				name:      fmt.Sprintf("ingest %s with %s vs without: samples/s (median of %d)", rc.name, what, ingestMetaRounds),
				meridian:  formatRate(medianRun(rich).samplesPerSec),
				reference: formatRate(medianRun(plain).samplesPerSec),
				ratio: fmt.Sprintf("%.2fx (rounds %s); CPU per sample %.2fx (rounds %s)",
					medianOf(rates), formatRatios(rates), medianOf(cpus), formatRatios(cpus)),
				target: "info",
				result: "info",
			}
			if rc.target && kind == exemplarsPayload {
				row.target, row.result = ">= 0.95x", passFail(medianOf(rates) >= 0.95)
			}
			table.add(row)
		}
	}
}

func protoName(v2 bool) string {
	if v2 {
		return "RW2"
	}
	return "RW1"
}

// ratiosOf is get(a[i]) / get(b[i]) round by round.
func ratiosOf(a, b []ingestRun, get func(ingestRun) float64) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for i := range out {
		out[i] = get(a[i]) / get(b[i])
	}
	return out
}

func cpuSecondsList(runs []ingestRun) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = r.cpuSeconds
	}
	return out
}

func cpuSecondsOf(runs []ingestRun) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = fmt.Sprintf("%.2f", r.cpuSeconds)
	}
	return out
}

// procCPUSeconds is the CPU time (user and system, every thread, in clock ticks of 10 ms)
// the process has used so far, from /proc/PID/stat.
func procCPUSeconds(t testing.TB, p *process) float64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	require.NoError(t, err, "read stat of %s", p.name)
	// The command name, in parentheses, may hold spaces: the fields counted are after it.
	_, rest, ok := strings.Cut(string(raw), ") ")
	require.True(t, ok, "stat of %s: %q", p.name, raw)
	fields := strings.Fields(rest)
	require.Greater(t, len(fields), 12, "stat of %s: %q", p.name, raw)
	utime, err := strconv.ParseFloat(fields[11], 64) // field 14 of proc(5)
	require.NoError(t, err)
	stime, err := strconv.ParseFloat(fields[12], 64) // field 15
	require.NoError(t, err)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

func medianOf(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2]
}

func formatRatios(vs []float64) string {
	lo, hi := slices.Min(vs), slices.Max(vs)
	return fmt.Sprintf("%.2f-%.2f", lo, hi)
}
