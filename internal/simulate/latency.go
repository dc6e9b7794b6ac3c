package simulate

import (
	"math"

	"github.com/prometheus/prometheus/model/histogram"
)

// Request latencies follow a log-normal distribution per handler. Histogram bucket counters are
// the request count times the distribution's CDF at the bucket bound, rounded down, so they are
// integers, cumulative, monotonic in time and consistent with the request counters.

const (
	latencySigma = 0.6
	// nativeSchema 3 gives buckets growing by 2^(1/8) (~9%), what Prometheus clients use by
	// default (bucket factor 1.1).
	nativeSchema = 3
	// nativeSpread is how many sigmas either side of the median the native buckets cover; the
	// lowest and highest bucket also take everything beyond.
	nativeSpread = 3.5
)

// classicBounds are client_golang's default buckets (prometheus.DefBuckets).
var classicBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// latency is a log-normal latency distribution.
type latency struct {
	mu, sigma float64
	// native bucket layout: indexes lo..hi of schema nativeSchema.
	lo, hi int32
}

func newLatency(medianSeconds float64) latency {
	l := latency{mu: math.Log(medianSeconds), sigma: latencySigma}
	perOctave := math.Exp2(nativeSchema)
	l.lo = int32(math.Floor(math.Log2(medianSeconds*math.Exp(-nativeSpread*l.sigma)) * perOctave))
	l.hi = int32(math.Ceil(math.Log2(medianSeconds*math.Exp(nativeSpread*l.sigma)) * perOctave))
	return l
}

// cdf returns the share of requests that take at most x seconds.
func (l latency) cdf(x float64) float64 {
	if x <= 0 {
		return 0
	}
	return 0.5 * math.Erfc(-(math.Log(x)-l.mu)/(l.sigma*math.Sqrt2))
}

// mean is the mean latency in seconds.
func (l latency) mean() float64 { return math.Exp(l.mu + l.sigma*l.sigma/2) }

// below returns how many of n requests took at most x seconds.
func (l latency) below(n, x float64) float64 { return math.Floor(n * l.cdf(x)) }

// native returns the native histogram of n requests, n being the unrounded request counter.
// Bucket i of the exponential schema covers (2^((i-1)/8), 2^(i/8)]; the lowest bucket also
// holds everything faster and the highest everything slower. Each bucket is its own counter,
// n times the bucket's probability rounded down, so every bucket is monotonic in time; the
// count is the sum of the buckets.
func (l latency) native(n float64) *histogram.Histogram {
	perOctave := math.Exp2(nativeSchema)
	length := int(l.hi - l.lo + 1)
	deltas := make([]int64, length)
	var prevCDF float64
	var prev, count int64
	for j := range length {
		cdf := 1.0
		if j < length-1 {
			cdf = l.cdf(math.Exp2(float64(l.lo+int32(j)) / perOctave))
		}
		c := int64(math.Floor(n * (cdf - prevCDF)))
		deltas[j] = c - prev
		prev, prevCDF = c, cdf
		count += c
	}
	return &histogram.Histogram{
		Schema:          nativeSchema,
		ZeroThreshold:   math.Ldexp(1, -128), // client_golang's default zero threshold
		Count:           uint64(count),
		Sum:             float64(count) * l.mean(),
		PositiveSpans:   []histogram.Span{{Offset: l.lo, Length: uint32(length)}},
		PositiveBuckets: deltas,
	}
}
