package dashboards

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// SchemaVersion is the dashboard schema the models declare: Grafana 10.0's. Grafana 10, 11 and
// 12 load it, the newer ones migrating it forward; none is handed a schema from its future.
const SchemaVersion = 38

// Dashboard is one generated dashboard: its typed Grafana model and the identity Grafana and
// the provisioning files know it by.
type Dashboard struct {
	UID   string
	Title string
	// File is the base name of its JSON file and ConfigMap.
	File  string
	Model dashboard.Dashboard
}

// JSON is the dashboard's Grafana JSON model, indented.
func (d Dashboard) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(d.Model, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", d.UID, err)
	}
	return b, nil
}

// Query is one PromQL expression a dashboard sends: a panel target or a variable's query.
type Query struct {
	Panel   string // panel title, or "variable <name>"
	RefID   string
	Expr    string
	Instant bool
}

// Queries lists every panel target of the dashboard, in panel order.
func (d Dashboard) Queries() []Query {
	var out []Query
	for _, p := range d.Model.Panels {
		if p.Panel == nil {
			continue
		}
		for _, t := range p.Panel.Targets {
			q, ok := t.(prometheus.Dataquery)
			if !ok {
				continue
			}
			out = append(out, Query{Panel: deref(p.Panel.Title), RefID: deref(q.RefId), Expr: q.Expr, Instant: q.Instant != nil && *q.Instant})
		}
	}
	return out
}

// Variable is a template variable as the dashboards use it: a data source picker or a PromQL
// query (label_values(...) or query_result(...)).
type Variable struct {
	Name, Type, Query string
	Datasource        string
	Multi, IncludeAll bool
}

// Variables lists the dashboard's template variables in order.
func (d Dashboard) Variables() []Variable {
	var out []Variable
	for _, v := range d.Model.Templating.List {
		vv := Variable{Name: v.Name, Type: string(v.Type), Multi: v.Multi != nil && *v.Multi, IncludeAll: v.IncludeAll != nil && *v.IncludeAll}
		if v.Query != nil && v.Query.String != nil {
			vv.Query = *v.Query.String
		}
		if v.Datasource != nil {
			vv.Datasource = deref(v.Datasource.Uid)
		}
		out = append(out, vv)
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func ptr[T any](v T) *T { return &v }

// datasourceVar is the name of every dashboard's data source variable; each target and
// variable query reads through it, so that a dashboard works with any Prometheus data source.
const datasourceVar = "datasource"

func datasourceRef() common.DataSourceRef {
	return common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${" + datasourceVar + "}")}
}

// newBoard starts a dashboard with Meridian's conventions: tags, time range, refresh, and the
// datasource variable whose current value is the provisioned data source.
func newBoard(uid, title, description string, o Options) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{"meridian"}).
		Time("now-6h", "now").
		Refresh("30s").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder(datasourceVar).
			Label("Data source").
			Type("prometheus").
			Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: ptr(DefaultDatasourceName)}, Value: dashboard.StringOrArrayOfString{String: ptr(o.DatasourceUID)}})).
		Link(dashboard.NewDashboardLinkBuilder("Meridian").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"meridian"}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true))
}

// queryVariable is a variable whose values come from a PromQL label_values(...) query through
// the datasource variable.
func queryVariable(name, label, query string, multi bool) *dashboard.QueryVariableBuilder {
	v := dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Query(dashboard.StringOrMap{String: ptr(query)}).
		Definition(query).
		Datasource(datasourceRef()).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
	if multi {
		v = v.Multi(true).IncludeAll(true).AllValue(".+").
			Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: ptr("All")}, Value: dashboard.StringOrArrayOfString{String: ptr("$__all")}})
	}
	return v
}

// target is a range query through the datasource variable.
func target(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(datasourceRef()).Expr(expr).LegendFormat(legend).Range()
}

// instant is an instant query through the datasource variable, for stats and tables.
func instant(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(datasourceRef()).Expr(expr).LegendFormat(legend).Instant().Format(prometheus.PromQueryFormatTable)
}

func graph(title, description, unit string, w, h uint32, targets ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(description).Unit(unit).Span(w).Height(h).
		Datasource(datasourceRef()).FillOpacity(10).LineWidth(1).ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom).ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
	for _, t := range targets {
		p = p.WithTarget(t)
	}
	return p
}

func single(title, description, unit string, w, h uint32, targets ...*prometheus.DataqueryBuilder) *stat.PanelBuilder {
	p := stat.NewPanelBuilder().Title(title).Description(description).Unit(unit).Span(w).Height(h).
		Datasource(datasourceRef()).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)).
		ColorMode(common.BigValueColorModeBackground).GraphMode(common.BigValueGraphModeNone).
		Orientation(common.VizOrientationAuto)
	for _, t := range targets {
		p = p.WithTarget(t)
	}
	return p
}

// thresholds are absolute steps: base colour, then (value, colour) pairs.
func thresholds(base string, steps ...any) *dashboard.ThresholdsConfigBuilder {
	out := []dashboard.Threshold{{Color: base}}
	for i := 0; i+1 < len(steps); i += 2 {
		out = append(out, dashboard.Threshold{Value: ptr(toFloat(steps[i])), Color: steps[i+1].(string)})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(out)
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case float64:
		return x
	}
	panic(fmt.Sprintf("threshold value %v", v))
}

// row starts a row of panels.
func row(title string) *dashboard.RowBuilder { return dashboard.NewRowBuilder(title) }

// dataLink opens another dashboard on the clicked series' region, keeping the time range and
// the data source.
func regionLink(title, uid, regionLabel string) cog.Builder[dashboard.DashboardLink] {
	return dashboard.NewDashboardLinkBuilder(title).
		Title(title).
		Url(fmt.Sprintf("/d/%s?var-region=${__field.labels.%s}&var-%s=${%s}&${__url_time_range}", uid, regionLabel, datasourceVar, datasourceVar))
}

// finish builds the dashboard and numbers its panels and targets, which the builders leave
// unset: panel ids from 1 in order, target refIds A, B, ... per panel.
func finish(uid, file string, b *dashboard.DashboardBuilder) (Dashboard, error) {
	m, err := b.Build()
	if err != nil {
		return Dashboard{}, fmt.Errorf("dashboard %s: %w", uid, err)
	}
	m.SchemaVersion = SchemaVersion
	// The SDK places links in Grafana 12's controls menu by default; without a placement
	// they show where every Grafana version shows them.
	for i := range m.Links {
		m.Links[i].Placement = nil
	}
	var id uint32
	for i := range m.Panels {
		id++
		switch {
		case m.Panels[i].Panel != nil:
			p := m.Panels[i].Panel
			p.Id = ptr(id)
			if p.FieldConfig != nil {
				for j := range p.FieldConfig.Defaults.Links {
					p.FieldConfig.Defaults.Links[j].Placement = nil
				}
			}
			for j, t := range p.Targets {
				if q, ok := t.(prometheus.Dataquery); ok {
					q.RefId = ptr(string(rune('A' + j)))
					p.Targets[j] = q
				}
			}
		case m.Panels[i].RowPanel != nil:
			m.Panels[i].RowPanel.Id = id
		}
	}
	return Dashboard{UID: uid, Title: deref(m.Title), File: file, Model: m}, nil
}

// statPanel is a stat panel builder (the SDK's).
type statPanel = stat.PanelBuilder

func linkList(links ...cog.Builder[dashboard.DashboardLink]) []cog.Builder[dashboard.DashboardLink] {
	return links
}

// tablePanel starts a table with Grafana's defaults filled in that the SDK leaves null.
func tablePanel(title, description string, w, h uint32) *table.PanelBuilder {
	return table.NewPanelBuilder().Title(title).Description(description).Span(w).Height(h).Datasource(datasourceRef()).
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"}))
}

// tablePanelBuilder is a table panel builder (the SDK's).
type tablePanelBuilder = table.PanelBuilder
