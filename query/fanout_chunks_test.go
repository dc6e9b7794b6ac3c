package query

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/store/storepb"
)

// xorAggrChunk encodes samples at ts (value = a function of the timestamp, so that overlapping
// chunks agree on shared timestamps) as a StoreAPI raw chunk.
func xorAggrChunk(t *testing.T, ts []int64) storepb.AggrChunk {
	t.Helper()
	c := chunkenc.NewXORChunk()
	app, err := c.Appender()
	require.NoError(t, err)
	for _, x := range ts {
		app.Append(x, sampleAt(x))
	}
	return storepb.AggrChunk{MinTime: ts[0], MaxTime: ts[len(ts)-1], Raw: &storepb.Chunk{Type: storepb.Chunk_XOR, Data: c.Bytes()}}
}

func sampleAt(t int64) float64 { return float64(t)*0.5 + 3 }

// TestChunkSeriesIteratorMatchesTheSamplesInsideTheQueryRange drives a series' iterator with
// random Next and Seek calls and compares every answer with the list of its samples inside
// [mint, maxt]: chunks before, after, across and inside the bounds, gaps between chunks, and
// overlapping chunks.
func TestChunkSeriesIteratorMatchesTheSamplesInsideTheQueryRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 400 {
		overlap := round%4 == 3
		var chunks []storepb.AggrChunk
		all := map[int64]bool{}
		next := int64(rng.IntN(50))
		for range 1 + rng.IntN(6) {
			var ts []int64
			for range 1 + rng.IntN(30) {
				ts = append(ts, next)
				all[next] = true
				next += 1 + int64(rng.IntN(20))
			}
			chunks = append(chunks, xorAggrChunk(t, ts))
			next += int64(rng.IntN(100)) // a gap between chunks
			if overlap {
				next -= int64(rng.IntN(200))
				next = max(next, 0)
			}
		}
		rng.Shuffle(len(chunks), func(i, j int) { chunks[i], chunks[j] = chunks[j], chunks[i] })
		mint := int64(rng.IntN(int(next)+50)) - 25
		maxt := mint + int64(rng.IntN(int(next)+50))
		var want []int64
		for x := range all {
			if x >= mint && x <= maxt {
				want = append(want, x)
			}
		}
		slices.Sort(want)

		s := newChunkSeries(labels.FromStrings("job", "api"), chunks, mint, maxt)
		it := s.Iterator(nil)
		pos := -1
		for step := range 60 {
			var vt chunkenc.ValueType
			if rng.IntN(3) == 0 {
				target := mint + int64(rng.IntN(int(maxt-mint)+40)) - 20
				vt = it.Seek(target)
				pos = max(pos, 0)
				for pos < len(want) && want[pos] < target {
					pos++
				}
			} else {
				vt = it.Next()
				pos = min(pos+1, len(want))
			}
			if pos >= len(want) {
				require.Equal(t, chunkenc.ValNone, vt, "round %d step %d: past the last sample", round, step)
				continue
			}
			require.Equal(t, chunkenc.ValFloat, vt, "round %d step %d: want the sample at %d", round, step, want[pos])
			gotT, gotV := it.At()
			require.Equal(t, want[pos], gotT, "round %d step %d (mint %d, maxt %d)", round, step, mint, maxt)
			require.Equal(t, sampleAt(want[pos]), gotV)
			require.Equal(t, want[pos], it.AtT())
		}
		require.NoError(t, it.Err())
	}
}
