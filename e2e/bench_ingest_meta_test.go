package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// The metadata and exemplars comparison: `meridian ingest` fed the ingest comparison's bodies
// as they are, and the same bodies with metric metadata and exemplars added, in both protocols.
// What is added is about what a Prometheus with exemplars and send_metadata sends, and more:
// RW1 bodies carry the metadata of both families in every request (Prometheus sends it once a
// minute), RW2 series carry their metadata inline (as Prometheus 3 does), and every latency
// bucket series carries an exemplar at its last step of each request (6% of the samples).
const ingestMetaRounds = 5

// benchMetadata is the metadata of httpSeries' families.
var benchMetadata = []prompb.MetricMetadata{
	{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Total number of HTTP requests by status code, handler and method."},
	{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "http_request_duration_seconds", Help: "Duration of HTTP requests in seconds.", Unit: "seconds"},
}

// richBatch is wb with or without metadata and exemplars, as an RW1 or RW2 body, and the number
// of exemplars it carries.
func richBatch(wb writeBatch, v2, rich bool) ([]byte, int) {
	step := benchScrapeInterval.Milliseconds()
	req := &prompb.WriteRequest{}
	if rich {
		req.Metadata = benchMetadata
	}
	exemplars := 0
	for _, s := range wb.series {
		ts := prompb.TimeSeries{Labels: s.withoutRegion}
		for k := wb.from; k < wb.to; k++ {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: wb.start + int64(k)*step, Value: s.value(float64(k) * benchScrapeInterval.Seconds())})
		}
		name := s.withoutRegion[0].Value // sorted labels: __name__ first
		if rich && strings.HasSuffix(name, "_bucket") {
			last := ts.Samples[len(ts.Samples)-1]
			ts.Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: fmt.Sprintf("%032x", last.Timestamp^int64(exemplars))}}, Value: 0.042, Timestamp: last.Timestamp}}
			exemplars++
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	var raw []byte
	var err error
	if v2 {
		raw, err = toV2(req, rich).Marshal()
	} else {
		raw, err = req.Marshal()
	}
	if err != nil {
		panic(fmt.Sprintf("marshal generated write request: %v", err)) // generated data always marshals
	}
	return snappy.Encode(nil, raw), exemplars
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

func benchIngestMetadata(b *testing.B, table *benchTable) {
	series := httpSeries([]int{0}, 22, 24)[:ingestSeries]
	start := time.Now().Add(-ingestSamplesPerSerie * benchScrapeInterval).Truncate(time.Minute).UnixMilli()
	plan := planBatches(series, ingestSenders, ingestSeriesPerBody, ingestStepsPerBody, ingestSamplesPerSerie, start)
	type payload struct {
		bodies    [][][]byte
		exemplars int
		bytes     int
	}
	build := func(v2, rich bool) payload {
		p := payload{bodies: make([][][]byte, len(plan))}
		for sh, batches := range plan {
			for _, wb := range batches {
				body, n := richBatch(wb, v2, rich)
				p.bodies[sh] = append(p.bodies[sh], body)
				p.exemplars += n
				p.bytes += len(body)
			}
		}
		return p
	}
	feed := func(p payload, v2 bool) float64 {
		node := startIngest(b, b.TempDir(), []string{"region=eu-west-1"})
		defer node.stop(b, time.Minute)
		url := node.writeURL()
		began := time.Now()
		require.NoError(b, runSenders(context.Background(), p.bodies, func(ctx context.Context, body []byte) error {
			return postWriteAs(ctx, url, v2, body)
		}))
		elapsed := time.Since(began)
		got := scrapeMetrics(b, "http://"+node.httpAddr+"/metrics", "prometheus_tsdb_head_samples_appended_total", "meridian_ingest_exemplars_appended_total", "prometheus_tsdb_exemplar_exemplars_appended_total")
		total := float64(ingestSeries * ingestSamplesPerSerie)
		require.Equal(b, total, got["prometheus_tsdb_head_samples_appended_total"])
		require.Equal(b, float64(p.exemplars), got["meridian_ingest_exemplars_appended_total"], "every exemplar reached the TSDB")
		return total / elapsed.Seconds()
	}

	protos := []struct {
		name string
		v2   bool
	}{{"RW1", false}, {"RW2", true}}
	plainRates, richRates, ratios := make([][]float64, len(protos)), make([][]float64, len(protos)), make([][]float64, len(protos))
	for b.Loop() {
		for i, proto := range protos {
			plain, rich := build(proto.v2, false), build(proto.v2, true)
			b.Logf("%s payloads: %.1f MiB plain, %.1f MiB with metadata and %d exemplars", proto.name, float64(plain.bytes)/(1<<20), float64(rich.bytes)/(1<<20), rich.exemplars)
			for round := range ingestMetaRounds {
				var p, r float64
				if round%2 == 0 {
					p, r = feed(plain, proto.v2), feed(rich, proto.v2)
				} else {
					r, p = feed(rich, proto.v2), feed(plain, proto.v2)
				}
				plainRates[i], richRates[i], ratios[i] = append(plainRates[i], p), append(richRates[i], r), append(ratios[i], r/p)
			}
		}
	}
	for i, proto := range protos {
		b.Logf("%s samples/s per round: plain %v, with metadata and exemplars %v, ratios %s", proto.name, formatRates(plainRates[i]), formatRates(richRates[i]), formatRatios(ratios[i]))
		mp, mr := medianOf(plainRates[i]), medianOf(richRates[i])
		b.ReportMetric(mr/mp, proto.name+"-rich/plain")
		name := fmt.Sprintf("ingest %s with metadata and exemplars vs without (round ratios %s)", proto.name, formatRatios(ratios[i]))
		table.addRatio(name, mr, mp, formatRate, false, 0.95)
	}
}

func medianOf(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2]
}

func formatRates(vs []float64) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = formatRate(v)
	}
	return out
}

func formatRatios(vs []float64) string {
	s := slices.Clone(vs)
	slices.Sort(s)
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = fmt.Sprintf("%.2f", v)
	}
	return strings.Join(parts, "-")
}
