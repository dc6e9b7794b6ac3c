package slo

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// engineQuerier runs queries in process with a PromQL engine over a Queryable (the fan-out
// storage of meridian query, or a local TSDB).
type engineQuerier struct {
	engine promql.QueryEngine
	q      storage.Queryable
}

// NewEngineQuerier returns a Querier that evaluates with engine over q. The result's
// annotations (including the warnings a partial fan-out storage adds) are returned as is.
func NewEngineQuerier(engine promql.QueryEngine, q storage.Queryable) Querier {
	return &engineQuerier{engine: engine, q: q}
}

func (e *engineQuerier) Query(ctx context.Context, expr string, ts time.Time) (promql.Vector, annotations.Annotations, error) {
	qry, err := e.engine.NewInstantQuery(ctx, e.q, nil, expr, ts)
	if err != nil {
		return nil, nil, fmt.Errorf("prepare query %s: %w", expr, err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, res.Warnings, fmt.Errorf("execute query %s: %w", expr, res.Err)
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		// The engine may reuse the vector's memory after Close.
		out := slices.Clone(v)
		for i := range out {
			out[i].Metric = out[i].Metric.Copy()
		}
		return out, res.Warnings, nil
	case promql.Scalar:
		return promql.Vector{{Metric: labels.EmptyLabels(), T: v.T, F: v.V}}, res.Warnings, nil
	default:
		return nil, res.Warnings, fmt.Errorf("query %s returned %s: an instant vector or scalar is needed", expr, res.Value.Type())
	}
}
