package dev

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/common/route"
)

// ChaosPath is where the chaos controls are served.
const ChaosPath = "/dev/regions"

// chaosParams names the query parameter of each fault that takes a value.
var chaosParams = map[string]string{
	FaultLatency:  "delay",
	FaultErrors:   "ratio",
	FaultCapacity: "factor",
}

// envelope is the Prometheus HTTP API response envelope.
type envelope struct {
	Status    string `json:"status"`
	Data      any    `json:"data,omitempty"`
	ErrorType string `json:"errorType,omitempty"`
	Error     string `json:"error,omitempty"`
}

// register mounts the chaos endpoints on r.
func (c *chaos) register(r *route.Router) {
	r.Get(ChaosPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, envelope{Status: "success", Data: c.state()})
	})
	r.Post(ChaosPath+"/:region/:fault", c.serveFault)
	// A GET on a control would otherwise be a bare 405 from the router, or a 404 for the
	// region's own path; answer in the API's envelope and say what to do.
	for _, path := range []string{ChaosPath + "/:region/:fault", ChaosPath + "/:region"} {
		r.Get(path, func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "bad_data",
				fmt.Errorf("%s %s: chaos controls take POST, e.g. curl -X POST %s/eu-west-1/down; GET %s lists the regions", req.Method, req.URL.Path, ChaosPath, ChaosPath))
		})
	}
}

// serveFault serves POST /dev/regions/:region/:fault[?param=value].
func (c *chaos) serveFault(w http.ResponseWriter, req *http.Request) {
	f := Fault{Kind: route.Param(req.Context(), "fault"), Region: route.Param(req.Context(), "region")}
	switch f.Kind {
	case FaultDown, FaultUp:
	case FaultLatency, FaultErrors, FaultCapacity:
		param := chaosParams[f.Kind]
		if f.Value = req.URL.Query().Get(param); f.Value == "" {
			writeError(w, http.StatusBadRequest, "bad_data", fmt.Errorf("%s: missing parameter %q, e.g. %s/%s/%s?%s=%s", f.Kind, param, ChaosPath, f.Region, f.Kind, param, example(f.Kind)))
			return
		}
	default:
		writeError(w, http.StatusNotFound, "not_found", fmt.Errorf("unknown chaos control %q: one of down, up, latency, errors, capacity", f.Kind))
		return
	}
	st, err := c.apply(f)
	switch {
	case errors.Is(err, ErrUnknownRegion):
		writeError(w, http.StatusNotFound, "not_found", fmt.Errorf("%w (known: %v)", err, c.sim.Regions()))
	case err != nil:
		writeError(w, http.StatusBadRequest, "bad_data", err)
	default:
		writeJSON(w, http.StatusOK, envelope{Status: "success", Data: st})
	}
}

func example(kind string) string {
	switch kind {
	case FaultLatency:
		return "3s"
	case FaultErrors:
		return "0.2"
	}
	return "0.5"
}

func writeError(w http.ResponseWriter, code int, typ string, err error) {
	writeJSON(w, code, envelope{Status: "error", ErrorType: typ, Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"status":"error","errorType":"internal","error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
