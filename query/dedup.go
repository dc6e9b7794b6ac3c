package query

import (
	"math"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// initialPenalty is how far ahead of the first emitted sample the other replica is sought when
// no scrape interval has been observed yet. Timestamps are milliseconds and scrape intervals are
// several seconds, so 5s keeps a replica scraped a few seconds later from interleaving; Thanos
// uses the same value.
const initialPenalty = 5000

// DedupSeriesMerge merges series that are replicas of one another (equal label sets once the
// replica labels are removed, one series per replica of an HA group) into one series. It is a
// storage.VerticalSeriesMergeFunc, meant for storage.NewMergeSeriesSet.
//
// The merged series follows one replica and switches to another only across a gap in the one it
// follows, like Thanos's penalty deduplication: after each sample the other replicas are held
// back by a penalty of twice the last observed sample interval, so a replica whose timestamps are
// a few seconds off never interleaves with the followed one, while a replica missing samples for
// longer than that window is replaced by the next one that has them. More than two replicas are
// folded pairwise, ((r0, r1), r2)..., in the order given. A single series is returned unchanged.
func DedupSeriesMerge(series ...storage.Series) storage.Series {
	switch len(series) {
	case 0:
		return nil
	case 1:
		return series[0]
	}
	return &dedupSeries{lset: series[0].Labels(), replicas: series}
}

// dedupSeries is the merged series DedupSeriesMerge returns for two or more replicas.
type dedupSeries struct {
	lset     labels.Labels
	replicas []storage.Series
}

func (s *dedupSeries) Labels() labels.Labels { return s.lset }

// Iterator returns a penalty-deduplicating iterator over the replicas. An iterator returned by an
// earlier call (for this or another merged series) is reused with its replicas' iterators.
func (s *dedupSeries) Iterator(reuse chunkenc.Iterator) chunkenc.Iterator {
	d, ok := reuse.(*dedupIterator)
	if !ok {
		d = &dedupIterator{}
	}
	n := len(s.replicas)
	if cap(d.replicas) < n {
		grown := make([]chunkenc.Iterator, n)
		copy(grown, d.replicas)
		d.replicas = grown
	}
	d.replicas = d.replicas[:n]
	for i, r := range s.replicas {
		d.replicas[i] = r.Iterator(d.replicas[i])
	}
	if cap(d.pairs) < n-1 {
		d.pairs = make([]pairIterator, n-1)
	}
	d.pairs = d.pairs[:n-1]
	d.pairs[0].reset(d.replicas[0], d.replicas[1])
	for i := 1; i < n-1; i++ {
		d.pairs[i].reset(&d.pairs[i-1], d.replicas[i+1])
	}
	d.pairIterator = &d.pairs[n-2]
	return d
}

// dedupIterator is the root of the pairwise fold over a series' replicas. It keeps the fold's
// pieces so that Iterator can reuse them.
type dedupIterator struct {
	*pairIterator // the last pair, which sees every replica

	pairs    []pairIterator
	replicas []chunkenc.Iterator
}

// pairIterator deduplicates two replicas a and b, either of which may itself be a pairIterator.
type pairIterator struct {
	a, b       chunkenc.Iterator
	aVal, bVal chunkenc.ValueType // type of a's and b's current sample; ValNone once exhausted
	aT, bT     int64              // timestamp of a's and b's current sample

	started, done bool
	err           error

	cur    chunkenc.Iterator // the replica holding the current sample; nil before the first and after the last
	curVal chunkenc.ValueType
	useA   bool
	// switched is set when the current sample comes from another replica than the previous one,
	// so its counter reset hint, which relates to its own replica's previous sample, is unknown.
	switched bool
	lastT    int64 // timestamp of the current sample; math.MinInt64 before the first

	// penA and penB hold a replica back after the other one was chosen: it is next sought to
	// lastT+1+pen, so it cannot contribute a sample closer than pen to the chosen one.
	penA, penB int64
}

func (p *pairIterator) reset(a, b chunkenc.Iterator) {
	*p = pairIterator{a: a, b: b, useA: true, lastT: math.MinInt64}
}

// Next emits the earlier of the two replicas' next samples after the penalties are applied. The
// followed replica has no penalty, the other one twice the last interval, so the other one wins
// only when the followed one has no sample within that window (a gap) or is exhausted.
func (p *pairIterator) Next() chunkenc.ValueType {
	if p.done {
		return chunkenc.ValNone
	}
	if !p.started {
		p.started = true
		p.aVal, p.aT = first(p.a)
		p.bVal, p.bT = first(p.b)
	} else if p.useA {
		p.aVal, p.aT = p.advanceFollowed(p.a, p.aVal)
		p.bVal, p.bT = p.advanceOther(p.b, p.bVal, p.bT, p.penB)
	} else {
		p.aVal, p.aT = p.advanceOther(p.a, p.aVal, p.aT, p.penA)
		p.bVal, p.bT = p.advanceFollowed(p.b, p.bVal)
	}

	switch {
	case p.aVal == chunkenc.ValNone && p.bVal == chunkenc.ValNone:
		return p.finish()
	case p.aVal == chunkenc.ValNone:
		if p.err = p.a.Err(); p.err != nil {
			return p.finish()
		}
		p.choose(false, p.bT)
	case p.bVal == chunkenc.ValNone:
		if p.err = p.b.Err(); p.err != nil {
			return p.finish()
		}
		p.choose(true, p.aT)
	default:
		ta, tb := p.aT, p.bT
		if ta == tb {
			// Same timestamp: stay with the followed replica (a at the start).
			p.choose(p.useA, ta)
		} else {
			p.choose(ta < tb, min(ta, tb))
		}
	}
	return p.curVal
}

// first moves a replica to its first sample.
func first(it chunkenc.Iterator) (chunkenc.ValueType, int64) {
	vt := it.Next()
	if vt == chunkenc.ValNone {
		return vt, math.MinInt64
	}
	return vt, it.AtT()
}

// advanceFollowed moves the followed replica, which holds the current sample, to its next one.
// It steps with Next rather than Seek: iterators such as Prometheus's chained and TSDB ones keep a
// histogram's counter reset hint only across Next.
func (p *pairIterator) advanceFollowed(it chunkenc.Iterator, vt chunkenc.ValueType) (chunkenc.ValueType, int64) {
	if vt == chunkenc.ValNone {
		return vt, math.MinInt64
	}
	if vt = it.Next(); vt == chunkenc.ValNone {
		return vt, math.MinInt64
	}
	if t := it.AtT(); t > p.lastT {
		return vt, t
	}
	return p.advanceOther(it, vt, p.lastT, 0)
}

// advanceOther moves a replica that is not followed, at t, to its first sample past the penalty.
func (p *pairIterator) advanceOther(it chunkenc.Iterator, vt chunkenc.ValueType, t, pen int64) (chunkenc.ValueType, int64) {
	if vt == chunkenc.ValNone {
		return vt, math.MinInt64
	}
	target := seekTarget(p.lastT, pen)
	if t >= target {
		return vt, t // Seek would have no effect.
	}
	if vt = it.Seek(target); vt == chunkenc.ValNone {
		return vt, math.MinInt64
	}
	return vt, it.AtT()
}

// choose makes a's (useA) or b's sample at t the current one and penalises the other replica by
// twice the interval just observed.
func (p *pairIterator) choose(useA bool, t int64) {
	pen := int64(initialPenalty)
	if p.lastT != math.MinInt64 {
		pen = 2 * (t - p.lastT)
	}
	p.switched = p.lastT != math.MinInt64 && useA != p.useA
	p.useA = useA
	p.lastT = t
	if useA {
		p.cur, p.curVal = p.a, p.aVal
		p.penA, p.penB = 0, pen
		return
	}
	p.cur, p.curVal = p.b, p.bVal
	p.penA, p.penB = pen, 0
}

// finish ends the iteration: both replicas are exhausted or one of them failed.
func (p *pairIterator) finish() chunkenc.ValueType {
	if p.err == nil {
		p.err = p.a.Err()
	}
	if p.err == nil {
		p.err = p.b.Err()
	}
	p.done = true
	p.cur, p.curVal = nil, chunkenc.ValNone
	return chunkenc.ValNone
}

// seekTarget is lastT+1+pen, saturating instead of overflowing.
func seekTarget(lastT, pen int64) int64 {
	if lastT > math.MaxInt64-1-pen {
		return math.MaxInt64
	}
	return lastT + 1 + pen
}

// Seek advances with Next rather than seeking the replicas: which replica is followed depends on
// every gap before t, and stepping through them keeps Seek's answer identical to the sample Next
// would have reached. It never moves backwards.
func (p *pairIterator) Seek(t int64) chunkenc.ValueType {
	if p.cur != nil && p.lastT >= t {
		return p.curVal
	}
	for {
		vt := p.Next()
		if vt == chunkenc.ValNone || p.lastT >= t {
			return vt
		}
	}
}

// At returns the current float sample.
func (p *pairIterator) At() (int64, float64) {
	if p.cur == nil {
		return p.lastT, 0
	}
	return p.cur.At()
}

// AtHistogram returns the current histogram sample.
func (p *pairIterator) AtHistogram(h *histogram.Histogram) (int64, *histogram.Histogram) {
	if p.cur == nil {
		return p.lastT, nil
	}
	t, h := p.cur.AtHistogram(h)
	if p.switched && h.CounterResetHint != histogram.GaugeType {
		h.CounterResetHint = histogram.UnknownCounterReset
	}
	return t, h
}

// AtFloatHistogram returns the current sample as a float histogram.
func (p *pairIterator) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	if p.cur == nil {
		return p.lastT, nil
	}
	t, fh := p.cur.AtFloatHistogram(fh)
	if p.switched && fh.CounterResetHint != histogram.GaugeType {
		fh.CounterResetHint = histogram.UnknownCounterReset
	}
	return t, fh
}

// AtT returns the current sample's timestamp.
func (p *pairIterator) AtT() int64 { return p.lastT }

// Err returns the first error of either replica. Iteration stops at the first error.
func (p *pairIterator) Err() error {
	if p.err != nil {
		return p.err
	}
	if err := p.a.Err(); err != nil {
		return err
	}
	return p.b.Err()
}
