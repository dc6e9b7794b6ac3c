package query

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	_ "github.com/meridian-obs/meridian/internal/grpccodec"
	"github.com/meridian-obs/meridian/internal/storeapi"
)

// testStore is a real StoreAPI server over a real TSDB on loopback.
type testStore struct {
	db   *tsdb.DB
	addr string
	srv  *grpc.Server
}

// startTestStore opens a TSDB in a temp dir and serves it over gRPC with the given external labels.
func startTestStore(t testing.TB, ext labels.Labels, timeRange func() (int64, int64)) *testStore {
	t.Helper()
	return startTestStoreWithOptions(t, storeapi.Options{ExternalLabels: ext, TimeRange: timeRange})
}

// startTestStoreWithOptions is startTestStore with every server option.
func startTestStoreWithOptions(t testing.TB, sopts storeapi.Options) *testStore {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = 0
	opts.MinBlockDuration = int64(24 * time.Hour / time.Millisecond)
	opts.MaxBlockDuration = opts.MinBlockDuration
	db, err := tsdb.Open(t.TempDir(), nil, nil, opts, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return serveStore(t, db, sopts)
}

// serveStore serves db over StoreAPI on a loopback port until the test ends.
func serveStore(t testing.TB, db *tsdb.DB, sopts storeapi.Options) *testStore {
	t.Helper()
	return serveStoreOn(t, "127.0.0.1:0", db, sopts)
}

// serveStoreOn is serveStore on a given address, e.g. to bring a stopped store back.
func serveStoreOn(t testing.TB, addr string, db *tsdb.DB, sopts storeapi.Options) *testStore {
	t.Helper()
	st := listenStore(t, addr, db, sopts)
	t.Cleanup(st.srv.Stop)
	return st
}

// listenStore serves db until the caller stops the returned server. Nothing refers to the
// server or db once it is stopped, so harnesses that start many stores in one test free them.
func listenStore(t testing.TB, addr string, db *tsdb.DB, sopts storeapi.Options) *testStore {
	t.Helper()
	sopts.Registerer = prometheus.NewRegistry()
	srv, err := storeapi.NewServer(db, sopts)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	return &testStore{db: db, addr: lis.Addr().String(), srv: g}
}

// appendFloats writes one float sample per step in [from, to] for each series.
func appendFloats(t testing.TB, db *tsdb.DB, from, to, step int64, series ...labels.Labels) {
	t.Helper()
	app := db.Appender(context.Background())
	for _, s := range series {
		for ts := from; ts <= to; ts += step {
			_, err := app.Append(0, s, ts, float64(ts))
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
}

// startStoreSet runs a store set over addrs until the test ends and waits for its first round.
func startStoreSet(t testing.TB, opts StoreSetOptions) *StoreSet {
	t.Helper()
	set, err := NewStoreSet(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), opts)
	require.NoError(t, err)
	runStoreSet(t, set)
	return set
}

// selectAll runs a Select over [mint, maxt] and returns the series labels, sample counts,
// warnings and error.
func selectAll(t testing.TB, ctx context.Context, q storage.Queryable, mint, maxt int64, ms ...*labels.Matcher) (map[string]int, []string, error) {
	t.Helper()
	querier, err := q.Querier(mint, maxt)
	require.NoError(t, err)
	defer querier.Close()
	set := querier.Select(ctx, true, &storage.SelectHints{Start: mint, End: maxt}, ms...)
	out := map[string]int{}
	for set.Next() {
		s := set.At()
		n := 0
		it := s.Iterator(nil)
		for it.Next() != 0 {
			n++
		}
		require.NoError(t, it.Err())
		out[s.Labels().String()] = n
	}
	var ws []string
	for _, w := range set.Warnings() {
		ws = append(ws, w.Error())
	}
	return out, ws, set.Err()
}
