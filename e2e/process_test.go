// Package e2e holds multi-process tests: the real meridian binary against real Prometheus and
// Alertmanager processes on loopback.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/store/labelpb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/meridian-obs/meridian/internal/buildtag"
	_ "github.com/meridian-obs/meridian/internal/grpccodec"
)

// meridianBinary is the meridian binary under test and thanosBinary a real Thanos (the release
// pinned in tools/thanos), both built once by TestMain or taken from $MERIDIAN_BINARY and
// $THANOS_BINARY (`make e2e` and `make bench` build them and pass them in).
var meridianBinary, thanosBinary string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meridian-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, bin := range []struct {
		into           *string
		env, name, dir string
		pkg            string
	}{
		{&meridianBinary, "MERIDIAN_BINARY", "meridian", ".", "github.com/meridian-obs/meridian/cmd/meridian"},
		// tools/thanos is a module of its own: build from inside it.
		{&thanosBinary, "THANOS_BINARY", "thanos", filepath.Join("..", "tools", "thanos"), "github.com/thanos-io/thanos/cmd/thanos"},
	} {
		if *bin.into = os.Getenv(bin.env); *bin.into != "" {
			continue
		}
		*bin.into = filepath.Join(dir, bin.name)
		build := exec.Command("go", "build", "-tags", "slicelabels", "-o", *bin.into, bin.pkg)
		build.Dir = bin.dir
		build.Env = append(os.Environ(), "GOTOOLCHAIN=local")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build %s: %v\n", bin.name, err)
			return 1
		}
	}
	return m.Run()
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// lockedBuffer collects a process's output; it is written by exec's copier goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a child process started by a test; t.Cleanup kills it if the test did not stop it.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error // exit status, valid once done is closed
}

// startProcess starts bin with args. Its output is kept and printed if the test fails; it is
// killed, if still running, when the test ends.
func startProcess(t testing.TB, name, bin string, args ...string) *process {
	t.Helper()
	return spawnOwned(t, t, name, bin, args...)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to timeout for a clean exit; it fails the test otherwise.
func (p *process) stop(t testing.TB, timeout time.Duration) {
	t.Helper()
	if p.exited() {
		return
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
		require.NoError(t, p.err, "%s exited with an error", p.name)
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not stop within %s of SIGTERM", p.name, timeout)
	}
}

// kill9 kills the process with SIGKILL, as a crash would, and waits for it to be gone.
func (p *process) kill9(t testing.TB) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still running 10s after SIGKILL", p.name)
	}
}

// waitReady polls url until it answers 200, failing early if the process exits.
func waitReady(t testing.TB, p *process, url string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("%s exited before %s was ready: %v", p.name, url, p.err)
		}
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready at %s within %s", p.name, url, timeout)
}

// ingestProcess is a running `meridian ingest`.
type ingestProcess struct {
	*process
	httpAddr, grpcAddr, tsdbPath string
}

// startIngest runs `meridian ingest` with the given external labels (name=value) on free
// loopback ports over tsdbPath and waits until it is ready (WAL replayed).
func startIngest(t testing.TB, tsdbPath string, extLabels []string, extraArgs ...string) *ingestProcess {
	t.Helper()
	ip := &ingestProcess{httpAddr: freeAddr(t), grpcAddr: freeAddr(t), tsdbPath: tsdbPath}
	args := []string{"ingest", "--tsdb.path", tsdbPath, "--http-address", ip.httpAddr, "--grpc-address", ip.grpcAddr}
	for _, l := range extLabels {
		args = append(args, "--label", l)
	}
	ip.process = startProcess(t, "meridian ingest "+ip.httpAddr, meridianBinary, append(args, extraArgs...)...)
	waitReady(t, ip.process, "http://"+ip.httpAddr+"/-/ready", 60*time.Second)
	return ip
}

// writeURL is the node's remote-write endpoint.
func (ip *ingestProcess) writeURL() string { return "http://" + ip.httpAddr + "/api/v1/write" }

// prometheusBinary is Debian's prometheus; `make deps` installs it.
const prometheusBinary = "/usr/bin/prometheus"

// startPrometheus runs the real Prometheus with configYAML on a free loopback port and waits
// until it is ready. It returns the process and its listen address.
func startPrometheus(t testing.TB, addr, configYAML string, extraArgs ...string) *process {
	t.Helper()
	_, err := os.Stat(prometheusBinary)
	require.NoError(t, err, "the e2e tests need Debian's prometheus (run `make deps`)")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(configYAML), 0o600))
	args := append([]string{
		"--config.file=" + cfg,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
	}, extraArgs...)
	p := startProcess(t, "prometheus "+addr, prometheusBinary, args...)
	waitReady(t, p, "http://"+addr+"/-/ready", 60*time.Second)
	return p
}

// sample is one float sample.
type sample struct {
	T int64
	V float64
}

// seriesSamples is one series and its float samples, as returned by a store or Prometheus.
type seriesSamples struct {
	Labels  labels.Labels
	Samples []sample
}

// storeSeries calls StoreAPI Series on addr and decodes every XOR chunk of the answer.
func storeSeries(t testing.TB, addr string, mint, maxt int64, matchers ...storepb.LabelMatcher) []seriesSamples {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := storepb.NewStoreClient(conn).Series(ctx, &storepb.SeriesRequest{MinTime: mint, MaxTime: maxt, Matchers: matchers})
	require.NoError(t, err)
	var out []seriesSamples
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		s := resp.GetSeries()
		if s == nil {
			continue
		}
		ss := seriesSamples{Labels: labelpb.ZLabelsToPromLabels(s.Labels).Copy()}
		for _, c := range s.Chunks {
			require.NotNil(t, c.Raw)
			require.Equal(t, storepb.Chunk_XOR, c.Raw.Type)
			chk, err := chunkenc.FromData(chunkenc.EncXOR, c.Raw.Data)
			require.NoError(t, err)
			it := chk.Iterator(nil)
			for it.Next() == chunkenc.ValFloat {
				ts, v := it.At()
				if ts >= mint && ts <= maxt {
					ss.Samples = append(ss.Samples, sample{T: ts, V: v})
				}
			}
			require.NoError(t, it.Err())
		}
		out = append(out, ss)
	}
}

// promRangeSamples asks Prometheus's HTTP API for the raw samples of selector over
// (at-window, at] (a range-vector instant query, which returns stored samples unchanged).
func promRangeSamples(t testing.TB, addr, selector string, window time.Duration, atMillis int64) []seriesSamples {
	t.Helper()
	q := url.Values{}
	q.Set("query", fmt.Sprintf("%s[%ds]", selector, int(window.Seconds())))
	q.Set("time", strconv.FormatFloat(float64(atMillis)/1000, 'f', 3, 64))
	resp, err := http.Get("http://" + addr + "/api/v1/query?" + q.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var body struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, "success", body.Status)
	require.Equal(t, "matrix", body.Data.ResultType)
	var out []seriesSamples
	for _, r := range body.Data.Result {
		ss := seriesSamples{Labels: labels.FromMap(r.Metric)}
		for _, v := range r.Values {
			ts, ok := v[0].(float64)
			require.True(t, ok)
			val, err := strconv.ParseFloat(v[1].(string), 64)
			require.NoError(t, err)
			ss.Samples = append(ss.Samples, sample{T: int64(ts*1000 + 0.5), V: val})
		}
		out = append(out, ss)
	}
	return out
}

// remoteWrite posts req as a snappy Remote-Write 1.0 body and returns the status code and body.
func remoteWrite(t testing.TB, writeURL string, req *prompb.WriteRequest) (int, string) {
	t.Helper()
	raw, err := req.Marshal()
	require.NoError(t, err)
	hreq, err := http.NewRequest(http.MethodPost, writeURL, bytes.NewReader(snappy.Encode(nil, raw)))
	require.NoError(t, err)
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(hreq)
	require.NoError(t, err)
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg)
}
