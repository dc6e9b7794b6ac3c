package slo

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	budgetDesc = prometheus.NewDesc("meridian_slo_error_budget_remaining_ratio",
		"Fraction of the error budget left over the SLO period (1 = untouched, 0 = spent, negative = overspent); region=\"global\" is all regions together.",
		[]string{"service", "slo", "region"}, nil)
	burnDesc = prometheus.NewDesc("meridian_slo_burn_rate",
		"Error ratio over the window divided by the error budget (1 - objective); absent when the window had no traffic.",
		[]string{"service", "slo", "region", "window"}, nil)
	ratioDesc = prometheus.NewDesc("meridian_slo_error_ratio",
		"Errors over total events in the window; absent when the window had no traffic.",
		[]string{"service", "slo", "region", "window"}, nil)
	partialDesc = prometheus.NewDesc("meridian_slo_partial",
		"1 when some data behind the region's SLO numbers was missing (partial response or absent region), 0 otherwise.",
		[]string{"service", "slo", "region"}, nil)
	objectiveDesc = prometheus.NewDesc("meridian_slo_objective_ratio",
		"The SLO's objective as a fraction.",
		[]string{"service", "slo"}, nil)
)

// collector exposes the engine's last evaluation; scrapes never trigger queries.
type collector struct{ e *Engine }

// NewCollector returns a Collector of the engine's last results:
// meridian_slo_error_budget_remaining_ratio{service,slo,region},
// meridian_slo_burn_rate{service,slo,region,window}, meridian_slo_error_ratio{...,window},
// meridian_slo_partial{service,slo,region} and meridian_slo_objective_ratio{service,slo}.
func NewCollector(e *Engine) prometheus.Collector { return collector{e: e} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{budgetDesc, burnDesc, ratioDesc, partialDesc, objectiveDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	results, _ := c.e.Results()
	for _, res := range results {
		ch <- prometheus.MustNewConstMetric(objectiveDesc, prometheus.GaugeValue, res.Objective, res.Service, res.Name)
		for _, rr := range append([]RegionResult{res.Global}, res.Regions...) {
			if b := rr.Budget.Remaining; b != nil {
				ch <- prometheus.MustNewConstMetric(budgetDesc, prometheus.GaugeValue, *b, res.Service, res.Name, rr.Region)
			}
			partial := 0.0
			if rr.Partial || res.Error != "" {
				partial = 1
			}
			ch <- prometheus.MustNewConstMetric(partialDesc, prometheus.GaugeValue, partial, res.Service, res.Name, rr.Region)
			for _, w := range rr.Windows {
				if w.BurnRate != nil {
					ch <- prometheus.MustNewConstMetric(burnDesc, prometheus.GaugeValue, *w.BurnRate, res.Service, res.Name, rr.Region, w.Window)
				}
				if w.Ratio != nil {
					ch <- prometheus.MustNewConstMetric(ratioDesc, prometheus.GaugeValue, *w.Ratio, res.Service, res.Name, rr.Region, w.Window)
				}
			}
		}
	}
}

// engineMetrics are the engine's own: how evaluations go.
type engineMetrics struct {
	evaluations    prometheus.Counter
	failures       prometheus.Counter
	duration       prometheus.Histogram
	lastEvaluation prometheus.Gauge
}

func newEngineMetrics(reg prometheus.Registerer) *engineMetrics {
	m := &engineMetrics{
		evaluations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_slo_evaluations_total", Help: "SLO evaluation rounds.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_slo_evaluation_failures_total", Help: "SLO evaluations whose queries failed.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meridian_slo_evaluation_duration_seconds", Help: "Time to evaluate all SLOs once.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8),
		}),
		lastEvaluation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_slo_last_evaluation_timestamp_seconds", Help: "Time of the last SLO evaluation.",
		}),
	}
	reg.MustRegister(m.evaluations, m.failures, m.duration, m.lastEvaluation)
	return m
}

func (m *engineMetrics) observe(took time.Duration, at time.Time, failed int) {
	m.evaluations.Inc()
	m.failures.Add(float64(failed))
	m.duration.Observe(took.Seconds())
	m.lastEvaluation.Set(float64(at.UnixNano()) / 1e9)
}
