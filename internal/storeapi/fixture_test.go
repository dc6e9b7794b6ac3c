package storeapi

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/info/infopb"
	"github.com/thanos-io/thanos/pkg/store/labelpb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/meridian-obs/meridian/internal/grpccodec"
)

const (
	// Keeps every series under an hour, so all of them stay appendable to the head.
	scrapeInterval = int64(10 * time.Second / time.Millisecond)
	// headStart is where the head's data begins; everything before it lives in a block.
	headStart = int64(3 * time.Hour / time.Millisecond)
)

// sample is one appended or decoded sample of any type.
type sample struct {
	t  int64
	f  float64
	h  *histogram.Histogram
	fh *histogram.FloatHistogram
}

// storedSeries is a series as appended to the TSDB, before external labels.
type storedSeries struct {
	lset    labels.Labels
	samples []sample
}

// fixture is a real TSDB holding float, histogram and float histogram series: one series in a
// persisted block, the others in the head.
type fixture struct {
	db     *tsdb.DB
	series map[string]storedSeries // by lset.String()
}

func floats(start int64, n int) []sample {
	out := make([]sample, n)
	for i := range out {
		out[i] = sample{t: start + int64(i)*scrapeInterval, f: float64(i*i) + 0.5}
	}
	return out
}

func histograms(start int64, n int) []sample {
	out := make([]sample, n)
	for i := range out {
		out[i] = sample{t: start + int64(i)*scrapeInterval, h: tsdbutil.GenerateTestHistogram(int64(i))}
	}
	return out
}

func floatHistograms(start int64, n int) []sample {
	out := make([]sample, n)
	for i := range out {
		out[i] = sample{t: start + int64(i)*scrapeInterval, fh: tsdbutil.GenerateTestFloatHistogram(int64(i))}
	}
	return out
}

// newFixture opens a TSDB in a temporary directory. The batch_runs_total series is written
// before headStart and compacted into a block, the rest is in the head from headStart on.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	f := &fixture{db: db, series: map[string]storedSeries{}}

	f.add(t, labels.FromStrings("__name__", "batch_runs_total", "job", "batch", "owner", "team-x"), floats(0, 100))
	require.NoError(t, db.CompactHead(tsdb.NewRangeHead(db.Head(), 0, headStart-1)))
	require.Len(t, db.Blocks(), 1)

	for _, s := range []storedSeries{
		{labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "a"), floats(headStart, 300)},
		{labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "b"), floats(headStart, 300)},
		{labels.FromStrings("__name__", "http_requests_total", "job", "web", "instance", "a"), floats(headStart, 200)},
		{labels.FromStrings("__name__", "latency_seconds", "job", "api"), histograms(headStart, 250)},
		{labels.FromStrings("__name__", "latency_float_seconds", "job", "api"), floatHistograms(headStart, 130)},
		// Its own region label is overridden by the external one.
		{labels.FromStrings("__name__", "mislabelled", "region", "us-east-1"), floats(headStart, 10)},
	} {
		f.add(t, s.lset, s.samples)
	}
	return f
}

func (f *fixture) add(t *testing.T, lset labels.Labels, samples []sample) {
	t.Helper()
	app := f.db.Appender(context.Background())
	var ref storage.SeriesRef
	var err error
	for _, s := range samples {
		switch {
		case s.h != nil:
			ref, err = app.AppendHistogram(ref, lset, s.t, s.h, nil)
		case s.fh != nil:
			ref, err = app.AppendHistogram(ref, lset, s.t, nil, s.fh)
		default:
			ref, err = app.Append(ref, lset, s.t, s.f)
		}
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	f.series[lset.String()] = storedSeries{lset: lset, samples: samples}
}

// countingQueryable counts the queriers opened on the storage underneath.
type countingQueryable struct {
	storage.ChunkQueryable
	opened atomic.Int64
}

func (c *countingQueryable) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	c.opened.Add(1)
	return c.ChunkQueryable.ChunkQuerier(mint, maxt)
}

// contextRecordingQueryable records, for every Select, the value of key in the context.
type contextRecordingQueryable struct {
	storage.ChunkQueryable
	key  any
	seen *[]any
}

func (c *contextRecordingQueryable) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	q, err := c.ChunkQueryable.ChunkQuerier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return contextRecordingQuerier{ChunkQuerier: q, record: func(ctx context.Context) {
		*c.seen = append(*c.seen, ctx.Value(c.key))
	}}, nil
}

type contextRecordingQuerier struct {
	storage.ChunkQuerier
	record func(context.Context)
}

func (c contextRecordingQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	c.record(ctx)
	return c.ChunkQuerier.Select(ctx, sortSeries, hints, ms...)
}

// startServer serves a Server over q on a loopback port and returns clients to it.
func startServer(t testing.TB, q storage.ChunkQueryable, opts Options) (storepb.StoreClient, infopb.InfoClient) {
	t.Helper()
	srv, err := NewServer(q, opts)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := grpc.NewServer()
	srv.Register(g)
	done := make(chan error, 1)
	go func() { done <- g.Serve(lis) }()
	t.Cleanup(func() {
		g.Stop()
		require.NoError(t, <-done)
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return storepb.NewStoreClient(conn), infopb.NewInfoClient(conn)
}

// seriesFrames calls Series and returns the series frames and warnings as received.
func seriesFrames(t *testing.T, c storepb.StoreClient, req *storepb.SeriesRequest) ([]*storepb.Series, []string, error) {
	t.Helper()
	stream, err := c.Series(context.Background(), req)
	require.NoError(t, err)
	var (
		frames   []*storepb.Series
		warnings []string
	)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return frames, warnings, nil
		}
		if err != nil {
			return frames, warnings, err
		}
		if s := resp.GetSeries(); s != nil {
			frames = append(frames, s)
		}
		if b := resp.GetBatch(); b != nil {
			frames = append(frames, b.Series...)
		}
		if w := resp.GetWarning(); w != "" {
			warnings = append(warnings, w)
		}
	}
}

// receivedSeries is one series of a Series answer, its frames joined.
type receivedSeries struct {
	lset   labels.Labels
	chunks []storepb.AggrChunk
}

// joinFrames joins consecutive frames of the same series, requiring the stream to be sorted.
func joinFrames(t *testing.T, frames []*storepb.Series) []receivedSeries {
	t.Helper()
	var out []receivedSeries
	for _, f := range frames {
		lset := labelpb.ZLabelsToPromLabels(f.Labels).Copy()
		if n := len(out); n > 0 {
			cmp := labels.Compare(out[n-1].lset, lset)
			require.LessOrEqual(t, cmp, 0, "stream not sorted: %s after %s", lset, out[n-1].lset)
			if cmp == 0 {
				out[n-1].chunks = append(out[n-1].chunks, f.Chunks...)
				continue
			}
		}
		out = append(out, receivedSeries{lset: lset, chunks: f.Chunks})
	}
	return out
}

func querySeries(t *testing.T, c storepb.StoreClient, req *storepb.SeriesRequest) []receivedSeries {
	t.Helper()
	frames, warnings, err := seriesFrames(t, c, req)
	require.NoError(t, err)
	require.Empty(t, warnings)
	return joinFrames(t, frames)
}

var storeEncodings = map[storepb.Chunk_Encoding]chunkenc.Encoding{
	storepb.Chunk_XOR:             chunkenc.EncXOR,
	storepb.Chunk_HISTOGRAM:       chunkenc.EncHistogram,
	storepb.Chunk_FLOAT_HISTOGRAM: chunkenc.EncFloatHistogram,
}

// decodeChunks decodes StoreAPI chunks into their samples, checking each chunk's time bounds
// and that chunks follow each other in time.
func decodeChunks(t *testing.T, chks []storepb.AggrChunk) []sample {
	t.Helper()
	var out []sample
	prevMax := int64(math.MinInt64)
	for _, c := range chks {
		require.NotNil(t, c.Raw)
		enc, ok := storeEncodings[c.Raw.Type]
		require.True(t, ok, "unknown chunk type %v", c.Raw.Type)
		chk, err := chunkenc.FromData(enc, c.Raw.Data)
		require.NoError(t, err)
		require.Greater(t, c.MinTime, prevMax, "chunks overlap or are out of order")
		prevMax = c.MaxTime
		it := chk.Iterator(nil)
		first := len(out)
		out = append(out, iteratorSamples(t, it)...)
		require.Greater(t, len(out), first, "empty chunk")
		require.Equal(t, c.MinTime, out[first].t, "chunk min time")
		require.Equal(t, c.MaxTime, out[len(out)-1].t, "chunk max time")
	}
	return out
}

// requireSamplesEqual compares samples exactly; counter reset hints, which chunk encoding sets
// on decoding, are ignored.
func requireSamplesEqual(t *testing.T, want, got []sample) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, g := want[i], got[i]
		require.Equal(t, w.t, g.t, "sample %d", i)
		switch {
		case w.h != nil:
			require.NotNil(t, g.h, "sample %d at %d: want a histogram", i, w.t)
			wh, gh := w.h.Copy(), g.h.Copy()
			wh.CounterResetHint, gh.CounterResetHint = histogram.UnknownCounterReset, histogram.UnknownCounterReset
			require.True(t, wh.Equals(gh), "sample %d at %d: want %s, got %s", i, w.t, wh, gh)
		case w.fh != nil:
			require.NotNil(t, g.fh, "sample %d at %d: want a float histogram", i, w.t)
			wh, gh := w.fh.Copy(), g.fh.Copy()
			wh.CounterResetHint, gh.CounterResetHint = histogram.UnknownCounterReset, histogram.UnknownCounterReset
			require.True(t, wh.Equals(gh), "sample %d at %d: want %s, got %s", i, w.t, wh, gh)
		default:
			require.Nil(t, g.h, "sample %d", i)
			require.Nil(t, g.fh, "sample %d", i)
			require.Equal(t, math.Float64bits(w.f), math.Float64bits(g.f), "sample %d at %d: want %v, got %v", i, w.t, w.f, g.f)
		}
	}
}

// inRange returns the samples within [mint, maxt].
func inRange(samples []sample, mint, maxt int64) []sample {
	var out []sample
	for _, s := range samples {
		if s.t >= mint && s.t <= maxt {
			out = append(out, s)
		}
	}
	return out
}

// withExternal is the label set a store with external labels ext announces for lset.
func withExternal(lset, ext labels.Labels) labels.Labels {
	b := labels.NewBuilder(lset)
	ext.Range(func(l labels.Label) { b.Set(l.Name, l.Value) })
	return b.Labels()
}

func eq(name, value string) storepb.LabelMatcher {
	return storepb.LabelMatcher{Type: storepb.LabelMatcher_EQ, Name: name, Value: value}
}

func matcher(typ storepb.LabelMatcher_Type, name, value string) storepb.LabelMatcher {
	return storepb.LabelMatcher{Type: typ, Name: name, Value: value}
}

// iteratorSamples reads every sample an iterator has left, of any value type.
func iteratorSamples(t *testing.T, it chunkenc.Iterator) []sample {
	t.Helper()
	var out []sample
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		var s sample
		switch vt {
		case chunkenc.ValFloat:
			s.t, s.f = it.At()
		case chunkenc.ValHistogram:
			s.t, s.h = it.AtHistogram(nil)
		case chunkenc.ValFloatHistogram:
			s.t, s.fh = it.AtFloatHistogram(nil)
		}
		out = append(out, s)
	}
	require.NoError(t, it.Err())
	return out
}
