// Package ingest is Meridian's per-region store: a Prometheus remote-write receiver that appends
// into an embedded Prometheus TSDB (WAL, head compaction, retention, out-of-order window) and
// serves what it holds over the Thanos StoreAPI with the region's external labels.
//
// A Node owns one TSDB, one HTTP server (remote write, health, readiness, metrics) and one gRPC
// server (StoreAPI). Several nodes can run in one process, each on its own listeners, registry
// and directory.
package ingest
