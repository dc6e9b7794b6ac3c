package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// BenchmarkSideBySide measures meridian against a real Prometheus (and, for queries, a real Thanos
// Query) on this machine, one after the other in the same run, and prints one table at the end. Each sub-benchmark starts its own processes, so any of them can
// be run alone (-bench 'SideBySide/query'). The sub-benchmarks are end-to-end measurements meant
// for -benchtime 1x (see `make bench`): their set-up (building data sets, starting processes,
// loading data) is far larger than the measured loop.
func BenchmarkSideBySide(b *testing.B) {
	table := &benchTable{}
	b.Run("ingest", func(b *testing.B) { benchIngest(b, table) })
	b.Run("ingest_shipping", func(b *testing.B) { benchIngestShipping(b, table) })
	b.Run("ingest_metadata", func(b *testing.B) { benchIngestMetadata(b, table) })
	b.Run("query", func(b *testing.B) { benchQuery(b, table) })
	b.Run("slow_store", func(b *testing.B) { benchSlowStore(b, table) })
	b.Run("querier_rss", func(b *testing.B) { benchQuerierRSS(b, table) })
	b.Run("ruler", func(b *testing.B) { benchRuler(b, table) })
	table.print(os.Stdout)
}

// benchRow is one line of the table: what meridian measured, what the reference measured, their
// ratio, the target and whether it was met.
type benchRow struct {
	name      string
	meridian  string
	reference string
	ratio     string
	target    string
	result    string
}

// benchTable collects rows from the sub-benchmarks.
type benchTable struct {
	mu   sync.Mutex
	rows []benchRow
}

func (t *benchTable) add(r benchRow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rows = append(t.rows, r)
}

// addRatio adds a row comparing a meridian figure with the reference's. lowerIsBetter says which
// way the target goes: the row passes when ratio <= limit (lower is better) or ratio >= limit.
func (t *benchTable) addRatio(name string, meridian, reference float64, format func(float64) string, lowerIsBetter bool, limit float64) {
	ratio := meridian / reference
	target, pass := fmt.Sprintf(">= %.2fx", limit), ratio >= limit
	if lowerIsBetter {
		target, pass = fmt.Sprintf("<= %.2fx", limit), ratio <= limit
	}
	t.add(benchRow{name: name, meridian: format(meridian), reference: format(reference),
		ratio: fmt.Sprintf("%.2fx", ratio), target: target, result: passFail(pass)})
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func (t *benchTable) print(w io.Writer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	header := benchRow{"measure", "meridian", "reference", "ratio", "target", "result"}
	all := append([]benchRow{header}, t.rows...)
	width := make([]int, 6)
	for _, r := range all {
		for i, c := range r.cells() {
			width[i] = max(width[i], len(c))
		}
	}
	fmt.Fprintf(w, "\n## Meridian vs Prometheus %s, side by side (%s)\n\n", prometheusVersion(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %d cores, %s memory, %s/%s, %s\n\n", runtime.NumCPU(), machineMemory(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	for i, r := range all {
		cells := r.cells()
		for j := range cells {
			cells[j] = cells[j] + strings.Repeat(" ", width[j]-len(cells[j]))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		if i == 0 {
			dashes := make([]string, len(width))
			for j, n := range width {
				dashes[j] = strings.Repeat("-", n)
			}
			fmt.Fprintf(w, "|-%s-|\n", strings.Join(dashes, "-|-"))
		}
	}
	fmt.Fprintln(w)
}

func (r benchRow) cells() []string {
	return []string{r.name, r.meridian, r.reference, r.ratio, r.target, r.result}
}

// machineMemory is MemTotal from /proc/meminfo, in GiB.
func machineMemory() string {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseFloat(fields[1], 64)
			if err == nil {
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return "unknown"
}

// prometheusVersion is the first line of `prometheus --version`.
func prometheusVersion() string {
	out, err := exec.Command(prometheusBinary, "--version").CombinedOutput()
	if err != nil {
		return "(unknown version)"
	}
	fields := strings.Fields(string(out))
	if len(fields) < 3 {
		return "(unknown version)"
	}
	return strings.TrimSuffix(fields[2], "+ds")
}

// procStatusBytes reads a memory field (VmHWM: peak RSS, VmRSS: current RSS) of a running
// process from /proc/PID/status, in bytes.
func procStatusBytes(t testing.TB, p *process, field string) float64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	require.NoError(t, err, "read status of %s", p.name)
	for line := range strings.SplitSeq(string(raw), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		fields := strings.Fields(rest)
		require.Len(t, fields, 2, "%s of %s: %q", field, p.name, line)
		kb, err := strconv.ParseFloat(fields[0], 64)
		require.NoError(t, err)
		return kb * 1024
	}
	t.Fatalf("no %s in /proc status of %s", field, p.name)
	return 0
}

// scrapeMetrics sums every series of each named metric family exposed at url (Prometheus text
// format), whatever its labels.
func scrapeMetrics(t testing.TB, url string, names ...string) map[string]float64 {
	t.Helper()
	families := metricFamilies(t, url)
	out := map[string]float64{}
	for _, name := range names {
		mf, ok := families[name]
		require.True(t, ok, "%s does not expose %s", url, name)
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				out[name] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[name] += m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				out[name] += m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

// histogramMeans reads the histogram family name at url and returns the mean observation of
// each of its series whose labels include the name/value pairs of where, keyed by the value of
// label.
func histogramMeans(t testing.TB, url, name, label string, where ...string) map[string]time.Duration {
	t.Helper()
	families := metricFamilies(t, url)
	out := map[string]time.Duration{}
	for _, m := range families[name].GetMetric() {
		h := m.GetHistogram()
		if h == nil || h.GetSampleCount() == 0 {
			continue
		}
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		matches := true
		for i := 0; i+1 < len(where); i += 2 {
			matches = matches && got[where[i]] == where[i+1]
		}
		if matches {
			out[got[label]] = time.Duration(h.GetSampleSum() / float64(h.GetSampleCount()) * float64(time.Second)).Round(10 * time.Microsecond)
		}
	}
	return out
}

// metricFamilies reads a /metrics page in the text format.
func metricFamilies(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err, "parse %s", url)
	return families
}

// counterSums reads the counters called name from a /metrics page and sums them by the values of
// labels, joined with "/".
func counterSums(t testing.TB, url, name string, labels ...string) map[string]float64 {
	t.Helper()
	families := metricFamilies(t, url)
	out := map[string]float64{}
	for _, m := range families[name].GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		key := make([]string, len(labels))
		for i, l := range labels {
			key[i] = got[l]
		}
		out[strings.Join(key, "/")] += m.GetCounter().GetValue()
	}
	return out
}

// percentile is the nearest-rank percentile (0 < p <= 100) of ds; ds is sorted in place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	rank := int(p/100*float64(len(ds)) + 0.999999)
	return ds[min(max(rank, 1), len(ds))-1]
}

func formatMs(ms float64) string     { return fmt.Sprintf("%.1f ms", ms) }
func formatMiB(b float64) string     { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }
func formatKiB(b float64) string     { return fmt.Sprintf("%.1f KiB", b/(1<<10)) }
func formatRate(perS float64) string { return fmt.Sprintf("%.0fk/s", perS/1000) }
