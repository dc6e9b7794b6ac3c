package simulate

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return mfs
}

func TestExpositionParsesAndMatchesRemoteWrite(t *testing.T) {
	s, _ := newTestSimulator(t)
	h, err := s.Handler("eu-west-1")
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	mfs := scrape(t, srv.URL)
	for _, f := range families {
		if f.name == "http_request_duration_native_seconds" {
			require.NotContains(t, mfs, f.name, "native histograms only go through remote write")
			continue
		}
		require.Contains(t, mfs, f.name)
	}
	require.Equal(t, dto.MetricType_HISTOGRAM, mfs["http_request_duration_seconds"].GetType())
	require.Equal(t, dto.MetricType_COUNTER, mfs["http_requests_total"].GetType())

	// Every scraped value is the value remote write gives for the same instant.
	want := valuesAt(t, s, "eu-west-1", testStart)
	compared := 0
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := func(metric string, extra ...string) string {
				b := labels.NewScratchBuilder(len(m.GetLabel()) + 2)
				for _, lp := range m.GetLabel() {
					b.Add(lp.GetName(), lp.GetValue())
				}
				b.Add(labels.MetricName, metric)
				if len(extra) == 2 {
					b.Add(extra[0], extra[1])
				}
				b.Sort()
				return b.Labels().String()
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				require.Equal(t, want[key(name)], m.GetCounter().GetValue(), key(name))
			case dto.MetricType_GAUGE:
				require.Equal(t, want[key(name)], m.GetGauge().GetValue(), key(name))
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				require.Equal(t, want[key(name+"_count")], float64(h.GetSampleCount()))
				require.Equal(t, want[key(name+"_sum")], h.GetSampleSum())
				require.Len(t, h.GetBucket(), len(classicBounds)+1, "the parser adds +Inf")
				for _, b := range h.GetBucket() {
					require.Equal(t, want[key(name+"_bucket", "le", formatLe(b.GetUpperBound()))], float64(b.GetCumulativeCount()))
				}
			}
			compared++
		}
	}
	require.Greater(t, compared, 100)
}

func TestControlEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantBody   string
		want       Controls
	}{
		{name: "error burst", method: "POST", path: "/errors?ratio=0.2", wantStatus: 200,
			want: Controls{ErrorRatio: 0.2, CapacityFactor: 1, TrafficFactor: 1, LagSeconds: 0.5}},
		{name: "half capacity", method: "POST", path: "/capacity?factor=0.5", wantStatus: 200,
			want: Controls{ErrorRatio: 0.002, CapacityFactor: 0.5, TrafficFactor: 1, LagSeconds: 0.5}},
		{name: "double traffic", method: "POST", path: "/traffic?factor=2", wantStatus: 200,
			want: Controls{ErrorRatio: 0.002, CapacityFactor: 1, TrafficFactor: 2, LagSeconds: 0.5}},
		{name: "lag of a minute", method: "POST", path: "/lag?seconds=60", wantStatus: 200,
			want: Controls{ErrorRatio: 0.002, CapacityFactor: 1, TrafficFactor: 1, LagSeconds: 60}},
		{name: "ratio above one", method: "POST", path: "/errors?ratio=1.5", wantStatus: 400, wantBody: "must be in [0, 1]"},
		{name: "ratio not a number", method: "POST", path: "/errors?ratio=lots", wantStatus: 400, wantBody: `\"lots\" is not a number`},
		{name: "ratio NaN", method: "POST", path: "/errors?ratio=NaN", wantStatus: 400, wantBody: "must be in [0, 1]"},
		{name: "missing factor", method: "POST", path: "/capacity", wantStatus: 400, wantBody: `missing query parameter \"factor\"`},
		{name: "negative traffic", method: "POST", path: "/traffic?factor=-2", wantStatus: 400, wantBody: ">= 0"},
		{name: "infinite capacity", method: "POST", path: "/capacity?factor=Inf", wantStatus: 400, wantBody: "finite"},
		{name: "GET is not a control", method: "GET", path: "/errors?ratio=0.2", wantStatus: 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestSimulator(t)
			h, err := s.Handler("eu-west-1")
			require.NoError(t, err)
			srv := httptest.NewServer(h)
			defer srv.Close()

			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, tc.wantStatus, resp.StatusCode, string(body))

			got, err := s.Controls("eu-west-1")
			require.NoError(t, err)
			switch tc.wantStatus {
			case 200:
				var r controlsResponse
				require.NoError(t, json.Unmarshal(body, &r))
				require.Equal(t, controlsResponse{Region: "eu-west-1", Controls: tc.want}, r)
				require.Equal(t, tc.want, got)
			case 400:
				require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
				var e struct{ Error string }
				require.NoError(t, json.Unmarshal(body, &e))
				require.Contains(t, string(body), tc.wantBody)
				require.NotEmpty(t, e.Error)
				fallthrough
			default:
				require.Equal(t, Controls{ErrorRatio: 0.002, CapacityFactor: 1, TrafficFactor: 1, LagSeconds: 0.5}, got, "bad input changes nothing")
			}
		})
	}
}

func TestScrapedCountersReactToControls(t *testing.T) {
	s, clock := newTestSimulator(t)
	h, err := s.Handler("us-east-1")
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	sum := func(mfs map[string]*dto.MetricFamily, name string, match func(*dto.Metric) bool) float64 {
		var total float64
		for _, m := range mfs[name].GetMetric() {
			if match(m) {
				total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return total
	}
	all := func(*dto.Metric) bool { return true }
	serverErrors := func(m *dto.Metric) bool {
		for _, l := range m.GetLabel() {
			if l.GetName() == "code" {
				return strings.HasPrefix(l.GetValue(), "5")
			}
		}
		return false
	}

	before := scrape(t, srv.URL)
	resp, err := http.Post(srv.URL+"/errors?ratio=0.5", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	resp, err = http.Post(srv.URL+"/capacity?factor=0.25", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	clock.Set(testStart.Add(10 * time.Minute))
	after := scrape(t, srv.URL)

	total := sum(after, "http_requests_total", all) - sum(before, "http_requests_total", all)
	bad := sum(after, "http_requests_total", serverErrors) - sum(before, "http_requests_total", serverErrors)
	require.InEpsilon(t, 0.5, bad/total, 0.05)
	require.Equal(t, 32.0, sum(after, "kube_node_status_allocatable", func(m *dto.Metric) bool {
		for _, l := range m.GetLabel() {
			if l.GetName() == "resource" {
				return l.GetValue() == "cpu"
			}
		}
		return false
	}))

	ctl, err := http.Get(srv.URL + "/controls")
	require.NoError(t, err)
	defer ctl.Body.Close()
	var r controlsResponse
	require.NoError(t, json.NewDecoder(ctl.Body).Decode(&r))
	require.Equal(t, controlsResponse{Region: "us-east-1", Controls: Controls{ErrorRatio: 0.5, CapacityFactor: 0.25, TrafficFactor: 1, LagSeconds: 1.2}}, r)
}

func TestHandlerForUnknownRegion(t *testing.T) {
	s, _ := newTestSimulator(t)
	_, err := s.Handler("mars-1")
	require.ErrorIs(t, err, ErrUnknownRegion)
}
