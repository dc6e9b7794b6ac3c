package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/block"
	"github.com/thanos-io/thanos/pkg/block/metadata"
)

// storageStep is the sample interval of the generated history.
const storageStep = 30 * time.Second

// storageSeries is how many series the generated history has.
const storageSeries = 4

// storageValue is the generated value of series s at ts (ms): exact in float64.
func storageValue(s int, ts int64) float64 { return float64(ts/1000)/2 + float64(s) }

// storageLabels are the labels of generated series s as written (before external labels).
func storageLabels(s int) labels.Labels {
	return labels.FromStrings(labels.MetricName, "storage_history", "series", fmt.Sprint(s))
}

// writeHistory remote-writes every sample of the generated series over [from, to), an hour
// per request (the head takes samples up to an hour older than its newest).
func writeHistory(t testing.TB, ip *ingestProcess, from, to int64) {
	t.Helper()
	for start := from; start < to; start += time.Hour.Milliseconds() {
		req := &prompb.WriteRequest{}
		for s := range storageSeries {
			ts := prompb.TimeSeries{Labels: prompb.FromLabels(storageLabels(s), nil)}
			for t := start; t < min(start+time.Hour.Milliseconds(), to); t += storageStep.Milliseconds() {
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t, Value: storageValue(s, t)})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		code, msg := remoteWrite(t, ip.writeURL(), req)
		require.Equal(t, http.StatusNoContent, code, msg)
	}
}

// wantHistory is what a store holding all generated samples in (from, to] returns, with the
// given extra labels.
func wantHistory(from, to int64, extra ...string) map[string][]sample {
	out := map[string][]sample{}
	for s := range storageSeries {
		b := labels.NewBuilder(storageLabels(s))
		for i := 0; i+1 < len(extra); i += 2 {
			b.Set(extra[i], extra[i+1])
		}
		key := b.Labels().String()
		first := (from/storageStep.Milliseconds() + 1) * storageStep.Milliseconds()
		for t := first; t <= to; t += storageStep.Milliseconds() {
			out[key] = append(out[key], sample{T: t, V: storageValue(s, t)})
		}
	}
	return out
}

// requireSameHistory compares series sample by sample and reports the first difference of each
// (the full answers are tens of thousands of samples).
func requireSameHistory(t testing.TB, want, got map[string][]sample) {
	t.Helper()
	for key, w := range want {
		g, ok := got[key]
		require.True(t, ok, "series %s missing", key)
		for i := range min(len(w), len(g)) {
			require.Equal(t, w[i], g[i], "series %s: sample %d of %d (got %d)", key, i, len(w), len(g))
		}
		require.Len(t, g, len(w), "series %s: %d samples, want %d", key, len(g), len(w))
	}
	require.Len(t, got, len(want), "series")
}

// rawSamples asks a querier for the stored samples of selector in (at-window, at].
func rawSamples(t testing.TB, addr, selector string, window time.Duration, at int64) (map[string][]sample, []string) {
	t.Helper()
	res := promQuery(t, addr, fmt.Sprintf("%s[%ds]", selector, int(window.Seconds())), at, url.Values{"partial_response": {"false"}})
	out := map[string][]sample{}
	for _, s := range decodeMatrix(t, res) {
		out[s.Labels.String()] = s.Samples
	}
	return out, res.Body.Warnings
}

// fsBucketConfig writes a Thanos FILESYSTEM objstore configuration for dir and returns its path.
func fsBucketConfig(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bucket.yml")
	require.NoError(t, os.WriteFile(path, fmt.Appendf(nil, "type: FILESYSTEM\nconfig:\n  directory: %s\n", dir), 0o600))
	return path
}

// bucketMetas reads the meta.json of every complete block in a filesystem bucket.
func bucketMetas(t testing.TB, dir string) []*metadata.Meta {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []*metadata.Meta
	for _, e := range entries {
		if _, ok := block.IsBlockDir(e.Name()); !ok {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), block.MetaFilename)); err != nil {
			continue
		}
		m, err := metadata.ReadFromDir(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out = append(out, m)
	}
	return out
}

// runThanos runs a one-shot thanos command and returns its output; it fails the test if the
// command fails or logs an error or a warning (such as a halt, an overlap or a broken block).
func runThanos(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(thanosBinary, args...).CombinedOutput()
	require.NoError(t, err, "thanos %s:\n%s", strings.Join(args, " "), out)
	for _, line := range strings.Split(string(out), "\n") {
		// A one-shot command turns its probes not-ready as it exits: the one expected warning.
		warn := strings.Contains(line, "level=warn") && !strings.Contains(line, `msg="changing probe status"`)
		require.False(t, warn || strings.Contains(line, "level=error"), "thanos %s: %s", args[0], line)
	}
	return string(out)
}

// TestStorageHistoryFromTheBucketThroughThanosStoreAndCompact is the long-term storage path
// with real processes: an ingest node with a 6h retention ships its blocks to a filesystem
// bucket; `thanos tools bucket verify` finds nothing wrong; `thanos compact` compacts the 2h
// blocks into a 48h one and downsamples it; `thanos store` serves the bucket; `meridian
// query` over the node and the gateway answers the whole history, head included, with every
// sample once.
func TestStorageHistoryFromTheBucketThroughThanosStoreAndCompact(t *testing.T) {
	const hour = int64(time.Hour / time.Millisecond)
	// The compactor makes a 48h block only of a whole 48h range (aligned to the epoch) with a
	// newer block after it, and downsamples blocks longer than 40h: history from the start of
	// such a range until 52h after it.
	w := (time.Now().Add(-60*time.Hour).UnixMilli() / (48 * hour)) * (48 * hour)
	bucketDir := t.TempDir()
	bucketConf := fsBucketConfig(t, bucketDir)
	ext := []string{"region=eu-west-1", "replica=a"}
	ingest := startIngest(t, t.TempDir(), ext, "--objstore.config-file", bucketConf, "--tsdb.retention.time", "6h")

	writeHistory(t, ingest, w, w+52*hour)
	// The head keeps its newest 2-3h; the 2h blocks before [w+50h, w+52h) are cut and shipped.
	require.Eventually(t, func() bool { return len(bucketMetas(t, bucketDir)) == 25 }, 2*time.Minute, 200*time.Millisecond,
		"25 blocks of 2h expected in the bucket, %d there", len(bucketMetas(t, bucketDir)))
	for _, m := range bucketMetas(t, bucketDir) {
		require.Equal(t, map[string]string{"region": "eu-west-1", "replica": "a"}, m.Thanos.Labels)
		require.Equal(t, 2*hour, m.MaxTime-m.MinTime)
		require.Equal(t, metadata.ReceiveSource, m.Thanos.Source)
	}
	runThanos(t, "tools", "bucket", "verify", "--objstore.config-file", bucketConf)

	// Two more hours: the head cuts [w+50h, w+52h), and retention (6h behind the newest block)
	// deletes the uploaded blocks before w+46h.
	writeHistory(t, ingest, w+52*hour, w+54*hour)
	require.Eventually(t, func() bool {
		return len(storeSeries(t, ingest.grpcAddr, w, w+40*hour, eqMatcher(labels.MetricName, "storage_history"))) == 0
	}, 2*time.Minute, 200*time.Millisecond, "local retention did not drop the old blocks")
	require.Eventually(t, func() bool { return len(bucketMetas(t, bucketDir)) == 26 }, time.Minute, 200*time.Millisecond)

	runThanos(t, "compact", "--data-dir", t.TempDir(), "--objstore.config-file", bucketConf,
		"--consistency-delay", "0s", "--delete-delay", "0s", "--log.level", "info")
	var compacted, downsampled bool
	for _, m := range bucketMetas(t, bucketDir) {
		if m.MinTime == w && m.MaxTime == w+48*hour {
			switch m.Thanos.Downsample.Resolution {
			case 0:
				compacted = len(m.Compaction.Sources) == 24
			case 5 * 60 * 1000:
				downsampled = true
			}
		}
	}
	require.True(t, compacted, "no raw 48h block compacted from 24 sources")
	require.True(t, downsampled, "no 5m downsampled 48h block")
	runThanos(t, "tools", "bucket", "verify", "--objstore.config-file", bucketConf)

	store := startThanosStore(t, bucketConf)
	q := startGlobalQuerier(t, t, []string{ingest.grpcAddr, store.grpcAddr}, "--query.replica-label", "replica")

	// History only the bucket holds, answered exactly.
	got, warnings := rawSamples(t, q.httpAddr, "storage_history", 40*time.Hour, w+40*hour)
	require.Empty(t, warnings)
	requireSameHistory(t, wantHistory(w, w+40*hour, "region", "eu-west-1"), got)

	// Across the bucket and the head (the node and the bucket both hold w+46h..w+52h): every
	// sample once, none missing.
	end := w + 54*hour - storageStep.Milliseconds()
	got, warnings = rawSamples(t, q.httpAddr, "storage_history", 60*time.Hour, end)
	require.Empty(t, warnings)
	requireSameHistory(t, wantHistory(w-storageStep.Milliseconds(), end, "region", "eu-west-1"), got)

	// Without replica dedup the two stores' copies of one series still merge sample by sample.
	res := promQuery(t, q.httpAddr, "count_over_time(storage_history[60h])", end, url.Values{"dedup": {"false"}})
	for _, v := range decodeVector(t, res) {
		require.Equal(t, fmt.Sprint((end-w)/storageStep.Milliseconds()+1), v)
	}

	// A range query whose steps fall on the samples: the values written, over the whole span.
	rq := callAPI(t, q.httpAddr, "/api/v1/query_range", url.Values{
		"query": {`storage_history{series="1"}`}, "start": {millisParam(w + hour)}, "end": {millisParam(end)},
		"step": {"3600"}, "partial_response": {"false"},
	})
	series := decodeMatrix(t, rq)
	require.Len(t, series, 1)
	require.Len(t, series[0].Samples, int((end-w-hour)/hour)+1)
	for _, s := range series[0].Samples {
		require.Equal(t, storageValue(1, s.T), s.V, "at %d", s.T)
	}

	// A Store Gateway that is gone is a missing store like any other: named in the warnings
	// beside the node's answer, or failing the query with partial response off.
	store.kill9(t)
	res = promQuery(t, q.httpAddr, "count_over_time(storage_history[60h])", end, url.Values{"partial_response": {"true"}})
	require.Equal(t, http.StatusOK, res.Code, res.Raw)
	require.Len(t, decodeVector(t, res), storageSeries, "the node still answers")
	require.Contains(t, strings.Join(res.Body.Warnings, "\n"), store.grpcAddr)
	res = promQuery(t, q.httpAddr, "count_over_time(storage_history[60h])", end, url.Values{"partial_response": {"false"}})
	require.NotEqual(t, http.StatusOK, res.Code, res.Raw)
	require.Contains(t, res.Body.Error, store.grpcAddr)
}

// thanosStore is a running `thanos store` (Store Gateway).
type thanosStore struct {
	*process
	httpAddr, grpcAddr string
}

// startThanosStore runs a Store Gateway over the bucket of bucketConf, syncing it every 2s, and
// waits until it has loaded the bucket once.
func startThanosStore(t testing.TB, bucketConf string) *thanosStore {
	t.Helper()
	s := &thanosStore{httpAddr: freeAddr(t), grpcAddr: freeAddr(t)}
	s.process = startProcess(t, "thanos store", thanosBinary, "store", "--data-dir", t.TempDir(),
		"--objstore.config-file", bucketConf, "--http-address", s.httpAddr, "--grpc-address", s.grpcAddr,
		"--sync-block-duration", "2s", "--log.level", "warn")
	waitReady(t, s.process, "http://"+s.httpAddr+"/-/ready", time.Minute)
	return s
}
