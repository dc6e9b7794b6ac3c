package storeapi

import (
	"context"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// FromQueryable adapts a sample-based storage.Queryable, such as a querier's fan-out, to a
// storage.ChunkQueryable: the samples of each series are encoded into chunks of at most 120
// samples, floats as XOR and histograms and float histograms in their own encodings, with a
// new chunk wherever the sample type changes. Warnings of the underlying querier pass through.
//
// It uses Prometheus's own encoder (storage.NewSeriesSetToChunkSet), the one its remote-read
// server uses. Select hints, including Func "series" for label-only requests, are passed on
// unchanged, and no samples are read for a series whose chunks are never iterated.
func FromQueryable(q storage.Queryable) storage.ChunkQueryable {
	return chunkQueryable{q: q}
}

type chunkQueryable struct {
	q storage.Queryable
}

func (c chunkQueryable) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	q, err := c.q.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return chunkQuerier{Querier: q}, nil
}

// chunkQuerier encodes the series of a storage.Querier into chunks; the label calls and Close
// are the querier's own.
type chunkQuerier struct {
	storage.Querier
}

func (c chunkQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.ChunkSeriesSet {
	return storage.NewSeriesSetToChunkSet(c.Querier.Select(ctx, sortSeries, hints, matchers...))
}
