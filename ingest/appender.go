package ingest

import (
	"context"
	"errors"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// countingAppendable hands out appenders that count appended and rejected samples, so the
// metrics reflect what the TSDB really did with a request.
type countingAppendable struct {
	db      storage.Appendable
	metrics *metrics
	meta    *metadataStore // receives series metadata on commit
	// exemplars says the TSDB stores exemplars; without, they are checked and dropped.
	exemplars bool
}

func (a countingAppendable) Appender(ctx context.Context) storage.Appender { return a.appender(ctx) }

func (a countingAppendable) appender(ctx context.Context) *countingAppender {
	return &countingAppender{Appender: a.db.Appender(ctx), metrics: a.metrics, meta: a.meta, exemplars: a.exemplars, notes: writeNotesFrom(ctx)}
}

type countingAppender struct {
	storage.Appender
	metrics   *metrics
	meta      *metadataStore
	exemplars bool
	notes     *writeNotes // the request's; nil outside a request
	appended  int
	// unkept counts valid exemplars dropped because exemplar storage is off.
	unkept int
}

func (a *countingAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	ref, err := a.Appender.Append(ref, l, t, v)
	a.count(err)
	return ref, err
}

func (a *countingAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	ref, err := a.Appender.AppendHistogram(ref, l, t, h, fh)
	a.count(err)
	return ref, err
}

// AppendExemplar stores an exemplar after checking its labels, and counts and notes the
// exemplars refused (see noteExemplarError). Without exemplar storage, a valid exemplar is
// dropped there without an error, as the TSDB would drop it, and counted in unkept (a region
// whose Prometheus sends exemplars that nobody keeps shows in the metrics); an invalid one is
// refused all the same.
func (a *countingAppender) AppendExemplar(ref storage.SeriesRef, l labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	if err := checkExemplar(e); err != nil {
		a.noteExemplarError(l, e, err)
		return ref, err
	}
	if !a.exemplars {
		a.unkept++
		return ref, nil
	}
	ref, err := a.Appender.AppendExemplar(ref, l, e)
	if err != nil {
		a.noteExemplarError(l, e, err)
		return ref, err
	}
	a.metrics.exemplarsAppended.Inc()
	return ref, nil
}

// UpdateMetadata keeps a series' metadata (RW2 carries it inline) in the node's metadata
// store once the request commits, under the series' metric family. The TSDB is not told:
// nothing reads metadata from it.
func (a *countingAppender) UpdateMetadata(ref storage.SeriesRef, l labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	a.noteMetadata(l, m)
	return ref, nil
}

// GetRef finds a series the head already has, so that its samples are appended by reference
// with the head's own labels (storage.GetRef).
func (a *countingAppender) GetRef(lset labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	if g, ok := a.Appender.(storage.GetRef); ok {
		return g.GetRef(lset, hash)
	}
	return 0, labels.EmptyLabels()
}

// discard rolls back a request that turned out malformed: it was refused as a whole, so its
// samples count as neither appended nor rolled back.
func (a *countingAppender) discard() {
	a.appended = 0
	_ = a.Appender.Rollback()
}

// countUnkept adds the request's valid exemplars dropped for want of exemplar storage to
// meridian_ingest_exemplars_rejected_total, once per request.
func (a *countingAppender) countUnkept() {
	if a.unkept > 0 {
		a.metrics.exemplarsRejected.WithLabelValues(reasonExemplarStorageOff).Add(float64(a.unkept))
	}
}

func (a *countingAppender) count(err error) {
	if err == nil {
		a.appended++
		return
	}
	a.metrics.samplesRejected.WithLabelValues(string(appendRejectReason(err))).Inc()
}

func (a *countingAppender) Commit() error {
	if err := a.Appender.Commit(); err != nil {
		a.metrics.samplesRejected.WithLabelValues(string(reasonRolledBack)).Add(float64(a.appended))
		return err
	}
	a.metrics.samplesAppended.Add(float64(a.appended))
	a.commitMetadata()
	return nil
}

func (a *countingAppender) Rollback() error {
	a.metrics.samplesRejected.WithLabelValues(string(reasonRolledBack)).Add(float64(a.appended))
	return a.Appender.Rollback()
}

func appendRejectReason(err error) rejectReason {
	switch {
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return reasonOutOfOrder
	case errors.Is(err, storage.ErrTooOldSample):
		return reasonTooOld
	case errors.Is(err, storage.ErrOutOfBounds):
		return reasonOutOfBounds
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return reasonDuplicateSample
	case errors.Is(err, tsdb.ErrInvalidSample):
		return reasonInvalidLabels
	default:
		return reasonInvalidSample
	}
}
