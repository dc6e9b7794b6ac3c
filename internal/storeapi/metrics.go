package storeapi

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"
)

const (
	methodSeries      = "Series"
	methodLabelNames  = "LabelNames"
	methodLabelValues = "LabelValues"
)

// metrics are the server's own metrics, prefixed meridian_storeapi_.
type metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	seriesSent prometheus.Counter
	chunksSent prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_storeapi_requests_total",
			Help: "StoreAPI calls served, by method and gRPC status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                           "meridian_storeapi_request_duration_seconds",
			Help:                           "Time to serve a StoreAPI call, by method.",
			Buckets:                        []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30},
			NativeHistogramBucketFactor:    1.1,
			NativeHistogramMaxBucketNumber: 100,
		}, []string{"method"}),
		seriesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_storeapi_series_sent_total",
			Help: "Series sent in answers to Series calls.",
		}),
		chunksSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_storeapi_chunks_sent_total",
			Help: "Chunks sent in answers to Series calls.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.requests, err = register(reg, m.requests)
	if err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.seriesSent, err = register(reg, m.seriesSent); err != nil {
		return nil, err
	}
	if m.chunksSent, err = register(reg, m.chunksSent); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c on reg. Several servers in one process (meridian dev runs a store per
// region and a stacked querier) share the collectors of the first one, so their calls add up
// instead of failing as duplicate registrations; wrap reg with prometheus.WrapRegistererWith
// to tell them apart.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("storeapi: register metrics: %w", err)
}

// observe records one call that started at start and ended with err.
func (m *metrics) observe(method string, start time.Time, err error) {
	m.requests.WithLabelValues(method, status.Code(err).String()).Inc()
	m.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
}
