package ingest

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/meridian-obs/meridian/internal/storeapi"
)

// Bounds of the metadata store. Remote-write senders repeat what they know (Prometheus sends
// all its scrape metadata every minute over RW1, and the metadata of every series in every
// RW2 request), so what has not been repeated for metadataTTL belongs to metrics no longer
// sent, and is forgotten, as Prometheus forgets the metadata of a target that is gone.
const (
	metadataTTL        = time.Hour
	maxMetadataEntries = 100_000
)

// metadataStore keeps the metric metadata remote write sends, per metric family: every
// distinct (type, help, unit) seen for it, as Prometheus's /api/v1/metadata lists the
// distinct metadata of a family over its targets. It lives in memory only: after a restart
// senders fill it again within their metadata interval.
type metadataStore struct {
	now func() time.Time

	mu       sync.RWMutex
	families map[string]map[metadata.Metadata]*metaSeen
	entries  int
}

// metaSeen is when an entry was last received, in Unix nanoseconds.
type metaSeen struct{ last atomic.Int64 }

func newMetaSeen(t time.Time) *metaSeen {
	s := &metaSeen{}
	s.last.Store(t.UnixNano())
	return s
}

func newMetadataStore(now func() time.Time) *metadataStore {
	if now == nil {
		now = time.Now
	}
	return &metadataStore{now: now, families: map[string]map[metadata.Metadata]*metaSeen{}}
}

// add records m for family; it reports false when the store is full and m is new.
func (s *metadataStore) add(family string, m metadata.Metadata) bool {
	now := s.now()
	s.mu.RLock()
	seen, ok := s.families[family][m]
	s.mu.RUnlock()
	if ok {
		seen.last.Store(now.UnixNano())
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if seen, ok := s.families[family][m]; ok {
		seen.last.Store(now.UnixNano())
		return true
	}
	if s.entries >= maxMetadataEntries {
		s.expireLocked(now)
		if s.entries >= maxMetadataEntries {
			return false
		}
	}
	fam := s.families[family]
	if fam == nil {
		fam = map[metadata.Metadata]*metaSeen{}
		// The strings may point into a pooled request buffer.
		family = strings.Clone(family)
		s.families[family] = fam
	}
	m = metadata.Metadata{Type: model.MetricType(strings.Clone(string(m.Type))), Help: strings.Clone(m.Help), Unit: strings.Clone(m.Unit)}
	fam[m] = newMetaSeen(now)
	s.entries++
	return true
}

func (s *metadataStore) expireLocked(now time.Time) {
	for name, fam := range s.families {
		for m, seen := range fam {
			if now.UnixNano()-seen.last.Load() > int64(metadataTTL) {
				delete(fam, m)
				s.entries--
			}
		}
		if len(fam) == 0 {
			delete(s.families, name)
		}
	}
}

// MetricMetadata answers a metadata request (storeapi.MetadataSource) with what was seen within
// metadataTTL, with Prometheus's limit and limit_per_metric semantics, families in name order.
func (s *metadataStore) MetricMetadata(_ context.Context, req storeapi.MetadataRequest) (map[string][]metadata.Metadata, annotations.Annotations, error) {
	now := s.now()
	s.mu.Lock()
	s.expireLocked(now)
	names := slices.Sorted(maps.Keys(s.families))
	if req.Metric != "" {
		names = names[:0]
		if _, ok := s.families[req.Metric]; ok {
			names = append(names, req.Metric)
		}
	}
	out := map[string][]metadata.Metadata{}
	for _, name := range names {
		if req.Limit >= 0 && len(out) >= req.Limit {
			break
		}
		metas := slices.SortedFunc(maps.Keys(s.families[name]), compareMetadata)
		if req.LimitPerMetric > 0 && len(metas) > req.LimitPerMetric {
			metas = metas[:req.LimitPerMetric]
		}
		out[name] = metas
	}
	s.mu.Unlock()
	return out, nil, nil
}

func compareMetadata(a, b metadata.Metadata) int {
	if c := strings.Compare(string(a.Type), string(b.Type)); c != 0 {
		return c
	}
	if c := strings.Compare(a.Help, b.Help); c != 0 {
		return c
	}
	return strings.Compare(a.Unit, b.Unit)
}

// metricFamily is the family a series' metric name belongs to, the name Prometheus's
// /api/v1/metadata lists: a histogram's or summary's _bucket, _sum and _count series belong to
// the name without the suffix; other names are their own family (a counter's family keeps its
// _total, as in the text format Prometheus scrapes).
func metricFamily(name string, typ model.MetricType) string {
	var suffixes []string
	switch typ {
	case model.MetricTypeHistogram, model.MetricTypeGaugeHistogram:
		suffixes = []string{"_bucket", "_sum", "_count"}
	case model.MetricTypeSummary:
		suffixes = []string{"_sum", "_count"}
	}
	for _, s := range suffixes {
		if f, ok := strings.CutSuffix(name, s); ok && f != "" {
			return f
		}
	}
	return name
}
