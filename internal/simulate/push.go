package simulate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/prompb"
)

// DefaultStep is the spacing of pushed samples when Push is given no step: Prometheus's
// default scrape interval in most setups.
const DefaultStep = 15 * time.Second

// metrics are the simulator's own metrics.
type metrics struct {
	requests *prometheus.CounterVec
	samples  *prometheus.CounterVec
	newest   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_simulate_remote_write_requests_total",
			Help: "Remote-write requests sent by the simulator, by region and outcome (sent, retried, dropped).",
		}, []string{"region", "outcome"}),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_simulate_remote_write_samples_total",
			Help: "Samples and histograms the remote-write endpoint accepted from the simulator, by region.",
		}, []string{"region"}),
		newest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meridian_simulate_remote_write_newest_timestamp_seconds",
			Help: "Timestamp of the newest sample the remote-write endpoint accepted from the simulator, by region.",
		}, []string{"region"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.samples, m.newest} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register simulator metrics: %w", err)
		}
	}
	return m, nil
}

// Push sends a region's samples to a remote-write 1.0 endpoint (snappy-compressed protobuf)
// until ctx is cancelled: first the backfill (WithBackfill) in time order, then, every step
// (DefaultStep when 0), the samples since the last push. A request that fails with a network
// error, a 5xx or a 429 is retried with exponential backoff until it succeeds, so samples
// generated while the endpoint is down are delivered once it is back; a request rejected with
// another 4xx is logged and dropped. Push returns nil when ctx is cancelled and an error only
// for an unknown region, a bad URL or a bad step.
func (s *Simulator) Push(ctx context.Context, region, rawURL string, step time.Duration) error {
	if step == 0 {
		step = DefaultStep
	}
	if _, err := s.region(region); err != nil {
		return err
	}
	if step < time.Millisecond {
		return fmt.Errorf("region %q: step %v must be at least 1ms", region, step)
	}
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("region %q: remote-write URL %q must be an absolute http(s) URL", region, rawURL)
	}
	logger := s.cfg.logger.With("region", region, "url", rawURL)
	stepMs := step.Milliseconds()
	start := s.cfg.clock()
	next := start.Add(-s.cfg.backfill).UnixMilli() // first timestamp not yet sent
	logger.Info("simulator pushing", "backfill", s.cfg.backfill, "step", step)
	backfilled := false
	p := &pusher{s: s, region: region, url: rawURL}
	for {
		nowMs := s.cfg.clock().UnixMilli()
		err := s.eachWriteRequest(region, next, nowMs, step, func(wr *prompb.WriteRequest, lastMs int64) error {
			if err := p.send(ctx, wr); err != nil {
				return err
			}
			next = lastMs + 1
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if !backfilled {
			backfilled = true
			logger.Info("simulator backfill done", "took", s.cfg.clock().Sub(start))
		}
		wait := time.Duration((nowMs/stepMs+1)*stepMs-s.cfg.clock().UnixMilli()) * time.Millisecond
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(max(wait, time.Millisecond)):
		}
	}
}

// Pushed is the timestamp of the newest sample a remote-write endpoint accepted from Push for
// region (zero before any). Push sends in time order, so everything older was accepted too
// (but for requests refused with a 4xx, which are logged and dropped): `meridian dev` waits
// on it for the backfill, which the ingest node's head cannot tell once other writers (its
// own metrics, scraped) reach the present.
func (s *Simulator) Pushed(region string) time.Time {
	r, err := s.region(region)
	if err != nil || r.pushed.Load() == 0 {
		return time.Time{}
	}
	return time.UnixMilli(r.pushed.Load())
}

// pusher sends one region's requests and keeps its logs short: a receiver that rejects a
// whole backfill, or is down for minutes, is told once, not once per request.
type pusher struct {
	s       *Simulator
	region  string
	url     string
	dropped int // requests dropped since the last accepted one
}

// send delivers one request, retrying recoverable failures until ctx is done.
func (p *pusher) send(ctx context.Context, wr *prompb.WriteRequest) error {
	s, region := p.s, p.region
	data, err := wr.Marshal()
	if err != nil {
		return fmt.Errorf("region %q: encode write request: %w", region, err)
	}
	body := snappy.Encode(nil, data)
	backoff := s.cfg.minBackoff
	for attempt := 1; ; attempt++ {
		status, err := s.post(ctx, p.url, body)
		switch {
		case err == nil:
			samples, newest := requestStats(wr)
			s.metrics.requests.WithLabelValues(region, "sent").Inc()
			s.metrics.samples.WithLabelValues(region).Add(float64(samples))
			s.metrics.newest.WithLabelValues(region).Set(float64(newest) / 1000)
			if r, err := s.region(region); err == nil && newest > r.pushed.Load() {
				r.pushed.Store(newest) // one pusher per region: no lost update
			}
			if p.dropped > 0 || attempt > 1 {
				s.cfg.logger.Info("remote write accepted again", "region", region, "url", p.url, "dropped_before", p.dropped, "attempts", attempt)
			}
			p.dropped = 0
			return nil
		case status >= 400 && status < 500 && status != http.StatusTooManyRequests:
			s.metrics.requests.WithLabelValues(region, "dropped").Inc()
			if p.dropped == 0 {
				s.cfg.logger.Warn("remote write rejected, dropping requests until one is accepted", "region", region, "url", p.url, "err", err)
			}
			p.dropped++
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.metrics.requests.WithLabelValues(region, "retried").Inc()
		if attempt == 1 || attempt%10 == 0 {
			s.cfg.logger.Warn("remote write failed, retrying", "region", region, "url", p.url, "attempt", attempt, "backoff", backoff, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.cfg.maxBackoff)
	}
}

// post sends one encoded request. It returns the HTTP status and an error unless the status is 2xx.
func (s *Simulator) post(ctx context.Context, rawURL string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	req.Header.Set("User-Agent", "meridian-simulate/"+version.Version)
	resp, err := s.cfg.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, errors.New(resp.Status + ": " + strings.TrimSpace(string(msg)))
}

// requestStats counts a request's samples and histograms and finds its newest timestamp.
func requestStats(wr *prompb.WriteRequest) (n int, newest int64) {
	for _, ts := range wr.Timeseries {
		n += len(ts.Samples) + len(ts.Histograms)
		if k := len(ts.Samples); k > 0 {
			newest = max(newest, ts.Samples[k-1].Timestamp)
		}
		if k := len(ts.Histograms); k > 0 {
			newest = max(newest, ts.Histograms[k-1].Timestamp)
		}
	}
	return n, newest
}
