package slo

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// slothVersion is the only Sloth spec version accepted, as Sloth's own CLI accepts it.
const slothVersion = "prometheus/v1"

// parseSloth reads a Sloth "prometheus/v1" document unchanged: the service, its labels and its
// SLOs with event (error/total) or raw (error ratio) SLIs and the alerting section. Sloth
// objectives are percentages; they are stored as fractions.
func parseSloth(r *nodeReader, root *yaml.Node) []SLO {
	var (
		service string
		labels  map[string]string
		slos    []SLO
		items   []*yaml.Node
	)
	r.fields(root, "", map[string]func(*yaml.Node, string){
		"version": func(v *yaml.Node, f string) {
			if got := r.str(v, f); got != slothVersion {
				r.problem(v, f, "unsupported Sloth version %q, expected %q", got, slothVersion)
			}
		},
		"service": func(v *yaml.Node, f string) { service = r.str(v, f) },
		"labels":  func(v *yaml.Node, f string) { labels = r.stringMap(v, f) },
		"slos":    func(v *yaml.Node, f string) { items = r.seq(v, f) },
	})
	if service == "" {
		r.problem(root, "service", "missing")
	}
	if mapValue(root, "slos") == nil {
		r.problem(root, "slos", "missing: a Sloth spec needs at least one SLO")
	}
	for i, item := range items {
		s := parseSlothSLO(r, item, fmt.Sprintf("slos[%d]", i))
		s.Service = service
		s.Labels = mergeLabels(labels, s.Labels)
		slos = append(slos, s)
	}
	return slos
}

func parseSlothSLO(r *nodeReader, n *yaml.Node, path string) SLO {
	s := SLO{Source: Source{File: r.file, Line: n.Line, Format: "sloth", Fields: map[string]FieldPos{}}}
	pos := func(key string, v *yaml.Node, f string) { s.Source.Fields[key] = FieldPos{Path: f, Line: v.Line} }
	hasObjective := false
	r.fields(n, path, map[string]func(*yaml.Node, string){
		"name": func(v *yaml.Node, f string) { s.Name = r.str(v, f); pos("name", v, f) },
		"objective": func(v *yaml.Node, f string) {
			hasObjective = true
			pos("objective", v, f)
			pct := r.float(v, f)
			if pct <= 0 || pct >= 100 {
				r.problem(v, f, "objective %v is out of range: a percentage in (0, 100) is required", pct)
				return
			}
			s.Objective = pct / 100
		},
		"description": func(v *yaml.Node, f string) { s.Description = r.str(v, f) },
		"labels":      func(v *yaml.Node, f string) { s.Labels = r.stringMap(v, f) },
		"sli":         func(v *yaml.Node, f string) { parseSlothSLI(r, v, f, &s) },
		"alerting":    func(v *yaml.Node, f string) { s.Alerting = parseSlothAlerting(r, v, f) },
	})
	if !hasObjective {
		r.problem(n, joinField(path, "objective"), "missing")
	}
	if mapValue(n, "sli") == nil {
		r.problem(n, joinField(path, "sli"), "missing: events or raw SLI required")
	}
	return s
}

func parseSlothSLI(r *nodeReader, n *yaml.Node, path string, s *SLO) {
	kinds := 0
	r.fields(n, path, map[string]func(*yaml.Node, string){
		"events": func(v *yaml.Node, f string) {
			kinds++
			r.fields(v, f, map[string]func(*yaml.Node, string){
				"error_query": func(q *yaml.Node, qf string) {
					s.ErrorQuery = r.str(q, qf)
					s.Source.Fields["error_query"] = FieldPos{Path: qf, Line: q.Line}
				},
				"total_query": func(q *yaml.Node, qf string) {
					s.TotalQuery = r.str(q, qf)
					s.Source.Fields["total_query"] = FieldPos{Path: qf, Line: q.Line}
				},
			})
			if s.ErrorQuery == "" {
				r.problem(v, joinField(f, "error_query"), "missing")
			}
			if s.TotalQuery == "" {
				r.problem(v, joinField(f, "total_query"), "missing")
			}
		},
		"raw": func(v *yaml.Node, f string) {
			kinds++
			r.fields(v, f, map[string]func(*yaml.Node, string){
				"error_ratio_query": func(q *yaml.Node, qf string) {
					s.RawErrorRatioQuery = r.str(q, qf)
					s.Source.Fields["error_ratio_query"] = FieldPos{Path: qf, Line: q.Line}
				},
			})
			if s.RawErrorRatioQuery == "" {
				r.problem(v, joinField(f, "error_ratio_query"), "missing")
			}
		},
		"plugin": func(v *yaml.Node, f string) {
			kinds++
			r.problem(v, f, "SLI plugins are not supported: use events or raw")
		},
	})
	if kinds > 1 {
		r.problem(n, path, "exactly one of events, raw or plugin is allowed")
	}
	if kinds == 0 {
		r.problem(n, path, "one of events or raw is required")
	}
}

func parseSlothAlerting(r *nodeReader, n *yaml.Node, path string) Alerting {
	var a Alerting
	r.fields(n, path, map[string]func(*yaml.Node, string){
		"name":         func(v *yaml.Node, f string) { a.Name = r.str(v, f) },
		"labels":       func(v *yaml.Node, f string) { a.Labels = r.stringMap(v, f) },
		"annotations":  func(v *yaml.Node, f string) { a.Annotations = r.stringMap(v, f) },
		"page_alert":   func(v *yaml.Node, f string) { a.PageAlert = parseSlothAlert(r, v, f) },
		"ticket_alert": func(v *yaml.Node, f string) { a.TicketAlert = parseSlothAlert(r, v, f) },
	})
	return a
}

func parseSlothAlert(r *nodeReader, n *yaml.Node, path string) AlertSpec {
	var a AlertSpec
	r.fields(n, path, map[string]func(*yaml.Node, string){
		"disable":     func(v *yaml.Node, f string) { a.Disable = r.boolean(v, f) },
		"labels":      func(v *yaml.Node, f string) { a.Labels = r.stringMap(v, f) },
		"annotations": func(v *yaml.Node, f string) { a.Annotations = r.stringMap(v, f) },
	})
	return a
}

// mergeLabels returns base overlaid with over (the SLO's own labels win, as in Sloth).
func mergeLabels(base, over map[string]string) map[string]string {
	if len(base) == 0 && len(over) == 0 {
		return nil
	}
	m := make(map[string]string, len(base)+len(over))
	for k, v := range base {
		m[k] = v
	}
	for k, v := range over {
		m[k] = v
	}
	return m
}
