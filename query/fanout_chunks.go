package query

import (
	"fmt"
	"sort"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/thanos-io/thanos/pkg/store/storepb"
)

// chunkSeries is a series received from a store: its labels and raw chunks, decoded lazily when
// the engine iterates it. Samples outside [mint, maxt] are hidden, as Prometheus's own TSDB
// querier does, so results do not depend on how a store cut its chunks.
type chunkSeries struct {
	lset       labels.Labels
	chunks     []storepb.AggrChunk
	mint, maxt int64
}

func newChunkSeries(lset labels.Labels, chunks []storepb.AggrChunk, mint, maxt int64) *chunkSeries {
	sort.SliceStable(chunks, func(i, j int) bool { return chunks[i].MinTime < chunks[j].MinTime })
	return &chunkSeries{lset: lset, chunks: chunks, mint: mint, maxt: maxt}
}

func (s *chunkSeries) Labels() labels.Labels { return s.lset }

func (s *chunkSeries) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	overlapping := false
	for i := 1; i < len(s.chunks); i++ {
		if s.chunks[i].MinTime <= s.chunks[i-1].MaxTime {
			overlapping = true
			break
		}
	}
	if !overlapping {
		return &chunksIterator{chunks: s.chunks, mint: s.mint, maxt: s.maxt}
	}
	// Overlapping chunks (a store split a series across blocks that overlap): merge them sample
	// by sample, dropping duplicate timestamps, the way Prometheus merges overlapping blocks.
	its := make([]chunkenc.Iterator, 0, len(s.chunks))
	for _, c := range s.chunks {
		ch, err := decodeChunk(c)
		if err != nil {
			return &chunksIterator{err: err}
		}
		its = append(its, ch.Iterator(nil))
	}
	return &boundedIterator{inner: storage.ChainSampleIteratorFromIterators(nil, its), mint: s.mint, maxt: s.maxt}
}

// decodeChunk turns a StoreAPI raw chunk into a chunkenc.Chunk aliasing its bytes.
func decodeChunk(c storepb.AggrChunk) (chunkenc.Chunk, error) {
	if c.Raw == nil {
		return nil, fmt.Errorf("chunk [%d, %d] has no raw data (downsampled data is not supported)", c.MinTime, c.MaxTime)
	}
	var enc chunkenc.Encoding
	switch c.Raw.Type {
	case storepb.Chunk_XOR:
		enc = chunkenc.EncXOR
	case storepb.Chunk_HISTOGRAM:
		enc = chunkenc.EncHistogram
	case storepb.Chunk_FLOAT_HISTOGRAM:
		enc = chunkenc.EncFloatHistogram
	default:
		return nil, fmt.Errorf("chunk [%d, %d]: unsupported encoding %s", c.MinTime, c.MaxTime, c.Raw.Type)
	}
	ch, err := chunkenc.FromData(enc, c.Raw.Data)
	if err != nil {
		return nil, fmt.Errorf("decode chunk [%d, %d]: %w", c.MinTime, c.MaxTime, err)
	}
	return ch, nil
}

// chunksIterator iterates non-overlapping chunks sorted by time, decoding each when reached,
// skipping whole chunks on Seek, and hiding samples outside [mint, maxt]. The bounds are checked
// only in the chunks that cross them (the first and last, usually): this iterator is the
// innermost loop of every PromQL evaluation over the fan-out, so it does the bounds itself
// rather than under a wrapper.
type chunksIterator struct {
	chunks     []storepb.AggrChunk
	mint, maxt int64
	next       int // index of the next chunk to decode
	cur        chunkenc.Iterator
	spare      chunkenc.Iterator // exhausted iterator kept for reuse
	vt         chunkenc.ValueType
	// The current chunk starts before mint, or ends after maxt.
	clipMin, clipMax bool
	err              error
}

// open decodes the next chunk that holds samples in [mint, maxt], if any.
func (it *chunksIterator) open() bool {
	for it.next < len(it.chunks) && it.chunks[it.next].MaxTime < it.mint {
		it.next++
	}
	if it.next >= len(it.chunks) || it.chunks[it.next].MinTime > it.maxt {
		it.next = len(it.chunks)
		return false
	}
	c := it.chunks[it.next]
	it.next++
	ch, err := decodeChunk(c)
	if err != nil {
		it.err = err
		return false
	}
	it.cur = ch.Iterator(it.spare)
	it.clipMin, it.clipMax = c.MinTime < it.mint, c.MaxTime > it.maxt
	return true
}

// bounded returns vt, or ValNone and ends the iteration when the sample is past maxt.
func (it *chunksIterator) bounded(vt chunkenc.ValueType) chunkenc.ValueType {
	if it.clipMax && it.cur.AtT() > it.maxt {
		it.next, it.spare, it.cur = len(it.chunks), it.cur, nil
		vt = chunkenc.ValNone
	}
	it.vt = vt
	return vt
}

func (it *chunksIterator) Next() chunkenc.ValueType {
	for it.err == nil {
		if it.cur == nil && !it.open() {
			break
		}
		vt := it.cur.Next()
		if vt != chunkenc.ValNone && it.clipMin && it.cur.AtT() < it.mint {
			vt = it.cur.Seek(it.mint)
		}
		if vt != chunkenc.ValNone {
			return it.bounded(vt)
		}
		if err := it.cur.Err(); err != nil {
			it.err = err
			break
		}
		it.spare, it.cur = it.cur, nil
	}
	it.vt = chunkenc.ValNone
	return it.vt
}

func (it *chunksIterator) Seek(t int64) chunkenc.ValueType {
	if it.err != nil {
		return chunkenc.ValNone
	}
	t = max(t, it.mint)
	if it.cur != nil && it.vt != chunkenc.ValNone && it.cur.AtT() >= t {
		return it.vt
	}
	for {
		if it.cur == nil {
			for it.next < len(it.chunks) && it.chunks[it.next].MaxTime < t {
				it.next++
			}
			if !it.open() {
				it.vt = chunkenc.ValNone
				return it.vt
			}
		}
		if vt := it.cur.Seek(t); vt != chunkenc.ValNone {
			return it.bounded(vt)
		}
		if err := it.cur.Err(); err != nil {
			it.err = err
			it.vt = chunkenc.ValNone
			return it.vt
		}
		it.spare, it.cur = it.cur, nil
	}
}

func (it *chunksIterator) At() (int64, float64) { return it.cur.At() }

func (it *chunksIterator) AtHistogram(h *histogram.Histogram) (int64, *histogram.Histogram) {
	return it.cur.AtHistogram(h)
}

func (it *chunksIterator) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return it.cur.AtFloatHistogram(fh)
}

func (it *chunksIterator) AtT() int64 { return it.cur.AtT() }

func (it *chunksIterator) Err() error { return it.err }

// boundedIterator hides samples outside [mint, maxt] for the iterators chunksIterator does not
// cover (overlapping chunks merged sample by sample).
type boundedIterator struct {
	inner      chunkenc.Iterator
	mint, maxt int64
	done       bool
}

func (it *boundedIterator) check(vt chunkenc.ValueType) chunkenc.ValueType {
	if vt == chunkenc.ValNone || it.inner.AtT() > it.maxt {
		it.done = true
		return chunkenc.ValNone
	}
	return vt
}

func (it *boundedIterator) Next() chunkenc.ValueType {
	if it.done {
		return chunkenc.ValNone
	}
	vt := it.inner.Next()
	if vt != chunkenc.ValNone && it.inner.AtT() < it.mint {
		vt = it.inner.Seek(it.mint)
	}
	return it.check(vt)
}

func (it *boundedIterator) Seek(t int64) chunkenc.ValueType {
	if it.done {
		return chunkenc.ValNone
	}
	return it.check(it.inner.Seek(max(t, it.mint)))
}

func (it *boundedIterator) At() (int64, float64) { return it.inner.At() }

func (it *boundedIterator) AtHistogram(h *histogram.Histogram) (int64, *histogram.Histogram) {
	return it.inner.AtHistogram(h)
}

func (it *boundedIterator) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return it.inner.AtFloatHistogram(fh)
}

func (it *boundedIterator) AtT() int64 { return it.inner.AtT() }

func (it *boundedIterator) Err() error { return it.inner.Err() }
