package query

import (
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// LocalStore is a TSDB of the querier's own process, such as the ruler's, read beside the
// store set. Its series carry its external labels (e.g. ruler="global"), so they never merge
// with a region's. It is not a store of the store set: it has no region, it is not probed, it
// is not listed in /api/v1/stores, and a region's missing-store accounting (warnings, partial
// response) never counts it; a failure to read it fails the query, as a local TSDB's would.
type LocalStore interface {
	storage.Queryable
	ExternalLabels() labels.Labels
	// TimeRange is the range of the samples held; min > max while there are none.
	TimeRange() (mint, maxt int64)
}

// withLocalStores reads the fan-out and the local stores as one storage: Prometheus's merge
// querier calls them all and merges their sorted series; the fan-out's warnings (missing
// regions) pass through unchanged.
type withLocalStores struct {
	fanout storage.Queryable
	local  []LocalStore
}

func (w withLocalStores) Querier(mint, maxt int64) (storage.Querier, error) {
	fq, err := w.fanout.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	qs := []storage.Querier{fq}
	for _, l := range w.local {
		lmin, lmax := l.TimeRange()
		if lmin > maxt || lmax < mint {
			continue
		}
		q, err := l.Querier(mint, maxt)
		if err != nil {
			for _, q := range qs {
				_ = q.Close()
			}
			return nil, err
		}
		qs = append(qs, q)
	}
	if len(qs) == 1 {
		return fq, nil
	}
	return storage.NewMergeQuerier(qs, nil, storage.ChainedSeriesMerge), nil
}
