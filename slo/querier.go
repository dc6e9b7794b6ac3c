// Package slo computes SLOs across regions (errors and totals summed over regions, never an
// average of ratios), error budgets and burn rates, and the failover readiness score of each
// region. It reads data through Querier, so it runs inside meridian query and against any
// Prometheus-compatible HTTP API alike.
package slo

import (
	"context"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/util/annotations"
)

// Querier evaluates an instant PromQL query. Warnings carry the regions or stores that did not
// answer (partial response); a result with warnings is partial and must be reported as such.
type Querier interface {
	Query(ctx context.Context, expr string, ts time.Time) (promql.Vector, annotations.Annotations, error)
}
