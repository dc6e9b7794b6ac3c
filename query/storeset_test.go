package query

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridian-obs/meridian/internal/storeapi"
)

// runStoreSet runs an already built store set until the test ends and waits for its first round.
func runStoreSet(t testing.TB, set *StoreSet) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = set.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	require.Eventually(t, set.Ready, 10*time.Second, 5*time.Millisecond)
}

// runServer runs an already built querier until the test ends, and requires that it stops cleanly.
func runServer(t testing.TB, srv *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

func storeByAddr(set *StoreSet, addr string) (StoreStatus, bool) {
	for _, st := range set.Stores() {
		if st.Address == addr {
			return st, true
		}
	}
	return StoreStatus{}, false
}

func TestStoreSetKeepsDownStoreUnhealthy(t *testing.T) {
	st := startTestStore(t, labels.FromStrings("region", "eu-west-1"), func() (int64, int64) { return 100, 200 })
	reg := prometheus.NewRegistry()
	set, err := NewStoreSet(nil, reg, StoreSetOptions{Endpoints: []string{st.addr}, ProbeInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	require.False(t, set.Ready(), "not ready before the first probe round")
	runStoreSet(t, set)

	got, ok := storeByAddr(set, st.addr)
	require.True(t, ok)
	require.True(t, got.Healthy)
	require.Empty(t, got.LastError)
	require.Equal(t, []labels.Labels{labels.FromStrings("region", "eu-west-1")}, got.Labels)
	require.Equal(t, int64(100), got.MinTime)
	require.Equal(t, int64(200), got.MaxTime)
	require.False(t, got.LastCheck.IsZero())
	require.Equal(t, 1.0, testutil.ToFloat64(set.metrics.up.WithLabelValues(st.addr)))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP meridian_query_store_healthy 1 when the store answered its last Info probe, 0 when not; region is the store's region label (empty before its first answer).
# TYPE meridian_query_store_healthy gauge
meridian_query_store_healthy{region="eu-west-1",store="`+st.addr+`"} 1
`), "meridian_query_store_healthy"))

	st.srv.Stop()
	require.Eventually(t, func() bool {
		got, ok := storeByAddr(set, st.addr)
		return ok && !got.Healthy
	}, 10*time.Second, 10*time.Millisecond)

	// Still in the set, with its last known labels and the reason it is down.
	got, ok = storeByAddr(set, st.addr)
	require.True(t, ok, "a down store must stay in the store set")
	require.Contains(t, got.LastError, "info probe: unavailable")
	require.Equal(t, []labels.Labels{labels.FromStrings("region", "eu-west-1")}, got.Labels)
	require.Equal(t, 0.0, testutil.ToFloat64(set.metrics.up.WithLabelValues(st.addr)))
	require.Positive(t, testutil.ToFloat64(set.metrics.probeErrors.WithLabelValues(st.addr)))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP meridian_query_store_healthy 1 when the store answered its last Info probe, 0 when not; region is the store's region label (empty before its first answer).
# TYPE meridian_query_store_healthy gauge
meridian_query_store_healthy{region="eu-west-1",store="`+st.addr+`"} 0
`), "meridian_query_store_healthy"))

	// The reason of its failure is a bounded label, with the time it last failed. (A probe in
	// flight when the server stopped may fail as unavailable, "transport is closing"; the ones
	// after it find nothing listening.)
	require.Eventually(t, func() bool {
		got, _ = storeByAddr(set, st.addr)
		return got.LastFailureReason == "connection_refused"
	}, 10*time.Second, 10*time.Millisecond)
	require.False(t, got.LastFailureTime.IsZero())
	requireLastErrorMetric(t, reg, st.addr, "eu-west-1", "connection_refused", got.LastFailureTime)

	// It stays in the accounting of every answer.
	f := NewFanout(nil, nil, set, FanoutOptions{PartialResponse: true})
	_, _, err = selectAll(t, context.Background(), f, 100, 200, metricM)
	require.ErrorContains(t, err, `region "eu-west-1" (store `+st.addr+`)`)

	// Back on the same address: healthy, LastError cleared, and the last failure kept (when and
	// why it last failed is what on-call asks of a store that is healthy again).
	serveStoreOn(t, st.addr, st.db, storeapi.Options{ExternalLabels: labels.FromStrings("region", "eu-west-1"), TimeRange: func() (int64, int64) { return 100, 200 }})
	require.Eventually(t, func() bool {
		got, ok := storeByAddr(set, st.addr)
		return ok && got.Healthy
	}, 10*time.Second, 10*time.Millisecond)
	back, _ := storeByAddr(set, st.addr)
	require.Empty(t, back.LastError)
	require.Equal(t, "connection_refused", back.LastFailureReason)
	require.False(t, back.LastFailureTime.Before(got.LastFailureTime))
	requireLastErrorMetric(t, reg, st.addr, "eu-west-1", "connection_refused", back.LastFailureTime)
}

// requireLastErrorMetric checks the one meridian_query_store_last_error_timestamp_seconds series
// that reg exposes: its labels, and its value, the failure's time in seconds.
func requireLastErrorMetric(t *testing.T, reg *prometheus.Registry, store, region, reason string, at time.Time) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "meridian_query_store_last_error_timestamp_seconds" {
			continue
		}
		require.Len(t, mf.GetMetric(), 1)
		m := mf.GetMetric()[0]
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		require.Equal(t, map[string]string{"store": store, "region": region, "reason": reason}, got)
		// The gauge is read after the status: a later failure may have moved it on.
		require.GreaterOrEqual(t, m.GetGauge().GetValue(), float64(at.UnixNano())/1e9-0.001)
		require.InDelta(t, float64(time.Now().UnixNano())/1e9, m.GetGauge().GetValue(), 60)
		return
	}
	t.Fatal("meridian_query_store_last_error_timestamp_seconds is not exposed")
}

func TestFailureReason(t *testing.T) {
	for _, tc := range []struct {
		err      error
		timedOut bool
		want     string
	}{
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`), false, "connection_refused"},
		{status.Error(codes.Unavailable, `name resolver error: produced zero addresses`), false, "dns"},
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp: lookup store.example: no such host"`), false, "dns"},
		{status.Error(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`), false, "tls"},
		{status.Error(codes.Unavailable, `connection closed before server preface received`), false, "unavailable"},
		{status.Error(codes.DeadlineExceeded, `context deadline exceeded`), false, "timeout"},
		{status.Error(codes.Unavailable, `whatever`), true, "timeout"},
		{status.Error(codes.ResourceExhausted, `grpc: received message larger than max`), false, "resource_exhausted"},
		{status.Error(codes.Unimplemented, `unknown service`), false, "unimplemented"},
		{status.Error(codes.PermissionDenied, `no`), false, "permission_denied"},
		{errNotAStore, false, "not_a_store"},
		{errors.New("plain"), false, "error"},
	} {
		require.Equal(t, tc.want, failureReason(tc.err, tc.timedOut), "%v", tc.err)
	}
}

func TestStoreStatusJSON(t *testing.T) {
	b, err := json.Marshal(StoreStatus{
		Address: "10.0.0.7:10901", Labels: []labels.Labels{labels.FromStrings("region", "eu-west-1")},
		MinTime: 1, MaxTime: 2, Healthy: true, Region: "eu-west-1", LastCheck: time.Unix(0, 0).UTC(),
	})
	require.NoError(t, err)
	require.JSONEq(t, `{"address":"10.0.0.7:10901","labelSets":[{"region":"eu-west-1"}],"minTime":1,"maxTime":2,"healthy":true,"region":"eu-west-1","lastCheck":"1970-01-01T00:00:00Z"}`, string(b))
}

func TestStoreSetReloadsFileSD(t *testing.T) {
	eu := startTestStore(t, labels.FromStrings("region", "eu-west-1"), nil)
	us := startTestStore(t, labels.FromStrings("region", "us-east-1"), nil)
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "stores.yml")
	jsonFile := filepath.Join(dir, "stores.json")
	require.NoError(t, os.WriteFile(yamlFile, []byte("- targets: ['"+eu.addr+"']\n  labels:\n    region: eu-west-1\n"), 0o600))
	require.NoError(t, os.WriteFile(jsonFile, []byte(`[]`), 0o600))

	set, err := NewStoreSet(nil, nil, StoreSetOptions{SDFiles: []string{yamlFile, jsonFile}, FileSDInterval: 10 * time.Millisecond, ProbeInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	runStoreSet(t, set)
	addrs := func() []string {
		var out []string
		for _, st := range set.Stores() {
			if st.Healthy {
				out = append(out, st.Address)
			}
		}
		return out
	}
	require.Equal(t, []string{eu.addr}, addrs())

	for _, step := range []struct {
		name string
		file string
		body string
		want []string
	}{
		{"target added in the JSON file", jsonFile, `[{"targets": ["` + us.addr + `"], "labels": {"region": "us-east-1"}}]`, sortedStrings(eu.addr, us.addr)},
		{"target removed from the YAML file", yamlFile, "[]\n", []string{us.addr}},
		{"broken file keeps its previous targets", jsonFile, `[{"targets": [`, []string{us.addr}},
		{"target moved back to the YAML file", yamlFile, "- targets: ['" + eu.addr + "']\n", sortedStrings(eu.addr, us.addr)},
	} {
		t.Run(step.name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(step.file, []byte(step.body), 0o600))
			require.Eventually(t, func() bool {
				return slices.Equal(addrs(), step.want) && len(set.Stores()) == len(step.want)
			}, 10*time.Second, 10*time.Millisecond, "stores: %v", set.Stores())
		})
	}
}

func sortedStrings(a, b string) []string {
	if a > b {
		a, b = b, a
	}
	return []string{a, b}
}

func TestStoreSetNamesRegionFromFileSDBeforeInfo(t *testing.T) {
	never := deadAddr(t)
	file := filepath.Join(t.TempDir(), "stores.yml")
	require.NoError(t, os.WriteFile(file, []byte("- targets: ['"+never+"']\n  labels: {region: ap-south-1}\n"), 0o600))
	set, err := NewStoreSet(nil, nil, StoreSetOptions{SDFiles: []string{file}})
	require.NoError(t, err)
	runStoreSet(t, set)
	f := NewFanout(nil, nil, set, FanoutOptions{PartialResponse: true})
	_, _, err = selectAll(t, context.Background(), f, 0, 1, metricM)
	require.ErrorContains(t, err, `region "ap-south-1" (store `+never+`): unavailable`)
	require.Equal(t, "ap-south-1", set.Stores()[0].Region, "the stores list names the region too")
}

func TestStoreSetStoreComingBackAnswersAgain(t *testing.T) {
	st := regionStore(t, "eu-west-1", 2)
	set := startStoreSet(t, StoreSetOptions{Endpoints: []string{st.addr}, ProbeInterval: 50 * time.Millisecond})
	f := NewFanout(nil, nil, set, FanoutOptions{PartialResponse: true, StoreResponseTimeout: 5 * time.Second})

	st.srv.Stop()
	_, _, err := selectAll(t, context.Background(), f, 0, 10000, metricM)
	require.ErrorContains(t, err, "no store answered")
	require.Eventually(t, func() bool { s, _ := storeByAddr(set, st.addr); return !s.Healthy }, 10*time.Second, 10*time.Millisecond)

	serveStoreOn(t, st.addr, st.db, storeapi.Options{ExternalLabels: labels.FromStrings("region", "eu-west-1")})
	start := time.Now()
	require.Eventually(t, func() bool {
		got, ws, err := selectAll(t, context.Background(), f, 0, 10000, metricM)
		return err == nil && len(ws) == 0 && len(got) == 2
	}, 15*time.Second, 50*time.Millisecond)
	require.Less(t, time.Since(start), 8*time.Second, "reconnect backoff is capped")
	require.Eventually(t, func() bool { s, _ := storeByAddr(set, st.addr); return s.Healthy }, 10*time.Second, 10*time.Millisecond)
}

func TestNewStoreSetRefusesSDFileBrokenAtStart(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, file, body, want string
	}{
		{"yaml syntax", "stores.yml", "- targets: ['127.0.0.1:1'\n", "stores.yml: yaml: line 1"},
		{"json syntax", "stores.json", `[{"targets": [`, "stores.json: unexpected end of JSON input"},
		{"target without port", "noport.yml", "- targets: ['127.0.0.1']\n", `target "127.0.0.1"`},
		{"missing file", "absent.yml", "", "absent.yml: no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			if tc.body != "" {
				require.NoError(t, os.WriteFile(path, []byte(tc.body), 0o600))
			}
			_, err := NewStoreSet(nil, nil, StoreSetOptions{SDFiles: []string{path}})
			require.ErrorContains(t, err, tc.want)
		})
	}
}
