package query

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"
	"github.com/stretchr/testify/require"
)

const dedupScrapeInterval = 15 // seconds

// dedupSample is one sample of a replica; it implements chunks.Sample.
type dedupSample struct {
	t  int64
	f  float64
	h  *histogram.Histogram
	fh *histogram.FloatHistogram
}

func (s dedupSample) T() int64                      { return s.t }
func (s dedupSample) F() float64                    { return s.f }
func (s dedupSample) H() *histogram.Histogram       { return s.h }
func (s dedupSample) FH() *histogram.FloatHistogram { return s.fh }
func (s dedupSample) Copy() chunks.Sample           { return s }
func (s dedupSample) Type() chunkenc.ValueType {
	switch {
	case s.h != nil:
		return chunkenc.ValHistogram
	case s.fh != nil:
		return chunkenc.ValFloatHistogram
	}
	return chunkenc.ValFloat
}

// scrapeSpan is a run of replicaScrapes every dedupScrapeInterval from from to to (seconds, inclusive).
type scrapeSpan struct{ from, to int64 }

// followSegment says which replica the merged series must follow over [from, to] (seconds).
type followSegment struct {
	replica  int
	from, to int64
}

// replicaScrapes returns what replica r scraped over spans, with values telling the replicas apart.
func replicaScrapes(vt chunkenc.ValueType, r int, spans ...scrapeSpan) []chunks.Sample {
	var out []chunks.Sample
	for _, sp := range spans {
		for ts := sp.from; ts <= sp.to; ts += dedupScrapeInterval {
			v := int64(1000*(r+1)) + ts
			s := dedupSample{t: ts * 1000}
			switch vt {
			case chunkenc.ValHistogram:
				s.h = tsdbutil.GenerateTestHistogram(v)
			case chunkenc.ValFloatHistogram:
				s.fh = tsdbutil.GenerateTestFloatHistogram(v)
			default:
				s.f = float64(v)
			}
			out = append(out, s)
		}
	}
	return out
}

// encodedReplica encodes samples into real chunks of at most 120 samples, as a TSDB head cuts
// them, read back through Prometheus's chunk iterators.
func encodedReplica(t testing.TB, lset labels.Labels, samples []chunks.Sample) storage.Series {
	var parts []storage.Series
	for start := 0; start < len(samples); start += 120 {
		meta, err := chunks.ChunkFromSamples(samples[start:min(start+120, len(samples))])
		require.NoError(t, err)
		parts = append(parts, oneChunkSeries(lset, meta.Chunk))
	}
	if len(parts) == 0 {
		return oneChunkSeries(lset, chunkenc.NewXORChunk())
	}
	return storage.ChainedSeriesMerge(parts...)
}

func oneChunkSeries(lset labels.Labels, chk chunkenc.Chunk) storage.Series {
	return &storage.SeriesEntry{Lset: lset, SampleIteratorFn: chk.Iterator}
}

func encodedReplicas(t testing.TB, vt chunkenc.ValueType, replicas [][]scrapeSpan) []storage.Series {
	out := make([]storage.Series, 0, len(replicas))
	for r, spans := range replicas {
		out = append(out, encodedReplica(t, labels.FromStrings("__name__", "up"), replicaScrapes(vt, r, spans...)))
	}
	return out
}

// expandDedup reads it to the end, failing the test on an iterator error.
func expandDedup(t testing.TB, it chunkenc.Iterator) []dedupSample {
	out, err := expandDedupErr(it)
	require.NoError(t, err)
	return out
}

func expandDedupErr(it chunkenc.Iterator) ([]dedupSample, error) {
	var out []dedupSample
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		out = append(out, currentSample(it, vt))
	}
	return out, it.Err()
}

func currentSample(it chunkenc.Iterator, vt chunkenc.ValueType) dedupSample {
	switch vt {
	case chunkenc.ValHistogram:
		ts, h := it.AtHistogram(nil)
		return dedupSample{t: ts, h: h}
	case chunkenc.ValFloatHistogram:
		ts, fh := it.AtFloatHistogram(nil)
		return dedupSample{t: ts, fh: fh}
	}
	ts, f := it.At()
	return dedupSample{t: ts, f: f}
}

// followedSamples returns the samples each replica holds in its followSegment, as its own iterator decodes them.
func followedSamples(t testing.TB, replicas []storage.Series, segments []followSegment) []dedupSample {
	var out []dedupSample
	for i, seg := range segments {
		first := true
		for _, s := range expandDedup(t, replicas[seg.replica].Iterator(nil)) {
			if s.t < seg.from*1000 || s.t > seg.to*1000 {
				continue
			}
			// A histogram's counter reset hint relates to the previous sample of its own
			// replica, so it is unknown on the first sample after a switch.
			if first && i > 0 {
				if s.h != nil && s.h.CounterResetHint != histogram.GaugeType {
					s.h.CounterResetHint = histogram.UnknownCounterReset
				}
				if s.fh != nil && s.fh.CounterResetHint != histogram.GaugeType {
					s.fh.CounterResetHint = histogram.UnknownCounterReset
				}
			}
			first = false
			out = append(out, s)
		}
	}
	return out
}

func longestInterval(samples []dedupSample) int64 {
	var longest int64
	for i := 1; i < len(samples); i++ {
		longest = max(longest, samples[i].t-samples[i-1].t)
	}
	return longest
}

const (
	replicaA = iota
	replicaB
	replicaC
)

var dedupGapCases = []struct {
	name     string
	replicas [][]scrapeSpan
	want     []followSegment
}{
	{
		name:     "gaps on different sides are filled from the other replica",
		replicas: [][]scrapeSpan{{{0, 90}, {180, 450}}, {{5, 275}, {335, 455}}},
		want:     []followSegment{{replicaA, 0, 90}, {replicaB, 125, 275}, {replicaA, 315, 450}},
	},
	{
		name:     "timestamps offset by less than the initial penalty never interleave",
		replicas: [][]scrapeSpan{{{0, 300}}, {{5, 305}}},
		want:     []followSegment{{replicaA, 0, 300}},
	},
	{
		name:     "offset beyond the initial penalty switches once at the start then sticks",
		replicas: [][]scrapeSpan{{{0, 300}}, {{10, 310}}},
		want:     []followSegment{{replicaA, 0, 0}, {replicaB, 10, 310}},
	},
	{
		name:     "replica that keeps going takes over when the followed one ends",
		replicas: [][]scrapeSpan{{{0, 150}}, {{5, 305}}},
		want:     []followSegment{{replicaA, 0, 150}, {replicaB, 185, 305}},
	},
	{
		name:     "identical replicas give exactly one copy",
		replicas: [][]scrapeSpan{{{0, 300}}, {{0, 300}}},
		want:     []followSegment{{replicaA, 0, 300}},
	},
	{
		name:     "empty second replica leaves the first unchanged",
		replicas: [][]scrapeSpan{{{0, 300}}, nil},
		want:     []followSegment{{replicaA, 0, 300}},
	},
	{
		name:     "empty first replica leaves the second unchanged",
		replicas: [][]scrapeSpan{nil, {{5, 305}}},
		want:     []followSegment{{replicaB, 5, 305}},
	},
	{
		name:     "all replicas empty give no samples",
		replicas: [][]scrapeSpan{nil, nil},
	},
	{
		name:     "three replicas hand over one after the other",
		replicas: [][]scrapeSpan{{{0, 105}}, {{5, 305}}, {{301, 601}}},
		want:     []followSegment{{replicaA, 0, 105}, {replicaB, 140, 305}, {replicaC, 346, 601}},
	},
	{
		name:     "third replica fills a hole both others have",
		replicas: [][]scrapeSpan{{{0, 105}, {400, 600}}, {{5, 200}}, {{104, 599}}},
		want:     []followSegment{{replicaA, 0, 105}, {replicaB, 140, 200}, {replicaC, 239, 599}},
	},
}

func TestDedupSeriesMergeFollowsOneReplicaUntilAGap(t *testing.T) {
	for _, vt := range []chunkenc.ValueType{chunkenc.ValFloat, chunkenc.ValHistogram, chunkenc.ValFloatHistogram} {
		for _, tc := range dedupGapCases {
			t.Run(vt.String()+"/"+tc.name, func(t *testing.T) {
				replicas := encodedReplicas(t, vt, tc.replicas)
				merged := DedupSeriesMerge(replicas...)
				require.Equal(t, replicas[0].Labels(), merged.Labels())

				got := expandDedup(t, merged.Iterator(nil))
				require.Equal(t, followedSamples(t, replicas, tc.want), got)
				require.LessOrEqual(t, longestInterval(got), int64(3*dedupScrapeInterval*1000), "merged series has a gap")
			})
		}
	}
}

func TestDedupSeriesMergeKeepsEachReplicasSampleType(t *testing.T) {
	replicas := []storage.Series{
		encodedReplica(t, labels.FromStrings("__name__", "rpc_seconds"), replicaScrapes(chunkenc.ValFloat, replicaA, scrapeSpan{0, 90})),
		encodedReplica(t, labels.FromStrings("__name__", "rpc_seconds"), replicaScrapes(chunkenc.ValHistogram, replicaB, scrapeSpan{5, 300})),
	}
	got := expandDedup(t, DedupSeriesMerge(replicas...).Iterator(nil))
	require.Equal(t, followedSamples(t, replicas, []followSegment{{replicaA, 0, 90}, {replicaB, 125, 300}}), got)
}

// TestDedupSeriesMergeCounterResetHintAfterSwitch reads replicas from single chunks, whose
// iterators keep a histogram's counter reset hint across Seek, to show that the merged series
// does not claim "no counter reset" against a sample of another replica.
func TestDedupSeriesMergeCounterResetHintAfterSwitch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		vt       chunkenc.ValueType
		wantHint histogram.CounterResetHint // on the first sample after a switch
	}{
		{"counter histogram", chunkenc.ValHistogram, histogram.UnknownCounterReset},
		{"counter float histogram", chunkenc.ValFloatHistogram, histogram.UnknownCounterReset},
		{"gauge histogram", chunkenc.ValHistogram, histogram.GaugeType},
		{"gauge float histogram", chunkenc.ValFloatHistogram, histogram.GaugeType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var replicas []storage.Series
			for r, spans := range dedupGapCases[0].replicas {
				samples := replicaScrapes(tc.vt, r, spans...)
				if tc.wantHint == histogram.GaugeType {
					for _, smpl := range samples {
						if smpl.H() != nil {
							smpl.H().CounterResetHint = histogram.GaugeType
						} else {
							smpl.FH().CounterResetHint = histogram.GaugeType
						}
					}
				}
				meta, err := chunks.ChunkFromSamples(samples)
				require.NoError(t, err)
				replicas = append(replicas, oneChunkSeries(labels.FromStrings("__name__", "rpc_seconds"), meta.Chunk))
			}
			got := expandDedup(t, DedupSeriesMerge(replicas...).Iterator(nil))
			require.Equal(t, followedSamples(t, replicas, dedupGapCases[0].want), got)

			hints := map[int64]histogram.CounterResetHint{}
			for _, smpl := range got {
				if smpl.h != nil {
					hints[smpl.t/1000] = smpl.h.CounterResetHint
				} else {
					hints[smpl.t/1000] = smpl.fh.CounterResetHint
				}
			}
			require.Equal(t, tc.wantHint, hints[125], "first sample after switching to the second replica")
			require.Equal(t, tc.wantHint, hints[315], "first sample after switching back")
			if tc.wantHint != histogram.GaugeType {
				require.Equal(t, histogram.NotCounterReset, hints[140], "following sample of the same replica")
			}
		})
	}
}

func TestDedupSeriesMergeSingleSeriesIsReturnedUnchanged(t *testing.T) {
	only := encodedReplica(t, labels.FromStrings("__name__", "up"), replicaScrapes(chunkenc.ValFloat, replicaA, scrapeSpan{0, 60}))
	require.Same(t, only, DedupSeriesMerge(only))
	require.Nil(t, DedupSeriesMerge())
}

func TestDedupSeriesMergeSeek(t *testing.T) {
	const none = math.MinInt64
	for _, tc := range []struct {
		name     string
		replicas [][]scrapeSpan
		seeks    []int64 // seconds
		want     []int64 // seconds of the sample each seek lands on; none when exhausted
	}{
		{"seek into the middle of a replica's segment", dedupGapCases[0].replicas, []int64{47}, []int64{60}},
		{"seek onto an exact timestamp", dedupGapCases[0].replicas, []int64{140}, []int64{140}},
		{"seek into a gap lands where the other replica took over", dedupGapCases[0].replicas, []int64{100, 290}, []int64{125, 315}},
		{"seek backwards stays on the current sample", dedupGapCases[0].replicas, []int64{200, 50, 200}, []int64{200, 200, 200}},
		{"seek before the first sample lands on the first", dedupGapCases[0].replicas, []int64{-100}, []int64{0}},
		{"seek past the end exhausts the iterator", dedupGapCases[0].replicas, []int64{10_000, 0}, []int64{none, none}},
		{"seek through three replicas", dedupGapCases[9].replicas, []int64{100, 120, 230, 599, 600}, []int64{105, 140, 239, 599, none}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			merged := DedupSeriesMerge(encodedReplicas(t, chunkenc.ValFloat, tc.replicas)...)
			reference := expandDedup(t, merged.Iterator(nil))

			it := merged.Iterator(nil)
			var last chunkenc.ValueType
			for i, ts := range tc.seeks {
				last = it.Seek(ts * 1000)
				if tc.want[i] == none {
					require.Equal(t, chunkenc.ValNone, last, "seek %ds", ts)
					continue
				}
				require.Equal(t, chunkenc.ValFloat, last, "seek %ds", ts)
				require.Equal(t, tc.want[i]*1000, it.AtT(), "seek %ds", ts)
			}

			// After seeking, Next carries on exactly where the reference stream does.
			var rest []dedupSample
			if last != chunkenc.ValNone {
				rest = append(rest, currentSample(it, last))
			}
			tail, err := expandDedupErr(it)
			require.NoError(t, err)
			rest = append(rest, tail...)
			var wantRest []dedupSample
			for _, s := range reference {
				if last != chunkenc.ValNone && s.t >= rest[0].t {
					wantRest = append(wantRest, s)
				}
			}
			require.Equal(t, wantRest, rest)
			require.Equal(t, chunkenc.ValNone, it.Next())
		})
	}
}

// corruptReplica is a float series whose encoded chunk claims more samples than it holds, so
// Prometheus's XOR iterator fails with an error after the last real one.
func corruptReplica(t *testing.T, r int, sp scrapeSpan) storage.Series {
	meta, err := chunks.ChunkFromSamples(replicaScrapes(chunkenc.ValFloat, r, sp))
	require.NoError(t, err)
	data := slices.Clone(meta.Chunk.Bytes())
	binary.BigEndian.PutUint16(data, math.MaxUint16)
	chk, err := chunkenc.FromData(chunkenc.EncXOR, data)
	require.NoError(t, err)
	_, err = expandDedupErr(chk.Iterator(nil))
	require.Error(t, err, "the corrupt chunk must fail on its own")
	return oneChunkSeries(labels.FromStrings("__name__", "up"), chk)
}

func TestDedupSeriesMergePropagatesReplicaErrors(t *testing.T) {
	for _, tc := range []struct {
		name        string
		replicas    int
		corrupt     int
		corruptSpan scrapeSpan
	}{
		{"corrupt first replica", 2, replicaA, scrapeSpan{0, 300}},
		{"corrupt second replica", 2, replicaB, scrapeSpan{5, 305}},
		{"corrupt third replica", 3, replicaC, scrapeSpan{2, 302}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The healthy replicas go on long after the corrupt one fails, so reaching their
			// end would mean the error was swallowed.
			replicas := make([]storage.Series, tc.replicas)
			for r := range replicas {
				replicas[r] = encodedReplica(t, labels.FromStrings("__name__", "up"), replicaScrapes(chunkenc.ValFloat, r, scrapeSpan{0, 900}))
			}
			replicas[tc.corrupt] = corruptReplica(t, tc.corrupt, tc.corruptSpan)

			it := DedupSeriesMerge(replicas...).Iterator(nil)
			got, err := expandDedupErr(it)
			require.Error(t, err)
			require.NotEmpty(t, got)
			require.Less(t, got[len(got)-1].t, int64(900_000), "iteration must stop at the error")
			require.Equal(t, chunkenc.ValNone, it.Next())
			require.Equal(t, chunkenc.ValNone, it.Seek(math.MaxInt64))
			require.Error(t, it.Err())
		})
	}
}

func TestDedupSeriesMergeIteratorReuse(t *testing.T) {
	two := DedupSeriesMerge(encodedReplicas(t, chunkenc.ValFloat, dedupGapCases[0].replicas)...)
	three := DedupSeriesMerge(encodedReplicas(t, chunkenc.ValFloat, dedupGapCases[9].replicas)...)
	wantTwo := expandDedup(t, two.Iterator(nil))
	wantThree := expandDedup(t, three.Iterator(nil))

	it := two.Iterator(nil)
	for i, step := range []struct {
		series storage.Series
		want   []dedupSample
	}{
		{two, wantTwo}, {two, wantTwo}, {three, wantThree}, {two, wantTwo}, {three, wantThree},
	} {
		// Stop half-way through so that reuse must reset the previous state.
		it.Seek(200_000)
		reused := step.series.Iterator(it)
		require.Same(t, it, reused, "step %d", i)
		require.Equal(t, step.want, expandDedup(t, reused), "step %d", i)
	}

	// An iterator of another kind is not reused but does no harm.
	require.Equal(t, wantTwo, expandDedup(t, two.Iterator(chunkenc.NewXORChunk().Iterator(nil))))
}

// TestDedupSeriesMergeThroughMergeSeriesSet merges the sorted series sets of two TSDBs, one per
// replica of an HA pair, the way the querier merges the streams of two stores.
func TestDedupSeriesMergeThroughMergeSeriesSet(t *testing.T) {
	type stored struct {
		lset  labels.Labels
		spans [2][]scrapeSpan // per replica
	}
	data := []stored{
		{labels.FromStrings("__name__", "up", "job", "api"), [2][]scrapeSpan{{{0, 90}, {180, 450}}, {{5, 275}, {335, 455}}}},
		{labels.FromStrings("__name__", "up", "job", "db"), [2][]scrapeSpan{{{0, 450}}, {{0, 450}}}},
		{labels.FromStrings("__name__", "up", "job", "web"), [2][]scrapeSpan{nil, {{5, 455}}}},
	}
	want := map[string][]followSegment{
		"api": {{replicaA, 0, 90}, {replicaB, 125, 275}, {replicaA, 315, 450}},
		"db":  {{replicaA, 0, 450}},
		"web": {{replicaB, 5, 455}},
	}

	ctx := t.Context()
	var sets []storage.SeriesSet
	for r := range 2 {
		db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, db.Close()) })
		app := db.Appender(ctx)
		for _, s := range data {
			for _, smpl := range replicaScrapes(chunkenc.ValFloat, r, s.spans[r]...) {
				_, err := app.Append(0, s.lset, smpl.T(), smpl.F())
				require.NoError(t, err)
			}
		}
		require.NoError(t, app.Commit())
		q, err := db.Querier(math.MinInt64, math.MaxInt64)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, q.Close()) })
		sets = append(sets, q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")))
	}

	merged := storage.NewMergeSeriesSet(sets, 0, DedupSeriesMerge)
	var jobs []string
	for merged.Next() {
		s := merged.At()
		job := s.Labels().Get("job")
		jobs = append(jobs, job)

		var wantSamples []dedupSample
		for _, seg := range want[job] {
			for _, smpl := range replicaScrapes(chunkenc.ValFloat, seg.replica, data[len(jobs)-1].spans[seg.replica]...) {
				if smpl.T() >= seg.from*1000 && smpl.T() <= seg.to*1000 {
					wantSamples = append(wantSamples, smpl.(dedupSample))
				}
			}
		}
		got := expandDedup(t, s.Iterator(nil))
		require.Equal(t, wantSamples, got, "job %s", job)
		require.LessOrEqual(t, longestInterval(got), int64(3*dedupScrapeInterval*1000), "job %s has a gap", job)
	}
	require.NoError(t, merged.Err())
	require.Equal(t, []string{"api", "db", "web"}, jobs)
}

// BenchmarkDedup reads two replicas of 10k samples each, 5s apart and with gaps on different
// sides, through the penalty merge. As yardsticks, "chain" reads them through Prometheus's
// ChainedSeriesMerge (which keeps every sample of both) and "one-replica" reads the first alone.
func BenchmarkDedup(b *testing.B) {
	const n = 10_000
	gapsA := []scrapeSpan{{0, 30_000}, {31_000, 90_000}, {92_000, 149_985}}
	gapsB := []scrapeSpan{{5, 60_005}, {62_000, 120_005}, {121_000, n*dedupScrapeInterval + 5}}
	replicas := make([]storage.Series, 0, 2)
	for r, spans := range [][]scrapeSpan{gapsA, gapsB} {
		meta, err := chunks.ChunkFromSamples(replicaScrapes(chunkenc.ValFloat, r, spans...))
		require.NoError(b, err)
		replicas = append(replicas, oneChunkSeries(labels.FromStrings("__name__", "up"), meta.Chunk))
	}
	for _, bc := range []struct {
		name  string
		merge storage.VerticalSeriesMergeFunc
	}{
		{"penalty", DedupSeriesMerge},
		{"chain", storage.ChainedSeriesMerge},
		{"one-replica", func(series ...storage.Series) storage.Series { return series[0] }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			series := bc.merge(replicas...)
			var it chunkenc.Iterator
			var samples int
			b.ReportAllocs()
			for b.Loop() {
				it = series.Iterator(it)
				samples = 0
				for it.Next() != chunkenc.ValNone {
					samples++
				}
				if it.Err() != nil {
					b.Fatal(it.Err())
				}
			}
			b.ReportMetric(float64(samples), "samples/op")
		})
	}
}
