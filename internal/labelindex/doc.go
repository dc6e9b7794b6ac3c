// Package labelindex versions a store's label index, so that a querier can keep the answers a
// store gave to LabelNames and LabelValues and use them again for as long as they hold.
//
// Label calls (/api/v1/labels and /api/v1/label/<name>/values) are what Grafana's variables
// and query editor make all the time; each would otherwise cost a gRPC call to every region.
// `meridian query` answers them from a cache for the stores that version their label index,
// which `meridian ingest` does with this package.
//
// # What a store numbers
//
// A store keeps a Tracker, which numbers the changes of its label index in order. A change is
// either
//
//   - the creation of series: each committed write that created series, recorded with the
//     metric names of those series by the writer after the series are indexed and before the
//     write is acknowledged; or
//   - a structural change that may alter any answer: the head truncated (series removed),
//     blocks added or removed (compaction, retention), out-of-order data widening the head's
//     out-of-order range. The store checks for one after every write and every 100 ms.
//
// Samples appended to existing series change nothing. The version token of the store is its
// epoch (new at every start) and the number of its last change.
//
// # How a querier learns of changes
//
// The store sends the token with each label answer it versions (gRPC response header
// HeaderKey), and it serves the Watch stream (meridian.labelindex.v1.LabelIndex/Watch): the
// querier pings it (every 250 ms by default), the store answers every ping with its token, and
// it pushes each change as soon as it is recorded: its number and, for new series, their metric
// names. A querier's Watcher then knows, while the stream is healthy, whether an answer read at a
// token still holds:
//
//   - an answer for one metric (a request with an equality matcher on __name__, as Grafana's
//     label_values(metric, label) sends) holds until a structural change or new series of that
//     metric, so it outlives new series of other metrics;
//   - any other answer holds until any change.
//
// A store silent for longer than MaxSilence (1 s by default) is asked again, so a slow or dead
// region is still reported missing rather than answered for from the cache. An answer can
// therefore lag a new series by the time the push takes to reach the querier: well under a
// millisecond on loopback, the one-way latency between the regions in production.
//
// # What is never cached
//
// The querier always asks for values of external labels (such as region), for time ranges the
// store's newest samples have not reached, and stores that do not version their index (Thanos
// stores, stacked queriers). `meridian query --no-query.label-cache` turns the cache off;
// meridian_query_label_cache_requests_total{method,result} counts its hits and misses.
package labelindex
