package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/prometheus/prometheus/util/testutil"
	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/internal/storeapi"
)

// shardLabel is the external label of each shard store. It is configured as a replica label,
// so the stores strip it from their answers; the shards hold disjoint series, so nothing is
// merged and results must equal those of one storage holding everything.
const shardLabel = "meridian_shard"

const shards = 3

// shardedStorage is a storage.Storage whose appender spreads series (by label hash) over three
// TSDBs, each behind a StoreAPI server on loopback, and whose querier is the Fanout over them.
type shardedStorage struct {
	dbs    []*teststorage.TestStorage
	fanout *Fanout
	stop   func()
}

func newShardedStorage(t *testing.T) func(testutil.T) storage.Storage {
	return func(testutil.T) storage.Storage {
		s := &shardedStorage{}
		var addrs []string
		var stops []func()
		for i := range shards {
			db := teststorage.New(t)
			s.dbs = append(s.dbs, db)
			st := listenStore(t, "127.0.0.1:0", db.DB, storeapi.Options{ExternalLabels: labels.FromStrings(shardLabel, strconv.Itoa(i))})
			addrs = append(addrs, st.addr)
			stops = append(stops, st.srv.Stop)
		}
		set, err := NewStoreSet(nil, nil, StoreSetOptions{Endpoints: addrs, ProbeInterval: time.Minute})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = set.Run(ctx)
		}()
		require.Eventually(t, set.Ready, 10*time.Second, time.Millisecond)
		s.fanout = NewFanout(nil, nil, set, FanoutOptions{
			ReplicaLabels:        []string{shardLabel},
			StoreResponseTimeout: time.Minute,
			PartialResponse:      false, // any store failure fails the evaluation
		})
		s.stop = func() {
			cancel()
			<-done
			for _, stop := range stops {
				stop()
			}
		}
		return s
	}
}

func (s *shardedStorage) Querier(mint, maxt int64) (storage.Querier, error) {
	return s.fanout.Querier(mint, maxt)
}

func (s *shardedStorage) ChunkQuerier(int64, int64) (storage.ChunkQuerier, error) {
	return nil, errors.New("sharded test storage: chunk queries go through the fan-out's Querier")
}

func (s *shardedStorage) Appender(ctx context.Context) storage.Appender {
	a := &shardAppender{}
	for _, db := range s.dbs {
		a.apps = append(a.apps, db.Appender(ctx))
	}
	return a
}

func (s *shardedStorage) StartTime() (int64, error) { return math.MinInt64, nil }

func (s *shardedStorage) Close() error {
	s.stop()
	var errs []error
	for _, db := range s.dbs {
		errs = append(errs, db.Close())
	}
	return errors.Join(errs...)
}

// shardAppender routes every series to one shard by the hash of its labels.
type shardAppender struct {
	apps []storage.Appender
}

func (a *shardAppender) shard(l labels.Labels) storage.Appender {
	return a.apps[l.Hash()%uint64(len(a.apps))]
}

func (a *shardAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	return a.shard(l).Append(ref, l, t, v)
}

func (a *shardAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return a.shard(l).AppendHistogram(ref, l, t, h, fh)
}

func (a *shardAppender) AppendHistogramSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return a.shard(l).AppendHistogramSTZeroSample(ref, l, t, st, h, fh)
}

func (a *shardAppender) AppendSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64) (storage.SeriesRef, error) {
	return a.shard(l).AppendSTZeroSample(ref, l, t, st)
}

func (a *shardAppender) AppendExemplar(ref storage.SeriesRef, l labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	return a.shard(l).AppendExemplar(ref, l, e)
}

func (a *shardAppender) UpdateMetadata(ref storage.SeriesRef, l labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	return a.shard(l).UpdateMetadata(ref, l, m)
}

func (a *shardAppender) SetOptions(opts *storage.AppendOptions) {
	for _, app := range a.apps {
		app.SetOptions(opts)
	}
}

func (a *shardAppender) Commit() error {
	var errs []error
	for _, app := range a.apps {
		errs = append(errs, app.Commit())
	}
	return errors.Join(errs...)
}

func (a *shardAppender) Rollback() error {
	var errs []error
	for _, app := range a.apps {
		errs = append(errs, app.Rollback())
	}
	return errors.Join(errs...)
}

// TestPromQLCorpusOverShardedStores runs Prometheus's own PromQL test corpus against data
// sharded over three StoreAPI servers reached over gRPC and merged by the fan-out: every
// expectation written for one local TSDB must hold through the querier.
func TestPromQLCorpusOverShardedStores(t *testing.T) {
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	promqltest.RunBuiltinTestsWithStorage(t, engine, newShardedStorage(t))
}

// TestShardedStorageSpreadsSeries guards the harness itself: the corpus only proves something
// if the series really land on all three stores.
func TestShardedStorageSpreadsSeries(t *testing.T) {
	s := newShardedStorage(t)(t).(*shardedStorage)
	defer s.Close()
	app := s.Appender(context.Background())
	for i := range 30 {
		_, err := app.Append(0, labels.FromStrings("__name__", "m", "i", fmt.Sprint(i)), 0, 1)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	for i, db := range s.dbs {
		require.NotZero(t, db.Head().NumSeries(), "shard %d holds no series", i)
	}
	got, ws, err := selectAll(t, context.Background(), s, 0, 1, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
	require.NoError(t, err)
	require.Empty(t, ws)
	require.Len(t, got, 30)
	for lset := range got {
		require.NotContains(t, lset, shardLabel)
	}
}
