package dashboards

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/stretchr/testify/require"

	"github.com/meridian-obs/meridian/dashboards/grafanatest"
	"github.com/meridian-obs/meridian/rules"
	"github.com/meridian-obs/meridian/slo"
)

func fakeClient(t *testing.T, f *grafanatest.Server, token string) Grafana {
	t.Helper()
	g, err := NewClient(ClientConfig{URL: f.URL(), Token: token, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	require.NoError(t, err)
	return g
}

// testRuleGroups are alerting rules shaped like the generated ones: an SLO group with a page
// and a ticket alert of the same name, a recording rule, and the readiness group.
func testRuleGroups() []rulefmt.RuleGroup {
	return []rulefmt.RuleGroup{
		{Name: "slo-alerts-checkout-requests-availability", Interval: model.Duration(30 * time.Second), Rules: []rulefmt.Rule{
			{Record: "slo:sli_error:ratio_rate5m", Expr: "vector(1)"},
			{Alert: "CheckoutHighErrorRate", Expr: `(max(slo:sli_error:ratio_rate5m{sloth_id="checkout-requests-availability"} > (14.4 * 0.01)) without (sloth_window))`, For: model.Duration(2 * time.Minute),
				Labels: map[string]string{"severity": "page", "slo": "requests-availability"}, Annotations: map[string]string{"summary": "checkout burns its budget"}},
			{Alert: "CheckoutHighErrorRate", Expr: `(max(slo:sli_error:ratio_rate2h{sloth_id="checkout-requests-availability"} > (3 * 0.01)) without (sloth_window))`, For: model.Duration(24 * time.Hour),
				Labels: map[string]string{"severity": "ticket", "slo": "requests-availability"}},
		}},
		{Name: "meridian-readiness", Rules: []rulefmt.Rule{
			{Alert: "MeridianFailoverNotReady", Expr: `meridian_failover_readiness_state{state="NOT_READY"} == 1`, For: model.Duration(10 * time.Minute), Labels: map[string]string{"severity": "page"},
				Annotations: map[string]string{"summary": "losing {{ $labels.region }} would hurt", "description": `score {{ with query "x" }}{{ . | first | value }}{{ end }}`}},
		}},
	}
}

func provisionOptions(t *testing.T) ProvisionOptions {
	ds, err := Generate(Options{})
	require.NoError(t, err)
	groups, err := AlertRuleGroups(testRuleGroups(), DefaultDatasourceUID)
	require.NoError(t, err)
	return ProvisionOptions{
		Folder:     Folder{UID: FolderUID(DefaultFolder), Title: DefaultFolder},
		DataSource: MeridianDataSource(DefaultDatasourceUID, DefaultDatasourceName, "http://meridian-query:9090", "15s"),
		Dashboards: ds,
		RuleGroups: groups,
	}
}

func actions(r Report) map[string]string {
	out := map[string]string{}
	for _, c := range r.Changes {
		out[c.Kind+" "+c.UID] = c.Action
	}
	return out
}

func TestProvisionIsIdempotent(t *testing.T) {
	f := grafanatest.New(t)
	g := fakeClient(t, f, f.Token)
	o := provisionOptions(t)
	ctx := context.Background()

	dry := o
	dry.DryRun = true
	rep, err := Provision(ctx, g, dry)
	require.NoError(t, err)
	require.Empty(t, f.Writes(), "a dry run writes nothing")
	require.Equal(t, 1+1+5+2, rep.Changed())
	require.Contains(t, rep.Lines(), "dashboard meridian-overview (Meridian / Global overview): would be created")
	require.Equal(t, "9 would change (dry run, nothing written)", rep.Lines()[len(rep.Lines())-1])

	rep, err = Provision(ctx, g, o)
	require.NoError(t, err)
	require.Equal(t, 9, rep.Changed())
	for k, a := range actions(rep) {
		require.Equal(t, ActionCreated, a, k)
	}
	require.Len(t, f.Writes(), 9, "one write per object")
	stored, _ := f.RuleGroup("meridian", "slo-alerts-checkout-requests-availability")
	require.Len(t, stored, 2, "the recording rule is left to the ruler")

	f.ResetRequests()
	rep, err = Provision(ctx, g, o)
	require.NoError(t, err)
	require.Empty(t, f.Writes(), "the second run makes no write request")
	require.Equal(t, 0, rep.Changed())
	require.Equal(t, "0 changed", rep.Lines()[len(rep.Lines())-1])
	for k, a := range actions(rep) {
		require.Equal(t, ActionUnchanged, a, k)
	}

	t.Run("a changed generator updates without --force", func(t *testing.T) {
		o2 := provisionOptions(t)
		o2.Dashboards[0].Model.Description = ptr("a new description")
		o2.RuleGroups[1].Rules[0].For = 15 * time.Minute
		before, _ := f.RuleGroup("meridian", "meridian-readiness")
		f.ResetRequests()
		rep, err := Provision(ctx, g, o2)
		require.NoError(t, err)
		require.Equal(t, 2, rep.Changed(), rep.Lines())
		require.Equal(t, ActionUpdated, actions(rep)["dashboard meridian-overview"])
		require.Equal(t, ActionUpdated, actions(rep)["rule group meridian-readiness"])
		require.Equal(t, []string{"POST /api/dashboards/db", "PUT /api/v1/provisioning/folder/meridian/rule-groups/meridian-readiness"}, f.Writes())
		after, _ := f.RuleGroup("meridian", "meridian-readiness")
		require.Equal(t, before[0]["uid"], after[0]["uid"], "the rule keeps its UID")
		model, _, _ := f.Dashboard(UIDOverview)
		require.Equal(t, 2.0, model["version"])

		rep, err = Provision(ctx, g, o)
		require.NoError(t, err)
		require.Equal(t, 2, rep.Changed(), "back to the first generation")
	})

	t.Run("a dashboard edited in Grafana is reported and overwritten only with --force", func(t *testing.T) {
		f.EditDashboard(UIDSelf, func(m map[string]any) { m["title"] = "my own title" })
		f.ResetRequests()
		rep, err := Provision(ctx, g, o)
		require.ErrorIs(t, err, ErrEditedInGrafana)
		require.ErrorContains(t, err, UIDSelf)
		require.Empty(t, f.Writes())
		require.Equal(t, ActionSkipped, actions(rep)["dashboard "+UIDSelf])
		model, _, _ := f.Dashboard(UIDSelf)
		require.Equal(t, "my own title", model["title"])

		force := o
		force.Force = true
		rep, err = Provision(ctx, g, force)
		require.NoError(t, err)
		require.Equal(t, 1, rep.Changed())
		model, _, _ = f.Dashboard(UIDSelf)
		require.Equal(t, "Meridian / Meridian itself", model["title"])

		f.ResetRequests()
		rep, err = Provision(ctx, g, o)
		require.NoError(t, err)
		require.Zero(t, rep.Changed())
		require.Empty(t, f.Writes())
	})

	t.Run("data source and folder drift is put back, other settings kept", func(t *testing.T) {
		f.EditDataSource("meridian", func(ds map[string]any) {
			ds["url"] = "http://elsewhere:9090"
			ds["jsonData"].(map[string]any)["customQueryParameters"] = "dedup=true"
		})
		f.RenameFolder("meridian", "Renamed")
		rep, err := Provision(ctx, g, o)
		require.NoError(t, err)
		require.Equal(t, 2, rep.Changed(), rep.Lines())
		ds, _ := f.DataSource("meridian")
		require.Equal(t, "http://meridian-query:9090", ds["url"])
		require.Equal(t, "dedup=true", ds["jsonData"].(map[string]any)["customQueryParameters"])
		title, _ := f.FolderTitle("meridian")
		require.Equal(t, "Meridian", title)
	})
}

func TestProvisionStaleVersionIsAConflict(t *testing.T) {
	f := grafanatest.New(t)
	g := fakeClient(t, f, f.Token)
	o := provisionOptions(t)
	_, err := Provision(context.Background(), g, o)
	require.NoError(t, err)

	o.Dashboards[1].Model.Description = ptr("changed")
	// Someone saves the dashboard between our read and our write.
	f.ConcurrentSave(UIDRegion)
	_, err = Provision(context.Background(), g, o)
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusPreconditionFailed, apiErr.StatusCode)
	require.ErrorContains(t, err, "changed in Grafana during provisioning")
	model, _, _ := f.Dashboard(UIDRegion)
	require.Equal(t, 2.0, model["version"], "the stale save was refused: only the concurrent one counted")
	require.NotEqual(t, "changed", model["description"])
}

func TestProvisionRetriesWithBackoff(t *testing.T) {
	f := grafanatest.New(t)
	g := fakeClient(t, f, f.Token)
	f.Inject(grafanatest.Fault{Status: 503}, grafanatest.Fault{Status: 429, RetryAfter: "0"}, grafanatest.Fault{Status: 502})
	rep, err := Provision(context.Background(), g, provisionOptions(t))
	require.NoError(t, err)
	require.Equal(t, 9, rep.Changed())
	require.Equal(t, "GET /api/folders/meridian", f.Requests()[3], "the first call succeeded on its fourth attempt")

	f.Inject(grafanatest.Fault{Status: 500}, grafanatest.Fault{Status: 500}, grafanatest.Fault{Status: 500}, grafanatest.Fault{Status: 500}, grafanatest.Fault{Status: 500}, grafanatest.Fault{Status: 500})
	_, err = Provision(context.Background(), g, provisionOptions(t))
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, 500, apiErr.StatusCode, "given up after 5 retries")
}

func TestProvisionErrorsSayWhatToFix(t *testing.T) {
	f := grafanatest.New(t)
	for _, tc := range []struct {
		name   string
		client func() Grafana
		status int
		hint   string
	}{
		{"wrong token", func() Grafana { return fakeClient(t, f, "glsa_wrong") }, 401, "check --grafana.token-file or --grafana.basic-auth-file"},
		{"wrong password", func() Grafana {
			g, err := NewClient(ClientConfig{URL: f.URL(), BasicAuth: url.UserPassword("admin", "nope")})
			require.NoError(t, err)
			return g
		}, 401, "wrong or expired token, wrong password"},
		{"missing permission", func() Grafana { return fakeClient(t, f, f.ReaderToken) }, 403, "lacks a permission"},
		{"wrong URL", func() Grafana {
			g, err := NewClient(ClientConfig{URL: f.URL() + "/grafana", Token: f.Token})
			require.NoError(t, err)
			return g
		}, 404, "check --grafana.url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Provision(context.Background(), tc.client(), provisionOptions(t))
			var apiErr *APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.status, apiErr.StatusCode)
			require.Contains(t, apiErr.Hint(), tc.hint)
			require.NotContains(t, apiErr.Hint(), "\n")
		})
	}
	t.Run("basic auth works", func(t *testing.T) {
		g, err := NewClient(ClientConfig{URL: f.URL(), BasicAuth: url.UserPassword(f.User, f.Password)})
		require.NoError(t, err)
		_, err = Provision(context.Background(), g, provisionOptions(t))
		require.NoError(t, err)
	})
}

func TestFakeHoldsTheContract(t *testing.T) {
	f := grafanatest.New(t)
	g := fakeClient(t, f, f.Token)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
	}{
		{"dashboard into a missing folder", func() error {
			return g.SaveDashboard(ctx, DashboardSave{Model: map[string]any{"uid": "x", "title": "x"}, FolderUID: "missing"})
		}, 400},
		{"dashboard without a title", func() error { return g.SaveDashboard(ctx, DashboardSave{Model: map[string]any{"uid": "x"}}) }, 400},
		{"rule group in a missing folder", func() error {
			return g.SaveRuleGroup(ctx, RuleGroup{FolderUID: "missing", Title: "g", Interval: time.Minute})
		}, 404},
		{"folder update of a missing folder", func() error { return g.UpdateFolder(ctx, Folder{UID: "missing", Title: "t"}) }, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var apiErr *APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.status, apiErr.StatusCode, err.Error())
		})
	}
	_, err := g.Folder(ctx, "missing")
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, g.CreateFolder(ctx, Folder{UID: "f", Title: "F"}))
	err = g.CreateFolder(ctx, Folder{UID: "f", Title: "Other"})
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, 409, apiErr.StatusCode)
	// A rule group's interval must be a multiple of Grafana's 10s tick; ours is rounded up.
	err = g.SaveRuleGroup(ctx, RuleGroup{FolderUID: "f", Title: "g", Interval: 15 * time.Second})
	require.ErrorAs(t, err, &apiErr)
	require.Contains(t, apiErr.Message, "multiple of the base interval")
	require.False(t, errors.Is(err, ErrNotFound))
	require.True(t, strings.HasPrefix(err.Error(), "PUT /api/v1/provisioning/folder/f/rule-groups/g: 400"), err.Error())
}

func TestAlertRuleGroups(t *testing.T) {
	groups, err := AlertRuleGroups(testRuleGroups(), "meridian")
	require.NoError(t, err)
	require.Len(t, groups, 2)
	slo := groups[0]
	require.Equal(t, 30*time.Second, slo.Interval)
	require.Equal(t, []string{"CheckoutHighErrorRate (page)", "CheckoutHighErrorRate (ticket)"}, []string{slo.Rules[0].Title, slo.Rules[1].Title})
	r := slo.Rules[0]
	require.Equal(t, "C", r.Condition)
	require.Equal(t, 2*time.Minute, r.For)
	require.Equal(t, "OK", r.NoDataState, "no series is not firing, as in Prometheus")
	require.Equal(t, testRuleGroups()[0].Rules[1].Expr, r.Data[0].Model["expr"])
	require.Equal(t, "meridian", r.Data[0].DatasourceUID)
	require.Equal(t, map[string]string{"severity": "page", "slo": "requests-availability"}, r.Labels)
	require.Equal(t, time.Minute, groups[1].Interval, "default interval")
	require.Equal(t, map[string]string{"summary": "losing {{ $labels.region }} would hurt"}, groups[1].Rules[0].Annotations, "Grafana has no query template function")
}

// The alerts `meridian rules generate` writes for the example configuration go into Grafana
// as they are, and a second run leaves them alone.
func TestProvisionGeneratedAlertRules(t *testing.T) {
	cfg, slos, err := slo.Load("../examples/meridian.yml")
	require.NoError(t, err)
	files, err := rules.Generate(cfg, slos, rules.Options{})
	require.NoError(t, err)
	var groups []RuleGroup
	alerts := 0
	for _, f := range files {
		gs, err := AlertRuleGroups(f.Groups, DefaultDatasourceUID)
		require.NoError(t, err, f.Name)
		groups = append(groups, gs...)
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					alerts++
				}
			}
		}
	}
	require.NotEmpty(t, groups)
	f := grafanatest.New(t)
	g := fakeClient(t, f, f.Token)
	o := provisionOptions(t)
	o.RuleGroups = groups
	_, err = Provision(context.Background(), g, o)
	require.NoError(t, err)
	require.Equal(t, alerts, f.Rules("meridian"), "every generated alert is a Grafana rule")
	f.ResetRequests()
	rep, err := Provision(context.Background(), g, o)
	require.NoError(t, err)
	require.Zero(t, rep.Changed())
	require.Empty(t, f.Writes())
}
