package simulate

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	_ "github.com/meridian-obs/meridian/internal/buildtag"
)

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// testStart is mid-afternoon UTC, so the default origin (start of the backfill's UTC day) is
// the same day's midnight.
var testStart = time.Date(2025, 6, 10, 15, 0, 0, 0, time.UTC)

func newTestSimulator(t *testing.T, opts ...Option) (*Simulator, *testClock) {
	t.Helper()
	clock := &testClock{now: testStart}
	s, err := New(append([]Option{WithClock(clock.Now)}, opts...)...)
	require.NoError(t, err)
	return s, clock
}

// point is one sample of a float or native histogram series.
type point struct {
	t int64
	v float64
	h *histogram.Histogram
}

// collect decodes requests into series keyed by their label string, samples in request order.
func collect(t *testing.T, reqs []*prompb.WriteRequest) map[string][]point {
	t.Helper()
	out := map[string][]point{}
	var b labels.ScratchBuilder
	for _, wr := range reqs {
		for _, ts := range wr.Timeseries {
			key := ts.ToLabels(&b, nil).String()
			for _, s := range ts.Samples {
				out[key] = append(out[key], point{t: s.Timestamp, v: s.Value})
			}
			for _, h := range ts.Histograms {
				out[key] = append(out[key], point{t: h.Timestamp, h: h.ToIntHistogram()})
			}
		}
	}
	return out
}

func generate(t *testing.T, s *Simulator, region string, from, to time.Time, step time.Duration) map[string][]point {
	t.Helper()
	reqs, err := s.WriteRequests(region, from, to, step)
	require.NoError(t, err)
	return collect(t, reqs)
}

func isCounter(key string) bool {
	name := metricName(key)
	return strings.HasSuffix(name, "_total") || strings.HasSuffix(name, "_bucket") ||
		strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count") || name == "http_request_duration_native_seconds"
}

func metricName(key string) string {
	return strings.SplitN(strings.TrimPrefix(key, `{__name__="`), `"`, 2)[0]
}

// requireMonotonic checks that every counter (and every bucket of every native histogram)
// never decreases and that timestamps strictly increase.
func requireMonotonic(t *testing.T, series map[string][]point) {
	t.Helper()
	counters := 0
	for key, pts := range series {
		if !isCounter(key) {
			continue
		}
		counters++
		for i := 1; i < len(pts); i++ {
			prev, cur := pts[i-1], pts[i]
			if cur.t <= prev.t {
				t.Fatalf("%s: timestamps out of order: %d after %d", key, cur.t, prev.t)
			}
			if cur.h == nil {
				if cur.v < prev.v {
					t.Fatalf("%s decreased at %d: %v -> %v", key, cur.t, prev.v, cur.v)
				}
				continue
			}
			require.NoError(t, cur.h.Validate(), key)
			require.Equal(t, cur.h.PositiveSpans, prev.h.PositiveSpans, key)
			if cur.h.Count < prev.h.Count {
				t.Fatalf("%s count decreased at %d: %v -> %v", key, cur.t, prev.h.Count, cur.h.Count)
			}
			pb, cb := absolute(prev.h.PositiveBuckets), absolute(cur.h.PositiveBuckets)
			for j := range cb {
				if cb[j] < pb[j] {
					t.Fatalf("%s bucket %d decreased at %d: %d -> %d", key, j, cur.t, pb[j], cb[j])
				}
			}
		}
	}
	require.Greater(t, counters, 100, "expected many counter series")
}

func absolute(deltas []int64) []int64 {
	out := make([]int64, len(deltas))
	var v int64
	for i, d := range deltas {
		v += d
		out[i] = v
	}
	return out
}

func merge(parts ...map[string][]point) map[string][]point {
	out := map[string][]point{}
	for _, p := range parts {
		for k, v := range p {
			out[k] = append(out[k], v...)
		}
	}
	return out
}

// increase returns the increase of the summed series selected by match between two times.
func increase(series map[string][]point, match func(key string) bool, from, to int64) float64 {
	var total float64
	for key, pts := range series {
		if !match(key) {
			continue
		}
		var a, b float64
		for _, p := range pts {
			if p.t == from {
				a = p.v
			}
			if p.t == to {
				b = p.v
			}
		}
		total += b - a
	}
	return total
}

func isRequests(key string) bool { return metricName(key) == "http_requests_total" }

func isServerError(key string) bool { return isRequests(key) && strings.Contains(key, `code="5`) }

// valuesAt returns the float value of every series of a region at one instant.
func valuesAt(t *testing.T, s *Simulator, region string, at time.Time) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for key, pts := range generate(t, s, region, at, at, time.Second) {
		require.Len(t, pts, 1)
		if pts[0].h == nil {
			out[key] = pts[0].v
		}
	}
	return out
}

func sumWhere(values map[string]float64, match func(key string) bool) float64 {
	var total float64
	for k, v := range values {
		if match(k) {
			total += v
		}
	}
	return total
}

func isCPUAllocatable(key string) bool {
	return metricName(key) == "kube_node_status_allocatable" && strings.Contains(key, `resource="cpu"`)
}

func isContainerCPU(key string) bool {
	return metricName(key) == "container_cpu_usage_seconds_total" && !strings.Contains(key, `container=""`)
}
