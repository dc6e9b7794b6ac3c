package simulate

import (
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// metricType is the type of a metric family, as told in exposition and remote-write metadata.
type metricType uint8

const (
	typeCounter metricType = iota
	typeGauge
	typeHistogram
)

// family is one metric name with its help text and type.
type family struct {
	name string
	help string
	typ  metricType
}

// Families, in exposition order.
const (
	famRequests = iota
	famDuration
	famDurationNative
	famCPU
	famAllocatable
	famReplicas
	famBuildInfo
	famLag
	famDrill
	famUp
)

var families = []family{
	famRequests:       {"http_requests_total", "Total number of HTTP requests by status code, handler and method.", typeCounter},
	famDuration:       {"http_request_duration_seconds", "Duration of HTTP requests in seconds.", typeHistogram},
	famDurationNative: {"http_request_duration_native_seconds", "Duration of HTTP requests in seconds (native histogram).", typeHistogram},
	famCPU:            {"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", typeCounter},
	famAllocatable:    {"kube_node_status_allocatable", "The allocatable for different resources of a node that are available for scheduling.", typeGauge},
	famReplicas:       {"kube_deployment_status_replicas_available", "The number of available replicas per deployment.", typeGauge},
	famBuildInfo:      {"app_build_info", "A metric with a constant '1' value labeled by deployment, version, revision and Go version.", typeGauge},
	famLag:            {"meridian_replication_lag_seconds", "Replication lag of the region's database replica, in seconds.", typeGauge},
	famDrill:          {"meridian_failover_drill_last_success_timestamp_seconds", "Unix time of the last successful failover drill of the region.", typeGauge},
	famUp:             {"up", "1 if the target is up.", typeGauge},
}

// part says which piece of a metric a float series is: a plain value or a classic histogram part.
type part uint8

const (
	partValue part = iota
	partBucket
	partSum
	partCount
)

// seriesDef is one series of a region with its labels, built once.
type seriesDef struct {
	fam    int
	part   part
	le     float64
	metric int           // series with the same metric id form one exposition metric (histogram parts)
	lbls   labels.Labels // every label, __name__ included
	pb     []prompb.Label
}

const (
	// clientErrorRatio is the share of requests answered with a 4xx code.
	clientErrorRatio = 0.015
	// cpuIdle and cpuBusy shape CPU usage as a share of the region's base capacity:
	// usage = capacity * (cpuIdle + cpuBusy * d * traffic), 0.3..0.6 with amplitude 0.5.
	cpuIdle = 0.15
	cpuBusy = 0.30
	// podOverhead is the pod cgroup's usage (container="") relative to its container.
	podOverhead     = 1.02
	nodeMemoryBytes = 64 << 30
)

// endpoint is one handler on one instance: its request counters by code and its histograms.
type endpoint struct {
	key     uint64
	rate    float64 // mean requests per second before controls
	lat     latency
	codes   [4]int // float indexes: 2xx, 4xx, 500, 503
	buckets int    // float index of the first bucket; +Inf, _sum and _count follow
	native  int
}

// pod is one application pod: its container's CPU counter and its pod cgroup's.
type pod struct {
	key         uint64
	alpha, beta float64 // CPU cores: idle part and request-driven part
	container   int
	cgroup      int
}

// gauge is a series whose value depends only on the controls and time at the sample.
type gauge struct {
	idx   int
	value func(c Controls, x float64) float64
}

// region is one simulated region: its profile, its series and its control history.
type region struct {
	// pushed is the newest timestamp (ms) a remote-write endpoint accepted from Push, 0 before.
	pushed    atomic.Int64
	profile   RegionProfile
	diurnal   diurnal
	timeline  *timeline
	floats    []seriesDef
	natives   []seriesDef
	endpoints []endpoint
	pods      []pod
	gauges    []gauge
	metrics   int
}

// regionBuilder accumulates a region's series.
type regionBuilder struct {
	r           *region
	regionLabel string
	region      string
}

func (b *regionBuilder) newMetric() int {
	b.r.metrics++
	return b.r.metrics - 1
}

func (b *regionBuilder) labels(name string, kv ...string) labels.Labels {
	all := append([]string{labels.MetricName, name}, kv...)
	if b.regionLabel != "" {
		all = append(all, b.regionLabel, b.region)
	}
	return labels.FromStrings(all...)
}

func (b *regionBuilder) add(fam int, p part, le float64, metric int, name string, kv ...string) int {
	l := b.labels(name, kv...)
	b.r.floats = append(b.r.floats, seriesDef{fam: fam, part: p, le: le, metric: metric, lbls: l, pb: prompb.FromLabels(l, nil)})
	return len(b.r.floats) - 1
}

func (b *regionBuilder) value(fam int, kv ...string) int {
	return b.add(fam, partValue, 0, b.newMetric(), families[fam].name, kv...)
}

func (b *regionBuilder) gauge(fam int, value func(c Controls, x float64) float64, kv ...string) {
	b.r.gauges = append(b.r.gauges, gauge{idx: b.value(fam, kv...), value: value})
}

func newRegion(p RegionProfile, seed uint64, origin time.Time, regionLabel string) *region {
	r := &region{
		profile:  p,
		diurnal:  newDiurnal(origin.Unix(), p.PeakHourUTC, p.DiurnalAmplitude),
		timeline: newTimeline(Controls{ErrorRatio: p.ErrorRatio, CapacityFactor: 1, TrafficFactor: 1, LagSeconds: p.LagSeconds}),
	}
	b := &regionBuilder{r: r, regionLabel: regionLabel, region: p.Name}
	rkey := mix(seed, hashString(p.Name))
	octet := 16 + int(rkey%200)
	capacity := float64(p.Nodes) * p.NodeCores

	nodes := make([]string, p.Nodes)
	for n := range nodes {
		nodes[n] = fmt.Sprintf("ip-10-%d-%d-%d.%s.compute.internal", octet, 1+n/200, 10+n%200, p.Name)
	}
	ksm := fmt.Sprintf("10.%d.250.10:8080", octet)
	ups := []string{"kube-state-metrics", ksm}

	for di, d := range deployments {
		dkey := mix(rkey, hashString(d.name))
		rs := nameSuffix(dkey, 10)
		skews := normalisedSkews(dkey, d.replicas)
		version := p.version(d)
		for rep := range d.replicas {
			pkey := mix(dkey, uint64(rep))
			podName := d.name + "-" + rs + "-" + nameSuffix(pkey, 5)
			instance := fmt.Sprintf("10.%d.%d.%d:8080", octet, 10+di, 10+rep)
			node := nodes[(di*d.replicas+rep)%len(nodes)]
			app := []string{"job", d.name, "instance", instance, "namespace", namespace, "pod", podName}
			ups = append(ups, d.name, instance)

			for _, h := range d.handlers {
				e := endpoint{
					key:  mix(pkey, hashString(h.method+" "+h.path)),
					rate: p.RequestRate * h.share / float64(d.replicas) * skews[rep],
					lat:  newLatency(h.median.Seconds() * p.LatencyFactor),
				}
				okCode, clientCode := "200", "404"
				if h.method != "GET" {
					okCode, clientCode = "201", "400"
				}
				route := append(app[:len(app):len(app)], "handler", h.path, "method", h.method)
				for i, code := range []string{okCode, clientCode, "500", "503"} {
					e.codes[i] = b.value(famRequests, append(route[:len(route):len(route)], "code", code)...)
				}
				m := b.newMetric()
				fam := families[famDuration].name
				for _, le := range append(classicBounds[:len(classicBounds):len(classicBounds)], math.Inf(1)) {
					idx := b.add(famDuration, partBucket, le, m, fam+"_bucket", append(route[:len(route):len(route)], "le", formatLe(le))...)
					if le == classicBounds[0] {
						e.buckets = idx
					}
				}
				b.add(famDuration, partSum, 0, m, fam+"_sum", route...)
				b.add(famDuration, partCount, 0, m, fam+"_count", route...)
				nl := b.labels(families[famDurationNative].name, route...)
				r.natives = append(r.natives, seriesDef{fam: famDurationNative, metric: b.newMetric(), lbls: nl, pb: prompb.FromLabels(nl, nil)})
				e.native = len(r.natives) - 1
				r.endpoints = append(r.endpoints, e)
			}

			share := d.cpuShare / float64(d.replicas) * skews[rep] * capacity
			cadvisor := []string{"job", "kubelet", "instance", node, "metrics_path", "/metrics/cadvisor", "namespace", namespace, "pod", podName}
			r.pods = append(r.pods, pod{
				key:       mix(pkey, hashString("cpu")),
				alpha:     share * cpuIdle,
				beta:      share * cpuBusy,
				container: b.value(famCPU, append(cadvisor[:len(cadvisor):len(cadvisor)], "container", d.name)...),
				cgroup:    b.value(famCPU, append(cadvisor[:len(cadvisor):len(cadvisor)], "container", "")...),
			})
			b.gauge(famBuildInfo, constant(1), append(app[:len(app):len(app)], "deployment", d.name, "version", version,
				"revision", revision(d.name, version), "goversion", goVersion)...)
		}
		replicas := float64(d.replicas)
		b.gauge(famReplicas, constant(replicas), "job", "kube-state-metrics", "instance", ksm, "namespace", namespace, "deployment", d.name)
	}

	for _, node := range nodes {
		ksmNode := []string{"job", "kube-state-metrics", "instance", ksm, "node", node}
		b.gauge(famAllocatable, func(c Controls, _ float64) float64 { return p.NodeCores * c.CapacityFactor },
			append(ksmNode[:len(ksmNode):len(ksmNode)], "resource", "cpu", "unit", "core")...)
		b.gauge(famAllocatable, func(c Controls, _ float64) float64 { return nodeMemoryBytes * c.CapacityFactor },
			append(ksmNode[:len(ksmNode):len(ksmNode)], "resource", "memory", "unit", "byte")...)
		ups = append(ups, "kubelet", node)
	}

	replication := fmt.Sprintf("10.%d.250.11:9187", octet)
	for _, db := range databases {
		key := mix(rkey, hashString("lag "+db))
		b.gauge(famLag, func(c Controls, x float64) float64 {
			return c.LagSeconds * (0.75 + 0.5*unit(mix(key, uint64(int64(math.Floor(x/noiseTick))))))
		}, "job", "replication-monitor", "instance", replication, "database", db)
	}
	ups = append(ups, "replication-monitor", replication)

	drillAt := float64(origin.Add(-p.DrillAge).Unix())
	drill := fmt.Sprintf("10.%d.250.12:9091", octet)
	b.gauge(famDrill, constant(drillAt), "job", "failover-drill", "instance", drill)
	ups = append(ups, "failover-drill", drill)

	for i := 0; i < len(ups); i += 2 {
		b.gauge(famUp, constant(1), "job", ups[i], "instance", ups[i+1])
	}
	return r
}

// eval computes every series of the region at x seconds after the origin, given the control
// history segs. floats and natives must have the lengths of r.floats and r.natives.
func (r *region) eval(segs []segment, x float64, floats []float64, natives []*histogram.Histogram) {
	for _, e := range r.endpoints {
		var n, exact float64
		for i, idx := range e.codes {
			v := counterAt(segs, r.diurnal, e.key, x, func(c Controls) (float64, float64) {
				return 0, e.rate * codeShares(c.ErrorRatio)[i] * c.TrafficFactor
			})
			floats[idx] = math.Floor(v)
			n += floats[idx]
			exact += v
		}
		for j, le := range classicBounds {
			floats[e.buckets+j] = e.lat.below(n, le)
		}
		k := e.buckets + len(classicBounds)
		floats[k] = n                  // +Inf
		floats[k+1] = n * e.lat.mean() // _sum
		floats[k+2] = n                // _count
		if natives != nil {
			natives[e.native] = e.lat.native(exact)
		}
	}
	for _, p := range r.pods {
		v := counterAt(segs, r.diurnal, p.key, x, func(c Controls) (float64, float64) {
			return p.alpha, p.beta * c.TrafficFactor
		})
		floats[p.container] = v
		floats[p.cgroup] = v * podOverhead
	}
	c := controlsAt(segs, x)
	for _, g := range r.gauges {
		floats[g.idx] = g.value(c, x)
	}
}

// codeShares splits requests into 2xx, 4xx, 500 and 503 for a 5xx ratio e.
func codeShares(e float64) [4]float64 {
	client := math.Min(clientErrorRatio, 1-e)
	return [4]float64{math.Max(0, 1-e-client), client, 0.7 * e, 0.3 * e}
}

func constant(v float64) func(Controls, float64) float64 {
	return func(Controls, float64) float64 { return v }
}

// normalisedSkews returns n per-replica load factors around 1 (±10%) that average exactly 1.
func normalisedSkews(key uint64, n int) []float64 {
	s := make([]float64, n)
	var sum float64
	for i := range s {
		s[i] = 0.9 + 0.2*unit(mix(key, uint64(i), 7))
		sum += s[i]
	}
	for i := range s {
		s[i] *= float64(n) / sum
	}
	return s
}

// nameSuffix returns n characters of the alphabet Kubernetes uses for generated name suffixes.
func nameSuffix(key uint64, n int) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	out := make([]byte, n)
	for i := range out {
		out[i] = alphabet[mix(key, uint64(i), 11)%uint64(len(alphabet))]
	}
	return string(out)
}

func revision(dep, version string) string {
	return fmt.Sprintf("%016x", mix(hashString(dep), hashString(version)))[:7]
}

func formatLe(le float64) string {
	if math.IsInf(le, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(le, 'g', -1, 64)
}
