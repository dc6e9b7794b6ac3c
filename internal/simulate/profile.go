package simulate

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// RegionProfile describes the steady-state workload of one simulated region. The controls
// (SetErrorRatio, SetCapacityFactor, ...) act on top of it while the simulator runs.
type RegionProfile struct {
	// Name is the region name, e.g. "eu-west-1".
	Name string
	// RequestRate is the mean HTTP request rate of the whole region in requests per second,
	// summed over every instance and handler, before the traffic factor.
	RequestRate float64
	// PeakHourUTC is the hour of the day (UTC, fractional) at which traffic peaks.
	PeakHourUTC float64
	// DiurnalAmplitude is the relative swing of traffic around its mean over a day, in [0, 1):
	// 0.5 means traffic goes from half the mean at night to 1.5 times the mean at the peak.
	DiurnalAmplitude float64
	// ErrorRatio is the share of requests answered with a 5xx code, in [0, 1].
	ErrorRatio float64
	// LatencyFactor multiplies the median latency of every handler (1 = the reference latency).
	LatencyFactor float64
	// Nodes is the number of Kubernetes nodes; NodeCores their allocatable CPU cores each.
	Nodes     int
	NodeCores float64
	// Versions maps a deployment (checkout, payments, frontend) to the version it runs. A
	// deployment left out runs the current release.
	Versions map[string]string
	// LagSeconds is the typical replication lag of the region's databases.
	LagSeconds float64
	// DrillAge is how long before the simulator's origin (see WithOrigin) the last failover
	// drill succeeded.
	DrillAge time.Duration
}

// DefaultProfiles returns the three default regions: eu-west-1, us-east-1 and ap-southeast-1.
// Their traffic peaks at different hours and has different volumes; ap-southeast-1 runs the
// previous release of checkout, so version parity is not perfect out of the box.
func DefaultProfiles() []RegionProfile {
	return []RegionProfile{
		{
			Name: "eu-west-1", RequestRate: 120, PeakHourUTC: 13, DiurnalAmplitude: 0.5,
			ErrorRatio: 0.002, LatencyFactor: 1, Nodes: 6, NodeCores: 16,
			LagSeconds: 0.5, DrillAge: 12 * 24 * time.Hour,
		},
		{
			Name: "us-east-1", RequestRate: 180, PeakHourUTC: 18, DiurnalAmplitude: 0.45,
			ErrorRatio: 0.001, LatencyFactor: 1, Nodes: 8, NodeCores: 16,
			LagSeconds: 1.2, DrillAge: 20 * 24 * time.Hour,
		},
		{
			Name: "ap-southeast-1", RequestRate: 70, PeakHourUTC: 5, DiurnalAmplitude: 0.55,
			ErrorRatio: 0.004, LatencyFactor: 1.25, Nodes: 4, NodeCores: 16,
			Versions:   map[string]string{"checkout": previousCheckoutVersion},
			LagSeconds: 2, DrillAge: 41 * 24 * time.Hour,
		},
	}
}

// deployment is one simulated service: a Kubernetes deployment whose pods serve HTTP handlers.
type deployment struct {
	name     string
	version  string // current release
	replicas int
	cpuShare float64 // share of the region's CPU usage
	handlers []handler
}

// handler is one HTTP route of a deployment.
type handler struct {
	path   string
	method string
	share  float64       // share of the region's requests
	median time.Duration // median latency before the region's latency factor
}

const (
	namespace               = "shop"
	previousCheckoutVersion = "2.13.4"
	goVersion               = "go1.25.4"
)

// deployments is the shop every region runs. Shares add up to 1.
var deployments = []deployment{
	{name: "frontend", version: "3.2.1", replicas: 3, cpuShare: 0.35, handlers: []handler{
		{path: "/", method: "GET", share: 0.30, median: 40 * time.Millisecond},
		{path: "/product/:id", method: "GET", share: 0.35, median: 60 * time.Millisecond},
	}},
	{name: "checkout", version: "2.14.0", replicas: 3, cpuShare: 0.35, handlers: []handler{
		{path: "/api/cart", method: "GET", share: 0.15, median: 25 * time.Millisecond},
		{path: "/api/checkout", method: "POST", share: 0.12, median: 180 * time.Millisecond},
	}},
	{name: "payments", version: "1.9.3", replicas: 3, cpuShare: 0.30, handlers: []handler{
		{path: "/api/payments", method: "POST", share: 0.08, median: 250 * time.Millisecond},
	}},
}

// databases are the replicated databases whose lag each region reports.
var databases = []string{"orders", "users"}

func (p RegionProfile) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	check(p.Name != "", "empty region name")
	check(finite(p.RequestRate) && p.RequestRate >= 0, "request rate %v must be >= 0", p.RequestRate)
	check(finite(p.PeakHourUTC) && p.PeakHourUTC >= 0 && p.PeakHourUTC < 24, "peak hour %v must be in [0, 24)", p.PeakHourUTC)
	check(finite(p.DiurnalAmplitude) && p.DiurnalAmplitude >= 0 && p.DiurnalAmplitude < 1, "diurnal amplitude %v must be in [0, 1)", p.DiurnalAmplitude)
	check(validRatio(p.ErrorRatio), "error ratio %v must be in [0, 1]", p.ErrorRatio)
	check(finite(p.LatencyFactor) && p.LatencyFactor > 0, "latency factor %v must be > 0", p.LatencyFactor)
	check(p.Nodes > 0, "nodes %d must be > 0", p.Nodes)
	check(finite(p.NodeCores) && p.NodeCores > 0, "node cores %v must be > 0", p.NodeCores)
	check(validFactor(p.LagSeconds), "lag %v must be >= 0", p.LagSeconds)
	check(p.DrillAge >= 0, "drill age %v must be >= 0", p.DrillAge)
	for dep := range p.Versions {
		known := false
		for _, d := range deployments {
			known = known || d.name == dep
		}
		check(known, "version for unknown deployment %q", dep)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("region %q: %w", p.Name, err)
	}
	return nil
}

func (p RegionProfile) version(d deployment) string {
	if v, ok := p.Versions[d.name]; ok && v != "" {
		return v
	}
	return d.version
}

func validRatio(v float64) bool { return !math.IsNaN(v) && v >= 0 && v <= 1 }

func validFactor(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0 }
