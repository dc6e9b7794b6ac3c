package query

import (
	"context"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/thanos-io/thanos/pkg/exemplars/exemplarspb"
	"github.com/thanos-io/thanos/pkg/store/labelpb"

	"github.com/meridian-obs/meridian/internal/storeapi"
)

// Exemplars asks every store that serves exemplars and may hold series of the selectors in
// [mint, maxt], and merges the answers: series keep their labels, the region included, so the
// same series in three regions are three series; with deduplication on, replicas of a series
// (equal once the replica labels are removed) are one series with their exemplars merged and
// duplicates removed, as Thanos Query deduplicates them. Series come sorted by labels, their
// exemplars by time. It is also the querier's storeapi.ExemplarSource when stacked.
//
// As Thanos's exemplars proxy does, each store gets only the selectors its label sets can
// match, and, unless it is a querier, without the matchers on its external labels (which a
// store answers from its labels anyway); a selector left without matchers is not sent.
func (f *Fanout) Exemplars(ctx context.Context, mint, maxt int64, selectors [][]*labels.Matcher) ([]exemplar.QueryResult, annotations.Annotations, error) {
	stores, err := f.apiStores(func(a storeAPIs) bool { return a.exemplars })
	if err != nil {
		return nil, nil, err
	}
	partial := PartialResponse(ctx, f.opts.PartialResponse)
	queries := map[*storeRef]string{}
	asked := stores[:0]
	for _, v := range stores {
		var sels [][]*labels.Matcher
		for _, sel := range selectors {
			// Not pruned by time: a store's announced range is as old as its last Info probe,
			// and Thanos Query does not prune exemplar calls by time either.
			if !v.matches(minTime, maxTime, sel) {
				continue
			}
			if v.apis.component != "query" {
				sel = slices.DeleteFunc(slices.Clone(sel), func(m *labels.Matcher) bool {
					return slices.ContainsFunc(v.labelSets, func(ls labels.Labels) bool { return ls.Has(m.Name) })
				})
			}
			if len(sel) > 0 {
				sels = append(sels, sel)
			}
		}
		if len(sels) == 0 {
			continue
		}
		queries[v.ref] = storeapi.SelectorsQuery(sels)
		asked = append(asked, v)
	}
	if len(asked) == 0 {
		return []exemplar.QueryResult{}, nil, nil
	}
	results := callStores(ctx, f, "exemplars", asked, func(ctx context.Context, v storeView) ([]exemplar.QueryResult, []string, error) {
		stream, err := v.ref.exemplars.Exemplars(ctx, &exemplarspb.ExemplarsRequest{
			Query: queries[v.ref], Start: mint, End: maxt, PartialResponseStrategy: partialStrategy(partial),
		})
		if err != nil {
			return nil, nil, err
		}
		return drainStream(stream.Recv, func(resp *exemplarspb.ExemplarsResponse) (exemplar.QueryResult, bool) {
			if d := resp.GetData(); d != nil && len(d.Exemplars) > 0 {
				return exemplarResult(d), true
			}
			return exemplar.QueryResult{}, false
		})
	})
	ws, err := settle(ctx, f, results, partial)
	if err != nil {
		return nil, nil, err
	}
	var drop []string
	if f.dedup(ctx) {
		drop = f.opts.ReplicaLabels
	}
	return mergeExemplars(results, drop), ws, nil
}

// exemplarResult copies an answer out of the gRPC message (whose label strings point into the
// receive buffer).
func exemplarResult(d *exemplarspb.ExemplarData) exemplar.QueryResult {
	qr := exemplar.QueryResult{SeriesLabels: clonedLabels(d.SeriesLabels.Labels), Exemplars: make([]exemplar.Exemplar, 0, len(d.Exemplars))}
	for _, e := range d.Exemplars {
		qr.Exemplars = append(qr.Exemplars, exemplar.Exemplar{Labels: clonedLabels(e.Labels.Labels), Value: e.Value, Ts: e.Ts, HasTs: true})
	}
	return qr
}

func clonedLabels(ls []labelpb.ZLabel) labels.Labels {
	b := labels.NewScratchBuilder(len(ls))
	for _, l := range ls {
		b.Add(strings.Clone(l.Name), strings.Clone(l.Value))
	}
	b.Sort()
	return b.Labels()
}

// mergeExemplars groups the stores' answers by series (without the labels in drop) and sorts
// and deduplicates each series' exemplars, as Thanos's dedupExemplarsResponse does.
func mergeExemplars(results []storeCall[exemplar.QueryResult], drop []string) []exemplar.QueryResult {
	bySeries := map[string]*exemplar.QueryResult{}
	b := labels.NewBuilder(labels.EmptyLabels())
	for _, r := range results {
		for _, qr := range r.data {
			if len(drop) > 0 {
				b.Reset(qr.SeriesLabels)
				b.Del(drop...)
				qr.SeriesLabels = b.Labels()
			}
			key := qr.SeriesLabels.String()
			if prev, ok := bySeries[key]; ok {
				prev.Exemplars = append(prev.Exemplars, qr.Exemplars...)
				continue
			}
			bySeries[key] = &qr
		}
	}
	out := make([]exemplar.QueryResult, 0, len(bySeries))
	for _, qr := range bySeries {
		slices.SortFunc(qr.Exemplars, compareExemplars)
		qr.Exemplars = slices.CompactFunc(qr.Exemplars, func(a, b exemplar.Exemplar) bool { return compareExemplars(a, b) == 0 })
		out = append(out, *qr)
	}
	slices.SortFunc(out, func(a, b exemplar.QueryResult) int { return labels.Compare(a.SeriesLabels, b.SeriesLabels) })
	return out
}

// compareExemplars orders by time, then labels, then value (Thanos's Exemplar.Compare).
func compareExemplars(a, b exemplar.Exemplar) int {
	switch {
	case a.Ts != b.Ts:
		if a.Ts < b.Ts {
			return -1
		}
		return 1
	}
	if c := labels.Compare(a.Labels, b.Labels); c != 0 {
		return c
	}
	switch {
	case a.Value < b.Value:
		return -1
	case a.Value > b.Value:
		return 1
	}
	return 0
}
