package query

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/thanos-io/thanos/pkg/store/labelpb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
)

// streamBuffer is how many received responses a store's stream may hold ahead of the merge.
// It bounds the memory a query uses per store, whatever the size of the store's answer.
const streamBuffer = 8

// storeStream receives one store's Series stream in its own goroutine and hands the series to
// the merge through a small bounded channel. Once out is closed, err and warnings are final.
type storeStream struct {
	view storeView
	out  chan []*storepb.Series

	err       error // the store failed or timed out; nil when it answered in full
	cancelled bool  // the query itself was cancelled: not the store's fault
	warnings  []string
}

// waitBudget enforces StoreResponseTimeout over the time spent waiting for a store: it runs only
// while a call or Recv is in flight, so a store is not charged for the time the merge takes to
// consume what it already sent (e.g. while another, slow store holds the merge back).
type waitBudget struct {
	left    time.Duration
	cancel  context.CancelFunc
	timer   *time.Timer
	began   time.Time
	expired atomic.Bool
}

func (b *waitBudget) start() {
	if b.left == 0 {
		return // no timeout configured
	}
	b.began = time.Now()
	b.timer = time.AfterFunc(max(b.left, time.Nanosecond), func() {
		b.expired.Store(true)
		b.cancel()
	})
}

func (b *waitBudget) stop() {
	if b.timer == nil {
		return
	}
	b.timer.Stop()
	b.timer = nil
	b.left -= time.Since(b.began)
	if b.left <= 0 {
		b.left = -1 // spent: the next wait expires at once
	}
}

// streamSeries starts receiving v's answer to req.
func (f *Fanout) streamSeries(ctx context.Context, v storeView, req *storepb.SeriesRequest) *storeStream {
	st := &storeStream{view: v, out: make(chan []*storepb.Series, streamBuffer)}
	go f.receive(ctx, st, req)
	return st
}

func (f *Fanout) receive(ctx context.Context, st *storeStream, req *storepb.SeriesRequest) {
	defer close(st.out)
	addr := st.view.ref.addr
	if st.view.ref.dialErr != nil {
		st.err = st.view.ref.dialErr
		f.metrics.failures.WithLabelValues(addr, "series", "error").Inc()
		st.view.ref.noteCallFailure(st.err, false)
		return
	}
	start := time.Now()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	budget := &waitBudget{left: f.opts.StoreResponseTimeout, cancel: cancel}

	fail := func(err error) {
		switch {
		case ctx.Err() != nil:
			st.cancelled, st.err = true, ctx.Err()
			return
		case budget.expired.Load():
			st.err = errStoreTimeout{after: f.opts.StoreResponseTimeout}
			f.metrics.failures.WithLabelValues(addr, "series", "timeout").Inc()
			st.view.ref.noteCallFailure(err, true)
		default:
			st.view.ref.noteCallFailure(err, false)
			st.err = errors.New(grpcReason(err))
			f.metrics.failures.WithLabelValues(addr, "series", "error").Inc()
		}
		f.logger.Debug("store series call failed", "store", addr, "region", st.view.region, "err", st.err)
	}
	defer func() {
		f.metrics.duration.WithLabelValues(addr, "series").Observe(time.Since(start).Seconds())
	}()

	budget.start()
	stream, err := st.view.ref.store.Series(sctx, req)
	budget.stop()
	if err != nil {
		fail(err)
		return
	}
	for {
		budget.start()
		resp, err := stream.Recv()
		budget.stop()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			fail(err)
			return
		}
		var batch []*storepb.Series
		switch r := resp.Result.(type) {
		case *storepb.SeriesResponse_Series:
			batch = []*storepb.Series{r.Series}
		case *storepb.SeriesResponse_Batch:
			batch = r.Batch.Series
		case *storepb.SeriesResponse_Warning:
			st.warnings = append(st.warnings, r.Warning)
			continue
		default:
			continue // hints: nothing the querier uses
		}
		select {
		case st.out <- batch:
		case <-ctx.Done():
			fail(ctx.Err())
			return
		}
	}
}

// storeSeriesSet is one store's answer as a sorted storage.SeriesSet. Consecutive frames of the
// same series are joined into one series. Store failures are not reported here but by the
// fanoutSeriesSet, which applies the partial-response policy over all stores.
type storeSeriesSet struct {
	stream     *storeStream
	mint, maxt int64
	mergeFn    storage.VerticalSeriesMergeFunc
	// stripLabels are replica labels to remove client-side, for stores that do not support
	// WithoutReplicaLabels; their answer is then buffered and re-sorted.
	stripLabels []string
	// source is the store's one external label set, replica label included, when replicas are
	// deduplicated: stores announcing the same one hold parts of the same replica's data (an
	// ingest node and the Store Gateway over the blocks it shipped).
	source string

	batch     []*storepb.Series
	peeked    *storepb.Series
	cur       storage.Series
	exhausted bool

	sorted []storage.Series // strip mode: the whole re-sorted answer
	pos    int
}

func (s *storeSeriesSet) raw() *storepb.Series {
	if s.peeked != nil {
		r := s.peeked
		s.peeked = nil
		return r
	}
	for len(s.batch) == 0 {
		b, ok := <-s.stream.out
		if !ok {
			s.exhausted = true
			return nil
		}
		s.batch = b
	}
	r := s.batch[0]
	s.batch = s.batch[1:]
	return r
}

// nextJoined returns the next series with the chunks of all its consecutive frames.
func (s *storeSeriesSet) nextJoined() (labels.Labels, []storepb.AggrChunk, bool) {
	first := s.raw()
	if first == nil {
		return labels.EmptyLabels(), nil, false
	}
	lset := labelpb.ZLabelsToPromLabels(first.Labels)
	chunks := first.Chunks
	for {
		n := s.raw()
		if n == nil {
			break
		}
		if !labels.Equal(lset, labelpb.ZLabelsToPromLabels(n.Labels)) {
			s.peeked = n
			break
		}
		chunks = append(slices.Clip(chunks), n.Chunks...)
	}
	return lset, chunks, true
}

func (s *storeSeriesSet) Next() bool {
	if len(s.stripLabels) > 0 {
		return s.nextStripped()
	}
	lset, chunks, ok := s.nextJoined()
	if !ok {
		return false
	}
	s.cur = newChunkSeries(lset, chunks, s.mint, s.maxt)
	return true
}

// nextStripped reads the whole answer, removes the replica labels, sorts and merges series that
// became equal.
func (s *storeSeriesSet) nextStripped() bool {
	if s.sorted == nil {
		var all []storage.Series
		for {
			lset, chunks, ok := s.nextJoined()
			if !ok {
				break
			}
			b := labels.NewBuilder(lset)
			b.Del(s.stripLabels...)
			all = append(all, newChunkSeries(b.Labels(), chunks, s.mint, s.maxt))
		}
		slices.SortStableFunc(all, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
		s.sorted = make([]storage.Series, 0, len(all))
		for i := 0; i < len(all); {
			j := i + 1
			for j < len(all) && labels.Equal(all[i].Labels(), all[j].Labels()) {
				j++
			}
			if j-i == 1 {
				s.sorted = append(s.sorted, all[i])
			} else {
				s.sorted = append(s.sorted, s.mergeFn(all[i:j]...))
			}
			i = j
		}
	}
	if s.pos >= len(s.sorted) {
		return false
	}
	s.cur = s.sorted[s.pos]
	s.pos++
	return true
}

func (s *storeSeriesSet) At() storage.Series { return s.cur }

func (s *storeSeriesSet) Err() error { return nil }

func (s *storeSeriesSet) Warnings() annotations.Annotations { return nil }

// fanoutSeriesSet merges the stores' answers k-way and applies the partial-response policy:
// failed stores become warnings, or fail the whole call when partial response is off, and the
// call fails when every store failed. The merge is built on the first Next, so that Select
// returns at once and every selector's streams run concurrently.
type fanoutSeriesSet struct {
	ctx     context.Context
	f       *Fanout
	stores  []*storeSeriesSet
	partial bool
	limit   int
	mergeFn storage.VerticalSeriesMergeFunc

	cancel   context.CancelFunc // stops the streams once the outcome is settled
	merged   storage.SeriesSet
	err      error
	finished bool
	once     sync.Once
	ws       annotations.Annotations
}

func (fs *fanoutSeriesSet) Next() bool {
	if fs.err != nil || fs.finished {
		return false
	}
	if fs.merged == nil {
		fs.merged = storage.NewMergeSeriesSet(bySource(fs.stores), fs.limit, fs.mergeFn)
	}
	if fs.merged.Next() {
		if !fs.partial {
			// Fail as soon as a store is known to be missing rather than after the whole answer.
			for _, s := range fs.stores {
				if s.exhausted && s.stream.err != nil {
					fs.finish()
					return false
				}
			}
		}
		return true
	}
	fs.finish()
	return false
}

// bySource merges the answers of stores that hold the same replica's data sample by sample
// (each sample once, none dropped) before replicas are deduplicated: the penalty that keeps
// two replicas from interleaving would otherwise drop the samples at the seam where one
// store's part of a replica ends and the other's goes on.
func bySource(stores []*storeSeriesSet) []storage.SeriesSet {
	groups := map[string][]storage.SeriesSet{}
	var sets []storage.SeriesSet
	for _, s := range stores {
		if s.source == "" {
			sets = append(sets, s)
			continue
		}
		groups[s.source] = append(groups[s.source], s)
	}
	for _, s := range stores {
		g, ok := groups[s.source]
		switch {
		case !ok:
		case len(g) == 1:
			sets = append(sets, g[0])
		default:
			sets = append(sets, storage.NewMergeSeriesSet(g, 0, storage.ChainedSeriesMerge))
		}
		delete(groups, s.source)
	}
	return sets
}

// finish settles the outcome once the merge has ended or must stop, from the stores whose
// stream has ended: after a full merge that is all of them; after an early stop (series limit,
// a failure with partial response off) the others answered enough and are cancelled.
func (fs *fanoutSeriesSet) finish() {
	fs.once.Do(func() {
		fs.finished = true
		defer fs.cancel()
		var failed []error
		for _, s := range fs.stores {
			if !s.exhausted {
				continue
			}
			st := s.stream
			if st.cancelled {
				fs.err = st.err
				return
			}
			if st.err != nil {
				failed = append(failed, fs.f.storeError(st.view, st.err))
				continue
			}
			for _, w := range st.warnings {
				werr := fs.f.storeError(st.view, errors.New(w))
				if !fs.partial {
					fs.err = werr
					return
				}
				fs.ws.Add(werr)
			}
		}
		if err := fs.f.failurePolicy(len(fs.stores), failed, fs.partial); err != nil {
			fs.err = err
			return
		}
		for _, e := range failed {
			fs.ws.Add(e)
		}
		if err := fs.merged.Err(); err != nil {
			fs.err = err
		}
	})
}

func (fs *fanoutSeriesSet) At() storage.Series { return fs.merged.At() }

func (fs *fanoutSeriesSet) Err() error {
	if fs.err == nil && fs.ctx.Err() != nil {
		return fs.ctx.Err()
	}
	return fs.err
}

func (fs *fanoutSeriesSet) Warnings() annotations.Annotations {
	if fs.merged != nil && !fs.finished {
		// Iteration stopped early (series limit): the stores' outcomes still count.
		fs.finish()
	}
	if fs.merged != nil {
		fs.ws.Merge(fs.merged.Warnings())
	}
	return fs.ws
}
