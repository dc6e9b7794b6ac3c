package ingest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/thanos/pkg/block"
	"github.com/thanos-io/thanos/pkg/block/metadata"
	thanosshipper "github.com/thanos-io/thanos/pkg/shipper"
)

// Shipping follows Thanos's shipper (github.com/thanos-io/thanos/pkg/shipper, used by the
// sidecar and Receive) so that the bucket is one Thanos's Store Gateway, Compactor and bucket
// tools accept unchanged, and so that a node can take over a sidecar's data directory:
//   - every block the head is cut into (compaction level 1, not empty) is uploaded once, oldest
//     first, with the Thanos section of meta.json filled in (external labels, resolution 0,
//     source "receive", segment files, index stats);
//   - Thanos's block.Upload sends the chunks, then the index, then meta.json, so a reader never
//     takes a block without its meta.json for a whole one, and a block whose meta.json is missing
//     is uploaded again in full;
//   - thanos.shipper.json in the TSDB directory lists the uploaded blocks and is rewritten
//     (atomically) after each upload; a block it does not list is looked up in the bucket before
//     it is uploaded, so a restart (also after kill -9 between an upload and the file's rewrite)
//     neither loses nor duplicates a block.
//
// Unlike Thanos's shipper, local retention waits for the upload: a block is deleted only once
// it is in the bucket, so that a bucket outage longer than the retention costs disk, not data.

const (
	// shipperFile is the list of uploaded blocks; the name of Thanos's, so the file is shared
	// with a sidecar or Receive that used the directory before.
	shipperFile = thanosshipper.DefaultMetaFilename
	// uploadDir holds the hard-linked copy of the block being uploaded (Thanos's location).
	uploadDir = "thanos/upload"

	shipperTick       = time.Second
	shipperMinBackoff = time.Second
	shipperMaxBackoff = time.Minute
)

// shipper uploads the node's TSDB blocks to a bucket.
type shipper struct {
	logger  *slog.Logger
	bucket  objstore.Bucket
	dir     string
	labels  labels.Labels
	metrics *shipperMetrics

	// db is set once the TSDB is open; the retention hook deletes nothing before.
	db atomic.Pointer[tsdb.DB]

	mu       sync.Mutex // guards uploaded
	uploaded map[ulid.ULID]struct{}
}

type shipperMetrics struct {
	uploads       prometheus.Counter
	failures      prometheus.Counter
	bytes         prometheus.Counter
	oldestPending prometheus.Gauge
}

func newShipperMetrics(reg prometheus.Registerer) *shipperMetrics {
	f := promauto.With(reg)
	return &shipperMetrics{
		uploads: f.NewCounter(prometheus.CounterOpts{
			Name: "meridian_ingest_shipper_uploads_total",
			Help: "Blocks uploaded to object storage (chunks, index and meta.json all written).",
		}),
		failures: f.NewCounter(prometheus.CounterOpts{
			Name: "meridian_ingest_shipper_upload_failures_total",
			Help: "Failed attempts to upload a block or to check the bucket for one; each is retried with backoff.",
		}),
		bytes: f.NewCounter(prometheus.CounterOpts{
			Name: "meridian_ingest_shipper_uploaded_bytes_total",
			Help: "Bytes of block files written to object storage.",
		}),
		oldestPending: f.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_ingest_shipper_oldest_pending_block_age_seconds",
			Help: "Time since the oldest block not yet uploaded was cut from the head; 0 when every block is uploaded.",
		}),
	}
}

func newShipper(logger *slog.Logger, reg prometheus.Registerer, bkt objstore.Bucket, dir string, ext labels.Labels) *shipper {
	return &shipper{
		logger:  logger.With("component", "shipper", "bucket", bkt.Name()),
		bucket:  bkt,
		dir:     dir,
		labels:  ext,
		metrics: newShipperMetrics(reg),
	}
}

// configure turns off what the Thanos Compactor owns once blocks are shipped, as the sidecar
// requires of Prometheus: no compaction of blocks (the largest block is the head's 2h block),
// no vertical compaction of overlapping ones, and retention only of uploaded blocks.
func (s *shipper) configure(opts *tsdb.Options) {
	opts.MaxBlockDuration = opts.MinBlockDuration
	opts.EnableOverlappingCompaction = false
	opts.BlocksToDelete = s.blocksToDelete
}

// opened is called with the TSDB once it is open.
func (s *shipper) opened(db *tsdb.DB) {
	s.db.Store(db)
}

// blocksToDelete is the TSDB's retention (tsdb.DefaultBlocksToDelete) less the blocks that
// still wait for their upload.
func (s *shipper) blocksToDelete(blocks []*tsdb.Block) map[ulid.ULID]struct{} {
	db := s.db.Load()
	if db == nil {
		return map[ulid.ULID]struct{}{}
	}
	deletable := tsdb.DefaultBlocksToDelete(db)(blocks)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range blocks {
		m := b.Meta()
		if _, ok := deletable[m.ULID]; !ok || !shippable(m) {
			continue
		}
		if _, done := s.uploaded[m.ULID]; !done {
			delete(deletable, m.ULID)
		}
	}
	return deletable
}

// shippable says whether a block is one to upload: cut from the head and holding samples, as
// Thanos's shipper decides (compacted blocks are the Compactor's).
func shippable(m tsdb.BlockMeta) bool {
	return m.Compaction.Level <= 1 && m.Stats.NumSamples > 0
}

// run uploads blocks until ctx is done: at once when the TSDB opens, then within a second of
// each new block, retrying failures with exponential backoff (1s to 1m). It never fails: a
// bucket outage leaves the node serving and the blocks waiting.
func (s *shipper) run(ctx context.Context, db func() *tsdb.DB) {
	s.cleanUploadDir()
	s.loadUploaded()
	backoff := shipperMinBackoff
	var next time.Time
	t := time.NewTicker(shipperTick)
	defer t.Stop()
	for {
		if d := db(); d != nil {
			pending := s.pending(d)
			s.setOldestPending(pending)
			if len(pending) > 0 && !time.Now().Before(next) {
				if err := s.sync(ctx, d); err != nil {
					if ctx.Err() != nil {
						return
					}
					s.logger.Warn("block upload failed, retrying", "retry_in", backoff, "err", err)
					next = time.Now().Add(backoff)
					backoff = min(2*backoff, shipperMaxBackoff)
				} else {
					backoff = shipperMinBackoff
					next = time.Time{}
				}
				s.setOldestPending(s.pending(d))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pending lists the blocks to upload, oldest first (the TSDB keeps them sorted by min time).
func (s *shipper) pending(db *tsdb.DB) []tsdb.BlockMeta {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []tsdb.BlockMeta
	for _, b := range db.Blocks() {
		m := b.Meta()
		if _, done := s.uploaded[m.ULID]; !done && shippable(m) {
			out = append(out, m)
		}
	}
	return out
}

func (s *shipper) setOldestPending(pending []tsdb.BlockMeta) {
	var oldest time.Time
	for _, m := range pending {
		if t := ulid.Time(m.ULID.Time()); oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		s.metrics.oldestPending.Set(0)
		return
	}
	s.metrics.oldestPending.Set(max(time.Since(oldest).Seconds(), 0))
}

// sync uploads the pending blocks in order and stops at the first failure, so the bucket never
// holds a block whose predecessors are missing for long.
func (s *shipper) sync(ctx context.Context, db *tsdb.DB) error {
	blocks := map[ulid.ULID]*tsdb.Block{}
	for _, b := range db.Blocks() {
		blocks[b.Meta().ULID] = b
	}
	for _, m := range s.pending(db) {
		b := blocks[m.ULID]
		exists, err := s.bucket.Exists(ctx, path.Join(m.ULID.String(), block.MetaFilename))
		if err != nil {
			s.metrics.failures.Inc()
			return fmt.Errorf("check block %s in bucket: %w", m.ULID, err)
		}
		if exists {
			if err := s.markUploaded(db, m.ULID); err != nil {
				return err
			}
			continue
		}
		start := time.Now()
		if err := s.upload(ctx, b.Dir(), m); err != nil {
			s.metrics.failures.Inc()
			return fmt.Errorf("upload block %s: %w", m.ULID, err)
		}
		// Counted once recorded, so that a block counted is one a restart will not send again.
		if err := s.markUploaded(db, m.ULID); err != nil {
			return err
		}
		s.metrics.uploads.Inc()
		s.logger.Info("block uploaded", "block", m.ULID, "mint", m.MinTime, "maxt", m.MaxTime, "took", time.Since(start))
	}
	return nil
}

// upload sends one block: a hard-linked copy of its chunks and index (so that the TSDB may
// delete the block meanwhile) with a meta.json carrying the Thanos section.
func (s *shipper) upload(ctx context.Context, blockDir string, m tsdb.BlockMeta) error {
	updir := filepath.Join(s.dir, uploadDir, m.ULID.String())
	if err := os.RemoveAll(updir); err != nil {
		return fmt.Errorf("clean upload directory: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(updir); err != nil {
			s.logger.Error("clean upload directory", "dir", updir, "err", err)
		}
	}()
	if err := hardlinkBlock(blockDir, updir); err != nil {
		return err
	}
	kit := kitLogger{s.logger}
	stats, err := block.GatherIndexHealthStats(ctx, kit, filepath.Join(updir, block.IndexFilename), m.MinTime, m.MaxTime)
	if err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	if err := stats.CriticalErr(); err != nil {
		return fmt.Errorf("index has critical issues, not uploading it (the Thanos Compactor would halt on it): %w", err)
	}
	meta := metadata.Meta{
		BlockMeta: m,
		Thanos: metadata.Thanos{
			Version:      metadata.ThanosVersion1,
			Labels:       s.labels.Map(),
			Downsample:   metadata.ThanosDownsample{Resolution: 0},
			Source:       metadata.ReceiveSource,
			SegmentFiles: block.GetSegmentFiles(updir),
			IndexStats:   metadata.IndexStats{SeriesMaxSize: stats.SeriesMaxSize, ChunkMaxSize: stats.ChunkMaxSize},
		},
	}
	if err := meta.WriteToDir(kit, updir); err != nil {
		return fmt.Errorf("write meta.json: %w", err)
	}
	bkt := countingBucket{Bucket: s.bucket, bytes: s.metrics.bytes}
	return block.Upload(ctx, kit, bkt, updir, metadata.NoneFunc)
}

// hardlinkBlock links a block's chunk segments and index into dst.
func hardlinkBlock(src, dst string) error {
	chunks := filepath.Join(dst, block.ChunksDirname)
	if err := os.MkdirAll(chunks, 0o750); err != nil {
		return fmt.Errorf("create upload directory: %w", err)
	}
	segments, err := os.ReadDir(filepath.Join(src, block.ChunksDirname))
	if err != nil {
		return fmt.Errorf("read chunks of %s: %w", src, err)
	}
	files := []string{block.IndexFilename}
	for _, f := range segments {
		files = append(files, filepath.Join(block.ChunksDirname, f.Name()))
	}
	for _, f := range files {
		if err := os.Link(filepath.Join(src, f), filepath.Join(dst, f)); err != nil {
			return fmt.Errorf("hard link %s: %w", f, err)
		}
	}
	return nil
}

// loadUploaded reads the shipper file; a missing or unreadable one starts empty, since every
// block it would have listed is found in the bucket before any upload.
func (s *shipper) loadUploaded() {
	up := map[ulid.ULID]struct{}{}
	meta, err := thanosshipper.ReadMetaFile(filepath.Join(s.dir, shipperFile))
	switch {
	case err == nil:
		for _, id := range meta.Uploaded {
			up[id] = struct{}{}
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		s.logger.Warn("shipper file unreadable, checking the bucket for every block", "err", err)
	}
	s.mu.Lock()
	s.uploaded = up
	s.mu.Unlock()
}

// markUploaded records id as uploaded, in memory and in the shipper file, which lists the
// uploaded blocks still held locally.
func (s *shipper) markUploaded(db *tsdb.DB, id ulid.ULID) error {
	s.mu.Lock()
	s.uploaded[id] = struct{}{}
	meta := &thanosshipper.Meta{Version: thanosshipper.MetaVersion1}
	for _, b := range db.Blocks() {
		if _, ok := s.uploaded[b.Meta().ULID]; ok {
			meta.Uploaded = append(meta.Uploaded, b.Meta().ULID)
		}
	}
	s.mu.Unlock()
	if err := thanosshipper.WriteMetaFile(kitLogger{s.logger}, filepath.Join(s.dir, shipperFile), meta); err != nil {
		return fmt.Errorf("write %s: %w", shipperFile, err)
	}
	return nil
}

// cleanUploadDir removes what an upload interrupted by a crash left.
func (s *shipper) cleanUploadDir() {
	if err := os.RemoveAll(filepath.Join(s.dir, uploadDir)); err != nil {
		s.logger.Warn("clean upload directory", "err", err)
	}
}
