package dashboards

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/slo"
)

func generated(t *testing.T, o Options) []Dashboard {
	t.Helper()
	ds, err := Generate(o)
	require.NoError(t, err)
	require.Len(t, ds, 5)
	return ds
}

// grafanaModel is what Grafana reads of a dashboard JSON model, decoded from the JSON text
// rather than from our types, so that the checks see what Grafana sees.
type grafanaModel struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Panels        []struct {
		ID         *int   `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		GridPos    *struct{ X, Y, W, H int }
		Datasource *struct {
			Type, UID string
		} `json:"datasource"`
		Targets []struct {
			RefID      string `json:"refId"`
			Expr       string `json:"expr"`
			Datasource *struct {
				Type string `json:"type"`
				UID  string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Datasource *struct {
				Type string `json:"type"`
				UID  string `json:"uid"`
			} `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

var usedVar = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

func TestGeneratedModelsHaveWhatGrafanaNeeds(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"defaults", Options{}},
		{"other names and replication lag", Options{RequestsMetric: "http_server_requests_total", DurationMetric: "http_server_duration_seconds", StatusCodeLabel: "status", RegionLabel: "zone",
			Readiness: &slo.ReadinessConfig{ReplicationLagExpr: "max by (zone) (pg_replication_lag_seconds)"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uids := map[string]bool{}
			for _, d := range generated(t, tc.o) {
				b, err := d.JSON()
				require.NoError(t, err)
				var m grafanaModel
				require.NoError(t, json.Unmarshal(b, &m))
				require.Equal(t, d.UID, m.UID)
				require.False(t, uids[m.UID], "uid %s unique", m.UID)
				uids[m.UID] = true
				require.LessOrEqual(t, len(m.UID), 40, "Grafana UIDs are at most 40 characters")
				require.Equal(t, SchemaVersion, m.SchemaVersion)
				require.NotEmpty(t, m.Title)

				defined := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true, "__url_time_range": true, "__field": true}
				for i, v := range m.Templating.List {
					defined[v.Name] = true
					if i == 0 {
						require.Equal(t, datasourceVar, v.Name, "%s: the datasource variable comes first", d.UID)
						require.Equal(t, "datasource", v.Type)
						require.Equal(t, "prometheus", v.Query)
						continue
					}
					require.Equal(t, "query", v.Type, "%s: variable %s", d.UID, v.Name)
					require.Equal(t, "${datasource}", v.Datasource.UID, "%s: variable %s", d.UID, v.Name)
					q, ok := v.Query.(string)
					require.True(t, ok, "%s: variable %s query is a string", d.UID, v.Name)
					sel, _, err := LabelValuesQuery(q)
					require.NoError(t, err)
					// A variable may only use variables defined before it, as Grafana resolves them in order.
					for _, u := range usedVar.FindAllStringSubmatch(sel, -1) {
						require.True(t, defined[u[1]] && u[1] != v.Name, "%s: variable %s uses $%s before it is defined", d.UID, v.Name, u[1])
					}
				}
				require.Contains(t, defined, "region", "%s has a region variable", d.UID)

				ids := map[int]bool{}
				var boxes [][4]int
				for _, p := range m.Panels {
					require.NotNil(t, p.ID, "%s: panel %q has an id", d.UID, p.Title)
					require.False(t, ids[*p.ID], "%s: panel id %d unique", d.UID, *p.ID)
					ids[*p.ID] = true
					require.NotNil(t, p.GridPos, "%s: panel %q has a gridPos", d.UID, p.Title)
					g := p.GridPos
					require.True(t, g.W > 0 && g.H > 0 && g.X >= 0 && g.X+g.W <= 24, "%s: panel %q gridPos %+v within the 24 columns", d.UID, p.Title, *g)
					for _, o := range boxes {
						overlap := g.X < o[0]+o[2] && o[0] < g.X+g.W && g.Y < o[1]+o[3] && o[1] < g.Y+g.H
						require.False(t, overlap, "%s: panel %q at %+v overlaps %v", d.UID, p.Title, *g, o)
					}
					boxes = append(boxes, [4]int{g.X, g.Y, g.W, g.H})
					if p.Type == "row" {
						continue
					}
					require.NotEmpty(t, p.Targets, "%s: panel %q has queries", d.UID, p.Title)
					require.Equal(t, "${datasource}", p.Datasource.UID, "%s: panel %q", d.UID, p.Title)
					refs := map[string]bool{}
					for _, tg := range p.Targets {
						require.NotEmpty(t, tg.RefID)
						require.False(t, refs[tg.RefID], "%s: panel %q refId %s unique", d.UID, p.Title, tg.RefID)
						refs[tg.RefID] = true
						require.Equal(t, "prometheus", tg.Datasource.Type)
						require.Equal(t, "${datasource}", tg.Datasource.UID, "%s: panel %q target %s reads through the datasource variable", d.UID, p.Title, tg.RefID)
						for _, u := range usedVar.FindAllStringSubmatch(tg.Expr, -1) {
							require.True(t, defined[u[1]], "%s: panel %q uses undefined variable $%s", d.UID, p.Title, u[1])
						}
					}
				}
			}
		})
	}
}

func TestEveryQueryParses(t *testing.T) {
	ds := generated(t, Options{})
	n := 0
	for _, d := range ds {
		for _, q := range d.Queries() {
			expr, err := Interpolate(q.Expr, "1m", map[string]string{"region": "eu-west-1", "slo": "checkout-requests-availability"})
			require.NoError(t, err, "%s %q", d.UID, q.Panel)
			_, err = parser.ParseExpr(expr)
			require.NoError(t, err, "%s %q: %s", d.UID, q.Panel, expr)
			n++
		}
	}
	require.Greater(t, n, 40)
	t.Logf("%d panel queries parse", n)
}

func TestInterpolate(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{`rate(x{region=~"$region"}[$__rate_interval])`, `rate(x{region=~"a|b"}[1m])`, ""},
		{`rate(x{region="${region}"}[${__range}])`, `rate(x{region="a|b"}[1m])`, ""},
		{`x{slo="$slo"}`, "", "no value for variable(s) slo"},
		{`label_replace(x, "a", "$1", "b", "(.*)")`, `label_replace(x, "a", "$1", "b", "(.*)")`, ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Interpolate(tc.in, "1m", map[string]string{"region": "a|b"})
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestWithMatcherWalksTheSyntaxTree(t *testing.T) {
	got, err := withMatcher(`sum by (region) (rate(a{x="1"}[5m])) / sum by (region) (b)`, 0, "region", "$region")
	require.NoError(t, err)
	require.Equal(t, `sum by (region) (rate(a{region="$region",x="1"}[5m])) / sum by (region) (b{region="$region"})`, got)
	_, err = withMatcher(`sum(`, 0, "region", "x")
	require.Error(t, err)
}

func TestGenerationIsDeterministic(t *testing.T) {
	a, b := generated(t, Options{}), generated(t, Options{})
	for i := range a {
		ja, err := a[i].JSON()
		require.NoError(t, err)
		jb, err := b[i].JSON()
		require.NoError(t, err)
		require.Equal(t, string(ja), string(jb), a[i].UID)
	}
}

// The generated JSON reads back through the Grafana schema's own types, strictly (no unknown
// field, every required one), with each panel's options and field config checked by its panel
// plugin's schema, and validates.
func TestGeneratedJSONFitsGrafanaSchema(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	for _, d := range generated(t, Options{Readiness: &slo.ReadinessConfig{ReplicationLagExpr: "max by (region) (lag)"}}) {
		b, err := d.JSON()
		require.NoError(t, err)
		var back dashboard.Dashboard
		err = back.UnmarshalJSONStrict(b)
		if be, ok := err.(cog.BuildErrors); ok && len(be) == 0 {
			err = nil // the SDK returns its error list even when it is empty
		}
		require.NoError(t, err, d.UID)
		require.NoError(t, back.Validate(), d.UID)
		require.Len(t, back.Panels, len(d.Model.Panels))
	}
	// The check can fail: an option the timeseries schema does not have is refused.
	bad := strings.Replace(mustJSON(t, generated(t, Options{})[0]), `"legend": {`, `"bogus": 1, "legend": {`, 1)
	var back dashboard.Dashboard
	require.ErrorContains(t, back.UnmarshalJSONStrict([]byte(bad)), "bogus")
}

func mustJSON(t *testing.T, d Dashboard) string {
	b, err := d.JSON()
	require.NoError(t, err)
	return string(b)
}
