package rules

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Builders of PromQL syntax trees. Generated expressions are assembled from parser nodes and
// printed by the parser, never pasted together as text, so that every generated rule is
// well-formed by construction and the spec's own queries are only ever rewritten on their AST.

// selector is metric{k="v", ...} with the labels in order.
func selector(metric string, eq map[string]string) *parser.VectorSelector {
	ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metric)}
	for _, k := range sortedKeys(eq) {
		ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, k, eq[k]))
	}
	return &parser.VectorSelector{Name: metric, LabelMatchers: ms}
}

// withMatcher returns a copy of s with one more matcher.
func withMatcher(s *parser.VectorSelector, t labels.MatchType, name, value string) *parser.VectorSelector {
	c := *s
	c.LabelMatchers = append(append([]*labels.Matcher{}, s.LabelMatchers...), labels.MustNewMatcher(t, name, value))
	sort.SliceStable(c.LabelMatchers[1:], func(i, j int) bool { return c.LabelMatchers[i+1].Name < c.LabelMatchers[j+1].Name })
	return &c
}

func num(f float64) *parser.NumberLiteral { return &parser.NumberLiteral{Val: f} }

func str(s string) *parser.StringLiteral { return &parser.StringLiteral{Val: s} }

func paren(e parser.Expr) parser.Expr { return &parser.ParenExpr{Expr: e} }

// sumBy is sum by (by...) (e); no labels is sum(e).
func sumBy(e parser.Expr, by ...string) parser.Expr {
	return &parser.AggregateExpr{Op: parser.SUM, Expr: e, Grouping: by}
}

// maxWithout is max without (l...) (e).
func maxWithout(e parser.Expr, without ...string) parser.Expr {
	return &parser.AggregateExpr{Op: parser.MAX, Expr: e, Grouping: without, Without: true}
}

// binary is lhs op rhs with one-to-one matching on all labels; comparisons filter.
func binary(op parser.ItemType, lhs, rhs parser.Expr) *parser.BinaryExpr {
	b := &parser.BinaryExpr{Op: op, LHS: lhs, RHS: rhs}
	if lhs.Type() == parser.ValueTypeVector && rhs.Type() == parser.ValueTypeVector {
		card := parser.CardOneToOne
		if op == parser.LAND || op == parser.LOR || op == parser.LUNLESS {
			card = parser.CardManyToMany
		}
		b.VectorMatching = &parser.VectorMatching{Card: card}
	}
	return b
}

// onGroupLeft is lhs op on(on...) group_left rhs.
func onGroupLeft(op parser.ItemType, lhs, rhs parser.Expr, on ...string) *parser.BinaryExpr {
	return &parser.BinaryExpr{Op: op, LHS: lhs, RHS: rhs, VectorMatching: &parser.VectorMatching{
		Card: parser.CardManyToOne, On: true, MatchingLabels: on,
	}}
}

// onMatching is lhs op on(on...) rhs for set operators.
func onMatching(op parser.ItemType, lhs, rhs parser.Expr, on ...string) *parser.BinaryExpr {
	return &parser.BinaryExpr{Op: op, LHS: lhs, RHS: rhs, VectorMatching: &parser.VectorMatching{
		Card: parser.CardManyToMany, On: true, MatchingLabels: on,
	}}
}

// call is fn(args...) for a PromQL function.
func call(fn string, args ...parser.Expr) *parser.Call {
	return &parser.Call{Func: parser.Functions[fn], Args: args}
}

// overTime is fn(s[rangeStr]) for a range function over a selector.
func overTime(fn string, s *parser.VectorSelector, window string) *parser.Call {
	return call(fn, &parser.MatrixSelector{VectorSelector: s, Range: mustDuration(window)})
}

func mustDuration(s string) time.Duration {
	d, err := model.ParseDuration(s)
	if err != nil {
		panic(fmt.Sprintf("window %q: %v", s, err))
	}
	return time.Duration(d)
}
