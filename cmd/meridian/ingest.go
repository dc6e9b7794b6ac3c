package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/model"
	"github.com/thanos-io/objstore"

	"github.com/meridian-obs/meridian/ingest"
)

func ingestCommand(app *kingpin.Application) subcommand {
	cmd := app.Command("ingest", "Per-region store: Prometheus remote-write receiver, embedded TSDB, Thanos StoreAPI server.")
	labelFlags := cmd.Flag("label", "External label name=value announced by this store and added to every series, e.g. region=eu-west-1 or region=\"eu-west-1\". Repeat for more labels; at least one is required.").
		Required().PlaceHolder("NAME=VALUE").Strings()
	tsdbPath := cmd.Flag("tsdb.path", "Directory of the TSDB (blocks and WAL).").Required().String()
	httpAddr := cmd.Flag("http-address", "Listen address of remote write (POST /api/v1/write), /-/healthy, /-/ready and /metrics.").
		Default("0.0.0.0:10902").String()
	grpcAddr := cmd.Flag("grpc-address", "Listen address of the Thanos StoreAPI (gRPC).").Default("0.0.0.0:10901").String()
	retention := model.Duration(15 * 24 * time.Hour)
	cmd.Flag("tsdb.retention.time", "How long to keep samples. Units: ms, s, m, h, d, w, y.").Default("15d").SetValue(&retention)
	retentionSize := cmd.Flag("tsdb.retention.size", "Maximum bytes of blocks to keep, oldest dropped first; 0 disables. Units: B, KB, MB, GB, TB, PB (base 2).").
		Default("0").Bytes()
	oooWindow := model.Duration(0)
	cmd.Flag("tsdb.out-of-order.time-window", "Accept samples up to this much older than the newest sample of their series; 0 rejects out-of-order samples.").
		Default("0s").SetValue(&oooWindow)
	maxBody := cmd.Flag("remote-write.max-body-size", "Largest remote-write body accepted, compressed and decompressed; larger bodies get 413.").
		Default(units.Base2Bytes(ingest.DefaultMaxBodySize).String()).Bytes()
	maxExemplars := cmd.Flag("tsdb.max-exemplars", "Exemplars kept in the TSDB's exemplar storage, a circular buffer across all series (kept in the WAL); when full, the oldest is overwritten. 0, the default (as Thanos Receive's flag of the same name), turns exemplar storage off; Prometheus's size is 100000.").
		Default(fmt.Sprint(ingest.DefaultMaxExemplars)).Int64()
	httpConfig := cmd.Flag("http.config", "Path to an exporter-toolkit web configuration file (TLS, client CA, basic auth) for the HTTP server.").
		Default("").String()
	grpcCert := cmd.Flag("grpc-server-tls-cert", "TLS certificate of the gRPC server; empty serves plaintext.").Default("").String()
	grpcKey := cmd.Flag("grpc-server-tls-key", "TLS key of the gRPC server.").Default("").String()
	grpcCA := cmd.Flag("grpc-server-tls-client-ca", "CA to verify gRPC client certificates with; when set, clients must present one (mTLS).").Default("").String()
	objstoreFile := cmd.Flag("objstore.config-file", "Path to a Thanos object storage configuration (YAML: type, config, prefix). When given, every 2h block is uploaded there for Thanos Store Gateway and Compactor, local compaction is off and retention deletes only uploaded blocks.").
		Default("").String()
	objstoreInline := cmd.Flag("objstore.config", "Alternative to --objstore.config-file (mutually exclusive): the object storage configuration itself.").
		Default("").String()

	return subcommand{cmd: cmd, run: func(ctx context.Context, logger *slog.Logger) error {
		ext, err := ingest.ParseExternalLabels(*labelFlags)
		if err != nil {
			return err
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			versioncollector.NewCollector("meridian"),
		)
		bucket, err := openBucket(logger, reg, *objstoreFile, *objstoreInline)
		if err != nil {
			return err
		}
		if bucket != nil {
			defer bucket.Close()
		}
		node, err := ingest.New(logger, reg, ingest.Config{
			ExternalLabels:       ext,
			TSDBPath:             *tsdbPath,
			HTTPAddress:          *httpAddr,
			GRPCAddress:          *grpcAddr,
			HTTPConfigFile:       *httpConfig,
			GRPCTLS:              ingest.GRPCTLSConfig{CertFile: *grpcCert, KeyFile: *grpcKey, ClientCAFile: *grpcCA},
			Retention:            time.Duration(retention),
			RetentionSize:        int64(*retentionSize),
			OutOfOrderTimeWindow: time.Duration(oooWindow),
			MaxBodySize:          int64(*maxBody),
			MaxExemplars:         *maxExemplars,
			Bucket:               bucket,
		})
		if err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		return node.Run(ctx)
	}}
}

// openBucket opens the bucket of --objstore.config-file or --objstore.config, or returns nil
// when neither is given (shipping off), as Thanos's path-or-content flags do.
func openBucket(logger *slog.Logger, reg prometheus.Registerer, file, inline string) (objstore.Bucket, error) {
	var conf []byte
	source := "--objstore.config"
	switch {
	case file != "" && inline != "":
		return nil, errors.New("--objstore.config-file and --objstore.config are mutually exclusive")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--objstore.config-file: %w", err)
		}
		conf, source = b, file
	case inline != "":
		conf = []byte(inline)
	default:
		return nil, nil
	}
	bkt, err := ingest.NewBucket(logger, reg, conf)
	if err != nil {
		return nil, fmt.Errorf("objstore config %s: %w", source, err)
	}
	return bkt, nil
}
