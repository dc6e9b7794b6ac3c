package ingest

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// The gate lets one caller at a time through while the head is uninitialized, and everyone at
// once afterwards.
func TestHeadInitGateSerializesUntilTheHeadIsInitialized(t *testing.T) {
	var calls, inside, overlaps atomic.Int32
	g := &headInitGate{initialized: func() bool { return calls.Load() >= 3 }} // the third call initializes
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			held := g.enter()
			if inside.Add(1) > 1 {
				overlaps.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
			calls.Add(1)
			inside.Add(-1)
			if held {
				g.leave()
			}
		})
	}
	wg.Wait()
	require.Zero(t, overlaps.Load(), "calls overlapped while the head was uninitialized")
	require.True(t, g.done.Load(), "the gate stays shut after the head was initialized")

	// Open for good: enter holds nothing, so callers no longer wait for each other.
	g.mu.Lock()
	defer g.mu.Unlock()
	require.False(t, g.enter())
}

// A fresh node's writes pass the gate: while it is held, a first write waits, and once the head
// has its time range the gate is open for good. A node that reopens a TSDB with data starts open.
func TestFreshNodeWritesPassTheHeadInitGate(t *testing.T) {
	cfg := testConfig(t)
	n, stop := runNode(t, cfg, prometheus.NewRegistry())
	require.False(t, n.headInit.done.Load(), "a fresh head has no time range yet")

	n.headInit.mu.Lock()
	answered := make(chan int, 1)
	body := rw1(t, series{labels: lbls("__name__", "up", "job", "a"), samples: samplesAt(time.Now().UnixMilli(), 3, 1)})
	go func() {
		code, _ := post(t, n.Handler(), rw1ContentType, body)
		answered <- code
	}()
	select {
	case code := <-answered:
		t.Fatalf("a first write on a fresh head went past the held gate (status %d)", code)
	case <-time.After(200 * time.Millisecond):
	}
	n.headInit.mu.Unlock()
	require.Equal(t, http.StatusNoContent, <-answered)
	require.True(t, n.headInit.done.Load(), "the gate opens once the head has its time range")

	// Many first writes at once on fresh heads: none is refused.
	for range 20 {
		fresh, _ := runNode(t, testConfig(t), prometheus.NewRegistry())
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				b := rw1(t, series{labels: lbls("__name__", "up", "job", string(rune('a'+i))), samples: samplesAt(1_000_000, 3, 1)})
				code, msg := post(t, fresh.Handler(), rw1ContentType, b)
				if code != http.StatusNoContent {
					t.Errorf("first write %d: %d %s", i, code, msg)
				}
			})
		}
		wg.Wait()
	}

	stop()
	reopened, _ := runNode(t, cfg, prometheus.NewRegistry())
	require.True(t, reopened.headInit.done.Load(), "a head replayed from the WAL has its time range")
}
