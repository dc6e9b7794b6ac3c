package slo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/prometheus/common/route"
)

// Readiness HTTP paths.
const (
	ReadinessAPIPath    = "/api/v1/readiness"
	ReadinessHealthPath = "/readiness/" // followed by the region
)

// readinessEnvelope is the Prometheus HTTP API envelope.
type readinessEnvelope struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

// RegisterRoutes mounts GET /api/v1/readiness and GET /readiness/{region} on mux.
func (e *ReadinessEvaluator) RegisterRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+ReadinessAPIPath, e.ServeAPI)
	mux.HandleFunc("GET "+ReadinessHealthPath+"{region}", e.ServeRegionHealth)
}

// RegisterRouter mounts the same handlers on a Prometheus route.Router, relative to its prefix.
func (e *ReadinessEvaluator) RegisterRouter(r *route.Router) {
	r.Get(ReadinessAPIPath, e.ServeAPI)
	r.Get(ReadinessHealthPath+":region", e.ServeRegionHealth)
}

// ServeAPI serves GET /api/v1/readiness: the cached report of every region, in the Prometheus
// envelope. With ?fail=R it is a what-if evaluated now for R alone (a report with one region);
// an unknown R is a 400 bad_data error.
func (e *ReadinessEvaluator) ServeAPI(w http.ResponseWriter, r *http.Request) {
	fail := r.URL.Query().Get("fail")
	if fail == "" {
		rep, err := e.current(r.Context())
		if err != nil {
			writeReadinessError(w, http.StatusServiceUnavailable, "unavailable", err)
			return
		}
		writeReadinessJSON(w, http.StatusOK, readinessEnvelope{Status: "success", Data: rep, Warnings: rep.Warnings})
		return
	}
	now := e.now()
	res, warnings, err := e.EvaluateRegion(r.Context(), fail, now)
	switch {
	case errors.Is(err, ErrUnknownRegion):
		writeReadinessError(w, http.StatusBadRequest, "bad_data", fmt.Errorf("invalid parameter \"fail\": %w", err))
		return
	case err != nil:
		writeReadinessError(w, http.StatusServiceUnavailable, "unavailable", err)
		return
	}
	rep := &ReadinessReport{EvaluatedAt: now, Topology: e.spec.Topology, Regions: []ReadinessResult{res}, Warnings: warnings}
	writeReadinessJSON(w, http.StatusOK, readinessEnvelope{Status: "success", Data: rep, Warnings: warnings})
}

// ServeRegionHealth serves GET /readiness/{region} for DNS failover health checks and
// automation: 200 when losing the region is survivable (READY), 503 otherwise (DEGRADED,
// NOT_READY, UNKNOWN, or no report could be produced), 404 for a region that is not scored.
// The body is the region's ReadinessResult as JSON.
func (e *ReadinessEvaluator) ServeRegionHealth(w http.ResponseWriter, r *http.Request) {
	region := r.PathValue("region")
	if region == "" {
		region = route.Param(r.Context(), "region")
	}
	rep, err := e.current(r.Context())
	if err != nil {
		writeReadinessError(w, http.StatusServiceUnavailable, "unavailable", err)
		return
	}
	i := slices.IndexFunc(rep.Regions, func(res ReadinessResult) bool { return res.Region == region })
	if i < 0 {
		writeReadinessError(w, http.StatusNotFound, "not_found", fmt.Errorf("region %q: %w", region, ErrUnknownRegion))
		return
	}
	code := http.StatusServiceUnavailable
	if rep.Regions[i].Ready {
		code = http.StatusOK
	}
	writeReadinessJSON(w, code, rep.Regions[i])
}

func writeReadinessError(w http.ResponseWriter, code int, typ string, err error) {
	writeReadinessJSON(w, code, readinessEnvelope{Status: "error", ErrorType: typ, Error: err.Error()})
}

func writeReadinessJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"status":"error","errorType":"internal","error":` + fmt.Sprintf("%q", "encode response: "+err.Error()) + `}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
