package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// benchRegions are the regions of the generated data sets, one ingest node each.
var benchRegions = []string{"eu-west-1", "us-east-1", "ap-southeast-1"}

// benchScrapeInterval is the spacing of generated samples.
const benchScrapeInterval = 15 * time.Second

// benchSeries is one generated series. It carries its labels twice: as sent to one Prometheus
// holding every region (region as a plain label) and as sent to its region's ingest node (no
// region label: the node adds it as its external label), so the same queries select the same
// series in both. Its values are a counter whose rate swings smoothly around rate.
type benchSeries struct {
	withRegion    []prompb.Label
	withoutRegion []prompb.Label
	region        int
	rate          float64 // mean increase per second
	phase         float64
}

// counterSwing is how far the rate of a generated counter moves from its mean (a fraction), and
// counterPeriod how long one swing takes: traffic that rises and falls like a day compressed.
const (
	counterSwing  = 0.3
	counterPeriod = 2 * time.Hour
)

// value is the counter sec seconds after the start of the data: the integral of
// rate*(1+swing*sin(w*t+phase)), plus an offset so that it does not start at zero. It only grows.
func (s *benchSeries) value(sec float64) float64 {
	w := 2 * math.Pi / counterPeriod.Seconds()
	return s.rate * (1000 + sec + counterSwing*(math.Cos(s.phase)-math.Cos(w*sec+s.phase))/w)
}

func newBenchSeries(region int, rate, phase float64, kv ...string) benchSeries {
	ls := labels.FromStrings(kv...)
	return benchSeries{
		withRegion:    prompb.FromLabels(labels.NewBuilder(ls).Set("region", benchRegions[region]).Labels(), nil),
		withoutRegion: prompb.FromLabels(ls, nil),
		region:        region,
		rate:          rate,
		phase:         phase,
	}
}

// requestShapes are the method/code mixes of http_requests_total, with their share of traffic.
var requestShapes = []struct {
	method, code string
	share        float64
}{
	{"GET", "200", 0.80}, {"GET", "404", 0.05}, {"GET", "500", 0.01}, {"POST", "200", 0.13}, {"POST", "500", 0.01},
}

// latencyBuckets are the classic histogram buckets of http_request_duration_seconds.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.Inf(1)}

// httpSeries generates what an HTTP API exports, for each of regions (indexes into
// benchRegions) times instances times handlers: http_requests_total{job,instance,code,handler,
// method} and the classic histogram http_request_duration_seconds{job,instance,handler,method}.
// Handlers differ in traffic (a long tail) and latency; the buckets of one histogram share their
// phase, so they stay cumulative (le-monotonic) at every step.
func httpSeries(regions []int, instances, handlers int) []benchSeries {
	var out []benchSeries
	for _, r := range regions {
		for i := range instances {
			instance := fmt.Sprintf("10.%d.%d.%d:8080", r, i/250, i%250)
			for h := range handlers {
				handler := fmt.Sprintf("/api/v1/h%02d", h)
				rps := 100 / float64(h+1) * (1 + 0.1*float64(i%3))
				phase := 0.7*float64(h) + 2*float64(r)
				for _, rs := range requestShapes {
					out = append(out, newBenchSeries(r, rps*rs.share, phase,
						labels.MetricName, "http_requests_total", "job", "api", "instance", instance,
						"handler", handler, "method", rs.method, "code", rs.code))
				}
				median := 0.02 * float64(1+h%5)
				for _, le := range latencyBuckets {
					out = append(out, newBenchSeries(r, rps*lognormalCDF(le, median, 0.8), phase,
						labels.MetricName, "http_request_duration_seconds_bucket", "job", "api", "instance", instance,
						"handler", handler, "method", "GET", "le", formatLe(le)))
				}
				for name, perRequest := range map[string]float64{"_sum": median * math.Exp(0.32), "_count": 1} {
					out = append(out, newBenchSeries(r, rps*perRequest, phase,
						labels.MetricName, "http_request_duration_seconds"+name, "job", "api", "instance", instance,
						"handler", handler, "method", "GET"))
				}
			}
		}
	}
	return out
}

func lognormalCDF(x, median, sigma float64) float64 {
	if math.IsInf(x, 1) {
		return 1
	}
	return 0.5 * math.Erfc(-(math.Log(x)-math.Log(median))/(sigma*math.Sqrt2))
}

func formatLe(le float64) string {
	if math.IsInf(le, 1) {
		return "+Inf"
	}
	return fmt.Sprint(le)
}

// podSeries generates perRegion kube_pod_container_status_restarts_total{namespace,pod,container}
// series in each region: a wide, flat metric of the kind that reaches 100k series in a cluster.
func podSeries(perRegion int) []benchSeries {
	var out []benchSeries
	for r := range benchRegions {
		for i := range perRegion {
			out = append(out, newBenchSeries(r, 0.001, float64(i%7),
				labels.MetricName, "kube_pod_container_status_restarts_total",
				"namespace", fmt.Sprintf("ns-%03d", i/200), "pod", fmt.Sprintf("pod-%06d", i/2),
				"container", []string{"app", "sidecar"}[i%2]))
		}
	}
	return out
}

// writeBatch is one remote-write request's worth: some series, each with the samples of steps
// [from, to), starting at start (ms).
type writeBatch struct {
	series   []*benchSeries
	start    int64
	from, to int
}

// encode builds the batch as a snappy Remote-Write 1.0 body, with or without the region label.
func (wb writeBatch) encode(withRegion bool) []byte {
	req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, len(wb.series))}
	step := benchScrapeInterval.Milliseconds()
	for _, s := range wb.series {
		ts := prompb.TimeSeries{Labels: s.withoutRegion, Samples: make([]prompb.Sample, 0, wb.to-wb.from)}
		if withRegion {
			ts.Labels = s.withRegion
		}
		for k := wb.from; k < wb.to; k++ {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: wb.start + int64(k)*step, Value: s.value(float64(k) * benchScrapeInterval.Seconds())})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	raw, err := req.Marshal()
	if err != nil {
		panic(fmt.Sprintf("marshal generated write request: %v", err)) // generated data always marshals
	}
	return snappy.Encode(nil, raw)
}

// planBatches splits series into shards (series i goes to shard i%shards, as Prometheus's remote
// write shards by series, so each series is always sent in time order by one sender) and each
// shard into batches of seriesPerBody series and stepsPerBody steps, in time order.
func planBatches(series []benchSeries, shards, seriesPerBody, stepsPerBody, steps int, start int64) [][]writeBatch {
	bySh := make([][]*benchSeries, shards)
	for i := range series {
		bySh[i%shards] = append(bySh[i%shards], &series[i])
	}
	out := make([][]writeBatch, shards)
	for sh, ss := range bySh {
		for from := 0; from < steps; from += stepsPerBody {
			to := min(from+stepsPerBody, steps)
			for lo := 0; lo < len(ss); lo += seriesPerBody {
				out[sh] = append(out[sh], writeBatch{series: ss[lo:min(lo+seriesPerBody, len(ss))], start: start, from: from, to: to})
			}
		}
	}
	return out
}

// writeClient posts remote-write bodies; it keeps a connection per sender.
var writeClient = &http.Client{
	Timeout:   2 * time.Minute,
	Transport: &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true},
}

// postWrite sends one snappy Remote-Write 1.0 body and fails on anything but 2xx.
func postWrite(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("remote write to %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := writeClient.Do(req)
	if err != nil {
		return fmt.Errorf("remote write to %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("remote write to %s: status %d: %s", url, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// runSenders runs one goroutine per shard, each calling send for its items in order, and returns
// the first error. A failing sender stops the others.
func runSenders[T any](ctx context.Context, shards [][]T, send func(ctx context.Context, item T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for _, items := range shards {
		wg.Go(func() {
			for _, it := range items {
				if err := send(ctx, it); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// loadTargets are where a sharded data set is written: one ingest node per region (without the
// region label) and, optionally, one Prometheus holding all regions (with it).
type loadTargets struct {
	ingestURLs    []string // by region index
	prometheusURL string   // empty: none
}

// load writes series (steps samples each from start) to targets, sendersPerRegion senders per
// region, in time order per series.
func (lt loadTargets) load(ctx context.Context, series []benchSeries, sendersPerRegion, seriesPerBody, stepsPerBody, steps int, start int64) error {
	var shards [][]writeBatch
	for r := range lt.ingestURLs {
		var mine []benchSeries
		for _, s := range series {
			if s.region == r {
				mine = append(mine, s)
			}
		}
		shards = append(shards, planBatches(mine, sendersPerRegion, seriesPerBody, stepsPerBody, steps, start)...)
	}
	return runSenders(ctx, shards, func(ctx context.Context, wb writeBatch) error {
		if err := postWrite(ctx, lt.ingestURLs[wb.series[0].region], wb.encode(false)); err != nil {
			return err
		}
		if lt.prometheusURL == "" {
			return nil
		}
		return postWrite(ctx, lt.prometheusURL, wb.encode(true))
	})
}

// churn writes one new series, bench_churn_total{series="<n>"} with one sample at the current
// time, to every region's node and to Prometheus, every interval until ctx is done, as pods
// coming and going make new series. It returns how many series it wrote per region and the
// first error.
func (lt loadTargets) churn(ctx context.Context, interval time.Duration) (int, error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		for region, url := range lt.ingestURLs {
			s := newBenchSeries(region, 1, 0, "__name__", "bench_churn_total", "series", strconv.Itoa(n))
			batch := writeBatch{series: []*benchSeries{&s}, start: time.Now().UnixMilli(), from: 0, to: 1}
			if err := postWrite(ctx, url, batch.encode(false)); err != nil {
				return n, err
			}
			if lt.prometheusURL == "" {
				continue
			}
			if err := postWrite(ctx, lt.prometheusURL, batch.encode(true)); err != nil {
				return n, err
			}
		}
		select {
		case <-ctx.Done():
			return n + 1, nil
		case <-tick.C:
		}
	}
}
