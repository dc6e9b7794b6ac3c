package ingest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/thanos/pkg/block"
	"github.com/thanos-io/thanos/pkg/block/metadata"
	thanosshipper "github.com/thanos-io/thanos/pkg/shipper"
)

// shipBase is a block boundary (a multiple of 2h) a day before now, so the head's blocks are
// cut at known times.
var shipBase = (time.Now().Add(-24*time.Hour).UnixMilli() / (2 * time.Hour).Milliseconds()) * (2 * time.Hour).Milliseconds()

// appendHours appends one sample every 15s of 3 series over [shipBase+from, shipBase+to) and
// compacts the head, which cuts every 2h block the head has passed by more than 1h.
func appendHours(t *testing.T, n *Node, from, to int) {
	t.Helper()
	db := n.DB()
	app := db.Appender(context.Background())
	for ts := shipBase + int64(from)*time.Hour.Milliseconds(); ts < shipBase+int64(to)*time.Hour.Milliseconds(); ts += 15_000 {
		for s := range 3 {
			_, err := app.Append(0, labels.FromStrings(labels.MetricName, "shipped", "series", string(rune('a'+s))), ts, float64(ts/1000+int64(s)))
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	require.NoError(t, db.Compact(context.Background()))
}

// recordingBucket remembers the order of uploads and fails the ones its fail function picks.
type recordingBucket struct {
	objstore.Bucket
	mu      sync.Mutex
	order   []string
	fail    atomic.Pointer[func(name string) bool]
	failing atomic.Int64
}

func newRecordingBucket() *recordingBucket {
	return &recordingBucket{Bucket: objstore.NewInMemBucket()}
}

func (b *recordingBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	if f := b.fail.Load(); f != nil && (*f)(name) {
		b.failing.Add(1)
		// Half the object arrives, as when the connection breaks.
		data, _ := io.ReadAll(r)
		_ = b.Bucket.Upload(ctx, name, bytes.NewReader(data[:len(data)/2]))
		return errors.New("injected upload failure")
	}
	b.mu.Lock()
	b.order = append(b.order, name)
	b.mu.Unlock()
	return b.Bucket.Upload(ctx, name, r, opts...)
}

func (b *recordingBucket) failWhen(f func(name string) bool) { b.fail.Store(&f) }

func (b *recordingBucket) uploads() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.order)
}

// bucketObject reads a whole object.
func bucketObject(t *testing.T, bkt objstore.Bucket, name string) []byte {
	t.Helper()
	r, err := bkt.Get(context.Background(), name)
	require.NoError(t, err)
	defer r.Close()
	data, err := io.ReadAll(r)
	require.NoError(t, err)
	return data
}

// requireShippedIntact checks that the bucket holds exactly the node's level-1 blocks, each
// with the local files byte for byte and a Thanos meta.json that describes them.
func requireShippedIntact(t *testing.T, n *Node, bkt objstore.Bucket) []ulid.ULID {
	t.Helper()
	var local []ulid.ULID
	for _, b := range n.DB().Blocks() {
		m := b.Meta()
		require.Equal(t, 1, m.Compaction.Level, "local compaction must be off while shipping")
		local = append(local, m.ULID)
		id := m.ULID.String()
		for _, f := range []string{block.IndexFilename, filepath.Join(block.ChunksDirname, "000001")} {
			want, err := os.ReadFile(filepath.Join(b.Dir(), f))
			require.NoError(t, err)
			require.Equal(t, want, bucketObject(t, bkt, path.Join(id, filepath.ToSlash(f))), "block %s: %s differs from the local file", id, f)
		}
		meta, err := metadata.Read(io.NopCloser(bytes.NewReader(bucketObject(t, bkt, path.Join(id, block.MetaFilename)))))
		require.NoError(t, err)
		require.Equal(t, m.ULID, meta.ULID)
		require.Equal(t, m.MinTime, meta.MinTime)
		require.Equal(t, m.MaxTime, meta.MaxTime)
		require.Equal(t, m.Stats, meta.Stats)
		require.Equal(t, map[string]string{"region": "eu-west-1"}, meta.Thanos.Labels)
		require.Equal(t, int64(0), meta.Thanos.Downsample.Resolution)
		require.Equal(t, metadata.ReceiveSource, meta.Thanos.Source)
		require.Equal(t, []string{"000001"}, meta.Thanos.SegmentFiles)
		require.Positive(t, meta.Thanos.IndexStats.SeriesMaxSize)
		require.Positive(t, meta.Thanos.IndexStats.ChunkMaxSize)
		var files []string
		for _, f := range meta.Thanos.Files {
			files = append(files, f.RelPath)
		}
		require.ElementsMatch(t, []string{"chunks/000001", "index", "meta.json"}, files)
	}
	var inBucket []ulid.ULID
	require.NoError(t, bkt.Iter(context.Background(), "", func(name string) error {
		id, ok := block.IsBlockDir(name)
		require.True(t, ok, "unexpected object %s", name)
		inBucket = append(inBucket, id)
		return nil
	}))
	require.ElementsMatch(t, local, inBucket)
	return local
}

func shipperGauge(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestShipperUploadsEachBlockOnceChunksAndIndexBeforeMeta(t *testing.T) {
	bkt := newRecordingBucket()
	cfg := testConfig(t)
	cfg.Bucket = bkt
	reg := prometheus.NewRegistry()
	n, _ := runNode(t, cfg, reg)
	appendHours(t, n, 0, 7) // blocks [0h,2h) and [2h,4h)
	require.Len(t, n.DB().Blocks(), 2)

	require.Eventually(t, func() bool {
		return counterValue(t, reg, "meridian_ingest_shipper_uploads_total", nil) == 2
	}, 30*time.Second, 50*time.Millisecond)
	ids := requireShippedIntact(t, n, bkt)

	var total int64
	order := bkt.uploads()
	for _, id := range ids {
		var mine []string
		for _, name := range order {
			if strings.HasPrefix(name, id.String()+"/") {
				mine = append(mine, strings.TrimPrefix(name, id.String()+"/"))
				attrs, err := bkt.Attributes(context.Background(), name)
				require.NoError(t, err)
				total += attrs.Size
			}
		}
		require.Equal(t, []string{"chunks/000001", "index", "meta.json"}, mine, "block %s upload order", id)
	}
	require.Equal(t, float64(total), counterValue(t, reg, "meridian_ingest_shipper_uploaded_bytes_total", nil))
	require.Zero(t, counterValue(t, reg, "meridian_ingest_shipper_upload_failures_total", nil))
	require.Zero(t, shipperGauge(t, reg, "meridian_ingest_shipper_oldest_pending_block_age_seconds"))

	file, err := thanosshipper.ReadMetaFile(filepath.Join(cfg.TSDBPath, thanosshipper.DefaultMetaFilename))
	require.NoError(t, err)
	require.ElementsMatch(t, ids, file.Uploaded)

	// A third block is uploaded on its own; the first two are not sent again.
	appendHours(t, n, 7, 9)
	require.Eventually(t, func() bool {
		return counterValue(t, reg, "meridian_ingest_shipper_uploads_total", nil) == 3
	}, 30*time.Second, 50*time.Millisecond)
	requireShippedIntact(t, n, bkt)
	require.Len(t, bkt.uploads(), 9)
}

func TestShipperRetriesAFailingBucketWhileTheNodeKeepsServingAndRetentionWaits(t *testing.T) {
	bkt := newRecordingBucket()
	bkt.failWhen(func(name string) bool { return strings.HasSuffix(name, "/index") })
	cfg := testConfig(t)
	cfg.Bucket = bkt
	cfg.Retention = time.Hour
	reg := prometheus.NewRegistry()
	n, _ := runNode(t, cfg, reg)
	appendHours(t, n, 0, 7)

	require.Eventually(t, func() bool {
		return counterValue(t, reg, "meridian_ingest_shipper_upload_failures_total", nil) >= 2
	}, 30*time.Second, 50*time.Millisecond, "the failing upload is retried with backoff")
	require.Positive(t, shipperGauge(t, reg, "meridian_ingest_shipper_oldest_pending_block_age_seconds"))
	require.Zero(t, counterValue(t, reg, "meridian_ingest_shipper_uploads_total", nil))
	ok, err := bkt.Exists(context.Background(), path.Join(n.DB().Blocks()[0].Meta().ULID.String(), block.MetaFilename))
	require.NoError(t, err)
	require.False(t, ok, "meta.json is never written before the index")

	// The node stays ready and keeps taking writes.
	code, _ := get(t, n.Handler(), "/-/ready")
	require.Equal(t, http.StatusOK, code)
	code, msg := post(t, n.Handler(), rw1ContentType, rw1(t, series{lbls("__name__", "during_outage"), samplesAt(shipBase+7*time.Hour.Milliseconds(), 5, 1)}))
	require.Equal(t, http.StatusNoContent, code, msg)

	// Retention (1h) would delete both blocks, and does not while they are not uploaded.
	appendHours(t, n, 7, 9)
	require.Len(t, n.DB().Blocks(), 3)

	bkt.failWhen(func(string) bool { return false })
	require.Eventually(t, func() bool {
		return counterValue(t, reg, "meridian_ingest_shipper_uploads_total", nil) == 3
	}, 2*time.Minute, 100*time.Millisecond)
	requireShippedIntact(t, n, bkt)
	require.Zero(t, shipperGauge(t, reg, "meridian_ingest_shipper_oldest_pending_block_age_seconds"))

	// Uploaded, the old blocks go at the next reload.
	appendHours(t, n, 9, 11)
	require.Eventually(t, func() bool {
		return counterValue(t, reg, "meridian_ingest_shipper_uploads_total", nil) == 4
	}, 30*time.Second, 50*time.Millisecond)
	appendHours(t, n, 11, 13)
	require.Less(t, len(n.DB().Blocks()), 4, "uploaded blocks beyond retention are deleted")
}

// TestShipperAfterACrashUploadsWhatIsMissingAndNothingTwice starts a node on the state a kill -9
// can leave: one block uploaded whole but the shipper file not yet rewritten, the next one
// with its chunks and half its index in the bucket and no meta.json.
func TestShipperAfterACrashUploadsWhatIsMissingAndNothingTwice(t *testing.T) {
	bkt := newRecordingBucket()
	cfg := testConfig(t)
	cfg.Bucket = bkt
	reg := prometheus.NewRegistry()
	n, stop := runNode(t, cfg, reg)
	appendHours(t, n, 0, 7)
	require.Eventually(t, func() bool {
		return counterValue(t, reg, "meridian_ingest_shipper_uploads_total", nil) == 2
	}, 30*time.Second, 50*time.Millisecond)
	ids := requireShippedIntact(t, n, bkt)
	stop()

	require.NoError(t, os.Remove(filepath.Join(cfg.TSDBPath, thanosshipper.DefaultMetaFilename)))
	second := ids[1].String()
	require.NoError(t, bkt.Delete(context.Background(), path.Join(second, block.MetaFilename)))
	index := bucketObject(t, bkt, path.Join(second, block.IndexFilename))
	require.NoError(t, bkt.Bucket.Upload(context.Background(), path.Join(second, block.IndexFilename), bytes.NewReader(index[:len(index)/2])))
	// A half-made upload directory, as a crash during the hard links leaves it.
	require.NoError(t, os.MkdirAll(filepath.Join(cfg.TSDBPath, uploadDir, second, "chunks"), 0o750))

	before := len(bkt.uploads())
	reg = prometheus.NewRegistry()
	n, _ = runNode(t, cfg, reg)
	require.Eventually(t, func() bool {
		return counterValue(t, reg, "meridian_ingest_shipper_uploads_total", nil) == 1
	}, 30*time.Second, 50*time.Millisecond)
	requireShippedIntact(t, n, bkt)
	again := bkt.uploads()[before:]
	require.Equal(t, []string{second + "/chunks/000001", second + "/index", second + "/meta.json"}, again, "only the incomplete block is sent again")
	_, err := os.Stat(filepath.Join(cfg.TSDBPath, uploadDir, second))
	require.True(t, os.IsNotExist(err), "upload directory cleaned")
	file, err := thanosshipper.ReadMetaFile(filepath.Join(cfg.TSDBPath, thanosshipper.DefaultMetaFilename))
	require.NoError(t, err)
	require.ElementsMatch(t, ids, file.Uploaded)
}

func TestShippingTurnsLocalCompactionOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.applyDefaults()
	opts := tsdbOptions(cfg)
	require.Greater(t, opts.MaxBlockDuration, opts.MinBlockDuration)
	newShipper(testLogger(), prometheus.NewRegistry(), objstore.NewInMemBucket(), cfg.TSDBPath, cfg.ExternalLabels).configure(opts)
	require.Equal(t, opts.MinBlockDuration, opts.MaxBlockDuration)
	require.False(t, opts.EnableOverlappingCompaction)
	require.NotNil(t, opts.BlocksToDelete)
	var _ tsdb.BlocksToDeleteFunc = opts.BlocksToDelete
}
