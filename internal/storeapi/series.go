package storeapi

import (
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/thanos-io/thanos/pkg/store/labelpb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
)

// ctxCheckInterval is how many series are read between two checks for cancellation.
const ctxCheckInterval = 128

// bufferedSeries is one series of a Series answer, held until the answer is sorted.
type bufferedSeries struct {
	lset   labels.Labels
	chunks []storepb.AggrChunk
}

// Series streams the series matching the request, sorted by their final label set (external
// labels added, replica labels removed), then the storage's warnings.
//
// Adding external labels or removing replica labels can change the order the storage returns
// series in, so the answer is gathered before it is sorted and sent: memory is bounded by the
// series of the request. Chunk bytes are not copied: they stay valid until the querier is
// closed, which happens after the last frame has been marshalled by Send.
func (s *Server) Series(r *storepb.SeriesRequest, srv storepb.Store_SeriesServer) (err error) {
	start := time.Now()
	defer func() { s.metrics.observe(methodSeries, start, err) }()
	ctx := s.callContext(srv.Context(), r.PartialResponseDisabled, r.PartialResponseStrategy)

	matchers, ok, err := s.storageMatchers(r.Matchers)
	if err != nil || !ok {
		return err
	}
	if len(matchers) == 0 {
		matchers = []*labels.Matcher{matchAll}
	}

	q, err := s.queryable.ChunkQuerier(r.MinTime, r.MaxTime)
	if err != nil {
		return s.storageError(ctx, methodSeries, "open querier", err)
	}
	defer s.closeQuerier(methodSeries, q)

	hints := &storage.SelectHints{
		Start:           r.MinTime,
		End:             r.MaxTime,
		Limit:           int(r.Limit),
		DisableTrimming: true,
	}
	if r.SkipChunks {
		hints.Func = "series"
	}
	set := q.Select(ctx, true, hints, matchers...)

	shard := r.ShardInfo.Matcher(&s.shardBuffers)
	defer shard.Close()

	var (
		ext    = s.externalLabelsWithout(r.WithoutReplicaLabels)
		b      = labels.NewBuilder(labels.EmptyLabels())
		out    []bufferedSeries
		sorted = true
		read   int
	)
	for set.Next() {
		if read++; read%ctxCheckInterval == 0 && ctx.Err() != nil {
			return s.storageError(ctx, methodSeries, "select series", ctx.Err())
		}
		series := set.At()
		lset := finalLabels(b, series.Labels(), ext, r.WithoutReplicaLabels)
		if !shard.MatchesLabels(lset) {
			continue
		}
		bs := bufferedSeries{lset: lset}
		if !r.SkipChunks {
			if bs.chunks, err = seriesChunks(series); err != nil {
				return s.storageError(ctx, methodSeries, fmt.Sprintf("read chunks of %s", lset), err)
			}
		}
		if n := len(out); n > 0 && sorted && labels.Compare(out[n-1].lset, lset) > 0 {
			sorted = false
		}
		out = append(out, bs)
		if r.Limit > 0 && int64(len(out)) >= r.Limit {
			break
		}
	}
	if err := set.Err(); err != nil {
		return s.storageError(ctx, methodSeries, "select series", err)
	}
	if !sorted {
		// Stable, so series that became equal by dropping replica labels keep the storage's order.
		slices.SortStableFunc(out, func(a, b bufferedSeries) int { return labels.Compare(a.lset, b.lset) })
	}

	var chunksSent int
	fs := &frameSender{srv: srv, batchSize: int(r.ResponseBatchSize), maxBytes: s.maxFrameBytes}
	for _, bs := range out {
		if err := s.sendSeries(fs, bs); err != nil {
			return sendError(ctx, err)
		}
		chunksSent += len(bs.chunks)
	}
	if err := fs.flush(); err != nil {
		return sendError(ctx, err)
	}
	s.metrics.seriesSent.Add(float64(len(out)))
	s.metrics.chunksSent.Add(float64(chunksSent))
	for _, w := range sortedWarnings(set.Warnings()) {
		if err := srv.Send(storepb.NewWarnSeriesResponse(w)); err != nil {
			return sendError(ctx, err)
		}
	}
	return nil
}

// sendSeries sends one series, split over consecutive frames with the same labels when its
// chunks exceed the frame limit.
func (s *Server) sendSeries(fs *frameSender, bs bufferedSeries) error {
	zl := labelpb.ZLabelsFromPromLabels(bs.lset)
	chks := bs.chunks
	for {
		n := len(chks)
		if s.maxFrameBytes > 0 {
			size := 0
			for i := range chks {
				size += chks[i].Size()
				if size >= s.maxFrameBytes {
					n = i + 1
					break
				}
			}
		}
		if err := fs.add(&storepb.Series{Labels: zl, Chunks: chks[:n:n]}, chks[:n]); err != nil {
			return err
		}
		chks = chks[n:]
		if len(chks) == 0 {
			return nil
		}
	}
}

// frameSender sends series one per message or, when the client asked for it with
// ResponseBatchSize (as Thanos's querier does), in batches of up to that many series and about
// maxBytes of chunks: far fewer messages, Recv calls and wake-ups for answers of many small
// series.
type frameSender struct {
	srv       storepb.Store_SeriesServer
	batchSize int
	maxBytes  int

	batch []*storepb.Series
	bytes int
}

func (f *frameSender) add(series *storepb.Series, chunks []storepb.AggrChunk) error {
	if f.batchSize <= 1 {
		return f.srv.Send(storepb.NewSeriesResponse(series))
	}
	f.batch = append(f.batch, series)
	for i := range chunks {
		if chunks[i].Raw != nil {
			f.bytes += len(chunks[i].Raw.Data)
		}
	}
	if len(f.batch) >= f.batchSize || (f.maxBytes > 0 && f.bytes >= f.maxBytes) {
		return f.flush()
	}
	return nil
}

// flush sends the pending batch, if any. Send marshals before it returns, so the slice is reused.
func (f *frameSender) flush() error {
	if len(f.batch) == 0 {
		return nil
	}
	err := f.srv.Send(storepb.NewBatchResponse(f.batch))
	clear(f.batch)
	f.batch, f.bytes = f.batch[:0], 0
	return err
}

// seriesChunks returns the chunks of a series in their storage encoding.
func seriesChunks(series storage.ChunkSeries) ([]storepb.AggrChunk, error) {
	var out []storepb.AggrChunk
	it := series.Iterator(nil)
	for it.Next() {
		meta := it.At()
		if meta.Chunk == nil {
			return nil, fmt.Errorf("chunk %d not populated", meta.Ref)
		}
		enc, err := chunkEncoding(meta.Chunk.Encoding())
		if err != nil {
			return nil, err
		}
		out = append(out, storepb.AggrChunk{
			MinTime: meta.MinTime,
			MaxTime: meta.MaxTime,
			Raw:     &storepb.Chunk{Type: enc, Data: meta.Chunk.Bytes()},
		})
	}
	return out, it.Err()
}

// chunkEncoding maps a TSDB chunk encoding to its StoreAPI counterpart.
func chunkEncoding(e chunkenc.Encoding) (storepb.Chunk_Encoding, error) {
	switch e {
	case chunkenc.EncXOR:
		return storepb.Chunk_XOR, nil
	case chunkenc.EncHistogram:
		return storepb.Chunk_HISTOGRAM, nil
	case chunkenc.EncFloatHistogram:
		return storepb.Chunk_FLOAT_HISTOGRAM, nil
	default:
		return 0, fmt.Errorf("chunk encoding %s has no StoreAPI counterpart", e)
	}
}

// sortedWarnings returns the annotations in a stable order.
func sortedWarnings(ws annotations.Annotations) []error {
	errs := ws.AsErrors()
	slices.SortFunc(errs, func(a, b error) int {
		switch {
		case a.Error() < b.Error():
			return -1
		case a.Error() > b.Error():
			return 1
		}
		return 0
	})
	return errs
}

// warningStrings returns the annotations as StoreAPI warnings, in a stable order.
func warningStrings(ws annotations.Annotations) []string {
	if len(ws) == 0 {
		return nil
	}
	out := make([]string, 0, len(ws))
	for _, w := range sortedWarnings(ws) {
		out = append(out, w.Error())
	}
	return out
}
