package labelindex

import (
	"context"
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

func TestTrackerMovesOnIndexChangesOnly(t *testing.T) {
	db := openDB(t)
	open := false
	tr := NewTracker(func() (State, bool) {
		if !open {
			return State{}, false
		}
		return TSDBState(db), true
	})
	require.Empty(t, tr.Check(), "no token while the store cannot answer")

	open = true
	v1 := tr.Check()
	require.NotEmpty(t, v1)
	require.Equal(t, v1, tr.Check(), "nothing changed")

	a := labels.FromStrings("__name__", "up", "job", "a")
	appendSample(t, db, a, 1000)
	v2 := tr.Check()
	require.NotEqual(t, v1, v2, "a new series moves the version")

	appendSample(t, db, a, 2000)
	require.Equal(t, v2, tr.Check(), "a sample of an existing series does not")

	// A block cut from the head (as compaction does) changes the blocks, then truncating the head
	// changes its range and removes series.
	require.NoError(t, db.CompactHead(tsdb.NewRangeHead(db.Head(), 0, 2000)))
	v3 := tr.Check()
	require.NotEqual(t, v2, v3, "a new block moves the version")

	open = false
	require.Empty(t, tr.Check(), "the token goes when the store cannot answer")
	open = true
	require.NotEqual(t, v3, tr.Check(), "and comes back as a new one")

	v4 := tr.Check()
	require.NotEqual(t, v4, tr.Force(), "Force moves the version whatever the state")

	other := NewTracker(func() (State, bool) { return TSDBState(db), true })
	require.NotEqual(t, tr.Check(), other.Check(), "a restarted store never repeats a token")
}

func TestTrackerMovesOnceMoreAfterAChangeSettles(t *testing.T) {
	var mu sync.Mutex
	st := State{HeadSeries: 1}
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
	st.HeadSeries = 2
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
	db := openDB(t)
	tr := NewTracker(func() (State, bool) { return TSDBState(db), true })
	v1 := tr.Check()
	g, conn := serve(t, tr.Register)
	// One ping at the start of the stream, none after: what arrives later is pushed.
	w := runWatcher(t, conn, WatcherOptions{PingInterval: time.Hour, MaxSilence: 500 * time.Millisecond})

	require.Eventually(t, func() bool { return w.Current() == v1 }, 5*time.Second, 5*time.Millisecond)

	// A change is pushed at once.
	appendSample(t, db, labels.FromStrings("__name__", "up", "job", "b"), 1000)
	v2 := tr.Check()
	require.Eventually(t, func() bool { return w.Current() == v2 }, time.Second, time.Millisecond)

	// A store that shuts down ends the stream, so that its graceful stop need not wait for the
	// querier, and it has no current token any more.
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
	require.Eventually(t, func() bool { return w.Current() == "" }, time.Second, time.Millisecond)
}

// deafStore answers the first message of a Watch stream and then stops answering pings, as a
// store behind a stalled link does.
type deafStore struct{ token string }

func (d deafStore) serveWatch(stream grpc.ServerStream) error {
	if err := stream.SendMsg(&watchResponse{Version: d.token}); err != nil {
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

	require.Eventually(t, func() bool { return w.Current() == "e.1" }, 5*time.Second, time.Millisecond)
	start := time.Now()
	require.Eventually(t, func() bool { return w.Current() == "" }, 2*time.Second, time.Millisecond)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "the token held until the first unanswered ping was MaxSilence old")
}

func TestWatcherOfAStoreWithoutTheService(t *testing.T) {
	_, conn := serve(t, func(*grpc.Server) {})
	w := runWatcher(t, conn, WatcherOptions{RetryInterval: time.Millisecond, UnsupportedRetry: time.Hour})
	time.Sleep(100 * time.Millisecond)
	require.Empty(t, w.Current())
}

func TestMessagesRoundTripAndSkipUnknownFields(t *testing.T) {
	in := &watchResponse{Version: "abc.42", Ping: 7}
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
	require.ErrorContains(t, req.Unmarshal([]byte{0x80}), "WatchRequest: bad tag")
}
