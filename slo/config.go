package slo

import (
	"github.com/prometheus/common/model"
)

// Config is Meridian's SLO and readiness configuration file (strict YAML: unknown fields are
// errors with their line). It is read by `meridian query --slo.config`, `meridian slo status
// --config`, `meridian readiness --config` and `meridian dev`.
//
//	period: 30d                 # SLO period, default 30d
//	region_label: region        # the label that names a region, default "region"
//	slo_files: [slos/*.yaml]    # Sloth prometheus/v1 or OpenSLO v1 spec files, relative to this file
//	regions: [eu-west-1, ...]   # regions every SLO must have data from (absent = missing, partial)
//	readiness: {...}            # see ReadinessConfig
type Config struct {
	Period      model.Duration `yaml:"period,omitempty"`
	RegionLabel string         `yaml:"region_label,omitempty"`
	SLOFiles    []string       `yaml:"slo_files,omitempty"`
	// Regions are the regions expected in every SLO result; optional (regions seen in the data
	// are always expected).
	Regions   []string         `yaml:"regions,omitempty"`
	Readiness *ReadinessConfig `yaml:"readiness,omitempty"`
}

// ReadinessConfig describes the topology and the inputs of the failover readiness score
// (the arithmetic is in the design note READINESS.md). Every expression has a default that
// follows kube-state-metrics, cAdvisor and node-exporter names.
type ReadinessConfig struct {
	Topology string   `yaml:"topology"`          // "active-active" (default) or "active-passive"
	Regions  []string `yaml:"regions,omitempty"` // the regions to score; default: those the data shows
	Primary  string   `yaml:"primary,omitempty"` // active-passive: the primary
	Standbys []string `yaml:"standbys,omitempty"`

	UtilisationTarget float64            `yaml:"utilisation_target,omitempty"` // default 0.70
	MaxCapacity       map[string]float64 `yaml:"max_capacity,omitempty"`       // per region, cores: autoscaler ceiling

	UsageExpr    string `yaml:"usage_expr,omitempty"`
	CapacityExpr string `yaml:"capacity_expr,omitempty"`

	ReplicationLagExpr string         `yaml:"replication_lag_expr,omitempty"` // empty: replication not configured
	RPO                model.Duration `yaml:"rpo,omitempty"`

	VersionExpr string `yaml:"version_expr,omitempty"` // count by (region, deployment, version) (...)

	CriticalWorkloads []string `yaml:"critical_workloads,omitempty"`
	WorkloadExpr      string   `yaml:"workload_expr,omitempty"`

	UpExpr    string `yaml:"up_expr,omitempty"`
	DrillExpr string `yaml:"drill_expr,omitempty"`
}
