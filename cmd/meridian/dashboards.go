package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/meridian-obs/meridian/dashboards"
	"github.com/meridian-obs/meridian/rules"
	"github.com/meridian-obs/meridian/slo"
)

// dashboardsCommandGroup returns the "dashboards" command that groups the Grafana
// subcommands, creating it once.
func dashboardsCommandGroup(app *kingpin.Application) *kingpin.CmdClause {
	if c := app.GetCommand("dashboards"); c != nil {
		return c
	}
	return app.Command("dashboards", "Grafana: generate Meridian's dashboards, provision them with the data source, folder and alert rules.")
}

// dashboardFlags are the inputs of the generated dashboards, shared by generate and provision.
type dashboardFlags struct {
	config                         *string
	requests, duration, statusCode *string
	datasourceUID                  *string
}

func addDashboardFlags(cmd *kingpin.CmdClause) dashboardFlags {
	return dashboardFlags{
		config:        cmd.Flag("config", "Meridian SLO and readiness configuration file (YAML): its region label and readiness expressions shape the dashboards; its SLOs give the alert rules.").PlaceHolder("FILE").String(),
		requests:      cmd.Flag("metrics.requests", "Counter of requests with a status code label, read by the traffic panels.").Default(dashboards.DefaultRequestsMetric).String(),
		duration:      cmd.Flag("metrics.duration", "Classic histogram of request latency (its _bucket series), read by the latency panels.").Default(dashboards.DefaultDurationMetric).String(),
		statusCode:    cmd.Flag("metrics.status-code-label", "Label of the requests counter holding the HTTP status code.").Default(dashboards.DefaultStatusCodeLabel).String(),
		datasourceUID: cmd.Flag("datasource.uid", "UID of the data source the dashboards select by default.").Default(dashboards.DefaultDatasourceUID).String(),
	}
}

// load reads the configuration, when given, and generates the dashboards.
func (f dashboardFlags) load() (*slo.Config, []slo.SLO, []dashboards.Dashboard, error) {
	var (
		cfg  *slo.Config
		slos []slo.SLO
		err  error
	)
	if *f.config != "" {
		if cfg, slos, err = slo.Load(*f.config); err != nil {
			return nil, nil, nil, err
		}
	}
	o := dashboards.OptionsFromConfig(cfg)
	o.RequestsMetric, o.DurationMetric, o.StatusCodeLabel, o.DatasourceUID = *f.requests, *f.duration, *f.statusCode, *f.datasourceUID
	ds, err := dashboards.Generate(o)
	return cfg, slos, ds, err
}

// dashboardsGenerateCommand writes the dashboards for Grafana's file provisioning or the
// Grafana sidecar.
func dashboardsGenerateCommand(app *kingpin.Application) subcommand {
	cmd := dashboardsCommandGroup(app).Command("generate", "Write the dashboards as Grafana JSON with a file provider, or as ConfigMaps for the Grafana sidecar of kube-prometheus-stack.")
	flags := addDashboardFlags(cmd)
	out := cmd.Flag("out", "Directory to write into (created when missing; files of the same names are replaced).").Required().String()
	format := cmd.Flag("format", "json (dashboard JSON files and the provider YAML beside them) or configmap (one ConfigMap per dashboard, labelled grafana_dashboard: \"1\", annotated grafana_folder).").Default(dashboards.FormatJSON).Enum(dashboards.FormatJSON, dashboards.FormatConfigMap)
	namespace := cmd.Flag("namespace", "Namespace of the ConfigMaps; empty leaves it to kubectl or Helm.").String()
	folder := cmd.Flag("folder", "Grafana folder of the dashboards (the provider's folder, the ConfigMaps' grafana_folder annotation).").Default(dashboards.DefaultFolder).String()
	providerPath := cmd.Flag("provider.path", "Where Grafana reads the JSON files, written into the provider YAML; default: the absolute --out directory.").String()
	return subcommand{cmd: cmd, run: func(context.Context, *slog.Logger) error {
		_, _, ds, err := flags.load()
		if err != nil {
			return err
		}
		written, err := dashboards.WriteDir(*out, ds, dashboards.FilesOptions{Format: *format, Folder: *folder, Namespace: *namespace, ProviderPath: *providerPath})
		for _, p := range written {
			fmt.Fprintln(os.Stdout, p)
		}
		return err
	}}
}

// dashboardsProvisionCommand creates or updates the folder, data source, dashboards and
// optionally the alert rules through Grafana's HTTP API.
func dashboardsProvisionCommand(app *kingpin.Application) subcommand {
	cmd := dashboardsCommandGroup(app).Command("provision", "Create or update, through Grafana's HTTP API, the folder, a Prometheus data source pointing at meridian query, every dashboard and optionally the SLO and readiness alerts as Grafana-managed rules. A second run writes nothing.")
	flags := addDashboardFlags(cmd)
	grafanaURL := cmd.Flag("grafana.url", "Grafana's root URL, with its sub-path if it is served under one.").Required().String()
	tokenFile := cmd.Flag("grafana.token-file", "File holding a service account token (Admin role, or write permissions on folders, data sources, dashboards and alert provisioning).").PlaceHolder("FILE").String()
	basicAuthFile := cmd.Flag("grafana.basic-auth-file", "File holding user:password for basic auth.").PlaceHolder("FILE").String()
	orgID := cmd.Flag("grafana.org-id", "Organisation, with basic auth (a token belongs to one organisation); 0 is the user's current one.").Default("0").Int64()
	datasourceURL := cmd.Flag("datasource.url", "URL of meridian query as Grafana's server reaches it.").Required().String()
	datasourceName := cmd.Flag("datasource.name", "Name of the data source.").Default(dashboards.DefaultDatasourceName).String()
	scrapeInterval := cmd.Flag("datasource.scrape-interval", "The regions' scrape interval, Grafana's lower bound for $__rate_interval.").Default("15s").String()
	folder := cmd.Flag("folder", "Grafana folder of the dashboards and alert rules; its UID is derived from the title.").Default(dashboards.DefaultFolder).String()
	dryRun := cmd.Flag("dry-run", "Print what would be created, updated or left unchanged, and write nothing.").Bool()
	force := cmd.Flag("force", "Overwrite dashboards edited in Grafana since they were provisioned.").Bool()
	alertRules := cmd.Flag("alert-rules", "Also provision the SLO burn-rate and readiness alerts (those meridian rules generate writes) as Grafana-managed rules, one rule group per SLO; needs --config.").Bool()
	timeout := cmd.Flag("timeout", "Time for the whole run, retries included.").Default("2m").Duration()
	return subcommand{cmd: cmd, run: func(ctx context.Context, logger *slog.Logger) error {
		cfg, slos, ds, err := flags.load()
		if err != nil {
			return err
		}
		clientCfg := dashboards.ClientConfig{URL: *grafanaURL, OrgID: *orgID, Logger: logger}
		if err := readGrafanaCredentials(&clientCfg, *tokenFile, *basicAuthFile); err != nil {
			return err
		}
		g, err := dashboards.NewClient(clientCfg)
		if err != nil {
			return err
		}
		o := dashboards.ProvisionOptions{
			Folder:     dashboards.Folder{UID: dashboards.FolderUID(*folder), Title: *folder},
			DataSource: dashboards.MeridianDataSource(*flags.datasourceUID, *datasourceName, *datasourceURL, *scrapeInterval),
			Dashboards: ds, DryRun: *dryRun, Force: *force,
		}
		if *alertRules {
			if cfg == nil {
				return errors.New("--alert-rules: needs --config, whose SLOs and readiness section the alerts come from")
			}
			if o.RuleGroups, err = grafanaRuleGroups(cfg, slos, *flags.datasourceUID); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		rep, err := dashboards.Provision(ctx, g, o)
		for _, line := range rep.Lines() {
			fmt.Fprintln(os.Stdout, line)
		}
		var apiErr *dashboards.APIError
		if errors.As(err, &apiErr) && apiErr.Hint() != "" {
			return errors.New(apiErr.Hint())
		}
		return err
	}}
}

// readGrafanaCredentials reads exactly one of the token file and the basic-auth file.
func readGrafanaCredentials(c *dashboards.ClientConfig, tokenFile, basicAuthFile string) error {
	if (tokenFile == "") == (basicAuthFile == "") {
		return errors.New("give exactly one of --grafana.token-file and --grafana.basic-auth-file")
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return fmt.Errorf("--grafana.token-file: %w", err)
		}
		if c.Token = strings.TrimSpace(string(b)); c.Token == "" {
			return fmt.Errorf("--grafana.token-file %s: empty", tokenFile)
		}
		return nil
	}
	b, err := os.ReadFile(basicAuthFile)
	if err != nil {
		return fmt.Errorf("--grafana.basic-auth-file: %w", err)
	}
	user, pass, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	if !ok || user == "" {
		return fmt.Errorf("--grafana.basic-auth-file %s: want one line user:password", basicAuthFile)
	}
	c.BasicAuth = url.UserPassword(user, pass)
	return nil
}

// grafanaRuleGroups generates the rules as `meridian rules generate` does and keeps the SLO
// burn-rate and readiness alerts; the platform alerts watch Meridian itself and stay with the
// global ruler.
func grafanaRuleGroups(cfg *slo.Config, slos []slo.SLO, datasourceUID string) ([]dashboards.RuleGroup, error) {
	files, err := rules.Generate(cfg, slos, rules.Options{})
	if err != nil {
		return nil, err
	}
	var groups []dashboards.RuleGroup
	for _, f := range files {
		if f.Name == rules.PlatformRulesFile {
			continue
		}
		gs, err := dashboards.AlertRuleGroups(f.Groups, datasourceUID)
		if err != nil {
			return nil, fmt.Errorf("rules %s: %w", f.Name, err)
		}
		groups = append(groups, gs...)
	}
	return groups, nil
}
