package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the node's own series; the TSDB and the StoreAPI server register theirs on the
// same registerer.
type metrics struct {
	samplesReceived  prometheus.Counter
	samplesAppended  prometheus.Counter
	samplesRejected  *prometheus.CounterVec
	requestsRejected *prometheus.CounterVec
	requests         *prometheus.CounterVec
	requestDuration  *prometheus.HistogramVec
	walReplay        prometheus.Gauge

	exemplarsAppended prometheus.Counter
	exemplarsRejected *prometheus.CounterVec
	metadataReceived  prometheus.Counter
	metadataRejected  *prometheus.CounterVec

	ready prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		samplesReceived: f.NewCounter(prometheus.CounterOpts{
			Name: "meridian_ingest_samples_received_total",
			Help: "Samples (floats and histograms) in well-formed remote-write requests.",
		}),
		samplesAppended: f.NewCounter(prometheus.CounterOpts{
			Name: "meridian_ingest_samples_appended_total",
			Help: "Samples committed to the TSDB (and its WAL) from remote write.",
		}),
		samplesRejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_ingest_samples_rejected_total",
			Help: "Remote-write samples not stored, by reason: invalid_labels, duplicate_labels, out_of_order, too_old, out_of_bounds, duplicate_timestamp, invalid_sample, rolled_back (valid samples discarded with the rest of a failed request). Samples more than 10m in the future are refused before the TSDB and only show in write_requests_total{code=\"400\"}.",
		}, []string{"reason"}),
		requestsRejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_ingest_write_requests_rejected_total",
			Help: "Remote-write requests refused before decoding their samples, by reason: too_large, not_snappy, malformed, not_ready.",
		}, []string{"reason"}),
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_ingest_write_requests_total",
			Help: "Remote-write requests by HTTP status code.",
		}, []string{"code"}),
		requestDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:                           "meridian_ingest_write_request_duration_seconds",
			Help:                           "Latency of remote-write requests by HTTP status code.",
			Buckets:                        []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			NativeHistogramBucketFactor:    1.1,
			NativeHistogramMaxBucketNumber: 100,
		}, []string{"code"}),
		exemplarsAppended: f.NewCounter(prometheus.CounterOpts{
			Name: "meridian_ingest_exemplars_appended_total",
			Help: "Remote-write exemplars handed to the TSDB's exemplar storage (none when --tsdb.max-exemplars is 0).",
		}),
		exemplarsRejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_ingest_exemplars_rejected_total",
			Help: "Remote-write exemplars not stored, by reason: invalid_labels, label_set_too_long (over OpenMetrics' 128 characters), out_of_order, invalid_exemplar, storage_disabled (valid, but --tsdb.max-exemplars is 0).",
		}, []string{"reason"}),
		metadataReceived: f.NewCounter(prometheus.CounterOpts{
			Name: "meridian_ingest_metadata_received_total",
			Help: "Valid metric metadata entries received over remote write (RW1 metadata messages, RW2 series metadata).",
		}),
		metadataRejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_ingest_metadata_rejected_total",
			Help: "Remote-write metric metadata not kept, by reason: invalid_metadata, limit (the node keeps at most 100000 entries).",
		}, []string{"reason"}),
		walReplay: f.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_ingest_wal_replay_duration_seconds",
			Help: "Time the TSDB took to open, WAL replay included, at the last start.",
		}),
		ready: f.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_ingest_ready",
			Help: "1 once the TSDB is open and the node accepts writes and queries.",
		}),
	}
	for _, r := range []rejectReason{reasonInvalidLabels, reasonDuplicateLabels, reasonOutOfOrder, reasonTooOld, reasonOutOfBounds, reasonDuplicateSample, reasonInvalidSample, reasonRolledBack} {
		m.samplesRejected.WithLabelValues(string(r))
	}
	for _, r := range []string{reasonExemplarInvalid, reasonExemplarTooLong, reasonExemplarOutOfOrder, reasonExemplarOther, reasonExemplarStorageOff} {
		m.exemplarsRejected.WithLabelValues(r)
	}
	for _, r := range []string{reasonMetadataInvalid, reasonMetadataStoreFull} {
		m.metadataRejected.WithLabelValues(r)
	}
	for _, r := range []string{"too_large", "not_snappy", "malformed", "not_ready"} {
		m.requestsRejected.WithLabelValues(r)
	}
	return m
}
