package dashboards

import "fmt"

// Generate builds every dashboard, in the order a reader meets them, and checks each query
// with Prometheus's parser.
func Generate(o Options) ([]Dashboard, error) {
	if err := o.applyDefaults(); err != nil {
		return nil, err
	}
	var out []Dashboard
	for _, build := range []func(Options) (Dashboard, error){overview, regionDetail, sloBoard, readinessBoard, meridianSelf} {
		d, err := build(o)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := CheckQueries(out); err != nil {
		return nil, fmt.Errorf("generated dashboards: %w", err)
	}
	return out, nil
}
