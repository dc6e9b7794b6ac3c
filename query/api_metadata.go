package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/httputil"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/meridian-obs/meridian/internal/storeapi"
)

// serveMetadata answers /api/v1/metadata from the stores (APIOptions.Metadata) with
// Prometheus's parameters (metric, limit, limit_per_metric), answer and errors, plus the
// warnings of the fan-out, which Prometheus's handler has no place for.
func (a *API) serveMetadata(w http.ResponseWriter, r *http.Request) {
	httputil.SetCORS(w, a.opts.CORSOrigin, r)
	req := storeapi.MetadataRequest{Metric: r.FormValue("metric"), Limit: -1, LimitPerMetric: -1}
	for _, p := range []struct {
		name string
		to   *int
	}{{"limit", &req.Limit}, {"limit_per_metric", &req.LimitPerMetric}} {
		if s := r.FormValue(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				writeError(w, "bad_data", http.StatusBadRequest, fmt.Errorf("%s must be a number", p.name))
				return
			}
			*p.to = n
		}
	}
	md, ws, err := a.opts.Metadata.MetricMetadata(r.Context(), req)
	if err != nil {
		a.writeStoreError(w, err)
		return
	}
	if md == nil {
		md = map[string][]metadata.Metadata{}
	}
	a.writeAnswer(w, md, ws)
}

// serveExemplars answers /api/v1/query_exemplars from the stores (APIOptions.Exemplars) with
// Prometheus's parameters (query, start, end), answer format and errors, plus the fan-out's
// warnings.
func (a *API) serveExemplars(w http.ResponseWriter, r *http.Request) {
	httputil.SetCORS(w, a.opts.CORSOrigin, r)
	start, err := timeParam(r, "start", v1.MinTime)
	if err != nil {
		writeError(w, "bad_data", http.StatusBadRequest, err)
		return
	}
	end, err := timeParam(r, "end", v1.MaxTime)
	if err != nil {
		writeError(w, "bad_data", http.StatusBadRequest, err)
		return
	}
	if end.Before(start) {
		writeError(w, "bad_data", http.StatusBadRequest, errors.New("end timestamp must not be before start timestamp"))
		return
	}
	expr, err := parser.ParseExpr(r.FormValue("query"))
	if err != nil {
		writeError(w, "bad_data", http.StatusBadRequest, err)
		return
	}
	selectors := parser.ExtractSelectors(expr)
	if len(selectors) == 0 {
		a.writeAnswer(w, []exemplar.QueryResult{}, nil)
		return
	}
	res, ws, err := a.opts.Exemplars.Exemplars(r.Context(), timestamp.FromTime(start), timestamp.FromTime(end), selectors)
	if err != nil {
		a.writeStoreError(w, err)
		return
	}
	if res == nil {
		res = []exemplar.QueryResult{}
	}
	a.writeAnswer(w, res, ws)
}

// writeAnswer encodes data with Prometheus's JSON codec (which writes exemplars as Prometheus
// does: values as strings, timestamps as seconds) and the warnings, as every answer has them.
func (a *API) writeAnswer(w http.ResponseWriter, data any, ws annotations.Annotations) {
	resp := &v1.Response{Status: "success", Data: data}
	for _, err := range ws {
		resp.Warnings = append(resp.Warnings, err.Error())
	}
	b, err := v1.JSONCodec{}.Encode(resp)
	if err != nil {
		a.logger.Error("marshal API response", "err", err)
		writeError(w, "internal", http.StatusInternalServerError, fmt.Errorf("marshal response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// writeStoreError answers a fan-out failure as Prometheus answers a storage error of a query:
// 422 execution, or 503 timeout when a store ran out of time.
func (a *API) writeStoreError(w http.ResponseWriter, err error) {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		writeError(w, "timeout", http.StatusServiceUnavailable, err)
		return
	}
	writeError(w, "execution", http.StatusUnprocessableEntity, err)
}

// timeParam reads a time parameter as Prometheus does: Unix seconds (with a fraction) or
// RFC 3339, and Prometheus's own formatted minimum and maximum times.
func timeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	s := r.FormValue(name)
	if s == "" {
		return def, nil
	}
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		sec, ns := math.Modf(t)
		ns = math.Round(ns*1000) / 1000
		return time.Unix(int64(sec), int64(ns*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch s {
	case v1.MinTime.Format(time.RFC3339Nano):
		return v1.MinTime, nil
	case v1.MaxTime.Format(time.RFC3339Nano):
		return v1.MaxTime, nil
	}
	return time.Time{}, fmt.Errorf("invalid parameter %q: cannot parse %q to a valid timestamp", name, s)
}
