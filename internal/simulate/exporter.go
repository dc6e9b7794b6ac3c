package simulate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/proto"
)

// Handler returns an HTTP handler for one region that a real Prometheus can scrape, and that
// takes the region's controls:
//
//	GET  /metrics                 the region's series now, in the Prometheus exposition formats
//	                              (no native histograms: those go through remote write)
//	GET  /controls                the controls in force, as JSON
//	POST /errors?ratio=0.2        SetErrorRatio
//	POST /capacity?factor=0.5     SetCapacityFactor
//	POST /traffic?factor=2        SetTrafficFactor
//	POST /lag?seconds=30          SetLagSeconds
//
// Control requests answer the new controls as JSON, or 400 with {"error": "..."} on bad input.
// Series carry their own job and instance labels: scrape with honor_labels: true to keep them.
func (s *Simulator) Handler(region string) (http.Handler, error) {
	r, err := s.region(region)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	gather := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		return s.exposition(r), nil
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	mux.HandleFunc("GET /controls", func(w http.ResponseWriter, _ *http.Request) {
		c, err := s.Controls(region)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, controlsResponse{Region: region, Controls: c})
	})
	for _, ctl := range []struct {
		path, param string
		set         func(string, float64) error
	}{
		{"/errors", "ratio", s.SetErrorRatio},
		{"/capacity", "factor", s.SetCapacityFactor},
		{"/traffic", "factor", s.SetTrafficFactor},
		{"/lag", "seconds", s.SetLagSeconds},
	} {
		mux.HandleFunc("POST "+ctl.path, func(w http.ResponseWriter, req *http.Request) {
			raw := req.URL.Query().Get(ctl.param)
			if raw == "" {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("missing query parameter %q, e.g. %s?%s=0.5", ctl.param, ctl.path, ctl.param)})
				return
			}
			v, err := strconv.ParseFloat(raw, 64)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("query parameter %q: %q is not a number", ctl.param, raw)})
				return
			}
			if err := ctl.set(region, v); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			c, _ := s.Controls(region)
			writeJSON(w, http.StatusOK, controlsResponse{Region: region, Controls: c})
		})
	}
	return mux, nil
}

type controlsResponse struct {
	Region   string   `json:"region"`
	Controls Controls `json:"controls"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// exposition returns the region's series at the clock's now as metric families.
func (s *Simulator) exposition(r *region) []*dto.MetricFamily {
	floats := make([]float64, len(r.floats))
	x := s.secondsAt(s.cfg.clock())
	if x < 0 {
		x = 0
	}
	r.eval(r.timeline.snapshot(), x, floats, nil)

	var out []*dto.MetricFamily
	byFamily := map[int]*dto.MetricFamily{}
	byMetric := map[int]*dto.Metric{}
	for i, def := range r.floats {
		mf, ok := byFamily[def.fam]
		if !ok {
			f := families[def.fam]
			mf = &dto.MetricFamily{Name: proto.String(f.name), Help: proto.String(f.help), Type: dtoType(f.typ).Enum()}
			byFamily[def.fam] = mf
			out = append(out, mf)
		}
		v := floats[i]
		switch def.part {
		case partValue:
			m := &dto.Metric{Label: labelPairs(def.lbls)}
			if families[def.fam].typ == typeCounter {
				m.Counter = &dto.Counter{Value: proto.Float64(v)}
			} else {
				m.Gauge = &dto.Gauge{Value: proto.Float64(v)}
			}
			mf.Metric = append(mf.Metric, m)
			continue
		}
		m, ok := byMetric[def.metric]
		if !ok {
			m = &dto.Metric{Label: labelPairs(def.lbls), Histogram: &dto.Histogram{}}
			byMetric[def.metric] = m
			mf.Metric = append(mf.Metric, m)
		}
		switch def.part {
		case partBucket:
			if def.le <= classicBounds[len(classicBounds)-1] {
				m.Histogram.Bucket = append(m.Histogram.Bucket, &dto.Bucket{UpperBound: proto.Float64(def.le), CumulativeCount: proto.Uint64(uint64(v))})
			}
		case partSum:
			m.Histogram.SampleSum = proto.Float64(v)
		case partCount:
			m.Histogram.SampleCount = proto.Uint64(uint64(v))
		}
	}
	return out
}

// labelPairs returns a series' labels for exposition: all but the name and le.
func labelPairs(l labels.Labels) []*dto.LabelPair {
	var out []*dto.LabelPair
	l.Range(func(lb labels.Label) {
		if lb.Name == labels.MetricName || lb.Name == labels.BucketLabel {
			return
		}
		out = append(out, &dto.LabelPair{Name: proto.String(lb.Name), Value: proto.String(lb.Value)})
	})
	return out
}

func dtoType(t metricType) dto.MetricType {
	switch t {
	case typeCounter:
		return dto.MetricType_COUNTER
	case typeHistogram:
		return dto.MetricType_HISTOGRAM
	default:
		return dto.MetricType_GAUGE
	}
}
