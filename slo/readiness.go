package slo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// Topologies of ReadinessConfig.Topology.
const (
	// TopologyActiveActive: every region serves; when R fails the others absorb its share.
	TopologyActiveActive = "active-active"
	// TopologyActivePassive: a primary serves and standbys wait; when the primary fails the
	// standbys take its whole load.
	TopologyActivePassive = "active-passive"
)

// Readiness defaults (READINESS.md).
const (
	DefaultUtilisationTarget = 0.70
	DefaultRPO               = model.Duration(5 * time.Minute)
	DefaultReadinessInterval = 30 * time.Second
	// DefaultDrillMetric is the metric a failover drill sets to the Unix time of its last success.
	DefaultDrillMetric = "meridian_failover_drill_last_success_timestamp_seconds"
)

// ReadinessState is the verdict for one failing region.
type ReadinessState string

// Readiness states: READY (score >= 80, no gate), DEGRADED (60 <= score < 80, no gate),
// NOT_READY (score < 60 or a gate fired), UNKNOWN (unknown components carry more than a third
// of the weight).
const (
	StateReady    ReadinessState = "READY"
	StateDegraded ReadinessState = "DEGRADED"
	StateNotReady ReadinessState = "NOT_READY"
	StateUnknown  ReadinessState = "UNKNOWN"
)

// Component names and weights (READINESS.md). The weights sum to 1.
const (
	ComponentCapacity     = "capacity"
	ComponentSLOHealth    = "slo_health"
	ComponentFreshness    = "freshness"
	ComponentParity       = "version_parity"
	ComponentReachability = "reachability"
	ComponentDrill        = "drill_recency"
)

var componentWeights = []struct {
	name   string
	weight float64
}{
	{ComponentCapacity, 0.30},
	{ComponentSLOHealth, 0.20},
	{ComponentFreshness, 0.20},
	{ComponentParity, 0.15},
	{ComponentReachability, 0.05},
	{ComponentDrill, 0.10},
}

// SLOHealthSource gives the SLO health of every region (the SLO engine implements it).
type SLOHealthSource interface {
	SLOHealth(ctx context.Context, now time.Time) (map[string]RegionSLOHealth, error)
}

// StoreHealth is the health of one store the querier reads from.
type StoreHealth struct {
	Region  string `json:"region"`
	Address string `json:"address"`
	Healthy bool   `json:"healthy"`
}

// StoreHealthSource lists the querier's stores with their health (the querier's store set is
// adapted to it). Every configured store must be listed, healthy or not.
type StoreHealthSource interface {
	Stores() []StoreHealth
}

// ErrUnknownRegion is returned when a what-if names a region the readiness model does not know.
var ErrUnknownRegion = errors.New("unknown region")

// ReadinessReport is one evaluation of every region.
type ReadinessReport struct {
	EvaluatedAt time.Time         `json:"evaluated_at"`
	Topology    string            `json:"topology"`
	Regions     []ReadinessResult `json:"regions"`
	Warnings    []string          `json:"warnings,omitempty"`
}

// ReadinessResult answers "if Region failed now, could the survivors take its load?".
type ReadinessResult struct {
	Region      string         `json:"region"`
	Survivors   []string       `json:"survivors"`
	State       ReadinessState `json:"state"`
	Ready       bool           `json:"ready"`
	Score       float64        `json:"score"` // weighted mean of the known components, 0-100
	KnownWeight float64        `json:"known_weight"`
	Components  []Component    `json:"components"`
	Gates       []Gate         `json:"gates"`
	Reason      string         `json:"reason"`
	Notes       []string       `json:"notes,omitempty"`
	Partial     bool           `json:"partial"`
	EvaluatedAt time.Time      `json:"evaluated_at"`
}

// Component is one weighted part of the readiness score.
type Component struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
	// Score is 0-100; nil when the component is unknown.
	Score  *float64     `json:"score"`
	State  string       `json:"state"` // "ok" or "unknown"
	Detail string       `json:"detail"`
	Inputs []InputValue `json:"inputs"`
}

// Component states.
const (
	ComponentOK      = "ok"
	ComponentUnknown = "unknown"
)

// InputValue is one number a component used, with the expression it came from.
type InputValue struct {
	Name   string   `json:"name"`
	Region string   `json:"region,omitempty"`
	Value  *float64 `json:"value"`          // nil when absent
	Text   string   `json:"text,omitempty"` // non-numeric detail, e.g. the versions compared
	Expr   string   `json:"expr,omitempty"`
	// Partial is true when the query that produced it returned warnings (a store did not answer).
	Partial bool `json:"partial,omitempty"`
}

// Gate is a hard condition that forces NOT_READY whatever the score.
type Gate struct {
	Name      string `json:"name"`
	Component string `json:"component"`
	Message   string `json:"message"`
}

// Gate names.
const (
	GateCapacity         = "utilisation_at_or_above_capacity"
	GatePageBurn         = "page_burn_in_survivor"
	GateReplicationLag   = "replication_lag_beyond_rpo"
	GateReplicationBroke = "replication_broken"
	GateWorkloadMissing  = "critical_workload_missing"
)

// readinessSpec is a ReadinessConfig with defaults filled in.
type readinessSpec struct {
	ReadinessConfig
	regionLabel string
	rpo         time.Duration
}

// Validate reports the first problem of a readiness configuration: an unknown topology, an
// active-passive topology without a primary or standbys, a target outside (0, 1), a negative
// ceiling, or an expression that does not parse.
func (c *ReadinessConfig) Validate() error {
	switch c.Topology {
	case "", TopologyActiveActive:
		if c.Primary != "" || len(c.Standbys) > 0 {
			return errors.New("readiness: primary and standbys only apply to topology active-passive")
		}
	case TopologyActivePassive:
		if c.Primary == "" {
			return errors.New("readiness: topology active-passive needs a primary")
		}
		if len(c.Standbys) == 0 {
			return errors.New("readiness: topology active-passive needs at least one standby")
		}
		if slices.Contains(c.Standbys, c.Primary) {
			return fmt.Errorf("readiness: primary %q is also listed as a standby", c.Primary)
		}
	default:
		return fmt.Errorf("readiness: topology %q: must be %q or %q", c.Topology, TopologyActiveActive, TopologyActivePassive)
	}
	if !(c.UtilisationTarget >= 0 && c.UtilisationTarget < 1) { // also rejects NaN
		return fmt.Errorf("readiness: utilisation_target %v: must be in (0, 1)", c.UtilisationTarget)
	}
	for r, v := range c.MaxCapacity {
		if !(v >= 0) || math.IsInf(v, 1) {
			return fmt.Errorf("readiness: max_capacity of region %q is %v: must be a finite number of cores >= 0", r, v)
		}
	}
	if c.RPO < 0 {
		return fmt.Errorf("readiness: rpo %v is negative", c.RPO)
	}
	for _, e := range []struct{ field, expr string }{
		{"usage_expr", c.UsageExpr}, {"capacity_expr", c.CapacityExpr},
		{"replication_lag_expr", c.ReplicationLagExpr}, {"version_expr", c.VersionExpr},
		{"workload_expr", c.WorkloadExpr}, {"up_expr", c.UpExpr}, {"drill_expr", c.DrillExpr},
	} {
		if e.expr == "" {
			continue
		}
		if _, err := parser.ParseExpr(e.expr); err != nil {
			return fmt.Errorf("readiness: %s: %w", e.field, err)
		}
	}
	return nil
}

// newReadinessSpec validates cfg and fills in the defaults of READINESS.md, written for the
// given region label.
func newReadinessSpec(cfg ReadinessConfig, regionLabel string) (readinessSpec, error) {
	if err := cfg.Validate(); err != nil {
		return readinessSpec{}, err
	}
	if regionLabel == "" {
		regionLabel = "region"
	}
	s := readinessSpec{ReadinessConfig: cfg, regionLabel: regionLabel}
	if s.Topology == "" {
		s.Topology = TopologyActiveActive
	}
	if s.UtilisationTarget == 0 {
		s.UtilisationTarget = DefaultUtilisationTarget
	}
	s.rpo = time.Duration(s.RPO)
	if s.rpo == 0 {
		s.rpo = time.Duration(DefaultRPO)
	}
	set := func(p *string, format string) {
		if *p == "" {
			*p = fmt.Sprintf(format, regionLabel)
		}
	}
	set(&s.UsageExpr, `sum by (%s) (rate(container_cpu_usage_seconds_total{container!=""}[5m]))`)
	set(&s.CapacityExpr, `sum by (%s) (kube_node_status_allocatable{resource="cpu"})`)
	// kube-state-metrics exposes a deployment's labels as label_*; the recommended Kubernetes
	// label app.kubernetes.io/version becomes label_app_kubernetes_io_version.
	set(&s.VersionExpr, `count by (%s, deployment, version) (label_replace(kube_deployment_labels{label_app_kubernetes_io_version!=""}, "version", "$1", "label_app_kubernetes_io_version", "(.*)"))`)
	set(&s.WorkloadExpr, `sum by (%s, deployment) (kube_deployment_status_replicas_available)`)
	if s.UpExpr == "" {
		s.UpExpr = "up"
	}
	set(&s.DrillExpr, `max by (%s) (`+DefaultDrillMetric+`)`)
	return s, nil
}

// survivors returns the regions that would take region's load if it failed, out of all.
// Active-passive: when the primary fails, the standbys; when a standby fails, every other
// region (the primary keeps serving, so the question is whether the remaining regions carry
// the load that is left, with one standby fewer).
func (s readinessSpec) survivors(region string, all []string) []string {
	if s.Topology == TopologyActivePassive && region == s.Primary {
		return slices.Clone(s.Standbys)
	}
	out := make([]string, 0, len(all))
	for _, r := range all {
		if r != region {
			out = append(out, r)
		}
	}
	return out
}
