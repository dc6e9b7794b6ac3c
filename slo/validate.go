package slo

import (
	"fmt"
	"regexp"

	"github.com/prometheus/prometheus/promql/parser"
)

// DefaultRegionLabel is the label that names a region unless the configuration says otherwise.
const DefaultRegionLabel = "region"

// Validate checks SLOs the way `meridian slo validate` reports them: names present and unique
// within a service, queries that are templates over {{.window}}, that parse with the PromQL
// parser once the window is substituted and that can be broken down by regionLabel (event
// SLIs must; a raw ratio that cannot is only evaluated globally, which is allowed).
// Objective ranges are checked while parsing, where the spec's own scale is known.
func Validate(slos []SLO, regionLabel string) Problems {
	var ps Problems
	first := map[string]Source{}
	for _, s := range slos {
		at := func(key string) (string, int) { fp := s.Source.at(key); return fp.Path, fp.Line }
		add := func(key, format string, args ...any) {
			path, line := at(key)
			ps = append(ps, Problem{File: s.Source.File, Line: line, Field: path, Message: fmt.Sprintf(format, args...)})
		}
		if s.Name == "" {
			add("name", "missing")
		} else if prev, dup := first[s.ID()]; dup {
			add("name", "duplicate SLO name %q in service %q (first defined at %s:%d)", s.Name, s.Service, prev.File, prev.Line)
		} else {
			first[s.ID()] = s.Source
		}
		for _, q := range []struct {
			key, tmpl     string
			mustRegionize bool
		}{
			{"error_query", s.ErrorQuery, true},
			{"total_query", s.TotalQuery, true},
			{"error_ratio_query", s.RawErrorRatioQuery, false},
		} {
			if q.tmpl == "" {
				continue
			}
			if err := checkQuery(q.tmpl, regionLabel, q.mustRegionize); err != nil {
				add(q.key, "%v", err)
			}
		}
	}
	return ps
}

// checkQuery checks one query template: it must mention the window, and parse and (when
// asked) regionize once rendered.
func checkQuery(tmpl, regionLabel string, mustRegionize bool) error {
	a, err := renderQuery(tmpl, "5m")
	if err != nil {
		return err
	}
	b, err := renderQuery(tmpl, "1h")
	if err != nil {
		return err
	}
	if a == b {
		return fmt.Errorf("query does not use {{.window}}: it must be evaluated over each SLO window")
	}
	expr, err := parser.ParseExpr(a)
	if err != nil {
		return fmt.Errorf("query does not parse once {{.window}} is 5m: %w", err)
	}
	if t := expr.Type(); t != parser.ValueTypeVector && t != parser.ValueTypeScalar {
		return fmt.Errorf("query must return an instant vector, not a %s", t)
	}
	if mustRegionize {
		if _, err := Regionize(expr, regionLabel); err != nil {
			return err
		}
	}
	return nil
}

// windowPlaceholder is Sloth's template action for the window; it is the only action allowed
// (Sloth renders with text/template, but a query needs nothing else, and arbitrary template
// actions such as recursive {{template}} calls have no place in a spec).
var (
	windowPlaceholder = regexp.MustCompile(`\{\{-?\s*\.window\s*-?\}\}`)
	otherAction       = regexp.MustCompile(`\{\{.*?\}\}`)
)

// renderQuery substitutes the window (e.g. "5m", "30d") into a Sloth-style query template.
func renderQuery(tmpl, window string) (string, error) {
	out := windowPlaceholder.ReplaceAllLiteralString(tmpl, window)
	if m := otherAction.FindString(out); m != "" {
		return "", fmt.Errorf("query template: unsupported action %s: only {{.window}} is substituted", m)
	}
	return out, nil
}

// RenderQuery substitutes window (e.g. "5m") for "{{.window}}" in an SLO query template, the
// way the engine and the rule generator both read the spec.
func RenderQuery(tmpl, window string) (string, error) { return renderQuery(tmpl, window) }
