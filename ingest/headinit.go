package ingest

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/tsdb"
)

// headInitGate serializes the appends that can give an empty head its time range, until it has
// one. It works around a race in the TSDB head of Prometheus v0.309
// (prometheus/prometheus#17941, fixed upstream by #17963 and #18629 in releases that Thanos
// v0.42's packages do not build with): the first append sets the head's minimum time and then
// its maximum time, and an appender made or initialized by a concurrent request in between sees
// a head that is initialized with a maximum time of math.MinInt64. Its lower bound,
// MaxTime - chunkRange/2, wraps around to a huge timestamp, and every sample of that request is
// refused as out of bounds: a fresh node answering a sender's first write with a 400 that the
// sender drops. It takes many concurrent first writes to hit (about one fresh head in 3000 with
// 16 concurrent writers on 2 cores), but a fresh region's Prometheus sends with many shards.
//
// Once the head has both bounds the gate costs one atomic load per call.
type headInitGate struct {
	initialized func() bool
	mu          sync.Mutex
	done        atomic.Bool
}

// newHeadInitGate gates the appends to head.
func newHeadInitGate(head *tsdb.Head) *headInitGate {
	g := &headInitGate{initialized: func() bool {
		return head.MinTime() != math.MaxInt64 && head.MaxTime() != math.MinInt64
	}}
	g.done.Store(g.initialized())
	return g
}

// enter reports whether the head may still be uninitialized, and then holds the gate until
// leave: the caller makes its appender or appends alone.
func (g *headInitGate) enter() bool {
	if g.done.Load() {
		return false
	}
	g.mu.Lock()
	return true
}

// leave opens the gate for good once the head has its time range, and releases it.
func (g *headInitGate) leave() {
	if g.initialized() {
		g.done.Store(true)
	}
	g.mu.Unlock()
}
