// Package labelindex versions a store's label index, so that a querier can keep the answers a
// store gave to LabelNames and LabelValues and use them again for as long as they hold.
//
// A store keeps a Tracker. Its version token changes whenever something its label answers
// depend on may have changed: a series was created in the head or removed from it, the head was
// truncated, blocks were added or removed (compaction, retention), out-of-order data widened the
// head's out-of-order range. Samples appended to existing series leave it alone, so under steady
// ingest the token stays put. The store checks for changes after every committed write, before
// every label answer it versions, and on a short timer for the TSDB's background work.
//
// The store sends the token with each label answer it versions (gRPC header HeaderKey), and it
// serves the LabelIndex Watch stream: the querier pings it, the store answers every ping with
// its token, and it pushes the new token as soon as it changes. A querier's Watcher reports the
// token only while the stream is healthy, so that an answer is used again only while its token is
// the store's current one and the store is answering.
package labelindex

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/prometheus/tsdb"
)

// HeaderKey is the gRPC response header that carries the version token a label answer was read
// at. A store sends it only with answers that stay right until the token changes.
const HeaderKey = "meridian-label-index-version"

// State is what a store's label answers depend on besides the request. Two equal states give
// the same answers to every label request whose range the head already reached (see
// Tracker.Token).
type State struct {
	HeadSeries        uint64
	HeadMinTime       int64
	HeadMinOOOTime    int64
	HeadMaxOOOTime    int64
	Blocks            int
	BlocksFingerprint uint64
}

// TSDBState reads the state of db: all atomic loads but the block list, which is copied under the
// DB's read lock.
func TSDBState(db *tsdb.DB) State {
	h := db.Head()
	st := State{
		HeadSeries:     h.NumSeries(),
		HeadMinTime:    h.MinTime(),
		HeadMinOOOTime: h.MinOOOTime(),
		HeadMaxOOOTime: h.MaxOOOTime(),
	}
	blocks := db.Blocks()
	st.Blocks = len(blocks)
	f := fnv.New64a()
	for _, b := range blocks {
		id := b.Meta().ULID
		_, _ = f.Write(id[:])
	}
	st.BlocksFingerprint = f.Sum64()
	return st
}

// Tracker keeps the version token of one store's label index. It is safe for concurrent use.
type Tracker struct {
	state func() (State, bool)
	epoch string

	mu       sync.Mutex
	known    bool
	last     State
	gen      uint64
	token    string
	changed  chan struct{} // closed and replaced whenever token changes
	settleAt time.Time     // when Run moves the token once more after a change; zero: no change pending

	stopOnce sync.Once
	stopped  chan struct{} // closed by Shutdown: Watch streams end
}

// NewTracker returns a tracker over state, which returns false while the store cannot answer
// (its TSDB is still opening): there is no token then. Each tracker has an epoch of its own, so
// that a restarted store never repeats a token of its previous life.
func NewTracker(state func() (State, bool)) *Tracker {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Tracker{state: state, epoch: hex.EncodeToString(b[:]), changed: make(chan struct{}), stopped: make(chan struct{})}
}

// Shutdown ends the Watch streams being served and refuses new ones, so that a graceful stop of
// the gRPC server does not wait for them: they last as long as the queriers that opened them.
func (t *Tracker) Shutdown() {
	t.stopOnce.Do(func() { close(t.stopped) })
}

// settleDelay is how long after a change Run moves the token once more. The TSDB updates what
// State reads a moment before the index it describes: a new series is counted before it is
// indexed, a removed one uncounted before its postings go. An answer read in between carries the
// new token but the old index; the second move retires it. The moment is a few instructions, far
// below this delay.
const settleDelay = 50 * time.Millisecond

// Check reads the store's state and moves to a new token if it differs from the last one read.
// It returns the current token, empty while the store cannot answer.
func (t *Tracker) Check() string { return t.check(false) }

// Force moves to a new token whatever the state, for a change known to be complete whether or not
// State already showed it: a committed write that created series.
func (t *Tracker) Force() string { return t.check(true) }

func (t *Tracker) check(force bool) string {
	st, ok := t.state()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case !ok && t.token == "":
		return ""
	case !ok:
		t.known = false
		t.setToken("")
	case force || !t.known || st != t.last:
		if !force {
			t.settleAt = time.Now().Add(settleDelay)
		}
		t.known, t.last = true, st
		t.gen++
		t.setToken(t.epoch + "." + strconv.FormatUint(t.gen, 10))
	}
	return t.token
}

// settle moves the token once more if a change seen by Check is settleDelay old.
func (t *Tracker) settle() {
	t.mu.Lock()
	due := !t.settleAt.IsZero() && !time.Now().Before(t.settleAt)
	if due {
		t.settleAt = time.Time{}
	}
	t.mu.Unlock()
	if due {
		t.Force()
	}
}

func (t *Tracker) setToken(tok string) {
	t.token = tok
	close(t.changed)
	t.changed = make(chan struct{})
}

// current returns the token and a channel closed when it changes.
func (t *Tracker) current() (string, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.token, t.changed
}

// Run checks the state every interval until ctx is done, for what changes without a write
// (compaction, head truncation, retention), and moves the token once more after each change
// (see settleDelay).
func (t *Tracker) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		t.Check()
		t.settle()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
