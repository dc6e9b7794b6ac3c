package slo

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// openSLOVersion is the OpenSLO API version accepted.
const openSLOVersion = "openslo/v1"

// openSLOIndicator is the ratio part of an OpenSLO SLI: bad/total or good/total queries with a
// Prometheus metric source. Exactly one of good and bad is set.
type openSLOIndicator struct {
	good, bad, total        string
	goodPos, badPos, totPos FieldPos
	file                    string
	line                    int
	description             string
	ok                      bool
}

// pendingRef is an OpenSLO SLO whose indicator is a reference to a kind: SLI resolved once all
// files are read.
type pendingRef struct {
	index int // into specParser.slos
	name  string
	file  string
	line  int
	field string
}

// parseOpenSLO reads one OpenSLO v1 document. SLO and SLI kinds are read (the ratio subset:
// ratioMetric good/total or bad/total, Prometheus metric source, rolling time window,
// Occurrences budgeting); other kinds (Service, DataSource, AlertPolicy, ...) are skipped.
func (p *specParser) parseOpenSLO(r *nodeReader, root *yaml.Node) {
	if v := mapValue(root, "apiVersion"); v.Value != openSLOVersion {
		r.problem(v, "apiVersion", "unsupported OpenSLO version %q, expected %q", v.Value, openSLOVersion)
		return
	}
	kind := mapValue(root, "kind")
	if kind == nil {
		r.problem(root, "kind", "missing")
		return
	}
	switch kind.Value {
	case "SLO":
		p.parseOpenSLOSLO(r, root)
	case "SLI":
		var name string
		var ind openSLOIndicator
		r.fields(root, "", map[string]func(*yaml.Node, string){
			"apiVersion": func(*yaml.Node, string) {},
			"kind":       func(*yaml.Node, string) {},
			"metadata":   func(v *yaml.Node, f string) { name, _, _ = parseOpenSLOMetadata(r, v, f) },
			"spec":       func(v *yaml.Node, f string) { ind = parseOpenSLOIndicatorSpec(r, v, f) },
		})
		if name == "" {
			r.problem(root, "metadata.name", "missing")
			return
		}
		if prev, dup := p.sliDefs[name]; dup {
			r.problem(root, "metadata.name", "SLI %q is already defined at %s:%d", name, prev.file, prev.line)
			return
		}
		p.sliDefs[name] = ind
	case "Service", "DataSource", "AlertPolicy", "AlertCondition", "AlertNotificationTarget":
	default:
		r.problem(kind, "kind", "unknown OpenSLO kind %q", kind.Value)
	}
}

func (p *specParser) parseOpenSLOSLO(r *nodeReader, root *yaml.Node) {
	base := SLO{Source: Source{File: r.file, Line: root.Line, Format: "openslo", Fields: map[string]FieldPos{}}}
	var (
		ind        openSLOIndicator
		ref        *pendingRef
		objectives []*yaml.Node
		hasInd     bool
	)
	r.fields(root, "", map[string]func(*yaml.Node, string){
		"apiVersion": func(*yaml.Node, string) {},
		"kind":       func(*yaml.Node, string) {},
		"metadata": func(v *yaml.Node, f string) {
			var line int
			base.Name, base.Labels, line = parseOpenSLOMetadata(r, v, f)
			base.Source.Fields["name"] = FieldPos{Path: joinField(f, "name"), Line: line}
		},
		"spec": func(v *yaml.Node, f string) {
			r.fields(v, f, map[string]func(*yaml.Node, string){
				"description": func(d *yaml.Node, df string) { base.Description = r.str(d, df) },
				"service":     func(d *yaml.Node, df string) { base.Service = r.str(d, df) },
				"indicator": func(d *yaml.Node, df string) {
					hasInd = true
					r.fields(d, df, map[string]func(*yaml.Node, string){
						"metadata": func(m *yaml.Node, mf string) { parseOpenSLOMetadata(r, m, mf) },
						"spec":     func(s *yaml.Node, sf string) { ind = parseOpenSLOIndicatorSpec(r, s, sf) },
					})
				},
				"indicatorRef": func(d *yaml.Node, df string) {
					hasInd = true
					ref = &pendingRef{name: r.str(d, df), file: r.file, line: d.Line, field: df}
				},
				"timeWindow": func(d *yaml.Node, df string) { base.Period = parseOpenSLOTimeWindow(r, d, df) },
				"budgetingMethod": func(d *yaml.Node, df string) {
					if m := r.str(d, df); m != "Occurrences" {
						r.problem(d, df, "budgeting method %q is not supported: only Occurrences", m)
					}
				},
				"objectives":    func(d *yaml.Node, df string) { objectives = r.seq(d, df) },
				"alertPolicies": func(*yaml.Node, string) {},
			})
			if mapValue(v, "objectives") == nil {
				r.problem(v, joinField(f, "objectives"), "missing")
			}
		},
	})
	if base.Service == "" {
		r.problem(root, "spec.service", "missing")
	}
	if !hasInd {
		r.problem(root, "spec", "one of indicator or indicatorRef is required")
	}
	for i, o := range objectives {
		s := base
		s.Source.Fields = map[string]FieldPos{}
		for k, v := range base.Source.Fields {
			s.Source.Fields[k] = v
		}
		f := fmt.Sprintf("spec.objectives[%d]", i)
		var objName string
		hasTarget := false
		r.fields(o, f, map[string]func(*yaml.Node, string){
			"displayName": func(v *yaml.Node, vf string) { objName = r.str(v, vf) },
			"name":        func(v *yaml.Node, vf string) { objName = r.str(v, vf) },
			"target": func(v *yaml.Node, vf string) {
				hasTarget = true
				s.Source.Fields["objective"] = FieldPos{Path: vf, Line: v.Line}
				t := r.float(v, vf)
				if t <= 0 || t >= 1 {
					r.problem(v, vf, "target %v is out of range: a fraction in (0, 1) is required", t)
					return
				}
				s.Objective = t
			},
			"targetPercent": func(v *yaml.Node, vf string) {
				hasTarget = true
				s.Source.Fields["objective"] = FieldPos{Path: vf, Line: v.Line}
				t := r.float(v, vf)
				if t <= 0 || t >= 100 {
					r.problem(v, vf, "targetPercent %v is out of range: a percentage in (0, 100) is required", t)
					return
				}
				s.Objective = t / 100
			},
			"op": func(v *yaml.Node, vf string) {
				r.problem(v, vf, "threshold objectives are not supported: only ratio SLIs")
			},
			"value": func(v *yaml.Node, vf string) {
				r.problem(v, vf, "threshold objectives are not supported: only ratio SLIs")
			},
			"timeSliceTarget": func(v *yaml.Node, vf string) {
				r.problem(v, vf, "timeslices are not supported: only Occurrences budgeting")
			},
			"timeSliceWindow": func(v *yaml.Node, vf string) {
				r.problem(v, vf, "timeslices are not supported: only Occurrences budgeting")
			},
			"indicator":    func(v *yaml.Node, vf string) { r.problem(v, vf, "per-objective indicators are not supported") },
			"indicatorRef": func(v *yaml.Node, vf string) { r.problem(v, vf, "per-objective indicators are not supported") },
		})
		if !hasTarget {
			r.problem(o, joinField(f, "target"), "missing")
		}
		if len(objectives) > 1 {
			if objName == "" {
				objName = fmt.Sprint(i)
			}
			s.Name = base.Name + "-" + sanitizeName(objName)
		}
		p.slos = append(p.slos, s)
		if ref != nil {
			rr := *ref
			rr.index = len(p.slos) - 1
			p.pending = append(p.pending, rr)
		} else {
			applyIndicator(&p.slos[len(p.slos)-1], ind)
		}
	}
}

func (p *specParser) resolveRefs() {
	for _, ref := range p.pending {
		ind, ok := p.sliDefs[ref.name]
		if !ok {
			p.problems = append(p.problems, Problem{File: ref.file, Line: ref.line, Field: ref.field,
				Message: fmt.Sprintf("no kind: SLI named %q in the spec files", ref.name)})
			continue
		}
		applyIndicator(&p.slos[ref.index], ind)
	}
	p.pending = nil
}

// applyIndicator turns good/total into errors = total - good, so that both Sloth and OpenSLO
// SLIs are errors over totals.
func applyIndicator(s *SLO, ind openSLOIndicator) {
	if !ind.ok {
		return
	}
	if s.Description == "" {
		s.Description = ind.description
	}
	s.TotalQuery = ind.total
	s.Source.Fields["total_query"] = ind.totPos
	if ind.bad != "" {
		s.ErrorQuery = ind.bad
		s.Source.Fields["error_query"] = ind.badPos
		return
	}
	s.ErrorQuery = "(" + ind.total + ") - (" + ind.good + ")"
	s.Source.Fields["error_query"] = ind.goodPos
}

func parseOpenSLOMetadata(r *nodeReader, n *yaml.Node, path string) (name string, labels map[string]string, line int) {
	line = n.Line
	r.fields(n, path, map[string]func(*yaml.Node, string){
		"name":        func(v *yaml.Node, f string) { name, line = r.str(v, f), v.Line },
		"displayName": func(*yaml.Node, string) {},
		"labels":      func(v *yaml.Node, f string) { labels = r.stringMap(v, f) },
		"annotations": func(v *yaml.Node, f string) { r.stringMap(v, f) },
	})
	return name, labels, line
}

func parseOpenSLOIndicatorSpec(r *nodeReader, n *yaml.Node, path string) openSLOIndicator {
	ind := openSLOIndicator{file: r.file, line: n.Line}
	hasRatio := false
	r.fields(n, path, map[string]func(*yaml.Node, string){
		"description": func(v *yaml.Node, f string) { ind.description = r.str(v, f) },
		"thresholdMetric": func(v *yaml.Node, f string) {
			r.problem(v, f, "threshold metrics are not supported: use ratioMetric")
		},
		"ratioMetric": func(v *yaml.Node, f string) {
			hasRatio = true
			r.fields(v, f, map[string]func(*yaml.Node, string){
				"counter": func(c *yaml.Node, cf string) { r.boolean(c, cf) },
				"good":    func(c *yaml.Node, cf string) { ind.good, ind.goodPos = parseOpenSLOMetricSource(r, c, cf) },
				"bad":     func(c *yaml.Node, cf string) { ind.bad, ind.badPos = parseOpenSLOMetricSource(r, c, cf) },
				"total":   func(c *yaml.Node, cf string) { ind.total, ind.totPos = parseOpenSLOMetricSource(r, c, cf) },
				"rawType": func(c *yaml.Node, cf string) {
					r.problem(c, cf, "raw ratio metrics are not supported: use good or bad with total")
				},
				"raw": func(c *yaml.Node, cf string) {
					r.problem(c, cf, "raw ratio metrics are not supported: use good or bad with total")
				},
			})
			hasGood, hasBad := mapValue(v, "good") != nil, mapValue(v, "bad") != nil
			switch {
			case hasGood == hasBad:
				r.problem(v, f, "exactly one of good or bad is required")
			case mapValue(v, "total") == nil:
				r.problem(v, joinField(f, "total"), "missing")
			default:
				ind.ok = ind.total != "" && (ind.good != "" || ind.bad != "")
			}
		},
	})
	if !hasRatio && mapValue(n, "thresholdMetric") == nil {
		r.problem(n, joinField(path, "ratioMetric"), "missing")
	}
	return ind
}

func parseOpenSLOMetricSource(r *nodeReader, n *yaml.Node, path string) (string, FieldPos) {
	var query string
	pos := FieldPos{Path: path, Line: n.Line}
	r.fields(n, path, map[string]func(*yaml.Node, string){
		"metricSource": func(v *yaml.Node, f string) {
			r.fields(v, f, map[string]func(*yaml.Node, string){
				"metricSourceRef": func(*yaml.Node, string) {},
				"type": func(t *yaml.Node, tf string) {
					if got := r.str(t, tf); !strings.EqualFold(got, "prometheus") {
						r.problem(t, tf, "metric source %q is not supported: only Prometheus", got)
					}
				},
				"spec": func(s *yaml.Node, sf string) {
					r.fields(s, sf, map[string]func(*yaml.Node, string){
						"query": func(q *yaml.Node, qf string) { query, pos = r.str(q, qf), FieldPos{Path: qf, Line: q.Line} },
					})
				},
			})
		},
	})
	if query == "" {
		r.problem(n, joinField(path, "metricSource.spec.query"), "missing")
	}
	return query, pos
}

func parseOpenSLOTimeWindow(r *nodeReader, n *yaml.Node, path string) time.Duration {
	items := r.seq(n, path)
	if len(items) != 1 {
		r.problem(n, path, "exactly one time window is required")
		return 0
	}
	var period time.Duration
	f := path + "[0]"
	rolling := false
	r.fields(items[0], f, map[string]func(*yaml.Node, string){
		"duration": func(v *yaml.Node, vf string) {
			d, err := model.ParseDuration(r.str(v, vf))
			if err != nil || d <= 0 {
				r.problem(v, vf, "invalid duration %q", v.Value)
				return
			}
			period = time.Duration(d)
		},
		"isRolling": func(v *yaml.Node, vf string) { rolling = r.boolean(v, vf) },
		"calendar": func(v *yaml.Node, vf string) {
			r.problem(v, vf, "calendar windows are not supported: only rolling")
		},
	})
	if !rolling && mapValue(items[0], "isRolling") != nil {
		r.problem(items[0], joinField(f, "isRolling"), "only rolling time windows are supported")
	}
	return period
}

// sanitizeName turns an objective's display name into something usable in an SLO name.
func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		default:
			return '-'
		}
	}, s)
}
