package ingest

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// appended is what an appender was given, in order, one line per call.
type appended []string

// call is one append: the series by reference (its labels are read when the calls are listed,
// after the body was overwritten) and what was appended.
type call struct {
	kind string
	ref  storage.SeriesRef
	what string
}

// recordingAppender records the appends of the RW1 decoder and plays the head's GetRef: a
// series appended once is found again by its labels, with the labels it was created with.
type recordingAppender struct {
	storage.Appender // nil: the decoder must call only what is overridden here
	calls            []call
	refs             map[string]storage.SeriesRef
	series           map[storage.SeriesRef]labels.Labels
}

func newRecordingAppender() *recordingAppender {
	return &recordingAppender{refs: map[string]storage.SeriesRef{}, series: map[storage.SeriesRef]labels.Labels{}}
}

func (a *recordingAppender) GetRef(lset labels.Labels, _ uint64) (storage.SeriesRef, labels.Labels) {
	ref := a.refs[lset.String()]
	if ref == 0 {
		return 0, labels.EmptyLabels()
	}
	return ref, a.series[ref]
}

// ref returns the series' reference, creating it: the label set is kept, as the head keeps it,
// so a decoder that passed labels pointing into its body would show here as corrupted labels.
func (a *recordingAppender) ref(ref storage.SeriesRef, l labels.Labels) storage.SeriesRef {
	if ref != 0 {
		return ref
	}
	if r := a.refs[l.String()]; r != 0 {
		return r
	}
	r := storage.SeriesRef(len(a.refs) + 1)
	a.refs[l.String()], a.series[r] = r, l
	return r
}

func (a *recordingAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	ref = a.ref(ref, l)
	a.calls = append(a.calls, call{"float", ref, fmt.Sprintf("%d %x", t, math.Float64bits(v))})
	return ref, nil
}

func (a *recordingAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	ref = a.ref(ref, l)
	a.calls = append(a.calls, call{"histogram", ref, fmt.Sprintf("%d %v %v", t, h, fh)})
	return ref, nil
}

func (a *recordingAppender) AppendExemplar(ref storage.SeriesRef, l labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	ref = a.ref(ref, l)
	a.calls = append(a.calls, call{"exemplar", ref, fmt.Sprintf("%s %x %d", e.Labels, math.Float64bits(e.Value), e.Ts)})
	return ref, nil
}

// UpdateMetadata records a series' metadata by its labels (the RW2 decoder's last call for a
// series).
func (a *recordingAppender) UpdateMetadata(ref storage.SeriesRef, l labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	a.calls = append(a.calls, call{"metadata", a.ref(ref, l), fmt.Sprintf("%s %q %q", m.Type, m.Help, m.Unit)})
	return ref, nil
}

// appended lists the calls with the label sets the appender kept.
func (a *recordingAppender) appended() appended {
	var out appended
	for _, c := range a.calls {
		out = append(out, fmt.Sprintf("%s %s %s", c.kind, a.series[c.ref], c.what))
	}
	return out
}

// prometheusV1 is what Prometheus's own RW1 handler appends for a body that unmarshals, with
// our label checks (invalid, missing-name and duplicate-label series are left out), floats,
// then histograms, then exemplars of each series.
func prometheusV1(t testing.TB, req *prompb.WriteRequest) appended {
	t.Helper()
	var out appended
	b := labels.NewScratchBuilder(0)
	for _, ts := range req.Timeseries {
		ls := ts.ToLabels(&b, nil)
		if !ls.Has(labels.MetricName) || !ls.IsValid(model.UTF8Validation) {
			continue
		}
		if _, dup := ls.HasDuplicateLabelNames(); dup {
			continue
		}
		if ls.Get(labels.MetricName) == "" {
			continue
		}
		for _, s := range ts.Samples {
			out = append(out, fmt.Sprintf("float %s %d %x", ls, s.Timestamp, math.Float64bits(s.Value)))
		}
		for _, hp := range ts.Histograms {
			var h *histogram.Histogram
			var fh *histogram.FloatHistogram
			if hp.IsFloatHistogram() {
				fh = hp.ToFloatHistogram()
			} else {
				h = hp.ToIntHistogram()
			}
			out = append(out, fmt.Sprintf("histogram %s %d %v %v", ls, hp.Timestamp, h, fh))
		}
		for _, ep := range ts.Exemplars {
			e := ep.ToExemplar(&b, nil)
			out = append(out, fmt.Sprintf("exemplar %s %s %x %d", ls, e.Labels, math.Float64bits(e.Value), e.Ts))
		}
	}
	return out
}

// decodeV1For runs the decoder over a copy of raw with no bound on timestamps, and overwrites
// the copy before listing what was appended: label sets kept by the appender must not point
// into the body.
func decodeV1For(raw []byte) (appended, *writeSummary, error) {
	body := append([]byte(nil), raw...)
	sum := &writeSummary{}
	d := newV1Decoder(sum, time.Now())
	d.maxTime = math.MaxInt64
	app := newRecordingAppender()
	err := d.decode(body, app)
	for i := range body {
		body[i] = 'X'
	}
	return app.appended(), sum, err
}

// checkV1AgainstPrometheus holds the decoder to Prometheus's decoding of the same bytes. A body
// gogo/protobuf unmarshals is appended alike, or refused only for what protowire finds against
// the wire format and gogo lets pass in fields no remote-write sender writes (groups with
// mismatched ends, field numbers past 2^29-1, overlong varints); the message as a marshaller
// writes it (re-marshalled) is always appended alike. A body gogo refuses may only be refused
// as malformed or leave nothing to append (the decoder skips, unread, what RW1 receivers
// ignore, such as metadata).
func checkV1AgainstPrometheus(t testing.TB, raw []byte) {
	got, _, err := decodeV1For(raw)
	var req prompb.WriteRequest
	if uerr := req.Unmarshal(raw); uerr != nil {
		if err != nil {
			require.ErrorIs(t, err, errMalformed)
		}
		return
	}
	want := prometheusV1(t, &req)
	if !wireFormatStrictness(err) {
		require.NoError(t, err, "a body Prometheus decodes")
		require.Equal(t, want, got)
	}
	dropUnknownFields(reflect.ValueOf(&req))
	canonical, merr := req.Marshal()
	require.NoError(t, merr)
	got, _, err = decodeV1For(canonical)
	require.NoError(t, err, "a body Prometheus decodes, as marshalled")
	require.Equal(t, want, got)
}

// dropUnknownFields clears what gogo/protobuf kept of the fields it did not know
// (XXX_unrecognized), in v and every message under it, so that it marshals as a sender would.
func dropUnknownFields(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			dropUnknownFields(v.Elem())
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			for i := range v.Len() {
				dropUnknownFields(v.Index(i))
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).Name == "XXX_unrecognized" {
				v.Field(i).SetBytes(nil)
				continue
			}
			if v.Type().Field(i).IsExported() {
				dropUnknownFields(v.Field(i))
			}
		}
	}
}

// wireFormatStrictness tells whether err is protowire's refusal of a field number past 2^29-1,
// an overlong varint or a group with a mismatched end (protowire.ParseError codes -2, -3, -5).
func wireFormatStrictness(err error) bool {
	for _, code := range []int{-2, -3, -5} {
		if errors.Is(err, protowire.ParseError(code)) {
			return true
		}
	}
	return false
}

func TestV1DecoderAppendsWhatPrometheusDecodes(t *testing.T) {
	now := time.Now().UnixMilli()
	h := &histogram.Histogram{Count: 5, ZeroCount: 1, Sum: 12.5, Schema: 1, ZeroThreshold: 0.001,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{2, 0}}
	fh := h.ToFloat(nil)
	marshal := func(t *testing.T, req *prompb.WriteRequest) []byte {
		raw, err := req.Marshal()
		require.NoError(t, err)
		return raw
	}
	for _, tc := range []struct {
		name string
		body func(t *testing.T) []byte
	}{
		{"floats of several series", func(t *testing.T) []byte {
			return marshal(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
				{Labels: lbls("__name__", "a", "job", "x"), Samples: samplesAt(now, 3, 1)},
				{Labels: lbls("job", "y", "__name__", "b"), Samples: samplesAt(now, 2, 2)}, // unsorted labels
				{Labels: lbls("__name__", "a", "job", "x"), Samples: samplesAt(now+10_000, 2, 3)},
			}})
		}},
		{"bad series left out", func(t *testing.T) []byte {
			return marshal(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
				{Labels: lbls("__name__", "a", "job", "x", "job", "y"), Samples: samplesAt(now, 1, 1)},
				{Labels: lbls("job", "x"), Samples: samplesAt(now, 1, 1)},
				{Labels: lbls("__name__", "", "job", "x"), Samples: samplesAt(now, 1, 1)},
				{Labels: lbls("__name__", "c", "\xff", "x"), Samples: samplesAt(now, 1, 1)},
				{Labels: lbls("__name__", "ok"), Samples: samplesAt(now, 1, 1)},
			}})
		}},
		{"histograms and exemplars", func(t *testing.T) []byte {
			return marshal(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
				Labels:     lbls("__name__", "latency"),
				Histograms: []prompb.Histogram{prompb.FromIntHistogram(now, h), prompb.FromFloatHistogram(now+1000, fh)},
				Exemplars:  []prompb.Exemplar{{Labels: lbls("trace_id", "abc"), Value: 0.2, Timestamp: now}},
			}, {
				Labels:    lbls("__name__", "requests_total"),
				Samples:   samplesAt(now, 2, 1),
				Exemplars: []prompb.Exemplar{{Labels: lbls("trace_id", "def"), Value: 1, Timestamp: now + 500}},
			}}})
		}},
		{"metadata is skipped", func(t *testing.T) []byte {
			return marshal(t, &prompb.WriteRequest{
				Timeseries: []prompb.TimeSeries{{Labels: lbls("__name__", "up"), Samples: samplesAt(now, 1, 1)}},
				Metadata:   []prompb.MetricMetadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "up", Help: "h"}},
			})
		}},
		{"labels after samples and unknown fields", func(t *testing.T) []byte {
			var series []byte
			sample := protowire.AppendTag(nil, rw1SampleTimestamp, protowire.VarintType)
			sample = protowire.AppendVarint(sample, uint64(now))
			sample = protowire.AppendTag(sample, 9, protowire.VarintType) // unknown
			sample = protowire.AppendVarint(sample, 7)
			sample = protowire.AppendTag(sample, rw1SampleValue, protowire.Fixed64Type)
			sample = protowire.AppendFixed64(sample, math.Float64bits(4.5))
			series = protowire.AppendTag(series, rw1SeriesSamples, protowire.BytesType)
			series = protowire.AppendBytes(series, sample)
			label := protowire.AppendTag(nil, rw1LabelValue, protowire.BytesType)
			label = protowire.AppendString(label, "late")
			label = protowire.AppendTag(label, rw1LabelName, protowire.BytesType)
			label = protowire.AppendString(label, "__name__")
			series = protowire.AppendTag(series, rw1SeriesLabels, protowire.BytesType)
			series = protowire.AppendBytes(series, label)
			body := protowire.AppendTag(nil, rw1Timeseries, protowire.BytesType)
			return protowire.AppendBytes(body, series)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.body(t)
			checkV1AgainstPrometheus(t, raw)
			got, _, err := decodeV1For(raw)
			require.NoError(t, err)
			require.NotEmpty(t, got)
		})
	}
}

func TestV1DecoderRefusesMalformedBodies(t *testing.T) {
	good := protowire.AppendTag(nil, rw1Timeseries, protowire.BytesType)
	okSeries, err := (&prompb.TimeSeries{Labels: lbls("__name__", "a"), Samples: samplesAt(1000, 1, 1)}).Marshal()
	require.NoError(t, err)
	good = protowire.AppendBytes(good, okSeries)
	withSeries := func(series []byte) []byte {
		b := append([]byte(nil), good...)
		b = protowire.AppendTag(b, rw1Timeseries, protowire.BytesType)
		return protowire.AppendBytes(b, series)
	}
	sampleOfType := protowire.AppendTag(nil, rw1SeriesSamples, protowire.VarintType)
	sampleOfType = protowire.AppendVarint(sampleOfType, 1)
	badValue := protowire.AppendTag(nil, rw1SampleValue, protowire.VarintType)
	badValue = protowire.AppendVarint(badValue, 1)
	badSample := protowire.AppendTag(nil, rw1SeriesSamples, protowire.BytesType)
	badSample = protowire.AppendBytes(badSample, badValue)
	labelOfType := protowire.AppendTag(nil, rw1SeriesLabels, protowire.BytesType)
	labelOfType = protowire.AppendBytes(labelOfType, protowire.AppendVarint(protowire.AppendTag(nil, rw1LabelName, protowire.VarintType), 3))
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"truncated series", good[:len(good)-2], "field 1"},
		{"samples field not a message", withSeries(sampleOfType), "field 2 of a series has wire type 0"},
		{"sample value not a double", withSeries(badSample), "sample field 1 has wire type 0"},
		{"label name not a string", withSeries(labelOfType), "label field 1 has wire type 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeV1For(tc.body)
			require.ErrorIs(t, err, errMalformed)
			require.ErrorContains(t, err, tc.want)
			var req prompb.WriteRequest
			require.Error(t, req.Unmarshal(tc.body), "Prometheus refuses it too")
		})
	}
}

func TestV1DecoderNamesTheSeriesOfARefusedSample(t *testing.T) {
	sum := &writeSummary{}
	d := newV1Decoder(sum, time.UnixMilli(0))
	raw, err := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: lbls("__name__", "future", "job", "a"), Samples: []prompb.Sample{{Timestamp: time.Hour.Milliseconds(), Value: 1}}},
	}}).Marshal()
	require.NoError(t, err)
	err = d.decode(raw, newRecordingAppender())
	var aerr *appendError
	require.True(t, errors.As(err, &aerr), "%v", err)
	require.ErrorIs(t, err, storage.ErrOutOfBounds)
	require.Equal(t, 400, aerr.status())
	require.ErrorContains(t, err, `out of bounds: timestamp is too far in the future for series {__name__="future", job="a"} (timestamp 3600000)`)
}

// FuzzDecodeV1MatchesPrometheus feeds arbitrary RW1 bodies to the one-pass decoder and to
// Prometheus's own unmarshalling: neither may crash, and whatever Prometheus decodes the
// decoder must append alike, label sets intact after the body is overwritten.
func FuzzDecodeV1MatchesPrometheus(f *testing.F) {
	now := time.Now().UnixMilli()
	h := &histogram.Histogram{Count: 3, Sum: 1, Schema: 0, PositiveSpans: []histogram.Span{{Offset: 1, Length: 1}}, PositiveBuckets: []int64{3}}
	for _, req := range []*prompb.WriteRequest{
		{Timeseries: []prompb.TimeSeries{{Labels: lbls("__name__", "up", "job", "a"), Samples: samplesAt(now, 3, 1)}}},
		{Timeseries: []prompb.TimeSeries{
			{Labels: lbls("job", "a", "__name__", "dup", "job", "b"), Samples: samplesAt(now, 1, 1)},
			{Labels: lbls("__name__", "h"), Histograms: []prompb.Histogram{prompb.FromIntHistogram(now, h)},
				Exemplars: []prompb.Exemplar{{Labels: lbls("trace_id", "t1"), Value: 1, Timestamp: now}}},
		}},
		{Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "x_total", Help: "x"}}},
	} {
		raw, err := req.Marshal()
		require.NoError(f, err)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkV1AgainstPrometheus(t, raw) })
}
