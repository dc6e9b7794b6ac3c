package labelindex

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/tsdb"
)

// HeaderKey is the gRPC response header that carries the version token a label answer was read
// at. A store sends it only with answers that stay right until a change that concerns them.
const HeaderKey = "meridian-label-index-version"

// State is what a store's label answers depend on besides its series and the request: what
// changes without a write creating series. Two equal states with no series created in between
// give the same answers to every label request whose range the head already reached.
type State struct {
	HeadMinTime       int64
	HeadMinOOOTime    int64
	HeadMaxOOOTime    int64
	Blocks            int
	BlocksFingerprint uint64
}

// TSDBState reads the state of db: all atomic loads but the block list, which is copied under the
// DB's read lock. Head series are removed only when the head is truncated, which moves its
// minimum time; series creation is reported by the writer (Tracker.SeriesCreated).
func TSDBState(db *tsdb.DB) State {
	h := db.Head()
	st := State{
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

// logSize is how many recent changes a tracker keeps for the Watch streams; a stream that falls
// further behind is told of a structural change instead, which retires everything it knew.
const logSize = 1024

// change is one numbered change; metrics is nil for a structural one.
type change struct {
	seq     uint64
	metrics []string
}

// Tracker numbers the changes of one store's label index. It is safe for concurrent use.
type Tracker struct {
	state func() (State, bool)
	epoch string

	mu         sync.Mutex
	ready      bool  // the store can answer: there is a token
	last       State // valid when ready
	seq        uint64
	structural uint64 // number of the last structural change
	log        []change
	changed    chan struct{} // closed and replaced on every change
	settleAt   time.Time     // when Run records one more structural change; zero: none pending

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

// settleDelay is how long after a structural change Run records one more. The TSDB updates what
// State reads a moment before the index it describes (the head's minimum time moves before the
// series it drops leave the postings), so an answer read in between carries the new number but
// the old index; the second change retires it. The moment is a few instructions, far below this
// delay.
const settleDelay = 50 * time.Millisecond

// Check reads the store's state and records a structural change if it differs from the last one
// read. It returns the current token, empty while the store cannot answer.
func (t *Tracker) Check() string { return t.check(false) }

// Force records a structural change whatever the state.
func (t *Tracker) Force() string { return t.check(true) }

func (t *Tracker) check(force bool) string {
	st, ok := t.state()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case !ok && !t.ready:
	case !ok:
		t.ready = false
		t.record(nil)
	case force || !t.ready || st != t.last:
		if !force {
			t.settleAt = time.Now().Add(settleDelay)
		}
		t.ready, t.last = true, st
		t.record(nil)
	}
	return t.tokenLocked()
}

// SeriesCreated records that a write created series of these metric names (empty for series
// without one). The writer calls it once the series are indexed, before it acknowledges the
// write, also when the write is rolled back (the series stay).
func (t *Tracker) SeriesCreated(metrics []string) {
	if len(metrics) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ready {
		t.record(slices.Clone(metrics))
	}
}

// record numbers a change, keeps it in the log and wakes the streams. Callers hold mu.
func (t *Tracker) record(metrics []string) {
	t.seq++
	if metrics == nil {
		t.structural = t.seq
	}
	if len(t.log) == logSize {
		t.log = append(t.log[:0], t.log[1:]...)
	}
	t.log = append(t.log, change{seq: t.seq, metrics: metrics})
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *Tracker) tokenLocked() string {
	if !t.ready {
		return ""
	}
	return formatToken(t.epoch, t.seq)
}

// settle records one more structural change if one seen by Check is settleDelay old.
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

// since returns what a stream that last reported change number cursor must report now: the
// token, the last structural change (the current number when changes the stream missed are no
// longer in the log) and the metrics of the series created since, by change; and a channel
// closed at the next change.
func (t *Tracker) since(cursor uint64) (token string, seq, structural uint64, created []change, next <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	structural = t.structural
	if cursor < t.seq && (len(t.log) == 0 || t.log[0].seq > cursor+1) {
		structural = t.seq
	}
	for _, c := range t.log {
		if c.seq > cursor && c.seq > structural && c.metrics != nil {
			created = append(created, c)
		}
	}
	return t.tokenLocked(), t.seq, structural, created, t.changed
}

// Run checks the state every interval until ctx is done, for what changes without a write
// (compaction, head truncation, retention), and records one more structural change after each
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

func formatToken(epoch string, seq uint64) string {
	return epoch + "." + strconv.FormatUint(seq, 10)
}

// parseToken splits a token into its epoch and change number.
func parseToken(token string) (epoch string, seq uint64, ok bool) {
	i := strings.LastIndexByte(token, '.')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(token[i+1:], 10, 64)
	return token[:i], seq, err == nil
}
