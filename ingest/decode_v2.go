package ingest

import (
	"errors"
	"fmt"
	"math"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of io.prometheus.write.v2 messages, besides scan.go's.
const (
	rw2MetadataType      = 1
	rw2ExemplarLabelRefs = 1
	rw2ExemplarValue     = 2
	rw2ExemplarTimestamp = 3
)

// v2Decoder decodes, checks and appends one RW2 body (io.prometheus.write.v2.Request) in one
// pass over the decompressed bytes, as v1Decoder does for RW1, where Prometheus's handler
// would unmarshal the whole message first (every symbol a fresh string, every exemplar's
// trace id among them) and our checks would have walked it once more before. Labels and
// metadata point into the body's symbols and are copied only when kept (a new series, a new
// metadata entry, a stored exemplar).
//
// What it answers is Prometheus's RW2 handler's (partial writes): a series with bad labels or
// without samples is left out, a sample or histogram the TSDB refuses for good (out of order,
// out of bounds, too old, duplicate, invalid histogram) is left out, the rest is stored and
// the answer is a 400 naming what was refused; any other append error rolls the whole request
// back with a 500, for the sender to retry. One difference: Prometheus answers a too-old
// histogram with a 500, which a sender would retry forever; here it is a 400, as for floats.
type v2Decoder struct {
	v1Decoder // labels in place, the timestamp bound, sample and histogram appends
	notes     *writeNotes
	// refused are the samples and histograms the TSDB refused for good.
	refused problemList
	// exemplarsInvalid counts exemplars refused for label refs outside the symbols table.
	exemplarsInvalid int
	// stats are what the request stored, for the X-Prometheus-Remote-Write-*-Written headers.
	stats remoteapi.WriteResponseStats
}

func newV2Decoder(sum *writeSummary, notes *writeNotes, now time.Time) *v2Decoder {
	return &v2Decoder{v1Decoder: *newV1Decoder(sum, now), notes: notes}
}

// decode walks buf and appends its series to app. An error wrapping errMalformed means the body
// is not a well-formed message (nothing must be kept); an *appendError, that the TSDB failed
// (5xx: the caller rolls back). What was refused is in d.sum, d.refused and d.notes.
func (d *v2Decoder) decode(buf []byte, app seriesAppender) error {
	// Symbols may follow the series on the wire: they are collected first.
	s := d.sum
	s.symbols = s.symbols[:0]
	err := eachField(buf, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == rw2Symbols {
			if typ != protowire.BytesType {
				return fmt.Errorf("%w: symbols field has wire type %d", errMalformed, typ)
			}
			s.symbols = append(s.symbols, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	i := 0
	return eachField(buf, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != rw2Timeseries {
			return nil
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("%w: timeseries field has wire type %d", errMalformed, typ)
		}
		i++
		return d.series(i-1, v, app)
	})
}

// seriesMetadata is a TimeSeries' metadata field as read: refs into the symbols table.
type seriesMetadata struct {
	typ              int32
	helpRef, unitRef uint32
}

// series reads a TimeSeries in place: its label refs and metadata first (they may follow the
// samples on the wire), then appends its float samples, its histograms, its exemplars (once
// the series exists) and last its metadata, in Prometheus's order.
func (d *v2Decoder) series(idx int, buf []byte, app seriesAppender) error {
	s := d.sum
	s.refs = s.refs[:0]
	var (
		floats, histograms, exemplars int
		md                            seriesMetadata
	)
	err := eachField(buf, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch num {
		case rw2SeriesLabelRefs:
			return s.appendRefs(typ, v)
		case rw2SeriesSamples, rw2SeriesHistograms, rw2SeriesExemplars:
			if typ != protowire.BytesType {
				return fmt.Errorf("%w: field %d of a series has wire type %d", errMalformed, num, typ)
			}
			switch num {
			case rw2SeriesSamples:
				floats++
			case rw2SeriesHistograms:
				histograms++
			default:
				exemplars++
			}
		case rw2SeriesMetadata:
			if typ != protowire.BytesType {
				return fmt.Errorf("%w: metadata field has wire type %d", errMalformed, typ)
			}
			return md.merge(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Prometheus's handler indexes the symbols table with these refs without a bounds check
	// (it would panic): such a body is refused whole.
	if n := len(s.symbols); int(md.helpRef) >= n || int(md.unitRef) >= n {
		return fmt.Errorf("%w: metadata of series %d refers to symbols %d (help) and %d (unit) outside the symbols table (size %d)", errMalformed, idx, md.helpRef, md.unitRef, n)
	}
	samples := floats + histograms
	s.samples += samples
	s.exemplars += exemplars

	if len(s.refs)%2 != 0 {
		s.reject(reasonInvalidLabels, samples, fmt.Sprintf("series %d: odd number of label references (%d)", idx, len(s.refs)))
		return d.validateSeries(buf)
	}
	s.labelPairs = s.labelPairs[:0]
	for i := 0; i < len(s.refs); i += 2 {
		n, v := s.refs[i], s.refs[i+1]
		if int(n) >= len(s.symbols) || int(v) >= len(s.symbols) {
			s.reject(reasonInvalidLabels, samples, fmt.Sprintf("series %d: label references %d=%d outside the symbols table (size %d)", idx, n, v, len(s.symbols)))
			return d.validateSeries(buf)
		}
		s.labelPairs = append(s.labelPairs, labelPair{name: s.symbols[n], value: s.symbols[v]})
	}
	sortPairs(s.labelPairs)
	d.builder.Reset()
	for _, p := range s.labelPairs {
		d.builder.Add(yoloString(p.name), yoloString(p.value))
	}
	d.builder.Overwrite(&d.scratch)
	ref, lset := app.GetRef(d.scratch, d.scratch.Hash())
	if ref == 0 {
		if !s.checkLabels(samples) {
			return d.validateSeries(buf)
		}
		lset = ownedLabels(s.labelPairs)
	}
	if samples == 0 {
		s.refuseSeries(fmt.Sprintf("TimeSeries must contain at least one sample or histogram for series %s", lset.String()))
		return d.validateSeries(buf)
	}

	if floats > 0 {
		err = eachField(buf, func(num protowire.Number, _ protowire.Type, v []byte) error {
			if num != rw2SeriesSamples {
				return nil
			}
			t, val, err := decodeSample(v)
			if err != nil {
				return err
			}
			r, err := d.append(app, ref, lset, t, val)
			if err != nil {
				return d.refuse(err)
			}
			ref = r
			d.stats.Samples++
			return nil
		})
	}
	if err == nil && histograms > 0 {
		err = eachField(buf, func(num protowire.Number, _ protowire.Type, v []byte) error {
			if num != rw2SeriesHistograms {
				return nil
			}
			r, err := d.appendHistogramV2(app, ref, lset, v)
			if err != nil {
				return d.refuse(err)
			}
			ref = r
			d.stats.Histograms++
			return nil
		})
	}
	if err == nil && exemplars > 0 {
		err = eachField(buf, func(num protowire.Number, _ protowire.Type, v []byte) error {
			if num == rw2SeriesExemplars {
				return d.appendExemplarV2(app, ref, lset, v)
			}
			return nil
		})
	}
	if err != nil {
		return err
	}
	_, _ = app.UpdateMetadata(ref, lset, d.metadataOf(md)) // kept, or noted as refused, by the appender
	return nil
}

// refuse records a sample the TSDB refused for good and goes on with the request; any other
// error ends it.
func (d *v2Decoder) refuse(err error) error {
	var aerr *appendError
	if errors.As(err, &aerr) && aerr.status()/100 == 4 {
		d.refused.add(err.Error())
		return nil
	}
	return err
}

func (d *v2Decoder) appendHistogramV2(app seriesAppender, ref storage.SeriesRef, lset labels.Labels, v []byte) (storage.SeriesRef, error) {
	var hp writev2.Histogram
	if err := hp.Unmarshal(v); err != nil {
		return 0, fmt.Errorf("%w: histogram of series %s: %w", errMalformed, lset.String(), err)
	}
	if hp.IsFloatHistogram() {
		return d.appendHistogramSample(app, ref, lset, hp.Timestamp, nil, hp.ToFloatHistogram())
	}
	return d.appendHistogramSample(app, ref, lset, hp.Timestamp, hp.ToIntHistogram(), nil)
}

// appendExemplarV2 appends one exemplar as Prometheus's RW2 handler does: one whose label refs
// are bad, or that the TSDB finds out of order, is refused (400, the rest stored); one too far
// in the future or otherwise refused by the TSDB is dropped. The appender counts and notes
// exemplars with bad labels.
func (d *v2Decoder) appendExemplarV2(app seriesAppender, ref storage.SeriesRef, lset labels.Labels, v []byte) error {
	e, err := d.decodeExemplarV2(v, d.keepExemplars)
	if errors.Is(err, errMalformed) {
		return fmt.Errorf("%w of series %s", err, lset.String())
	}
	if err != nil {
		d.noteExemplar(fmt.Sprintf("exemplar of series %s: %v", lset, err))
		return nil
	}
	if e.Ts > d.maxTime {
		d.exemplarsDropped++
		return nil
	}
	if _, err := app.AppendExemplar(ref, lset, e); err != nil {
		d.exemplarsDropped++
		if errors.Is(err, storage.ErrOutOfOrderExemplar) && d.notes != nil {
			d.notes.exemplars.add(fmt.Sprintf("exemplar %s of series %s: %v", exemplarString(e), lset, err))
		}
		return nil
	}
	d.stats.Exemplars++
	return nil
}

func (d *v2Decoder) noteExemplar(problem string) {
	d.exemplarsInvalid++
	if d.notes != nil {
		d.notes.exemplars.add(problem)
	}
}

// decodeExemplarV2 reads an io.prometheus.write.v2.Exemplar as Prometheus's ToExemplar gives
// it: labels from the symbols table, sorted; a timestamp only if not zero. With copyLabels the
// label strings are copies, for the exemplar storage to keep; otherwise they point into the
// body, in a slice reused by the next exemplar. An error not wrapping errMalformed is a label
// ref problem: the exemplar is refused.
func (d *v2Decoder) decodeExemplarV2(buf []byte, copyLabels bool) (exemplar.Exemplar, error) {
	var e exemplar.Exemplar
	s := d.sum
	s.refs = s.refs[:0]
	err := eachField(buf, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch num {
		case rw2ExemplarLabelRefs:
			return s.appendRefs(typ, v)
		case rw2ExemplarValue:
			if typ != protowire.Fixed64Type {
				return fmt.Errorf("%w: exemplar field %d has wire type %d", errMalformed, num, typ)
			}
			bits, _ := protowire.ConsumeFixed64(v)
			e.Value = math.Float64frombits(bits)
		case rw2ExemplarTimestamp:
			if typ != protowire.VarintType {
				return fmt.Errorf("%w: exemplar field %d has wire type %d", errMalformed, num, typ)
			}
			x, _ := protowire.ConsumeVarint(v)
			e.Ts = int64(x)
		}
		return nil
	})
	if err != nil {
		return e, fmt.Errorf("exemplar: %w", err)
	}
	if len(s.refs)%2 != 0 {
		return e, fmt.Errorf("invalid labelRefs length %d", len(s.refs))
	}
	d.builder.Reset()
	for i := 0; i < len(s.refs); i += 2 {
		n, v := s.refs[i], s.refs[i+1]
		if int(n) >= len(s.symbols) || int(v) >= len(s.symbols) {
			return e, fmt.Errorf("labelRefs %d (name) = %d (value) outside of symbols table (size %d)", n, v, len(s.symbols))
		}
		if copyLabels {
			d.builder.Add(string(s.symbols[n]), string(s.symbols[v]))
		} else {
			d.builder.Add(yoloString(s.symbols[n]), yoloString(s.symbols[v]))
		}
	}
	e.Labels, e.HasTs = d.exemplarLabels(copyLabels), e.Ts != 0
	return e, nil
}

// merge reads a Metadata message into md; a second one on the wire overwrites what it sets,
// as protobuf merges messages.
func (md *seriesMetadata) merge(buf []byte) error {
	return eachField(buf, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch num {
		case rw2MetadataType, rw2MetadataHelpRef, rw2MetadataUnitRef:
			if typ != protowire.VarintType {
				return fmt.Errorf("%w: metadata field %d has wire type %d", errMalformed, num, typ)
			}
			x, _ := protowire.ConsumeVarint(v)
			switch num {
			case rw2MetadataType:
				md.typ = int32(x)
			case rw2MetadataHelpRef:
				md.helpRef = uint32(x)
			default:
				md.unitRef = uint32(x)
			}
		}
		return nil
	})
}

// metadataOf is md as Prometheus's ToMetadata gives it (types it does not know are unknown),
// help and unit pointing into the body.
func (d *v2Decoder) metadataOf(md seriesMetadata) metadata.Metadata {
	typ := model.MetricTypeUnknown
	if md.typ > 0 && int(md.typ) < len(rw1MetricTypes) {
		typ = rw1MetricTypes[md.typ] // RW1's and RW2's enums list the types in the same order
	}
	return metadata.Metadata{Type: typ, Help: yoloString(d.sum.symbols[md.helpRef]), Unit: yoloString(d.sum.symbols[md.unitRef])}
}

// validateSeries checks the samples, histograms and exemplars of a series that is not
// appended: a malformed body is refused whole, as Prometheus's unmarshalling refuses it.
func (d *v2Decoder) validateSeries(buf []byte) error {
	return eachField(buf, func(num protowire.Number, _ protowire.Type, v []byte) error {
		var err error
		switch num {
		case rw2SeriesSamples:
			_, _, err = decodeSample(v)
		case rw2SeriesHistograms:
			var hp writev2.Histogram
			if uerr := hp.Unmarshal(v); uerr != nil {
				err = fmt.Errorf("%w: histogram: %w", errMalformed, uerr)
			}
		case rw2SeriesExemplars:
			if _, eerr := d.decodeExemplarV2(v, false); errors.Is(eerr, errMalformed) {
				err = eerr
			}
		}
		return err
	})
}
