// Package query is Meridian's global querier: it keeps a set of StoreAPI endpoints (one or more
// per region), fans Series/LabelNames/LabelValues calls out to the ones that can match, merges
// and deduplicates their streams, and serves the result through Prometheus's PromQL engine and
// HTTP API. A store that fails or times out is reported as a warning naming its region (partial
// response) or fails the request, per request; it never silently disappears from an answer.
package query
