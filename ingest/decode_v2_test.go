package ingest

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// prometheusV2 is what Prometheus's own RW2 handler appends for a request that unmarshals (its
// appendV2, with an appender that refuses nothing): per series with valid labels (our checks:
// also a non-empty metric name) and at least one sample, its floats, its histograms (schema
// reduced as its remoteWriteAppender does), its exemplars whose label refs resolve, and last
// its metadata. ok is false when a histogram's resolution cannot be reduced (Prometheus
// answers 500 there, the decoder 400).
func prometheusV2(t testing.TB, req *writev2.Request) (out appended, ok bool) {
	t.Helper()
	b := labels.NewScratchBuilder(0)
	for _, ts := range req.Timeseries {
		ls, err := ts.ToLabels(&b, req.Symbols)
		if err != nil || !ls.Has(labels.MetricName) || !ls.IsValid(model.UTF8Validation) || ls.Get(labels.MetricName) == "" {
			continue
		}
		if _, dup := ls.HasDuplicateLabelNames(); dup {
			continue
		}
		if len(ts.Samples) == 0 && len(ts.Histograms) == 0 {
			continue
		}
		for _, s := range ts.Samples {
			out = append(out, fmt.Sprintf("float %s %d %x", ls, s.Timestamp, math.Float64bits(s.Value)))
		}
		for _, hp := range ts.Histograms {
			var h *histogram.Histogram
			var fh *histogram.FloatHistogram
			var err error
			if hp.IsFloatHistogram() {
				fh = hp.ToFloatHistogram()
				if histogram.IsExponentialSchemaReserved(fh.Schema) && fh.Schema > histogram.ExponentialSchemaMax {
					err = fh.ReduceResolution(histogram.ExponentialSchemaMax)
				}
			} else {
				h = hp.ToIntHistogram()
				if histogram.IsExponentialSchemaReserved(h.Schema) && h.Schema > histogram.ExponentialSchemaMax {
					err = h.ReduceResolution(histogram.ExponentialSchemaMax)
				}
			}
			if err != nil {
				return nil, false
			}
			out = append(out, fmt.Sprintf("histogram %s %d %v %v", ls, hp.Timestamp, h, fh))
		}
		for _, ep := range ts.Exemplars {
			e, err := ep.ToExemplar(&b, req.Symbols)
			if err != nil {
				continue
			}
			out = append(out, fmt.Sprintf("exemplar %s %s %x %d", ls, e.Labels, math.Float64bits(e.Value), e.Ts))
		}
		m := ts.ToMetadata(req.Symbols)
		out = append(out, fmt.Sprintf("metadata %s %s %q %q", ls, m.Type, m.Help, m.Unit))
	}
	return out, true
}

// decodeV2For runs the decoder over a copy of raw with no bound on timestamps, and overwrites
// the copy before listing what was appended: label sets kept by the appender must not point
// into the body.
func decodeV2For(raw []byte) (appended, *v2Decoder, error) {
	body := append([]byte(nil), raw...)
	d := newV2Decoder(&writeSummary{}, &writeNotes{}, time.Now())
	d.maxTime = math.MaxInt64
	d.keepExemplars = true
	app := newRecordingAppender()
	err := d.decode(body, app)
	for i := range body {
		body[i] = 'X'
	}
	return app.appended(), d, err
}

// metadataRefsOutOfRange tells whether a series' metadata refers outside the symbols table, on
// which Prometheus's ToMetadata panics; the decoder refuses such a body.
func metadataRefsOutOfRange(req *writev2.Request) bool {
	for _, ts := range req.Timeseries {
		if int(ts.Metadata.HelpRef) >= len(req.Symbols) || int(ts.Metadata.UnitRef) >= len(req.Symbols) {
			return true
		}
	}
	return false
}

// checkV2AgainstPrometheus holds the RW2 decoder to Prometheus's decoding of the same bytes, as
// checkV1AgainstPrometheus does the RW1 one: what gogo/protobuf unmarshals is appended alike
// (or refused for what protowire finds against the wire format, or for a packed field whose
// last varint runs past its end, which gogo reads on through), the re-marshalled message is
// always appended alike, and a body gogo refuses may only be refused as malformed or leave
// nothing Prometheus would have appended.
func checkV2AgainstPrometheus(t testing.TB, raw []byte) {
	got, _, err := decodeV2For(raw)
	var req writev2.Request
	if uerr := req.Unmarshal(raw); uerr != nil {
		if err != nil {
			require.ErrorIs(t, err, errMalformed)
		}
		return
	}
	if metadataRefsOutOfRange(&req) {
		require.ErrorIs(t, err, errMalformed)
		if !v2WireFormatStrictness(err) {
			require.ErrorContains(t, err, "outside the symbols table")
		}
		return
	}
	want, ok := prometheusV2(t, &req)
	if !ok {
		return
	}
	if !v2WireFormatStrictness(err) {
		require.NoError(t, err, "a body Prometheus decodes")
		require.Equal(t, want, got)
	}
	dropUnknownFields(reflect.ValueOf(&req))
	canonical, merr := req.Marshal()
	require.NoError(t, merr)
	got, _, err = decodeV2For(canonical)
	require.NoError(t, err, "a body Prometheus decodes, as marshalled")
	require.Equal(t, want, got)
}

// v2WireFormatStrictness is wireFormatStrictness, or a packed varint that runs past its field.
func v2WireFormatStrictness(err error) bool {
	return wireFormatStrictness(err) || errors.Is(err, errPackedOverrun)
}

func TestV2DecoderAppendsWhatPrometheusDecodes(t *testing.T) {
	now := time.Now().UnixMilli()
	h := &histogram.Histogram{Count: 5, ZeroCount: 1, Sum: 12.5, Schema: 1, ZeroThreshold: 0.001,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{2, 0}}
	fine := h.Copy()
	fine.Schema = 10 // above the TSDB's largest: reduced to 8
	sym := []string{"", "__name__", "a", "job", "x", "b", "trace_id", "t1", "Help of a.", "seconds", "\xff", "latency"}
	marshal := func(t *testing.T, req *writev2.Request) []byte {
		raw, err := req.Marshal()
		require.NoError(t, err)
		return raw
	}
	floats := []writev2.Sample{{Value: 1, Timestamp: now}, {Value: 2, Timestamp: now + 1000}}
	for _, tc := range []struct {
		name string
		body func(t *testing.T) []byte
	}{
		{"floats, metadata and exemplars of several series", func(t *testing.T) []byte {
			return marshal(t, &writev2.Request{Symbols: sym, Timeseries: []writev2.TimeSeries{
				{LabelsRefs: []uint32{1, 2, 3, 4}, Samples: floats, Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: 8}},
				{LabelsRefs: []uint32{3, 4, 1, 5}, Samples: floats[:1], // unsorted labels
					Exemplars: []writev2.Exemplar{{LabelsRefs: []uint32{6, 7}, Value: 0.5, Timestamp: now}, {LabelsRefs: []uint32{6}, Value: 1}}},
				{LabelsRefs: []uint32{1, 2, 3, 4}, Samples: []writev2.Sample{{Value: 3, Timestamp: now + 2000}}}, // again
			}})
		}},
		{"bad series left out", func(t *testing.T) []byte {
			return marshal(t, &writev2.Request{Symbols: sym, Timeseries: []writev2.TimeSeries{
				{LabelsRefs: []uint32{1, 2, 3}, Samples: floats},                                                   // odd refs
				{LabelsRefs: []uint32{1, 2, 3, 99}, Samples: floats},                                               // outside the table
				{LabelsRefs: []uint32{1, 2, 3, 4, 3, 5}, Samples: floats},                                          // job twice
				{LabelsRefs: []uint32{3, 4}, Samples: floats},                                                      // no name
				{LabelsRefs: []uint32{1, 0}, Samples: floats},                                                      // empty name
				{LabelsRefs: []uint32{1, 2, 10, 4}, Samples: floats},                                               // not UTF-8
				{LabelsRefs: []uint32{1, 5}, Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE}}, // no samples
				{LabelsRefs: []uint32{1, 11}, Samples: floats, Metadata: writev2.Metadata{Type: 42, UnitRef: 9}},   // unknown type
			}})
		}},
		{"histograms", func(t *testing.T) []byte {
			return marshal(t, &writev2.Request{Symbols: sym, Timeseries: []writev2.TimeSeries{{
				LabelsRefs: []uint32{1, 11},
				Histograms: []writev2.Histogram{writev2.FromIntHistogram(now, h), writev2.FromFloatHistogram(now+1000, h.ToFloat(nil)), writev2.FromIntHistogram(now+2000, fine)},
				Exemplars:  []writev2.Exemplar{{LabelsRefs: []uint32{6, 7}, Value: 0.2, Timestamp: now}},
				Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, HelpRef: 8, UnitRef: 9},
			}}})
		}},
		{"symbols after the series, labels after the samples, unknown fields", func(t *testing.T) []byte {
			sample := protowire.AppendTag(nil, rw1SampleTimestamp, protowire.VarintType)
			sample = protowire.AppendVarint(sample, uint64(now))
			sample = protowire.AppendTag(sample, 9, protowire.VarintType) // unknown
			sample = protowire.AppendVarint(sample, 7)
			sample = protowire.AppendTag(sample, rw1SampleValue, protowire.Fixed64Type)
			sample = protowire.AppendFixed64(sample, math.Float64bits(4.5))
			series := protowire.AppendTag(nil, rw2SeriesSamples, protowire.BytesType)
			series = protowire.AppendBytes(series, sample)
			series = protowire.AppendTag(series, rw2SeriesLabelRefs, protowire.VarintType) // unpacked refs
			series = protowire.AppendVarint(series, 1)
			series = protowire.AppendTag(series, rw2SeriesLabelRefs, protowire.BytesType) // then packed
			series = protowire.AppendBytes(series, []byte{2})
			body := protowire.AppendTag(nil, rw2Timeseries, protowire.BytesType)
			body = protowire.AppendBytes(body, series)
			for _, s := range []string{"", "__name__", "late"} {
				body = protowire.AppendTag(body, rw2Symbols, protowire.BytesType)
				body = protowire.AppendString(body, s)
			}
			return body
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.body(t)
			checkV2AgainstPrometheus(t, raw)
			got, _, err := decodeV2For(raw)
			require.NoError(t, err)
			require.NotEmpty(t, got)
		})
	}
}

func TestV2DecoderRefusesMalformedBodies(t *testing.T) {
	good, err := (&writev2.Request{Symbols: []string{"", "__name__", "a"}, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: 1000}}},
	}}).Marshal()
	require.NoError(t, err)
	withSeries := func(series []byte) []byte {
		b := append([]byte(nil), good...)
		b = protowire.AppendTag(b, rw2Timeseries, protowire.BytesType)
		return protowire.AppendBytes(b, append(protowire.AppendBytes(protowire.AppendTag(nil, rw2SeriesLabelRefs, protowire.BytesType), []byte{1, 2}), series...))
	}
	field := func(num protowire.Number, payload []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), payload)
	}
	varintField := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"truncated", good[:len(good)-2], "field 5"},
		{"symbols not strings", append(append([]byte(nil), good...), varintField(rw2Symbols, 1)...), "symbols field has wire type 0"},
		{"samples field not a message", withSeries(varintField(rw2SeriesSamples, 1)), "field 2 of a series has wire type 0"},
		{"sample value not a double", withSeries(field(rw2SeriesSamples, varintField(rw1SampleValue, 1))), "sample field 1 has wire type 0"},
		{"metadata help not a varint", withSeries(field(rw2SeriesMetadata, field(rw2MetadataHelpRef, nil))), "metadata field 3 has wire type 2"},
		{"metadata help outside the symbols table", withSeries(field(rw2SeriesMetadata, varintField(rw2MetadataHelpRef, 7))), "outside the symbols table"},
		{"exemplar value not a double", withSeries(field(rw2SeriesExemplars, varintField(rw2ExemplarValue, 1))), "exemplar field 2 has wire type 0"},
		{"histogram not a histogram", withSeries(field(rw2SeriesHistograms, field(1, nil))), "histogram of series"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeV2For(tc.body)
			require.ErrorIs(t, err, errMalformed)
			require.ErrorContains(t, err, tc.want)
			var req writev2.Request
			if uerr := req.Unmarshal(tc.body); uerr == nil {
				require.True(t, metadataRefsOutOfRange(&req), "Prometheus decodes it, and then panics")
			}
		})
	}
}

// TestV2WritePartiallyAndSaysWhatWasWritten posts RW2 requests to a node: what the TSDB refuses
// for good is named in a 400 with the rest stored, and the written counts are in the headers
// as Prometheus's receiver sets them.
func TestV2WritePartiallyAndSaysWhatWasWritten(t *testing.T) {
	now := time.Now().UnixMilli()
	cfg := testConfig(t)
	cfg.MaxExemplars = 100
	n, _ := runNode(t, cfg, prometheus.NewRegistry())
	lat := series{labels: lbls("__name__", "latency_seconds_bucket", "le", "1"), samples: samplesAt(now, 3, 1)}
	send := func(body []byte) *httptest.ResponseRecorder { return postRecorded(n.Handler(), rw2ContentType, body) }
	resp := send(rw2With(t, lat, writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM}, "Latency.", "seconds", map[string]prompb.Sample{"t1": {Value: 0.3, Timestamp: now}}))
	require.Equal(t, http.StatusNoContent, resp.Code)
	require.Equal(t, "3", resp.Header().Get("X-Prometheus-Remote-Write-Samples-Written"))
	require.Equal(t, "0", resp.Header().Get("X-Prometheus-Remote-Write-Histograms-Written"))
	require.Equal(t, "1", resp.Header().Get("X-Prometheus-Remote-Write-Exemplars-Written"))

	// Out of order: a sample before the series' newest, an exemplar before its newest. The new
	// series beside them is stored.
	late := lat
	late.samples = []prompb.Sample{{Timestamp: now - 60_000, Value: 1}}
	fresh := series{labels: lbls("__name__", "fresh"), samples: samplesAt(now, 2, 5)}
	body := rw2(t, late, fresh)
	resp = send(body)
	require.Equal(t, http.StatusBadRequest, resp.Code)
	msg := resp.Body.String()
	require.Contains(t, msg, `1 samples rejected: out of order sample for series {__name__="latency_seconds_bucket", le="1"}`)
	require.Equal(t, "2", resp.Header().Get("X-Prometheus-Remote-Write-Samples-Written"))
	require.Equal(t, fresh.samples, stored(t, n)[`{__name__="fresh"}`])

	lat.samples = samplesAt(now+3000, 1, 1)
	resp = send(rw2With(t, lat, writev2.Metadata{}, "", "", map[string]prompb.Sample{"t0": {Value: 0.1, Timestamp: now - 1}}))
	require.Equal(t, http.StatusBadRequest, resp.Code, "Prometheus's RW2 receiver refuses out-of-order exemplars")
	require.Contains(t, resp.Body.String(), "out of order exemplar")
	require.Equal(t, "1", resp.Header().Get("X-Prometheus-Remote-Write-Samples-Written"))
	require.Equal(t, "0", resp.Header().Get("X-Prometheus-Remote-Write-Exemplars-Written"))

	// A malformed body: nothing stored, zero written.
	resp = send(snappy.Encode(nil, []byte{0x2a, 0x05, 0x01}))
	require.Equal(t, http.StatusBadRequest, resp.Code)
	require.Equal(t, "0", resp.Header().Get("X-Prometheus-Remote-Write-Samples-Written"))
}

// FuzzDecodeV2MatchesPrometheus feeds arbitrary RW2 bodies to the one-pass decoder and to
// Prometheus's own unmarshalling: neither may crash, and whatever Prometheus decodes the
// decoder must append alike, label sets intact after the body is overwritten.
func FuzzDecodeV2MatchesPrometheus(f *testing.F) {
	now := time.Now().UnixMilli()
	h := &histogram.Histogram{Count: 3, Sum: 1, Schema: 0, PositiveSpans: []histogram.Span{{Offset: 1, Length: 1}}, PositiveBuckets: []int64{3}}
	sym := []string{"", "__name__", "up", "job", "a", "b", "trace_id", "t1", "Help.", "seconds"}
	for _, req := range []*writev2.Request{
		{Symbols: sym, Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 2, 3, 4}, Samples: []writev2.Sample{{Value: 1, Timestamp: now}},
			Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: 8}}}},
		{Symbols: sym, Timeseries: []writev2.TimeSeries{
			{LabelsRefs: []uint32{3, 4, 1, 2, 3, 5}, Samples: []writev2.Sample{{Value: 1, Timestamp: now}}},
			{LabelsRefs: []uint32{1, 2}, Histograms: []writev2.Histogram{writev2.FromIntHistogram(now, h)},
				Exemplars: []writev2.Exemplar{{LabelsRefs: []uint32{6, 7}, Value: 1, Timestamp: now}},
				Metadata:  writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, HelpRef: 8, UnitRef: 9}},
		}},
	} {
		raw, err := req.Marshal()
		require.NoError(f, err)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkV2AgainstPrometheus(t, raw) })
}
