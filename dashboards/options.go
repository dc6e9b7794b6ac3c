package dashboards

import (
	"fmt"
	"strings"

	"github.com/meridian-obs/meridian/slo"
)

// Default names: the data source UID Meridian provisions, and the metric conventions of
// instrumented HTTP services (Prometheus client libraries, OpenTelemetry's Prometheus exporter).
const (
	DefaultDatasourceUID   = "meridian"
	DefaultDatasourceName  = "Meridian"
	DefaultFolder          = "Meridian"
	DefaultRequestsMetric  = "http_requests_total"
	DefaultDurationMetric  = "http_request_duration_seconds"
	DefaultStatusCodeLabel = "code"
)

// Options are what the generated dashboards depend on. Zero values take the defaults.
type Options struct {
	// RequestsMetric counts requests with a status code label; DurationMetric is a classic
	// histogram of their latency (its _bucket series are read).
	RequestsMetric  string
	DurationMetric  string
	StatusCodeLabel string
	// RegionLabel names a region; default "region" (the configuration's region_label).
	RegionLabel string
	// DatasourceUID is the current value of each dashboard's datasource variable.
	DatasourceUID string
	// Readiness holds the readiness expressions the readiness and region dashboards chart;
	// nil takes the defaults of slo (kube-state-metrics and cAdvisor names).
	Readiness *slo.ReadinessConfig
}

// OptionsFromConfig takes the region label and readiness expressions of a Meridian configuration.
func OptionsFromConfig(cfg *slo.Config) Options {
	var o Options
	if cfg != nil {
		o.RegionLabel = cfg.RegionLabel
		o.Readiness = cfg.Readiness
	}
	return o
}

// readinessExprs are the readiness inputs the dashboards chart, defaults filled in as slo does.
type readinessExprs struct {
	usage, capacity, lag, drill string
	utilisationTarget           float64
}

func (o *Options) applyDefaults() error {
	if o.RequestsMetric == "" {
		o.RequestsMetric = DefaultRequestsMetric
	}
	if o.DurationMetric == "" {
		o.DurationMetric = DefaultDurationMetric
	}
	if o.StatusCodeLabel == "" {
		o.StatusCodeLabel = DefaultStatusCodeLabel
	}
	if o.RegionLabel == "" {
		o.RegionLabel = slo.DefaultRegionLabel
	}
	if o.DatasourceUID == "" {
		o.DatasourceUID = DefaultDatasourceUID
	}
	for name, v := range map[string]string{"requests metric": o.RequestsMetric, "duration metric": o.DurationMetric, "status code label": o.StatusCodeLabel, "region label": o.RegionLabel} {
		if strings.ContainsAny(v, "{}\"'` ") {
			return fmt.Errorf("%s %q: not a metric or label name", name, v)
		}
	}
	return nil
}

func (o Options) readiness() readinessExprs {
	var c slo.ReadinessConfig
	if o.Readiness != nil {
		c = *o.Readiness
	}
	r := readinessExprs{usage: c.UsageExpr, capacity: c.CapacityExpr, lag: c.ReplicationLagExpr, drill: c.DrillExpr, utilisationTarget: c.UtilisationTarget}
	if r.usage == "" {
		r.usage = fmt.Sprintf(`sum by (%s) (rate(container_cpu_usage_seconds_total{container!=""}[5m]))`, o.RegionLabel)
	}
	if r.capacity == "" {
		r.capacity = fmt.Sprintf(`sum by (%s) (kube_node_status_allocatable{resource="cpu"})`, o.RegionLabel)
	}
	if r.drill == "" {
		r.drill = fmt.Sprintf(`max by (%s) (%s)`, o.RegionLabel, slo.DefaultDrillMetric)
	}
	if r.utilisationTarget == 0 {
		r.utilisationTarget = slo.DefaultUtilisationTarget
	}
	return r
}
