package slo

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/common/route"
)

// SLOAPIPath is where the SLO results are served.
const SLOAPIPath = "/api/v1/slos"

// slosResponse is the Prometheus HTTP API envelope around the SLO results.
type slosResponse struct {
	Status    string   `json:"status"`
	Data      []Result `json:"data"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

// RegisterRoutes mounts GET /api/v1/slos on mux.
func (e *Engine) RegisterRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+SLOAPIPath, e.ServeAPI)
}

// RegisterRouter mounts GET /api/v1/slos on a Prometheus route.Router, relative to its prefix.
func (e *Engine) RegisterRouter(r *route.Router) {
	r.Get(SLOAPIPath, e.ServeAPI)
}

// ServeAPI serves the last SLO results as {"status":"success","data":[...]}, optionally
// filtered by ?service= and ?slo=. The warnings of partial results are repeated in the
// envelope's warnings. Before the first periodic evaluation it evaluates once.
func (e *Engine) ServeAPI(w http.ResponseWriter, r *http.Request) {
	results, _ := e.Results()
	if results == nil {
		results = e.Evaluate(r.Context(), e.now())
	}
	service, name := r.URL.Query().Get("service"), r.URL.Query().Get("slo")
	resp := slosResponse{Status: "success", Data: []Result{}}
	for _, res := range results {
		if (service != "" && res.Service != service) || (name != "" && res.Name != name) {
			continue
		}
		resp.Data = append(resp.Data, res)
		resp.Warnings = appendUnique(resp.Warnings, res.Warnings...)
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(resp); err != nil {
		e.logger.Debug("write slo response", "err", err)
	}
}
