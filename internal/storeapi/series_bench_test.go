package storeapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/store/storepb"
)

// BenchmarkSeries measures a Series call over gRPC streaming every series of a TSDB head with
// three chunks each, with the external labels added (and the answer re-sorted where needed).
func BenchmarkSeries(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			db, err := tsdb.Open(b.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
			require.NoError(b, err)
			defer db.Close()
			app := db.Appender(context.Background())
			for i := range n {
				lset := labels.FromStrings("__name__", "http_requests_total", "instance", fmt.Sprintf("10.0.%d.%d:9090", i/256, i%256), "job", "api")
				for j := range 360 {
					_, err := app.Append(0, lset, headStart+int64(j)*scrapeInterval, float64(j))
					require.NoError(b, err)
				}
			}
			require.NoError(b, app.Commit())

			client, _ := startServer(b, db, Options{ExternalLabels: euWest})
			req := &storepb.SeriesRequest{
				MinTime: math.MinInt64, MaxTime: math.MaxInt64,
				Matchers: []storepb.LabelMatcher{eq("job", "api")},
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				stream, err := client.Series(context.Background(), req)
				require.NoError(b, err)
				got := 0
				for {
					resp, err := stream.Recv()
					if errors.Is(err, io.EOF) {
						break
					}
					require.NoError(b, err)
					if resp.GetSeries() != nil {
						got++
					}
				}
				require.Equal(b, n, got)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/series")
		})
	}
}
