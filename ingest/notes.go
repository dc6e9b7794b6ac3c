package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of prompb.WriteRequest's metadata (prompb.MetricMetadata).
const (
	rw1Metadata           = 3
	rw1MetadataType       = 1
	rw1MetadataFamilyName = 2
	rw1MetadataHelp       = 4
	rw1MetadataUnit       = 5
)

// rw1MetricTypes are prompb.MetricMetadata_MetricType's values in order, as Prometheus names
// the types in its metadata API.
var rw1MetricTypes = []model.MetricType{
	model.MetricTypeUnknown, model.MetricTypeCounter, model.MetricTypeGauge, model.MetricTypeHistogram,
	model.MetricTypeGaugeHistogram, model.MetricTypeSummary, model.MetricTypeInfo, model.MetricTypeStateset,
}

// Reasons of meridian_ingest_exemplars_rejected_total and meridian_ingest_metadata_rejected_total.
const (
	reasonExemplarOutOfOrder  = "out_of_order"
	reasonExemplarTooLong     = "label_set_too_long"
	reasonExemplarInvalid     = "invalid_labels"
	reasonExemplarOther       = "invalid_exemplar"
	reasonExemplarStorageOff  = "storage_disabled"
	reasonMetadataInvalid     = "invalid_metadata"
	reasonMetadataStoreFull   = "limit"
	maxReportedWriteProblems  = maxReportedSeries
	errInvalidExemplarMessage = "invalid exemplar labels"
)

var errInvalidExemplarLabels = errors.New(errInvalidExemplarMessage)

// writeNotes collects, for one remote-write request, the metadata and exemplars refused for
// being bad (named in the 400 answer, the rest of the request being stored) and the metadata
// to keep once the request is committed. It travels in the request's context to the appender
// that Prometheus's handler or our decoder asks for.
type writeNotes struct {
	exemplars problemList
	metadata  problemList
	pending   []familyMetadata // RW2 series metadata, kept on commit
	// lastName and lastMeta are the series name and metadata that made pending's last entry:
	// a histogram's buckets repeat them, series after series.
	lastName string
	lastMeta metadata.Metadata
}

type familyMetadata struct {
	family string
	meta   metadata.Metadata
}

type problemList struct {
	n     int
	first []string
}

func (p *problemList) add(problem string) {
	p.n++
	if len(p.first) < maxReportedWriteProblems {
		p.first = append(p.first, problem)
	}
}

func (p *problemList) text(what string) string {
	if p.n == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s rejected:", p.n, what)
	for _, s := range p.first {
		b.WriteString(" ")
		b.WriteString(s)
		b.WriteString(";")
	}
	if p.n > len(p.first) {
		fmt.Fprintf(&b, " and %d more", p.n-len(p.first))
	}
	return b.String()
}

func (n *writeNotes) reset() {
	n.exemplars = problemList{first: n.exemplars.first[:0]}
	n.metadata = problemList{first: n.metadata.first[:0]}
	clear(n.pending)
	n.pending = n.pending[:0]
	n.lastName, n.lastMeta = "", metadata.Metadata{} // they point into the last request's body
}

// text is what the 400 answer says about refused metadata and exemplars; empty when none was.
func (n *writeNotes) text() string {
	return joinNonEmpty(n.metadata.text("metadata"), n.exemplars.text("exemplars"))
}

func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

type writeNotesKey struct{}

func withWriteNotes(ctx context.Context, n *writeNotes) context.Context {
	return context.WithValue(ctx, writeNotesKey{}, n)
}

func writeNotesFrom(ctx context.Context) *writeNotes {
	n, _ := ctx.Value(writeNotesKey{}).(*writeNotes)
	return n
}

// storeV1Metadata keeps the metadata messages of an RW1 body (Prometheus sends them with
// send_metadata, every minute, apart from the samples). Entries with no family name, an
// unknown type or help or unit that is not UTF-8 are refused and noted; a metadata field of
// the wrong wire type makes the body malformed.
func (h *writeHandler) storeV1Metadata(buf []byte, notes *writeNotes) error {
	return eachField(buf, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != rw1Metadata {
			return nil
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("%w: metadata field has wire type %d", errMalformed, typ)
		}
		var (
			family, help, unit []byte
			mtype              uint64
		)
		err := eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
			switch {
			case num == rw1MetadataType && typ == protowire.VarintType:
				mtype, _ = protowire.ConsumeVarint(v)
			case typ != protowire.BytesType:
			case num == rw1MetadataFamilyName:
				family = v
			case num == rw1MetadataHelp:
				help = v
			case num == rw1MetadataUnit:
				unit = v
			}
			return nil
		})
		if err != nil {
			return err
		}
		var problem string
		switch {
		case len(family) == 0:
			problem = fmt.Sprintf("metadata without metric family name (help %q)", help)
		case !utf8.Valid(family) || !utf8.Valid(help) || !utf8.Valid(unit):
			problem = fmt.Sprintf("metadata of %q: family name, help and unit must be UTF-8", family)
		case mtype >= uint64(len(rw1MetricTypes)):
			problem = fmt.Sprintf("metadata of %q: unknown metric type %d", family, mtype)
		}
		if problem != "" {
			h.metrics.metadataRejected.WithLabelValues(reasonMetadataInvalid).Inc()
			notes.metadata.add(problem)
			return nil
		}
		h.metrics.metadataReceived.Inc()
		m := metadata.Metadata{Type: rw1MetricTypes[mtype], Help: string(help), Unit: string(unit)}
		if !h.meta.add(string(family), m) {
			h.metrics.metadataRejected.WithLabelValues(reasonMetadataStoreFull).Inc()
		}
		return nil
	})
}

// noteMetadata checks the metadata Prometheus's RW2 handler gives a series and keeps it for the
// commit. Series without metadata (type unknown, no help, no unit) have nothing to keep.
func (a *countingAppender) noteMetadata(l labels.Labels, m metadata.Metadata) {
	if a.notes == nil || (m.Type == model.MetricTypeUnknown && m.Help == "" && m.Unit == "") {
		return
	}
	name := l.Get(labels.MetricName)
	if len(a.notes.pending) > 0 && name == a.notes.lastName && m == a.notes.lastMeta {
		return // what made pending's last entry, checked then
	}
	if !utf8.ValidString(m.Help) || !utf8.ValidString(m.Unit) {
		a.metrics.metadataRejected.WithLabelValues(reasonMetadataInvalid).Inc()
		a.notes.metadata.add(fmt.Sprintf("metadata of %q: help and unit must be UTF-8", name))
		return
	}
	fm := familyMetadata{family: metricFamily(name, m.Type), meta: m}
	a.notes.lastName, a.notes.lastMeta = name, m
	if p := a.notes.pending; len(p) > 0 && p[len(p)-1] == fm {
		return // the series of a family (a histogram's buckets) come one after the other
	}
	a.notes.pending = append(a.notes.pending, fm)
}

// commitMetadata keeps the request's series metadata once its samples are committed.
func (a *countingAppender) commitMetadata() {
	if a.notes == nil || a.meta == nil {
		return
	}
	for _, fm := range a.notes.pending {
		a.metrics.metadataReceived.Inc()
		if !a.meta.add(fm.family, fm.meta) {
			a.metrics.metadataRejected.WithLabelValues(reasonMetadataStoreFull).Inc()
		}
	}
	a.notes.pending = a.notes.pending[:0]
}

// checkExemplar refuses exemplars whose labels are not valid (empty or non-UTF-8 names or
// values, a name twice), which the TSDB would store as given.
func checkExemplar(e exemplar.Exemplar) error {
	if !e.Labels.IsValid(model.UTF8Validation) {
		return fmt.Errorf("%w %s", errInvalidExemplarLabels, e.Labels)
	}
	if name, dup := e.Labels.HasDuplicateLabelNames(); dup {
		return fmt.Errorf("%w %s: label %q twice", errInvalidExemplarLabels, e.Labels, name)
	}
	// The TSDB's own limit (OpenMetrics'), checked here too so that it holds with exemplar
	// storage off.
	n := 0
	e.Labels.Range(func(l labels.Label) { n += utf8.RuneCountInString(l.Name) + utf8.RuneCountInString(l.Value) })
	if n > exemplar.ExemplarMaxLabelSetLength {
		return storage.ErrExemplarLabelLength
	}
	return nil
}

// noteExemplarError counts an exemplar the TSDB or checkExemplar refused. Bad exemplars (bad
// labels, a label set over OpenMetrics' 128 characters) are noted for the 400 answer; an
// out-of-order one, which a sender's retry of an accepted request also makes, is only counted,
// as Prometheus's RW1 receiver does (its RW2 receiver answers 400 itself).
func (a *countingAppender) noteExemplarError(l labels.Labels, e exemplar.Exemplar, err error) {
	reason := reasonExemplarOther
	switch {
	case errors.Is(err, storage.ErrOutOfOrderExemplar):
		a.metrics.exemplarsRejected.WithLabelValues(reasonExemplarOutOfOrder).Inc()
		return
	case errors.Is(err, storage.ErrExemplarLabelLength):
		reason = reasonExemplarTooLong
	case errors.Is(err, errInvalidExemplarLabels):
		reason = reasonExemplarInvalid
	}
	a.metrics.exemplarsRejected.WithLabelValues(reason).Inc()
	if a.notes != nil {
		a.notes.exemplars.add(fmt.Sprintf("exemplar %s of series %s: %v", exemplarString(e), l, err))
	}
}

func exemplarString(e exemplar.Exemplar) string {
	var b bytes.Buffer
	b.WriteString(e.Labels.String())
	fmt.Fprintf(&b, " %g", e.Value)
	if e.HasTs {
		fmt.Fprintf(&b, " @%d", e.Ts)
	}
	return b.String()
}
