package dashboards

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// withMatcher adds a matcher to every vector selector of a PromQL expression, walking its
// syntax tree: how a configured expression (the readiness inputs) is narrowed to the
// dashboard's region variable.
func withMatcher(expr string, mt labels.MatchType, name, value string) (string, error) {
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w", expr, err)
	}
	m, err := labels.NewMatcher(mt, name, value)
	if err != nil {
		return "", fmt.Errorf("matcher %s%s%q: %w", name, mt, value, err)
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			vs.LabelMatchers = append(vs.LabelMatchers, m)
		}
		return nil
	})
	return e.String(), nil
}

// Grafana's built-in interval variables, as Interpolate replaces them.
var builtinVar = regexp.MustCompile(`\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}`)

// userVar matches $name and ${name} (with an optional :format, ignored).
var userVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// Interpolate replaces Grafana variables in a panel query the way Grafana does before sending
// it: $__rate_interval, $__interval and $__range by interval, and $name or ${name} by
// vars[name]. A variable without a value is an error, so that a query cannot reach
// Prometheus's parser with a dangling '$'.
func Interpolate(expr, interval string, vars map[string]string) (string, error) {
	out := builtinVar.ReplaceAllString(expr, interval)
	var missing []string
	out = userVar.ReplaceAllStringFunc(out, func(s string) string {
		m := userVar.FindStringSubmatch(s)
		name := m[1] + m[2]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return s
		}
		return v
	})
	if len(missing) > 0 {
		sort.Strings(missing)
		return "", fmt.Errorf("query %q: no value for variable(s) %s", expr, strings.Join(missing, ", "))
	}
	return out, nil
}

// CheckQueries parses every panel query and variable query of the dashboards with
// Prometheus's parser, after interpolating the variables with placeholder values.
func CheckQueries(ds []Dashboard) error {
	vars := map[string]string{}
	for _, d := range ds {
		for _, v := range d.Variables() {
			vars[v.Name] = "x"
		}
	}
	var errs []string
	for _, d := range ds {
		for _, q := range d.Queries() {
			expr, err := Interpolate(q.Expr, "5m", vars)
			if err == nil {
				_, err = parser.ParseExpr(expr)
			}
			if err != nil {
				errs = append(errs, fmt.Sprintf("dashboard %s: panel %q: target %s: %v", d.UID, q.Panel, q.RefID, err))
			}
		}
		for _, v := range d.Variables() {
			if v.Type != "query" {
				continue
			}
			sel, err := VariableSelector(v.Query)
			if err == nil {
				_, err = parser.ParseExpr(sel)
			}
			if err != nil {
				errs = append(errs, fmt.Sprintf("dashboard %s: variable %s: %v", d.UID, v.Name, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

var labelValuesCall = regexp.MustCompile(`^\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

// VariableSelector returns the series selector of a label_values(selector, label) variable
// query; LabelValuesQuery returns both parts.
func VariableSelector(query string) (string, error) {
	sel, _, err := LabelValuesQuery(query)
	return sel, err
}

// LabelValuesQuery splits Grafana's label_values(selector, label) into its selector and label.
func LabelValuesQuery(query string) (selector, label string, err error) {
	m := labelValuesCall.FindStringSubmatch(query)
	if m == nil {
		return "", "", fmt.Errorf("variable query %q: not label_values(selector, label)", query)
	}
	return m[1], m[2], nil
}
