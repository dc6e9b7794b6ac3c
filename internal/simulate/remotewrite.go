package simulate

import (
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
)

// WriteRequests returns a region's samples at every multiple of step (counted from the Unix
// epoch) in [from, to], as remote-write 1.0 requests of at most WithMaxSamplesPerRequest
// samples each, native histograms included. Nothing is generated before the origin.
//
// Requests are in time order: each holds every series over a few consecutive steps, so a
// receiver that only accepts recent samples (a TSDB head) takes a long backfill request by
// request. The first request also carries the metric metadata (type and help of every
// family), and each classic latency bucket that holds requests of its own carries an exemplar
// at the request's last step: a request's latency within the bucket and its trace_id, as an
// instrumented service attaches the latest traced request to the bucket it fell in. Label
// slices are shared between requests and must not be modified.
func (s *Simulator) WriteRequests(region string, from, to time.Time, step time.Duration) ([]*prompb.WriteRequest, error) {
	var out []*prompb.WriteRequest
	err := s.eachWriteRequest(region, from.UnixMilli(), to.UnixMilli(), step, func(wr *prompb.WriteRequest, _ int64) error {
		out = append(out, wr)
		return nil
	})
	return out, err
}

// eachWriteRequest generates the requests WriteRequests returns, one at a time, telling emit
// the timestamp of the last sample each request holds.
func (s *Simulator) eachWriteRequest(name string, fromMs, toMs int64, step time.Duration, emit func(wr *prompb.WriteRequest, lastMs int64) error) error {
	r, err := s.region(name)
	if err != nil {
		return err
	}
	stepMs := step.Milliseconds()
	if stepMs <= 0 {
		return fmt.Errorf("region %q: step %v must be at least 1ms", name, step)
	}
	fromMs = max(fromMs, s.origin.UnixMilli())
	first := ceilDiv(fromMs, stepMs) * stepMs
	if first > toMs {
		return nil
	}
	segs := r.timeline.snapshot()
	perChunk := max(1, s.cfg.maxSamples/(len(r.floats)+len(r.natives)))
	floats := make([]float64, len(r.floats))
	natives := make([]*histogram.Histogram, len(r.natives))
	metadata := familyMetadata()

	for start := first; start <= toMs; start += int64(perChunk) * stepMs {
		n := int(min(int64(perChunk), (toMs-start)/stepMs+1))
		samples := make([][]prompb.Sample, len(r.floats))
		hists := make([][]prompb.Histogram, len(r.natives))
		for k := range n {
			ts := start + int64(k)*stepMs
			r.eval(segs, s.secondsAtMillis(ts), floats, natives)
			for i, v := range floats {
				if k == 0 {
					samples[i] = make([]prompb.Sample, 0, n)
				}
				samples[i] = append(samples[i], prompb.Sample{Value: v, Timestamp: ts})
			}
			for i, h := range natives {
				if k == 0 {
					hists[i] = make([]prompb.Histogram, 0, n)
				}
				hists[i] = append(hists[i], prompb.FromIntHistogram(ts, h))
			}
		}
		last := start + int64(n-1)*stepMs

		cur := &prompb.WriteRequest{Metadata: metadata}
		metadata = nil
		count := 0
		add := func(ts prompb.TimeSeries) error {
			if count > 0 && count+n > s.cfg.maxSamples {
				if err := emit(cur, last); err != nil {
					return err
				}
				cur, count = &prompb.WriteRequest{}, 0
			}
			cur.Timeseries = append(cur.Timeseries, ts)
			count += n
			return nil
		}
		for i, def := range r.floats {
			ts := prompb.TimeSeries{Labels: def.pb, Samples: samples[i]}
			if def.part == partBucket {
				below := 0.0
				if i > 0 && r.floats[i-1].part == partBucket && r.floats[i-1].metric == def.metric {
					below = samples[i-1][n-1].Value
				}
				if samples[i][n-1].Value > below {
					ts.Exemplars = []prompb.Exemplar{bucketExemplar(name, def, last)}
				}
			}
			if err := add(ts); err != nil {
				return err
			}
		}
		for i, def := range r.natives {
			if err := add(prompb.TimeSeries{Labels: def.pb, Histograms: hists[i]}); err != nil {
				return err
			}
		}
		if err := emit(cur, last); err != nil {
			return err
		}
	}
	return nil
}

// bucketExemplar is the exemplar of a classic latency bucket at ts: a latency in the bucket's
// range and a trace id (32 hex digits, as OpenTelemetry's), both derived from the region, the
// series and ts, so that runs are repeatable.
func bucketExemplar(region string, def seriesDef, ts int64) prompb.Exemplar {
	h := mix(hashString(region), uint64(def.metric), math.Float64bits(def.le), uint64(ts))
	lower, upper := def.le/2, def.le
	for i, b := range classicBounds {
		if b == def.le && i > 0 {
			lower = classicBounds[i-1]
		}
	}
	if math.IsInf(def.le, 1) {
		lower, upper = classicBounds[len(classicBounds)-1], 2*classicBounds[len(classicBounds)-1]
	}
	frac := float64(h>>11) / (1 << 53)
	return prompb.Exemplar{
		Labels:    []prompb.Label{{Name: "trace_id", Value: fmt.Sprintf("%016x%016x", h, mix(h, uint64(ts)))}},
		Value:     lower + (upper-lower)*frac,
		Timestamp: ts,
	}
}

// familyMetadata returns remote-write metadata for every metric family.
func familyMetadata() []prompb.MetricMetadata {
	md := make([]prompb.MetricMetadata, 0, len(families))
	for _, f := range families {
		t := prompb.MetricMetadata_GAUGE
		switch f.typ {
		case typeCounter:
			t = prompb.MetricMetadata_COUNTER
		case typeHistogram:
			t = prompb.MetricMetadata_HISTOGRAM
		}
		md = append(md, prompb.MetricMetadata{Type: t, MetricFamilyName: f.name, Help: f.help})
	}
	return md
}

func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a > 0) == (b > 0) {
		q++
	}
	return q
}
