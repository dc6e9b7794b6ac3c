package ingest

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/client"
)

// NewBucket opens the object storage bucket described by conf, a Thanos objstore
// configuration (type: S3|GCS|AZURE|SWIFT|FILESYSTEM|..., config: ...), the file Thanos's
// --objstore.config-file takes, so one file serves the node, the Store Gateway and the
// Compactor. Every provider objstore has is available. The bucket's operations are counted
// under Thanos's names (thanos_objstore_bucket_*) on reg.
func NewBucket(logger *slog.Logger, reg prometheus.Registerer, conf []byte) (objstore.InstrumentedBucket, error) {
	bkt, err := client.NewBucket(kitLogger{logger.With("component", "objstore")}, conf, "meridian-ingest", nil)
	if err != nil {
		return nil, err
	}
	return objstore.WrapWithMetrics(bkt, prometheus.WrapRegistererWithPrefix("thanos_", reg), bkt.Name()), nil
}

// countingBucket counts the bytes of each object it uploads.
type countingBucket struct {
	objstore.Bucket
	bytes prometheus.Counter
}

func (b countingBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	size, sizeErr := objstore.TryToGetSize(r)
	err := b.Bucket.Upload(ctx, name, r, opts...)
	if err == nil && sizeErr == nil {
		b.bytes.Add(float64(size))
	}
	return err
}

// kitLogger hands Thanos's go-kit logging to slog: "level" and "msg" become the record's level
// and message, the other pairs its attributes.
type kitLogger struct{ l *slog.Logger }

var _ log.Logger = kitLogger{}

func (k kitLogger) Log(keyvals ...any) error {
	lvl, msg := slog.LevelInfo, ""
	attrs := make([]any, 0, len(keyvals))
	for i := 0; i+1 < len(keyvals); i += 2 {
		switch key := fmt.Sprint(keyvals[i]); key {
		case "level":
			switch fmt.Sprint(keyvals[i+1]) {
			case "debug":
				lvl = slog.LevelDebug
			case "warn":
				lvl = slog.LevelWarn
			case "error":
				lvl = slog.LevelError
			}
		case "msg":
			msg = fmt.Sprint(keyvals[i+1])
		default:
			attrs = append(attrs, key, keyvals[i+1])
		}
	}
	k.l.Log(context.Background(), lvl, msg, attrs...)
	return nil
}
