package ingest

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"
	"unsafe"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of prompb.Sample.
const (
	rw1SampleValue     = 1
	rw1SampleTimestamp = 2
)

// maxAheadTime is how far in the future a sample may be, as in Prometheus's receiver: further
// is a clock problem on the sender, refused as out of bounds.
const maxAheadTime = 10 * time.Minute

// seriesAppender is what the RW1 decoder needs of the TSDB: the head's appender (through the
// node's counting and versioning layers), whose GetRef finds a series the head already has by
// its labels, so that its samples are appended by reference with the head's own labels.
type seriesAppender interface {
	storage.Appender
	storage.GetRef
}

// v1Decoder decodes, checks and appends one RW1 body (prompb.WriteRequest) in one pass over
// the decompressed bytes, where Prometheus's handler would unmarshal the whole message first
// (a fresh label set with fresh strings for every series of every request) and our checks
// would have walked it once more before. A series' labels are read in place: the strings point
// into the body, and are copied only when the series is new to the head. What it answers is
// Prometheus's: a series with invalid or duplicate labels is left out and named in a 400 (the
// rest stored); any sample the TSDB refuses fails the whole request (400 for out-of-order,
// out-of-bounds, too-old, duplicate and invalid samples, 500 otherwise) and nothing is kept;
// exemplars the TSDB refuses are dropped without failing the request.
type v1Decoder struct {
	sum     *writeSummary
	builder labels.ScratchBuilder
	scratch labels.Labels // labels pointing into the body, reused across series
	// exemplarScratch holds an exemplar's labels while it is checked and dropped (exemplar
	// storage off): pointing into the body, reused across exemplars.
	exemplarScratch labels.Labels
	maxTime         int64 // newest timestamp accepted, ms
	// exemplarsDropped counts exemplars the TSDB refused or that are too far in the future.
	exemplarsDropped int
	// keepExemplars says exemplars are stored: their label strings are then copied out of
	// the body; otherwise they are only checked, in place.
	keepExemplars bool
}

// appendError is a sample the TSDB refused: the request fails with its status.
type appendError struct {
	err    error
	series labels.Labels
	ts     int64
}

func (e *appendError) Error() string {
	return fmt.Sprintf("%v for series %s (timestamp %d)", e.err, e.series.String(), e.ts)
}

func (e *appendError) Unwrap() error { return e.err }

// status is the answer for a refused sample: the sender must not retry what will never fit
// (4xx), and may retry what failed on our side (5xx).
func (e *appendError) status() int {
	var herr histogram.Error
	switch {
	case errors.Is(e.err, storage.ErrOutOfOrderSample), errors.Is(e.err, storage.ErrOutOfBounds),
		errors.Is(e.err, storage.ErrDuplicateSampleForTimestamp), errors.Is(e.err, storage.ErrTooOldSample),
		errors.As(e.err, &herr):
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}

func newV1Decoder(sum *writeSummary, now time.Time) *v1Decoder {
	return &v1Decoder{sum: sum, builder: labels.NewScratchBuilder(16), maxTime: now.Add(maxAheadTime).UnixMilli()}
}

// decode walks buf and appends its series to app. An error wrapping errMalformed means the
// body is not a well-formed message; an *appendError, that the TSDB refused a sample. Either
// way the caller rolls app back. Series with bad labels are only recorded in d.sum.
func (d *v1Decoder) decode(buf []byte, app seriesAppender) error {
	return eachField(buf, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != rw1Timeseries {
			return nil // metadata (field 3) is not stored by RW1 receivers
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("%w: timeseries field has wire type %d", errMalformed, typ)
		}
		return d.series(v, app)
	})
}

// series reads a TimeSeries in place: its labels first (they may follow the samples on the
// wire), then its float samples, then its histograms, then its exemplars (once the series
// exists), each appended as it is read.
func (d *v1Decoder) series(buf []byte, app seriesAppender) error {
	s := d.sum
	s.labelPairs = s.labelPairs[:0]
	var floats, histograms, exemplars int
	err := eachField(buf, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch num {
		case rw1SeriesLabels:
			if typ != protowire.BytesType {
				return fmt.Errorf("%w: label field has wire type %d", errMalformed, typ)
			}
			p, err := labelPairOf(v)
			if err != nil {
				return err
			}
			s.labelPairs = append(s.labelPairs, p)
		case rw1SeriesSamples, rw1SeriesHistogram, rw1SeriesExemplars:
			if typ != protowire.BytesType {
				return fmt.Errorf("%w: field %d of a series has wire type %d", errMalformed, num, typ)
			}
			switch num {
			case rw1SeriesSamples:
				floats++
			case rw1SeriesHistogram:
				histograms++
			default:
				exemplars++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	samples := floats + histograms
	s.samples += samples
	s.exemplars += exemplars

	sortPairs(s.labelPairs)
	d.builder.Reset()
	for _, p := range s.labelPairs {
		d.builder.Add(yoloString(p.name), yoloString(p.value))
	}
	d.builder.Overwrite(&d.scratch)
	ref, lset := app.GetRef(d.scratch, d.scratch.Hash())
	if ref == 0 {
		// Labels are checked once, when the series is new: the head only holds series that
		// passed. The TSDB keeps the label set of a new series, so it gets its own strings.
		if !s.checkLabels(samples) {
			return d.validateSeries(buf) // a malformed body is refused whole, as Prometheus does
		}
		lset = ownedLabels(s.labelPairs)
	}

	if floats > 0 {
		err = eachField(buf, func(num protowire.Number, _ protowire.Type, v []byte) error {
			if num != rw1SeriesSamples {
				return nil
			}
			t, val, err := decodeSample(v)
			if err == nil {
				ref, err = d.append(app, ref, lset, t, val)
			}
			return err
		})
	}
	if err == nil && histograms > 0 {
		err = eachField(buf, func(num protowire.Number, _ protowire.Type, v []byte) error {
			var err error
			if num == rw1SeriesHistogram {
				ref, err = d.appendHistogram(app, ref, lset, v)
			}
			return err
		})
	}
	if err == nil && exemplars > 0 {
		err = eachField(buf, func(num protowire.Number, _ protowire.Type, v []byte) error {
			if num == rw1SeriesExemplars {
				return d.appendExemplar(app, ref, lset, v)
			}
			return nil
		})
	}
	return err
}

func (d *v1Decoder) append(app seriesAppender, ref storage.SeriesRef, lset labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	if t > d.maxTime {
		return 0, &appendError{err: fmt.Errorf("%w: timestamp is too far in the future", storage.ErrOutOfBounds), series: lset, ts: t}
	}
	ref, err := app.Append(ref, lset, t, v)
	if err != nil {
		return 0, &appendError{err: err, series: lset, ts: t}
	}
	return ref, nil
}

func (d *v1Decoder) appendHistogram(app seriesAppender, ref storage.SeriesRef, lset labels.Labels, v []byte) (storage.SeriesRef, error) {
	var hp prompb.Histogram
	if err := hp.Unmarshal(v); err != nil {
		return 0, fmt.Errorf("%w: histogram of series %s: %w", errMalformed, lset.String(), err)
	}
	if hp.IsFloatHistogram() {
		return d.appendHistogramSample(app, ref, lset, hp.Timestamp, nil, hp.ToFloatHistogram())
	}
	return d.appendHistogramSample(app, ref, lset, hp.Timestamp, hp.ToIntHistogram(), nil)
}

// appendHistogramSample appends one histogram (h or fh) as Prometheus's receiver does: its
// schema reduced to the largest the TSDB stores, refused if too far in the future.
func (d *v1Decoder) appendHistogramSample(app seriesAppender, ref storage.SeriesRef, lset labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	if t > d.maxTime {
		return 0, &appendError{err: fmt.Errorf("%w: timestamp is too far in the future", storage.ErrOutOfBounds), series: lset, ts: t}
	}
	var err error
	if fh != nil && histogram.IsExponentialSchemaReserved(fh.Schema) && fh.Schema > histogram.ExponentialSchemaMax {
		err = fh.ReduceResolution(histogram.ExponentialSchemaMax)
	}
	if h != nil && histogram.IsExponentialSchemaReserved(h.Schema) && h.Schema > histogram.ExponentialSchemaMax {
		err = h.ReduceResolution(histogram.ExponentialSchemaMax)
	}
	if err == nil {
		ref, err = app.AppendHistogram(ref, lset, t, h, fh)
	}
	if err != nil {
		return 0, &appendError{err: err, series: lset, ts: t}
	}
	return ref, nil
}

func (d *v1Decoder) appendExemplar(app seriesAppender, ref storage.SeriesRef, lset labels.Labels, v []byte) error {
	e, err := d.decodeExemplar(v, d.keepExemplars)
	if err != nil {
		return fmt.Errorf("%w of series %s", err, lset.String())
	}
	if e.Ts > d.maxTime {
		d.exemplarsDropped++
		return nil
	}
	if _, err := app.AppendExemplar(ref, lset, e); err != nil {
		d.exemplarsDropped++
	}
	return nil
}

// Field numbers of prompb.Exemplar.
const (
	rw1ExemplarLabels    = 1
	rw1ExemplarValue     = 2
	rw1ExemplarTimestamp = 3
)

// decodeExemplar reads a prompb.Exemplar as Prometheus's ToExemplar gives it: labels sorted,
// a timestamp only if not zero. With copyLabels the label strings are copies, for the exemplar
// storage to keep; otherwise they point into buf, in a slice reused by the next exemplar.
func (d *v1Decoder) decodeExemplar(buf []byte, copyLabels bool) (exemplar.Exemplar, error) {
	var e exemplar.Exemplar
	d.builder.Reset()
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 {
			return e, fmt.Errorf("%w: exemplar: %w", errMalformed, protowire.ParseError(n))
		}
		buf = buf[n:]
		switch {
		case num == rw1ExemplarLabels && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(buf)
			if m < 0 {
				return e, fmt.Errorf("%w: exemplar label: %w", errMalformed, protowire.ParseError(m))
			}
			p, err := labelPairOf(v)
			if err != nil {
				return e, fmt.Errorf("exemplar: %w", err)
			}
			if copyLabels {
				d.builder.Add(string(p.name), string(p.value))
			} else {
				d.builder.Add(yoloString(p.name), yoloString(p.value))
			}
			n = m
		case num == rw1ExemplarValue && typ == protowire.Fixed64Type:
			bits, m := protowire.ConsumeFixed64(buf)
			if m < 0 {
				return e, fmt.Errorf("%w: exemplar value: %w", errMalformed, protowire.ParseError(m))
			}
			e.Value, n = math.Float64frombits(bits), m
		case num == rw1ExemplarTimestamp && typ == protowire.VarintType:
			x, m := protowire.ConsumeVarint(buf)
			if m < 0 {
				return e, fmt.Errorf("%w: exemplar timestamp: %w", errMalformed, protowire.ParseError(m))
			}
			e.Ts, n = int64(x), m
		case num == rw1ExemplarLabels || num == rw1ExemplarValue || num == rw1ExemplarTimestamp:
			return e, fmt.Errorf("%w: exemplar field %d has wire type %d", errMalformed, num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, buf)
			if n < 0 {
				return e, fmt.Errorf("%w: exemplar field %d: %w", errMalformed, num, protowire.ParseError(n))
			}
		}
		buf = buf[n:]
	}
	e.Labels, e.HasTs = d.exemplarLabels(copyLabels), e.Ts != 0
	return e, nil
}

// exemplarLabels are the builder's labels, sorted: their own slice when the exemplar is to be
// stored, the reused scratch (valid until the next exemplar) when it is only checked.
func (d *v1Decoder) exemplarLabels(keep bool) labels.Labels {
	d.builder.Sort()
	if keep {
		return d.builder.Labels()
	}
	d.builder.Overwrite(&d.exemplarScratch)
	return d.exemplarScratch
}

// validateSeries checks the samples, histograms and exemplars of a series that is not appended.
func (d *v1Decoder) validateSeries(buf []byte) error {
	return eachField(buf, func(num protowire.Number, _ protowire.Type, v []byte) error {
		var err error
		switch num {
		case rw1SeriesSamples:
			_, _, err = decodeSample(v)
		case rw1SeriesHistogram:
			var hp prompb.Histogram
			if uerr := hp.Unmarshal(v); uerr != nil {
				err = fmt.Errorf("%w: histogram: %w", errMalformed, uerr)
			}
		case rw1SeriesExemplars:
			_, err = d.decodeExemplar(v, false)
		}
		return err
	})
}

// labelPairOf reads a prompb.Label in place.
func labelPairOf(buf []byte) (labelPair, error) {
	var p labelPair
	err := eachField(buf, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			if num == rw1LabelName || num == rw1LabelValue {
				return fmt.Errorf("%w: label field %d has wire type %d", errMalformed, num, typ)
			}
			return nil
		}
		switch num {
		case rw1LabelName:
			p.name = v
		case rw1LabelValue:
			p.value = v
		}
		return nil
	})
	return p, err
}

// decodeSample reads a prompb.Sample: value (double, field 1) and timestamp (int64, field 2).
func decodeSample(buf []byte) (t int64, v float64, err error) {
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 {
			return 0, 0, fmt.Errorf("%w: sample: %w", errMalformed, protowire.ParseError(n))
		}
		buf = buf[n:]
		switch {
		case num == rw1SampleValue && typ == protowire.Fixed64Type:
			bits, m := protowire.ConsumeFixed64(buf)
			if m < 0 {
				return 0, 0, fmt.Errorf("%w: sample value: %w", errMalformed, protowire.ParseError(m))
			}
			v, n = math.Float64frombits(bits), m
		case num == rw1SampleTimestamp && typ == protowire.VarintType:
			x, m := protowire.ConsumeVarint(buf)
			if m < 0 {
				return 0, 0, fmt.Errorf("%w: sample timestamp: %w", errMalformed, protowire.ParseError(m))
			}
			t, n = int64(x), m
		case num == rw1SampleValue || num == rw1SampleTimestamp:
			return 0, 0, fmt.Errorf("%w: sample field %d has wire type %d", errMalformed, num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, buf)
			if n < 0 {
				return 0, 0, fmt.Errorf("%w: sample field %d: %w", errMalformed, num, protowire.ParseError(n))
			}
		}
		buf = buf[n:]
	}
	return t, v, nil
}

// ownedLabels copies sorted label pairs read from a body into a label set of its own.
func ownedLabels(pairs []labelPair) labels.Labels {
	b := labels.NewScratchBuilder(len(pairs))
	for _, p := range pairs {
		b.Add(string(p.name), string(p.value))
	}
	return b.Labels()
}

// yoloString views b as a string without copying; b must outlive every use of it.
func yoloString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
