package slo

import (
	"fmt"
	"slices"

	"github.com/prometheus/prometheus/promql/parser"
)

// Breaking an SLI down by region.
//
// An SLO's error and total queries are written for one Prometheus and usually aggregate
// everything away: sum(rate(http_requests_total{code=~"5.."}[5m])). Across regions the same
// numerators and denominators must be kept per region, so that
//
//	global ratio = sum over regions(errors) / sum over regions(totals)
//
// comes from exactly the numbers shown per region (never an average of per-region ratios).
// Regionize rewrites the query's PromQL AST (never its text) so that its result keeps the
// region label:
//
//   - an aggregation with "by (...)" gets the region label appended to its grouping
//     (sum(x) is sum by () (x), so it becomes sum by (region) (x));
//   - an aggregation with "without (...)" has the region label removed from its list;
//   - aggregations nested inside are rewritten the same way, since an inner sum(...) would
//     already have dropped the label;
//   - a binary operation between two vectors is rewritten on both sides, and its vector
//     matching keeps the region: on(...) gets it appended, ignoring(...) has it removed;
//   - selectors, functions, subqueries and unary minus keep the labels of their input and are
//     descended into;
//   - vector(...) and absent(...) produce series without labels: allowed only as the
//     right-hand side of "or" (the usual "or vector(0)" fallback), an error elsewhere; a query
//     of scalar type cannot be broken down and is an error.
//
// RegionizeQuery then wraps the result in "sum by (region) (...)" so that each region yields
// exactly one sample (this also covers a query with no aggregation at all, such as a bare
// rate(...)).

// Regionize rewrites expr in place so that its result keeps regionLabel, following the rules
// above, and returns it.
func Regionize(expr parser.Expr, regionLabel string) (parser.Expr, error) {
	if expr.Type() == parser.ValueTypeScalar {
		return nil, fmt.Errorf("query returns a scalar: it cannot be broken down by %q", regionLabel)
	}
	if err := keepLabel(expr, regionLabel); err != nil {
		return nil, fmt.Errorf("query cannot be broken down by %q: %w", regionLabel, err)
	}
	return expr, nil
}

// RegionizeQuery parses query, regionizes it and wraps it as sum by (regionLabel) (...): the
// query the SLO engine runs to get one value per region.
func RegionizeQuery(query, regionLabel string) (string, error) {
	expr, err := parser.ParseExpr(query)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w", query, err)
	}
	expr, err = Regionize(expr, regionLabel)
	if err != nil {
		return "", err
	}
	if isSumByOnly(expr, regionLabel) {
		return unwrapParens(expr).String(), nil
	}
	return (&parser.AggregateExpr{
		Op:       parser.SUM,
		Expr:     unwrapParens(expr),
		Grouping: []string{regionLabel},
	}).String(), nil
}

func keepLabel(n parser.Expr, label string) error {
	switch e := n.(type) {
	case nil, *parser.NumberLiteral, *parser.StringLiteral, *parser.VectorSelector, *parser.MatrixSelector:
		return nil
	case *parser.ParenExpr:
		return keepLabel(e.Expr, label)
	case *parser.UnaryExpr:
		return keepLabel(e.Expr, label)
	case *parser.StepInvariantExpr:
		return keepLabel(e.Expr, label)
	case *parser.SubqueryExpr:
		return keepLabel(e.Expr, label)
	case *parser.AggregateExpr:
		if e.Without {
			e.Grouping = slices.DeleteFunc(e.Grouping, func(l string) bool { return l == label })
		} else if !slices.Contains(e.Grouping, label) {
			e.Grouping = append(e.Grouping, label)
		}
		return keepLabel(e.Expr, label)
	case *parser.Call:
		switch e.Func.Name {
		case "vector", "absent", "absent_over_time":
			return fmt.Errorf("%s() yields a series without the %q label", e.Func.Name, label)
		}
		for _, a := range e.Args {
			if err := keepLabel(a, label); err != nil {
				return err
			}
		}
		return nil
	case *parser.BinaryExpr:
		if err := keepLabel(e.LHS, label); err != nil {
			return err
		}
		if e.Op == parser.LOR && isLabelFreeFallback(e.RHS) {
			return nil
		}
		if err := keepLabel(e.RHS, label); err != nil {
			return err
		}
		if m := e.VectorMatching; m != nil && e.LHS.Type() == parser.ValueTypeVector && e.RHS.Type() == parser.ValueTypeVector {
			if m.On && !slices.Contains(m.MatchingLabels, label) {
				m.MatchingLabels = append(m.MatchingLabels, label)
			} else if !m.On {
				m.MatchingLabels = slices.DeleteFunc(m.MatchingLabels, func(l string) bool { return l == label })
			}
			m.Include = slices.DeleteFunc(m.Include, func(l string) bool { return l == label })
		}
		return nil
	default:
		return fmt.Errorf("unsupported expression %T", n)
	}
}

// isLabelFreeFallback reports whether e is vector(...) (possibly in parentheses), the
// "or vector(0)" idiom that supplies a zero when the left-hand side is empty.
func isLabelFreeFallback(e parser.Expr) bool {
	c, ok := unwrapParens(e).(*parser.Call)
	return ok && c.Func.Name == "vector"
}

func isSumByOnly(e parser.Expr, label string) bool {
	a, ok := unwrapParens(e).(*parser.AggregateExpr)
	return ok && a.Op == parser.SUM && !a.Without && len(a.Grouping) == 1 && a.Grouping[0] == label
}

func unwrapParens(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}
