package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/objstore"
)

// DefaultMaxBodySize is the default limit on a remote-write body, compressed and decompressed.
// It equals the decompressed limit Prometheus's own receiver enforces.
const DefaultMaxBodySize = 32 << 20

// DefaultMaxExemplars is the --tsdb.max-exemplars default: 0, exemplar storage off, as Thanos
// Receive's flag of the same name. Storing exemplars costs ingest throughput (the TSDB's exemplar
// storage validates, appends and logs each one behind one lock: `make bench` measures it), so a
// region turns it on when its Prometheus sends exemplars (`send_exemplars: true`) and its users
// follow them to traces. The storage is then a circular buffer of that many exemplars across all
// series, allocated when the TSDB opens (about 8 MiB for Prometheus's 100,000).
const DefaultMaxExemplars = 0

// PrometheusMaxExemplars is Prometheus's default size of its exemplar storage
// (storage.exemplars.max_exemplars), the size `meridian dev` and the chart's examples use.
const PrometheusMaxExemplars = 100_000

// DefaultBlockDuration is the span of the blocks the head is compacted into, as in Prometheus.
const DefaultBlockDuration = 2 * time.Hour

// Config is everything one ingest node needs. The zero value of each optional field means the
// Prometheus default.
type Config struct {
	// ExternalLabels identify this store globally (at least region). Required.
	ExternalLabels labels.Labels
	// TSDBPath is the directory of the TSDB and its WAL. Required.
	TSDBPath string
	// HTTPAddress is the listen address of remote write, /-/ready, /-/healthy and /metrics.
	// Port 0 picks a free port; HTTPAddr reports it.
	HTTPAddress string
	// GRPCAddress is the listen address of the StoreAPI. Port 0 picks a free port.
	GRPCAddress string
	// HTTPConfigFile is an exporter-toolkit web configuration (TLS, client CA, basic auth).
	HTTPConfigFile string
	// GRPCTLS configures TLS (and mTLS with a client CA) on the StoreAPI server.
	GRPCTLS GRPCTLSConfig

	// Retention drops blocks older than this. Zero means 15 days.
	Retention time.Duration
	// RetentionSize drops the oldest blocks when the TSDB is larger than this many bytes. Zero
	// means no size limit.
	RetentionSize int64
	// OutOfOrderTimeWindow accepts samples this much older than a series' newest sample.
	OutOfOrderTimeWindow time.Duration
	// BlockDuration is the span of blocks cut from the head. Zero means DefaultBlockDuration.
	BlockDuration time.Duration
	// MaxBodySize limits a remote-write body in bytes, before and after snappy decompression.
	// Larger bodies get 413. Zero means DefaultMaxBodySize.
	MaxBodySize int64
	// MaxExemplars is the size of the TSDB's exemplar storage (a circular buffer across all
	// series, kept in the WAL). Zero turns exemplar storage off: remote-written exemplars are
	// dropped, and the node serves no Exemplars API. The command's flag defaults to
	// DefaultMaxExemplars.
	MaxExemplars int64

	// Bucket, when set, receives every block cut from the head with a Thanos meta.json (see
	// shipper.go); local compaction is then off and retention deletes only uploaded blocks.
	// NewBucket opens one from a Thanos objstore configuration. The node does not close it.
	Bucket objstore.Bucket
}

// GRPCTLSConfig names the PEM files of the StoreAPI server's TLS set-up, as Thanos's
// --grpc-server-tls-* flags do. All empty means plaintext.
type GRPCTLSConfig struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
}

func (c *Config) applyDefaults() {
	if c.Retention == 0 {
		c.Retention = 15 * 24 * time.Hour
	}
	if c.BlockDuration == 0 {
		c.BlockDuration = DefaultBlockDuration
	}
	if c.MaxBodySize == 0 {
		c.MaxBodySize = DefaultMaxBodySize
	}
}

// Validate reports the first problem that would stop a node from starting.
func (c *Config) Validate() error {
	if c.ExternalLabels.IsEmpty() {
		return errors.New("at least one external label is required (e.g. region=eu-west-1): a store without external labels cannot be told apart from the others")
	}
	if c.TSDBPath == "" {
		return errors.New("tsdb path is required")
	}
	if c.HTTPAddress == "" || c.GRPCAddress == "" {
		return errors.New("http and grpc listen addresses are required")
	}
	switch {
	case c.Retention < 0:
		return fmt.Errorf("retention time %s is negative", c.Retention)
	case c.RetentionSize < 0:
		return fmt.Errorf("retention size %d is negative", c.RetentionSize)
	case c.OutOfOrderTimeWindow < 0:
		return fmt.Errorf("out-of-order time window %s is negative", c.OutOfOrderTimeWindow)
	case c.BlockDuration < 0:
		return fmt.Errorf("block duration %s is negative", c.BlockDuration)
	case c.MaxBodySize < 0:
		return fmt.Errorf("max body size %d is negative", c.MaxBodySize)
	case c.MaxExemplars < 0:
		return fmt.Errorf("max exemplars %d is negative", c.MaxExemplars)
	}
	t := c.GRPCTLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("grpc server TLS needs both a certificate and a key")
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		return errors.New("grpc server client CA needs a server certificate and key")
	}
	return nil
}

// ParseExternalLabels turns --label flags into a sorted label set. Each flag is name=value; the
// value may be double-quoted, Thanos style (region="eu-west-1"). Names must be valid Prometheus
// label names that are not reserved (no leading "__"), values must not be empty, and a name may
// appear only once.
func ParseExternalLabels(flags []string) (labels.Labels, error) {
	if len(flags) == 0 {
		return labels.EmptyLabels(), errors.New("at least one --label is required (e.g. --label region=eu-west-1)")
	}
	b := labels.NewBuilder(labels.EmptyLabels())
	seen := make(map[string]struct{}, len(flags))
	for _, f := range flags {
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			return labels.EmptyLabels(), fmt.Errorf("label %q: expected name=value", f)
		}
		name = strings.TrimSpace(name)
		if !model.LegacyValidation.IsValidLabelName(name) {
			return labels.EmptyLabels(), fmt.Errorf("label %q: %q is not a valid label name", f, name)
		}
		if strings.HasPrefix(name, "__") {
			return labels.EmptyLabels(), fmt.Errorf("label %q: names starting with __ are reserved", f)
		}
		if strings.HasPrefix(value, `"`) {
			unquoted, err := strconv.Unquote(value)
			if err != nil {
				return labels.EmptyLabels(), fmt.Errorf("label %q: unquote value: %w", f, err)
			}
			value = unquoted
		}
		if value == "" {
			return labels.EmptyLabels(), fmt.Errorf("label %q: value must not be empty", f)
		}
		if _, dup := seen[name]; dup {
			return labels.EmptyLabels(), fmt.Errorf("label %q: label name %q given more than once", f, name)
		}
		seen[name] = struct{}{}
		b.Set(name, value)
	}
	return b.Labels(), nil
}
