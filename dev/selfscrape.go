package dev

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/golang/snappy"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
)

// SelfScrapeJob is the job label of the ingest nodes' own series in their region's store.
const SelfScrapeJob = "meridian-ingest"

// addSelfScrape makes each region's store hold its ingest node's own metrics
// (meridian_ingest_*, meridian_storeapi_*), as the region's Prometheus does in production: it
// scrapes the node's /metrics with Prometheus's scrape manager every step and remote-writes
// the samples to the node. The querier's and the ruler's metrics are recorded by the ruler.
func (e *Env) addSelfScrape(g *run.Group) {
	for _, r := range e.regions {
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			if err := waitFor(ctx, r.node.Ready); err != nil {
				return nil
			}
			return e.selfScrape(ctx, r)
		}, func(error) { cancel() })
	}
}

func (e *Env) selfScrape(ctx context.Context, r *region) error {
	logger := e.logger.With("component", "self-scrape", "region", r.name)
	interval := model.Duration(e.cfg.Step)
	timeout := min(interval, model.Duration(10*time.Second))
	// Loaded from YAML, as Prometheus loads prometheus.yml, so that every default and check of
	// a scrape configuration applies.
	cfg, err := config.Load(fmt.Sprintf("global: {scrape_interval: %s, scrape_timeout: %s}\nscrape_configs: [{job_name: %s}]\n", interval, timeout, SelfScrapeJob), logger)
	if err != nil {
		return fmt.Errorf("region %s: self-scrape config: %w", r.name, err)
	}
	w := &remoteWriter{url: r.remoteWriteURL(), client: &http.Client{Timeout: 10 * time.Second}, logger: logger}
	m, err := scrape.NewManager(&scrape.Options{DiscoveryReloadInterval: model.Duration(100 * time.Millisecond)}, logger, nil, w, prometheus.NewRegistry())
	if err != nil {
		return fmt.Errorf("region %s: self-scrape: %w", r.name, err)
	}
	if err := m.ApplyConfig(cfg); err != nil {
		return fmt.Errorf("region %s: self-scrape config: %w", r.name, err)
	}
	targets := make(chan map[string][]*targetgroup.Group, 1)
	targets <- map[string][]*targetgroup.Group{SelfScrapeJob: {{
		Source:  r.name,
		Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(r.node.HTTPAddr())}},
	}}}
	done := make(chan error, 1)
	go func() { done <- m.Run(targets) }()
	<-ctx.Done()
	m.Stop()
	return <-done
}

// remoteWriter is a storage.Appendable that sends each committed scrape to a remote-write 1.0
// endpoint, as a Prometheus with remote_write delivers what it scraped. A failed request is
// logged and the scrape dropped: the next one comes a step later.
type remoteWriter struct {
	url    string
	client *http.Client
	logger *slog.Logger
}

func (w *remoteWriter) Appender(ctx context.Context) storage.Appender {
	return &remoteAppender{ctx: ctx, w: w}
}

type remoteAppender struct {
	ctx    context.Context
	w      *remoteWriter
	series []prompb.TimeSeries
}

func toLabels(l labels.Labels) []prompb.Label {
	out := make([]prompb.Label, 0, l.Len())
	l.Range(func(lb labels.Label) { out = append(out, prompb.Label{Name: lb.Name, Value: lb.Value}) })
	return out
}

func (a *remoteAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	a.series = append(a.series, prompb.TimeSeries{Labels: toLabels(l), Samples: []prompb.Sample{{Timestamp: t, Value: v}}})
	return ref, nil
}

func (a *remoteAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	hp := prompb.FromFloatHistogram(t, fh)
	if h != nil {
		hp = prompb.FromIntHistogram(t, h)
	}
	a.series = append(a.series, prompb.TimeSeries{Labels: toLabels(l), Histograms: []prompb.Histogram{hp}})
	return ref, nil
}

func (a *remoteAppender) SetOptions(*storage.AppendOptions) {}

func (a *remoteAppender) AppendExemplar(ref storage.SeriesRef, _ labels.Labels, _ exemplar.Exemplar) (storage.SeriesRef, error) {
	return ref, nil
}

func (a *remoteAppender) UpdateMetadata(ref storage.SeriesRef, _ labels.Labels, _ metadata.Metadata) (storage.SeriesRef, error) {
	return ref, nil
}

func (a *remoteAppender) AppendSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64) (storage.SeriesRef, error) {
	return ref, nil
}

func (a *remoteAppender) AppendHistogramSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, nil
}

func (a *remoteAppender) Rollback() error {
	a.series = nil
	return nil
}

func (a *remoteAppender) Commit() error {
	if len(a.series) == 0 {
		return nil
	}
	defer func() { a.series = nil }()
	body, err := (&prompb.WriteRequest{Timeseries: a.series}).Marshal()
	if err != nil {
		return fmt.Errorf("encode remote write: %w", err)
	}
	req, err := http.NewRequestWithContext(a.ctx, http.MethodPost, a.w.url, bytes.NewReader(snappy.Encode(nil, body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := a.w.client.Do(req)
	if err != nil {
		a.w.logger.Debug("remote write of the self-scrape failed", "err", err)
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		a.w.logger.Warn("remote write of the self-scrape refused", "status", resp.Status, "msg", string(bytes.TrimSpace(msg)))
	}
	return nil
}
