package simulate

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// roundTrip encodes a request as Push does and decodes it as a receiver would.
func roundTrip(t *testing.T, wr *prompb.WriteRequest) *prompb.WriteRequest {
	t.Helper()
	raw, err := wr.Marshal()
	require.NoError(t, err)
	decoded, err := snappy.Decode(nil, snappy.Encode(nil, raw))
	require.NoError(t, err)
	var out prompb.WriteRequest
	require.NoError(t, out.Unmarshal(decoded))
	return &out
}

func TestWriteRequestsAreBoundedTimeOrderedAndComplete(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int
	}{
		{name: "prometheus default batch", max: 2000},
		{name: "several steps per request", max: 1000},
		{name: "fewer samples than series", max: 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestSimulator(t, WithMaxSamplesPerRequest(tc.max))
			from, to := testStart.Add(-10*time.Minute), testStart
			reqs, err := s.WriteRequests("eu-west-1", from, to, 15*time.Second)
			require.NoError(t, err)
			require.Greater(t, len(reqs), 1)

			seen := map[string]map[int64]bool{}
			var prevMin int64
			var b labels.ScratchBuilder
			for i, wr := range reqs {
				got := roundTrip(t, wr)
				want, err := wr.Marshal()
				require.NoError(t, err)
				again, err := got.Marshal()
				require.NoError(t, err)
				require.Equal(t, want, again, "request %d survives snappy+protobuf", i)
				n, minT := 0, int64(1<<62)
				for _, ts := range got.Timeseries {
					key := ts.ToLabels(&b, nil).String()
					if seen[key] == nil {
						seen[key] = map[int64]bool{}
					}
					for _, smp := range ts.Samples {
						require.False(t, seen[key][smp.Timestamp], "%s at %d sent twice", key, smp.Timestamp)
						seen[key][smp.Timestamp] = true
						minT = min(minT, smp.Timestamp)
					}
					for _, h := range ts.Histograms {
						require.False(t, seen[key][h.Timestamp], "%s at %d sent twice", key, h.Timestamp)
						seen[key][h.Timestamp] = true
						minT = min(minT, h.Timestamp)
					}
					n += len(ts.Samples) + len(ts.Histograms)
				}
				require.LessOrEqual(t, n, tc.max, "request %d", i)
				require.GreaterOrEqual(t, minT, prevMin, "request %d goes back in time", i)
				prevMin = minT
				if i == 0 {
					require.Len(t, got.Metadata, len(families))
				} else {
					require.Empty(t, got.Metadata)
				}
			}
			r := s.regions["eu-west-1"]
			require.Len(t, seen, len(r.floats)+len(r.natives))
			for key, ts := range seen {
				require.Len(t, ts, 41, "%s: every 15s step of 10 minutes, both ends included", key)
			}
		})
	}
}

func TestWriteRequestsCarryNativeHistogramsMatchingTheClassicOnes(t *testing.T) {
	s, _ := newTestSimulator(t)
	reqs, err := s.WriteRequests("us-east-1", testStart, testStart, time.Second)
	require.NoError(t, err)
	var b labels.ScratchBuilder
	classic := map[string]float64{} // labels without the name -> _count
	natives := map[string]*prompb.Histogram{}
	for _, wr := range reqs {
		for _, ts := range roundTrip(t, wr).Timeseries {
			l := ts.ToLabels(&b, nil)
			rest := l.DropMetricName().String()
			switch l.Get(labels.MetricName) {
			case "http_request_duration_seconds_count":
				classic[rest] = ts.Samples[0].Value
			case "http_request_duration_native_seconds":
				require.Len(t, ts.Histograms, 1)
				require.Empty(t, ts.Samples)
				natives[rest] = &ts.Histograms[0]
			}
		}
	}
	require.Len(t, natives, 15, "one per handler and instance")
	require.Len(t, classic, len(natives))
	for key, ph := range natives {
		require.False(t, ph.IsFloatHistogram(), key)
		h := ph.ToIntHistogram()
		require.NoError(t, h.Validate(), key)
		require.Equal(t, int32(nativeSchema), h.Schema)
		require.Greater(t, h.Count, uint64(1000), key)
		// The native count rounds each bucket down: it trails the classic count by less than
		// one per bucket.
		require.InDelta(t, classic[key], float64(h.Count), float64(len(h.PositiveBuckets)), key)
		require.InEpsilon(t, h.Sum/float64(h.Count), ratioOfSums(t, reqs, key), 1e-9, "same mean latency as the classic histogram")
	}
}

// ratioOfSums returns _sum/_count of the classic histogram with the given labels.
func ratioOfSums(t *testing.T, reqs []*prompb.WriteRequest, key string) float64 {
	t.Helper()
	var sum, count float64
	var b labels.ScratchBuilder
	for _, wr := range reqs {
		for _, ts := range wr.Timeseries {
			l := ts.ToLabels(&b, nil)
			if l.DropMetricName().String() != key {
				continue
			}
			switch l.Get(labels.MetricName) {
			case "http_request_duration_seconds_sum":
				sum = ts.Samples[0].Value
			case "http_request_duration_seconds_count":
				count = ts.Samples[0].Value
			}
		}
	}
	require.Positive(t, count)
	return sum / count
}

func TestClassicBucketsAreCumulativeAndEndWithTheCount(t *testing.T) {
	s, _ := newTestSimulator(t)
	series := generate(t, s, "ap-southeast-1", testStart, testStart, time.Second)
	buckets := map[string][]float64{}
	counts := map[string]float64{}
	for key, pts := range series {
		switch metricName(key) {
		case "http_request_duration_seconds_bucket":
			le := strings.SplitN(strings.SplitN(key, `le="`, 2)[1], `"`, 2)[0]
			base := strings.Replace(strings.Replace(key, `le="`+le+`", `, "", 1), "_bucket", "", 1)
			idx := len(classicBounds)
			for i, b := range classicBounds {
				if formatLe(b) == le {
					idx = i
				}
			}
			if buckets[base] == nil {
				buckets[base] = make([]float64, len(classicBounds)+1)
			}
			buckets[base][idx] = pts[0].v
		case "http_request_duration_seconds_count":
			counts[strings.Replace(key, "_count", "", 1)] = pts[0].v
		}
	}
	require.Len(t, buckets, 15)
	for base, bs := range buckets {
		for i := 1; i < len(bs); i++ {
			require.GreaterOrEqual(t, bs[i], bs[i-1], base)
		}
		require.Equal(t, counts[base], bs[len(bs)-1], "+Inf bucket equals the count: %s", base)
		require.Less(t, bs[0], bs[len(bs)-1], "latencies spread over several buckets: %s", base)
	}
}

func TestWriteRequestsRejectsBadArguments(t *testing.T) {
	s, _ := newTestSimulator(t)
	_, err := s.WriteRequests("mars-1", testStart, testStart, time.Second)
	require.ErrorIs(t, err, ErrUnknownRegion)
	_, err = s.WriteRequests("eu-west-1", testStart, testStart, 0)
	require.ErrorContains(t, err, "step")

	reqs, err := s.WriteRequests("eu-west-1", testStart, testStart.Add(-time.Minute), time.Second)
	require.NoError(t, err)
	require.Empty(t, reqs, "an empty range has no samples")

	series := generate(t, s, "eu-west-1", s.Origin().Add(-time.Hour), s.Origin().Add(time.Minute), time.Minute)
	for key, pts := range series {
		require.Equal(t, s.Origin().UnixMilli(), pts[0].t, "%s: nothing before the origin", key)
	}
}

func TestLatencyBucketsCarryExemplarsWithinTheirBucket(t *testing.T) {
	s, _ := newTestSimulator(t)
	reqs, err := s.WriteRequests("eu-west-1", testStart, testStart.Add(time.Minute), 15*time.Second)
	require.NoError(t, err)
	var b labels.ScratchBuilder
	traceID := regexp.MustCompile(`^[0-9a-f]{32}$`)
	withExemplars, traces := 0, map[string]bool{}
	for _, wr := range reqs {
		for _, ts := range roundTrip(t, wr).Timeseries {
			l := ts.ToLabels(&b, nil)
			if l.Get(labels.MetricName) != "http_request_duration_seconds_bucket" {
				require.Empty(t, ts.Exemplars, l.String())
				continue
			}
			if len(ts.Exemplars) == 0 {
				continue
			}
			withExemplars++
			require.Len(t, ts.Exemplars, 1)
			e := ts.Exemplars[0]
			require.Equal(t, ts.Samples[len(ts.Samples)-1].Timestamp, e.Timestamp, "at the request's last step")
			require.Len(t, e.Labels, 1)
			require.Equal(t, "trace_id", e.Labels[0].Name)
			require.Regexp(t, traceID, e.Labels[0].Value)
			traces[e.Labels[0].Value] = true
			le, err := strconv.ParseFloat(l.Get("le"), 64)
			require.NoError(t, err)
			require.LessOrEqual(t, e.Value, max(le, 20), "within its bucket: %s", l)
			require.Greater(t, e.Value, 0.0)
		}
	}
	require.Positive(t, withExemplars)
	require.Len(t, traces, withExemplars, "every exemplar its own trace")
}
