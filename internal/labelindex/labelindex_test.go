package labelindex

import (
	"context"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func openDB(t *testing.T) *tsdb.DB {
	t.Helper()
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func appendSample(t *testing.T, db *tsdb.DB, ls labels.Labels, ts int64) {
	t.Helper()
	app := db.Appender(context.Background())
	_, err := app.Append(0, ls, ts, 1)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
}

func TestTrackerNumbersChanges(t *testing.T) {
	db := openDB(t)
	open := false
	tr := NewTracker(func() (State, bool) {
		if !open {
			return State{}, false
		}
		return TSDBState(db), true
	})
	require.Empty(t, tr.Check(), "no token while the store cannot answer")
	tr.SeriesCreated([]string{"up"})
	require.Empty(t, tr.Check(), "nor after series it cannot serve yet")

	// The head's first sample sets its time range: a structural change.
	appendSample(t, db, labels.FromStrings("__name__", "first"), 500)
	open = true
	v1 := tr.Check()
	require.NotEmpty(t, v1)
	require.Equal(t, v1, tr.Check(), "nothing changed")

	a := labels.FromStrings("__name__", "up", "job", "a")
	appendSample(t, db, a, 1000)
	appendSample(t, db, a, 2000)
	require.Equal(t, v1, tr.Check(), "new series are reported by the writer, samples change nothing")
	tr.SeriesCreated([]string{"up"})
	v2 := tr.Check()
	require.NotEqual(t, v1, v2)

	// A block cut from the head (as compaction does) is a structural change.
	require.NoError(t, db.CompactHead(tsdb.NewRangeHead(db.Head(), 0, 2000)))
	v3 := tr.Check()
	require.NotEqual(t, v2, v3, "a new block moves the version")
	require.NotEqual(t, v3, tr.Force(), "Force moves it whatever the state")

	open = false
	require.Empty(t, tr.Check(), "the token goes when the store cannot answer")
	open = true
	require.NotEmpty(t, tr.Check())

	other := NewTracker(func() (State, bool) { return TSDBState(db), true })
	e1, _, _ := parseToken(tr.Check())
	e2, _, _ := parseToken(other.Check())
	require.NotEqual(t, e1, e2, "a restarted store never repeats a token")
}

func TestTrackerTellsStreamsWhatChanged(t *testing.T) {
	tr := NewTracker(func() (State, bool) { return State{}, true })
	tr.Check()
	_, start, _, _, _ := tr.since(math.MaxUint64)

	tr.SeriesCreated([]string{"a", "b"})
	tr.SeriesCreated([]string{"c"})
	_, seq, structural, created, _ := tr.since(start)
	require.Equal(t, start+2, seq)
	require.Less(t, structural, start+1)
	require.Equal(t, []change{{start + 1, []string{"a", "b"}}, {start + 2, []string{"c"}}}, created)

	tr.SeriesCreated([]string{"d"})
	tr.Force()
	tr.SeriesCreated([]string{"e"})
	_, seq, structural, created, _ = tr.since(start + 2)
	require.Equal(t, start+4, structural, "the structural change retires what came before it")
	require.Equal(t, []change{{seq, []string{"e"}}}, created)

	// A stream that fell behind the log is told of a structural change at the current number.
	for range logSize + 1 {
		tr.SeriesCreated([]string{"f"})
	}
	_, seq, structural, _, _ = tr.since(seq)
	require.Equal(t, seq, structural)
}

func TestTrackerMovesOnceMoreAfterAChangeSettles(t *testing.T) {
	var mu sync.Mutex
	st := State{HeadMinTime: 1}
	tr := NewTracker(func() (State, bool) {
		mu.Lock()
		defer mu.Unlock()
		return st, true
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		tr.Run(ctx, time.Millisecond)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	// The first state seen is a change too; wait until it has settled.
	first := tr.Check()
	require.Eventually(t, func() bool { return tr.Check() != first }, time.Second, time.Millisecond)
	settled := tr.Check()
	time.Sleep(3 * settleDelay)
	require.Equal(t, settled, tr.Check(), "no change, no move")

	mu.Lock()
	st.HeadMinTime = 2
	mu.Unlock()
	changed := tr.Check()
	require.NotEqual(t, settled, changed)
	require.Eventually(t, func() bool { return tr.Check() != changed }, time.Second, time.Millisecond,
		"an answer read while the index caught up with the state would have kept the changed version")
	again := tr.Check()
	time.Sleep(3 * settleDelay)
	require.Equal(t, again, tr.Check(), "one more move, not a stream of them")
}

// serve runs srv's LabelIndex service (or none) on loopback and returns a connection to it.
func serve(t *testing.T, register func(*grpc.Server)) (*grpc.Server, *grpc.ClientConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := grpc.NewServer()
	register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return g, conn
}

func runWatcher(t *testing.T, conn *grpc.ClientConn, opts WatcherOptions) *Watcher {
	t.Helper()
	w := NewWatcher(conn, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

func TestWatcherFollowsTheStore(t *testing.T) {
	tr := NewTracker(func() (State, bool) { return State{}, true })
	v1 := tr.Check()
	g, conn := serve(t, tr.Register)
	// One ping at the start of the stream, none after: what arrives later is pushed.
	w := runWatcher(t, conn, WatcherOptions{PingInterval: time.Hour, MaxSilence: 500 * time.Millisecond})
	require.Eventually(t, func() bool { return w.Current() == v1 }, 5*time.Second, 5*time.Millisecond)
	require.True(t, w.Valid(v1, "", false))
	require.True(t, w.Valid(v1, "up", true))
	require.False(t, w.Valid("someone-else."+v1[len(v1)-1:], "up", true), "another epoch")
	require.False(t, w.Valid("garbage", "up", true))

	// New series of another metric: answers for "up" hold, the others do not.
	tr.SeriesCreated([]string{"other"})
	v2 := tr.Check()
	require.Eventually(t, func() bool { return w.Current() == v2 }, time.Second, time.Millisecond)
	require.True(t, w.Valid(v1, "up", true))
	require.False(t, w.Valid(v1, "", false))
	require.False(t, w.Valid(v1, "other", true))
	require.True(t, w.Valid(v2, "", false))

	// New series of "up": answers read before them no longer hold, those read after do.
	tr.SeriesCreated([]string{"up"})
	v3 := tr.Check()
	require.Eventually(t, func() bool { return w.Current() == v3 }, time.Second, time.Millisecond)
	require.False(t, w.Valid(v1, "up", true))
	require.True(t, w.Valid(v3, "up", true))

	// A structural change retires everything read before it.
	v4 := tr.Force()
	require.Eventually(t, func() bool { return w.Current() == v4 }, time.Second, time.Millisecond)
	require.False(t, w.Valid(v3, "up", true))
	require.True(t, w.Valid(v4, "up", true))

	// A store that shuts down ends the stream, so that its graceful stop need not wait for the
	// querier, and nothing it said holds any more.
	tr.Shutdown()
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("graceful stop waited for the Watch stream")
	}
	require.Eventually(t, func() bool { return !w.Valid(v4, "up", true) }, time.Second, time.Millisecond)
}

// deafStore answers the first message of a Watch stream and then stops answering pings, as a
// store behind a stalled link does.
type deafStore struct{ token string }

func (d deafStore) serveWatch(stream grpc.ServerStream) error {
	if err := stream.SendMsg(&watchResponse{Version: d.token, Structural: 1}); err != nil {
		return err
	}
	for {
		var req watchRequest
		if err := stream.RecvMsg(&req); err != nil {
			return nil
		}
	}
}

func TestWatcherDropsASilentStore(t *testing.T) {
	_, conn := serve(t, func(g *grpc.Server) { g.RegisterService(&serviceDesc, deafStore{token: "e.1"}) })
	w := runWatcher(t, conn, WatcherOptions{PingInterval: 10 * time.Millisecond, MaxSilence: 200 * time.Millisecond})

	require.Eventually(t, func() bool { return w.Valid("e.1", "", false) }, 5*time.Second, time.Millisecond)
	start := time.Now()
	require.Eventually(t, func() bool { return !w.Valid("e.1", "", false) && w.Current() == "" }, 2*time.Second, time.Millisecond)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "the token held until the first unanswered ping was MaxSilence old")
}

func TestWatcherOfAStoreWithoutTheService(t *testing.T) {
	_, conn := serve(t, func(*grpc.Server) {})
	w := runWatcher(t, conn, WatcherOptions{RetryInterval: time.Millisecond, UnsupportedRetry: time.Hour})
	time.Sleep(100 * time.Millisecond)
	require.Empty(t, w.Current())
}

func TestMessagesRoundTripAndSkipUnknownFields(t *testing.T) {
	in := &watchResponse{Version: "abc.42", Ping: 7, Structural: 40, Created: []createdSeries{{41, []string{"up", ""}}, {42, []string{"x"}}}}
	b := make([]byte, in.Size())
	n, err := in.MarshalToSizedBuffer(b)
	require.NoError(t, err)
	require.Equal(t, len(b), n)
	// A newer store may add fields: field 9 (varint 5) and field 10 (bytes "x") are skipped.
	b = append(b, 9<<3, 5, 10<<3|2, 1, 'x')
	var out watchResponse
	require.NoError(t, out.Unmarshal(b))
	require.Equal(t, *in, out)

	var req watchRequest
	require.NoError(t, req.Unmarshal([]byte{1 << 3, 3}))
	require.Equal(t, uint64(3), req.Ping)

	require.ErrorContains(t, out.Unmarshal([]byte{1 << 3, 1}), "field version: wire type 0, want bytes")
	require.ErrorContains(t, out.Unmarshal([]byte{1<<3 | 2, 9, 'a'}), "WatchResponse: field 1")
	require.ErrorContains(t, out.Unmarshal([]byte{4<<3 | 2, 2, 1 << 3, 0x80}), "field created: Created: field 1")
	require.ErrorContains(t, req.Unmarshal([]byte{0x80}), "WatchRequest: bad tag")
}
