package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the remote-write messages (prompb.WriteRequest and io.prometheus.write.v2.Request).
const (
	rw1Timeseries      = 1
	rw1SeriesLabels    = 1
	rw1SeriesSamples   = 2
	rw1SeriesExemplars = 3
	rw1SeriesHistogram = 4
	rw1LabelName       = 1
	rw1LabelValue      = 2

	rw2Symbols          = 4
	rw2Timeseries       = 5
	rw2SeriesLabelRefs  = 1
	rw2SeriesSamples    = 2
	rw2SeriesHistograms = 3
	rw2SeriesExemplars  = 4
	rw2SeriesMetadata   = 5
	rw2MetadataHelpRef  = 3
	rw2MetadataUnitRef  = 4
)

// maxReportedSeries bounds how many invalid series a 400 answer names.
const maxReportedSeries = 5

var metricNameBytes = []byte("__name__")

// rejectReason is the label value of samples_rejected_total for a sample-level rejection.
type rejectReason string

const (
	reasonInvalidLabels   rejectReason = "invalid_labels"
	reasonDuplicateLabels rejectReason = "duplicate_labels"
	reasonOutOfOrder      rejectReason = "out_of_order"
	reasonTooOld          rejectReason = "too_old"
	reasonOutOfBounds     rejectReason = "out_of_bounds"
	reasonDuplicateSample rejectReason = "duplicate_timestamp"
	reasonInvalidSample   rejectReason = "invalid_sample"
	reasonRolledBack      rejectReason = "rolled_back"
)

// writeSummary is what the decoder of a remote-write body (decode_v1.go, decode_v2.go) learned:
// how much it carries and which series are refused for their labels. It is pooled with its
// scratch space.
type writeSummary struct {
	samples    int // float samples plus histogram samples
	exemplars  int
	rejected   map[rejectReason]int // samples in series with invalid or duplicate labels
	problems   []string             // the first few invalid series, for the 400 message
	nProblems  int
	labelPairs []labelPair // scratch, reused across series
	refs       []uint32    // scratch, reused across series and exemplars (RW2)
	symbols    [][]byte    // RW2's symbols table, pointing into the body
}

type labelPair struct{ name, value []byte }

// errPackedOverrun is a packed field whose last varint does not end within it (gogo/protobuf
// reads on into the fields that follow).
var errPackedOverrun = errors.New("a varint runs past the end of the packed field")

// errMalformed marks a body that is not a well-formed remote-write message.
var errMalformed = errors.New("malformed remote write message")

func (s *writeSummary) reject(reason rejectReason, samples int, problem string) {
	if s.rejected == nil {
		s.rejected = make(map[rejectReason]int, 2)
	}
	s.rejected[reason] += samples
	s.nProblems++
	if len(s.problems) < maxReportedSeries {
		s.problems = append(s.problems, problem)
	}
}

// refuseSeries records a series refused with no samples to count (one without samples).
func (s *writeSummary) refuseSeries(problem string) {
	s.nProblems++
	if len(s.problems) < maxReportedSeries {
		s.problems = append(s.problems, problem)
	}
}

// problemText is the reason given to the sender when some series were refused.
func (s *writeSummary) problemText() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d series rejected:", s.nProblems)
	for _, p := range s.problems {
		b.WriteString(" ")
		b.WriteString(p)
		b.WriteString(";")
	}
	if s.nProblems > len(s.problems) {
		fmt.Fprintf(&b, " and %d more", s.nProblems-len(s.problems))
	}
	return b.String()
}

// appendRefs adds the label references of one labels_refs field, packed or not, to s.refs.
func (s *writeSummary) appendRefs(typ protowire.Type, v []byte) error {
	switch typ {
	case protowire.VarintType:
		n, _ := protowire.ConsumeVarint(v)
		s.refs = append(s.refs, uint32(n))
	case protowire.BytesType: // packed
		for len(v) > 0 {
			n, l := protowire.ConsumeVarint(v)
			if l < 0 {
				if errors.Is(protowire.ParseError(l), io.ErrUnexpectedEOF) {
					return fmt.Errorf("%w: label references: %w", errMalformed, errPackedOverrun)
				}
				return fmt.Errorf("%w: label references: %w", errMalformed, protowire.ParseError(l))
			}
			s.refs = append(s.refs, uint32(n))
			v = v[l:]
		}
	default:
		return fmt.Errorf("%w: label references field has wire type %d", errMalformed, typ)
	}
	return nil
}

// checkLabels applies the checks Prometheus's handler makes before appending (a metric name,
// valid UTF-8 names and values, no name twice) to the series in s.labelPairs, and records the
// series as rejected if one fails.
func (s *writeSummary) checkLabels(samples int) bool {
	pairs := s.labelPairs
	hasName := false
	for _, p := range pairs {
		if len(p.name) == 0 || !utf8.Valid(p.name) || !utf8.Valid(p.value) {
			s.reject(reasonInvalidLabels, samples, fmt.Sprintf("invalid label name or value %q=%q in %s", p.name, p.value, pairsString(pairs)))
			return false
		}
		if bytes.Equal(p.name, metricNameBytes) {
			hasName = len(p.value) > 0
		}
	}
	if !hasName {
		s.reject(reasonInvalidLabels, samples, "missing metric name in "+pairsString(pairs))
		return false
	}
	sortPairs(pairs)
	for i := 1; i < len(pairs); i++ {
		if bytes.Equal(pairs[i].name, pairs[i-1].name) {
			s.reject(reasonDuplicateLabels, samples, fmt.Sprintf("duplicate label name %q in %s", pairs[i].name, pairsString(pairs)))
			return false
		}
	}
	return true
}

// sortPairs sorts label pairs by name, as labels.Labels are.
func sortPairs(pairs []labelPair) {
	cmp := func(a, b labelPair) int { return bytes.Compare(a.name, b.name) }
	if !slices.IsSortedFunc(pairs, cmp) {
		slices.SortFunc(pairs, cmp)
	}
}

func pairsString(pairs []labelPair) string {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range pairs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q=%q", p.name, p.value)
	}
	b.WriteByte('}')
	return b.String()
}

// eachField calls fn for every field of the protobuf message in buf. For length-delimited fields
// v is the payload, for varints the encoded varint; other types get their raw bytes.
func eachField(buf []byte, fn func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
		}
		buf = buf[n:]
		var v []byte
		if typ == protowire.BytesType {
			payload, m := protowire.ConsumeBytes(buf)
			if m < 0 {
				return fmt.Errorf("%w: field %d: %w", errMalformed, num, protowire.ParseError(m))
			}
			v, n = payload, m
		} else {
			m := protowire.ConsumeFieldValue(num, typ, buf)
			if m < 0 {
				return fmt.Errorf("%w: field %d: %w", errMalformed, num, protowire.ParseError(m))
			}
			v, n = buf[:m], m
		}
		if err := fn(num, typ, v); err != nil {
			return err
		}
		buf = buf[n:]
	}
	return nil
}
