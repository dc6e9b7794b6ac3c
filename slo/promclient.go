package slo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/util/annotations"
)

// httpQuerier runs instant queries against a Prometheus-compatible /api/v1/query: Prometheus,
// Thanos Query, meridian query.
type httpQuerier struct {
	endpoint string
	client   *http.Client
}

// NewHTTPQuerier returns a Querier over the Prometheus HTTP API at baseURL (e.g.
// "http://localhost:9090"; a path prefix is kept). Queries are POSTed as forms; response
// warnings become annotations, so a partial response stays visible. client nil means
// http.DefaultClient.
func NewHTTPQuerier(baseURL string, client *http.Client) Querier {
	if client == nil {
		client = http.DefaultClient
	}
	return &httpQuerier{endpoint: strings.TrimRight(baseURL, "/") + "/api/v1/query", client: client}
}

// promAPIResponse is the envelope of the Prometheus HTTP API.
type promAPIResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
	Infos     []string        `json:"infos"`
}

type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type vectorSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (q *httpQuerier) Query(ctx context.Context, expr string, ts time.Time) (promql.Vector, annotations.Annotations, error) {
	form := url.Values{
		"query": {expr},
		"time":  {strconv.FormatFloat(float64(ts.UnixMilli())/1e3, 'f', -1, 64)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, nil, fmt.Errorf("query %s: %w", q.endpoint, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := q.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("query %s: %w", q.endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("query %s: read response: %w", q.endpoint, err)
	}
	var ar promAPIResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		return nil, nil, fmt.Errorf("query %s: status %s: %s", q.endpoint, resp.Status, truncate(string(body), 256))
	}
	if ar.Status != "success" {
		return nil, nil, fmt.Errorf("query %s: status %s: %s: %s", q.endpoint, resp.Status, ar.ErrorType, ar.Error)
	}
	var annos annotations.Annotations
	for _, w := range ar.Warnings {
		annos.Add(remoteWarning(w))
	}
	for _, i := range ar.Infos {
		annos.Add(remoteInfo(i))
	}
	vec, err := decodeResult(ar.Data)
	if err != nil {
		return nil, annos, fmt.Errorf("query %s: %w", q.endpoint, err)
	}
	return vec, annos, nil
}

// decodeResult turns a vector or scalar result into a Vector (a scalar becomes one sample
// without labels).
func decodeResult(raw json.RawMessage) (promql.Vector, error) {
	var d queryData
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("decode data: %w", err)
	}
	switch d.ResultType {
	case "vector":
		var samples []vectorSample
		if err := json.Unmarshal(d.Result, &samples); err != nil {
			return nil, fmt.Errorf("decode vector: %w", err)
		}
		vec := make(promql.Vector, 0, len(samples))
		for _, s := range samples {
			t, f, err := decodeValue(s.Value)
			if err != nil {
				return nil, err
			}
			vec = append(vec, promql.Sample{Metric: labels.FromMap(s.Metric), T: t, F: f})
		}
		return vec, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return nil, fmt.Errorf("decode scalar: %w", err)
		}
		t, f, err := decodeValue(v)
		if err != nil {
			return nil, err
		}
		return promql.Vector{{Metric: labels.EmptyLabels(), T: t, F: f}}, nil
	default:
		return nil, fmt.Errorf("unsupported result type %q: an instant vector or scalar is needed", d.ResultType)
	}
}

func decodeValue(v [2]any) (int64, float64, error) {
	ts, ok := v[0].(float64)
	if !ok {
		return 0, 0, fmt.Errorf("decode sample: timestamp %v is not a number", v[0])
	}
	s, ok := v[1].(string)
	if !ok {
		return 0, 0, fmt.Errorf("decode sample: value %v is not a string", v[1])
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("decode sample value %q: %w", s, err)
	}
	return int64(ts * 1e3), f, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// remoteWarning is a warning from a remote API; it counts as a warning (partial data).
type remoteWarning string

func (w remoteWarning) Error() string { return string(w) }

// remoteInfo is an informational annotation from a remote API; it does not make data partial.
type remoteInfo string

func (i remoteInfo) Error() string { return string(i) }
func (i remoteInfo) Unwrap() error { return annotations.PromQLInfo }
