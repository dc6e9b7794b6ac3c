package query

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	_ "github.com/meridian-obs/meridian/internal/grpccodec"
)

// The stack tests run two queriers on top of each other over real gRPC, as Thanos Query can
// be stacked: regional stores, a querier over them serving StoreAPI without external labels,
// and a querier whose only store is that first querier.

const (
	stackFrom = int64(1_700_000_000_000)
	stackTo   = int64(1_700_000_900_000)
	stackStep = int64(15_000)
)

// stackValue is the sample of a series at ts: different per region and job, so that an answer
// mixing them up cannot pass.
func stackValue(region, job string, ts int64) float64 {
	scale := map[string]float64{"a": 1, "b": 10}[region]
	if job == "db" {
		scale *= 3
	}
	return scale * float64((ts-stackFrom)/stackStep)
}

// startRegionStore serves a TSDB with the up series of two jobs over StoreAPI with region as
// its external label, announcing [from, to] as its time range.
func startRegionStore(t *testing.T, region string, from, to int64) *testStore {
	t.Helper()
	st := startTestStore(t, labels.FromStrings("region", region), func() (int64, int64) { return from, to })
	app := st.db.Appender(context.Background())
	for _, job := range []string{"api", "db"} {
		lset := labels.FromStrings("__name__", "up", "job", job)
		for ts := from; ts <= to; ts += stackStep {
			_, err := app.Append(0, lset, ts, stackValue(region, job, ts))
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	return st
}

// startStackQuerier runs a querier (NewServer, no external labels) over endpoints until the
// test ends; HTTP and gRPC listen on free loopback ports.
func startStackQuerier(t *testing.T, endpoints ...string) (*Server, *apiFixture) {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv, err := NewServer(ServerConfig{
		Registerer: reg,
		Gatherer:   reg,
		StoreSet: StoreSetOptions{
			Endpoints:     endpoints,
			ProbeInterval: 100 * time.Millisecond,
			ProbeTimeout:  time.Second,
		},
		Fanout:      FanoutOptions{StoreResponseTimeout: 5 * time.Second, PartialResponse: true},
		HTTPAddress: "127.0.0.1:0",
		GRPCAddress: "127.0.0.1:0",
	})
	require.NoError(t, err)
	require.NotEmpty(t, srv.GRPCAddr(), "a querier without external labels serves StoreAPI")
	runServer(t, srv)
	return srv, &apiFixture{url: "http://" + srv.HTTPAddr()}
}

// waitForStore waits until set holds addr with the wanted health and label sets.
func waitForStore(t *testing.T, set *StoreSet, addr string, healthy bool, lsets ...labels.Labels) StoreStatus {
	t.Helper()
	var last StoreStatus
	require.Eventually(t, func() bool {
		for _, st := range set.Stores() {
			if st.Address == addr {
				last = st
				return st.Healthy == healthy && slices.EqualFunc(st.Labels, lsets, labels.Equal)
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "store %s: want healthy=%v with %v", addr, healthy, lsets)
	return last
}

// stackResult is the result of an API call reduced to what must be equal between queriers:
// status, result (vector entries sorted by series) and warnings.
type stackResult struct {
	code     int
	status   string
	data     string
	warnings []string
	err      string
}

func callStack(t *testing.T, f *apiFixture, path string, params url.Values) stackResult {
	t.Helper()
	code, resp := f.call(t, http.MethodGet, path, params)
	out := stackResult{code: code, status: resp.Status, warnings: resp.Warnings, err: resp.Error}
	if resp.Status != "success" {
		return out
	}
	var q queryData[json.RawMessage]
	if err := json.Unmarshal(resp.Data, &q); err == nil && q.ResultType == "vector" {
		var vec []vectorSample
		require.NoError(t, json.Unmarshal(q.Result, &vec))
		slices.SortFunc(vec, func(a, b vectorSample) int {
			return labels.Compare(labels.FromMap(a.Metric), labels.FromMap(b.Metric))
		})
		sorted, err := json.Marshal(vec)
		require.NoError(t, err)
		out.data = string(sorted)
		return out
	}
	out.data = string(resp.Data)
	return out
}

// vectorByRegionJob decodes an instant query's vector into value by "region/job".
func vectorByRegionJob(t *testing.T, r stackResult) map[string]float64 {
	t.Helper()
	var vec []vectorSample
	require.NoError(t, json.Unmarshal([]byte(r.data), &vec))
	out := map[string]float64{}
	for _, s := range vec {
		out[s.Metric["region"]+"/"+s.Metric["job"]] = sampleValue(t, s.Value[1])
	}
	return out
}

func secondsParam(ms int64) string { return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64) }

func TestStackedQuerierAnswersLikeTheQuerierBelow(t *testing.T) {
	a := startRegionStore(t, "a", stackFrom, stackTo)
	b := startRegionStore(t, "b", stackFrom+60_000, stackTo)
	bottom, bottomAPI := startStackQuerier(t, a.addr, b.addr)
	top, topAPI := startStackQuerier(t, bottom.GRPCAddr())

	regionA, regionB := labels.FromStrings("region", "a"), labels.FromStrings("region", "b")
	waitForStore(t, bottom.StoreSet(), a.addr, true, regionA)
	waitForStore(t, bottom.StoreSet(), b.addr, true, regionB)
	st := waitForStore(t, top.StoreSet(), bottom.GRPCAddr(), true, regionA, regionB)
	require.Equal(t, stackFrom, st.MinTime, "the bottom querier announces the union of its stores' ranges")
	require.Equal(t, stackTo, st.MaxTime)

	at := secondsParam(stackTo)
	wantAll := map[string]float64{}
	for _, region := range []string{"a", "b"} {
		for _, job := range []string{"api", "db"} {
			wantAll[region+"/"+job] = stackValue(region, job, stackTo)
		}
	}

	for _, tc := range []struct {
		name   string
		path   string
		params url.Values
		want   map[string]float64 // for instant queries: value by region/job
	}{
		{
			name: "every region's series with its region label", path: "/api/v1/query",
			params: url.Values{"query": {"up"}, "time": {at}}, want: wantAll,
		},
		{
			name: "region matcher", path: "/api/v1/query",
			params: url.Values{"query": {`up{region="a"}`}, "time": {at}},
			want:   map[string]float64{"a/api": wantAll["a/api"], "a/db": wantAll["a/db"]},
		},
		{
			name: "region matcher and another", path: "/api/v1/query",
			params: url.Values{"query": {`up{region=~"b|c", job="db"}`}, "time": {at}},
			want:   map[string]float64{"b/db": wantAll["b/db"]},
		},
		{
			name: "region no store has", path: "/api/v1/query",
			params: url.Values{"query": {`up{region="c"}`}, "time": {at}}, want: map[string]float64{},
		},
		{
			name: "aggregation by region over a range", path: "/api/v1/query_range",
			params: url.Values{
				"query": {`sum by (region) (rate(up[2m]))`},
				"start": {secondsParam(stackFrom)}, "end": {at}, "step": {"60"},
			},
		},
		{
			name: "series", path: "/api/v1/series",
			params: url.Values{"match[]": {`up{job="api"}`}, "start": {secondsParam(stackFrom)}, "end": {at}},
		},
		{
			name: "region values", path: "/api/v1/label/region/values",
			params: url.Values{"start": {secondsParam(stackFrom)}, "end": {at}},
		},
		{
			name: "label names", path: "/api/v1/labels",
			params: url.Values{"match[]": {`up{region="b"}`}, "start": {secondsParam(stackFrom)}, "end": {at}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := callStack(t, bottomAPI, tc.path, tc.params)
			require.Equal(t, http.StatusOK, want.code, want.err)
			require.Empty(t, want.warnings)
			got := callStack(t, topAPI, tc.path, tc.params)
			require.Equal(t, want, got, "the top querier answers as the bottom one does")
			if tc.want != nil {
				require.Equal(t, tc.want, vectorByRegionJob(t, got))
			}
		})
	}

	// The answers above are not equal by being empty.
	require.JSONEq(t, `["a","b"]`, callStack(t, topAPI, "/api/v1/label/region/values", nil).data)
	require.JSONEq(t, `["__name__","job","region"]`, callStack(t, topAPI, "/api/v1/labels", nil).data)
}

func TestStackedQuerierCarriesTheWarningOfAStoreDownBelow(t *testing.T) {
	a := startRegionStore(t, "a", stackFrom, stackTo)
	b := startRegionStore(t, "b", stackFrom, stackTo)
	bottom, _ := startStackQuerier(t, a.addr, b.addr)
	top, topAPI := startStackQuerier(t, bottom.GRPCAddr())
	regionA, regionB := labels.FromStrings("region", "a"), labels.FromStrings("region", "b")
	waitForStore(t, bottom.StoreSet(), b.addr, true, regionB)
	waitForStore(t, top.StoreSet(), bottom.GRPCAddr(), true, regionA, regionB)

	b.srv.Stop()
	waitForStore(t, bottom.StoreSet(), b.addr, false, regionB)
	// The region of the store that is down is still announced: the querier above keeps asking
	// for it and hears about it as a warning instead of silence.
	waitForStore(t, top.StoreSet(), bottom.GRPCAddr(), true, regionA, regionB)

	at := secondsParam(stackTo)
	for _, tc := range []struct {
		name        string
		query       string
		partial     string
		wantRegions map[string]float64
		wantWarning bool
		wantError   bool
	}{
		{
			name: "partial answer with the missing store's warning", query: "up", partial: "true",
			wantRegions: map[string]float64{"a/api": stackValue("a", "api", stackTo), "a/db": stackValue("a", "db", stackTo)},
			wantWarning: true,
		},
		{
			// As without stacking: when no store the query needs answers, there is nothing
			// partial to return.
			name: "the missing region alone fails", query: `up{region="b"}`, partial: "true", wantError: true,
		},
		{
			name: "the healthy region is answered without a warning", query: `up{region="a"}`, partial: "true",
			wantRegions: map[string]float64{"a/api": stackValue("a", "api", stackTo), "a/db": stackValue("a", "db", stackTo)},
		},
		{
			name: "partial_response=false fails", query: "up", partial: "false", wantError: true,
		},
		{
			name: "partial_response=false over the healthy region alone succeeds", query: `up{region="a"}`, partial: "false",
			wantRegions: map[string]float64{"a/api": stackValue("a", "api", stackTo), "a/db": stackValue("a", "db", stackTo)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := callStack(t, topAPI, "/api/v1/query", url.Values{"query": {tc.query}, "time": {at}, "partial_response": {tc.partial}})
			if tc.wantError {
				require.GreaterOrEqual(t, got.code, 400)
				require.Equal(t, "error", got.status)
				require.Contains(t, got.err, b.addr, "the error names the store that is down")
				return
			}
			require.Equal(t, http.StatusOK, got.code, got.err)
			require.Equal(t, tc.wantRegions, vectorByRegionJob(t, got))
			if !tc.wantWarning {
				require.Empty(t, got.warnings)
				return
			}
			require.Len(t, got.warnings, 1)
			require.Contains(t, got.warnings[0], b.addr, "the warning names the store that is down")
		})
	}
}

func TestStackedQuerierDoesNotPruneAStoreBelowThatNeverAnswered(t *testing.T) {
	a := startRegionStore(t, "a", stackFrom, stackTo)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	never := lis.Addr().String()
	require.NoError(t, lis.Close())

	bottom, _ := startStackQuerier(t, a.addr, never)
	top, topAPI := startStackQuerier(t, bottom.GRPCAddr())
	regionA := labels.FromStrings("region", "a")
	waitForStore(t, bottom.StoreSet(), never, false)
	// The store that never answered may hold any region: it stands as the empty label set.
	waitForStore(t, top.StoreSet(), bottom.GRPCAddr(), true, labels.EmptyLabels(), regionA)

	at := secondsParam(stackTo)
	got := callStack(t, topAPI, "/api/v1/query", url.Values{"query": {`up{region=~"a|b"}`}, "time": {at}})
	require.Equal(t, http.StatusOK, got.code, got.err)
	require.Equal(t, map[string]float64{"a/api": stackValue("a", "api", stackTo), "a/db": stackValue("a", "db", stackTo)}, vectorByRegionJob(t, got))
	require.Len(t, got.warnings, 1, "a region the querier below cannot rule out is reported missing")
	require.Contains(t, got.warnings[0], never)

	// Were the bottom querier pruned for region b, this would be an empty success.
	got = callStack(t, topAPI, "/api/v1/query", url.Values{"query": {`up{region="b"}`}, "time": {at}})
	require.Equal(t, "error", got.status)
	require.Contains(t, got.err, never, "the only store that may hold region b was asked")
}
