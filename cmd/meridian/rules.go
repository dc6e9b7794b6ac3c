package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/meridian-obs/meridian/rules"
	"github.com/meridian-obs/meridian/slo"
)

// rulesCommandGroup returns the "rules" command that groups the rule subcommands, creating it once.
func rulesCommandGroup(app *kingpin.Application) *kingpin.CmdClause {
	if c := app.GetCommand("rules"); c != nil {
		return c
	}
	return app.Command("rules", "Prometheus rules: SLO recording and burn-rate alerts, failover readiness and platform alerts.")
}

// rulesGenerateCommand writes the rule files of a configuration (or of bare SLO spec files).
func rulesGenerateCommand(app *kingpin.Application) subcommand {
	cmd := rulesCommandGroup(app).Command("generate", "Write rule files for Prometheus, Thanos Ruler or meridian query --rule-file from the SLO and readiness configuration.")
	configFile := cmd.Flag("config", "Meridian SLO and readiness configuration file (YAML).").PlaceHolder("FILE").String()
	specFiles := cmd.Flag("slo", "Sloth (prometheus/v1) or OpenSLO (v1) spec file, without a configuration (default period and region label). Repeatable.").PlaceHolder("FILE").Strings()
	out := cmd.Flag("out", "Directory to write the rule files into (created when missing; files of the same names are replaced).").Required().String()
	format := cmd.Flag("format", "prometheus (rule files) or prometheus-operator (PrometheusRule objects).").Default(rules.FormatPrometheus).Enum(rules.FormatPrometheus, rules.FormatPrometheusOperator)
	runbook := cmd.Flag("runbook.base-url", "URL of the runbooks; every alert's runbook_url is this URL and the alert's anchor.").Default(rules.DefaultRunbookBaseURL).String()
	split := cmd.Flag("split", "global: every rule for one ruler that sees all regions; regional: the per-region component rules as one file per region (for each region's Prometheus) and a global file combining them.").Default(rules.SplitGlobal).Enum(rules.SplitGlobal, rules.SplitRegional)
	forOverrides := cmd.Flag("alert.for", "Override an alert's for duration, as ALERT=DURATION (e.g. MeridianFailoverNotReady=1m). Repeatable.").PlaceHolder("ALERT=DURATION").Strings()
	return subcommand{cmd: cmd, run: func(context.Context, *slog.Logger) error {
		cfg, slos, err := loadRuleInputs(*configFile, *specFiles)
		if err != nil {
			return err
		}
		fors, err := parseForOverrides(*forOverrides)
		if err != nil {
			return err
		}
		files, err := rules.Generate(cfg, slos, rules.Options{Split: *split, RunbookBaseURL: *runbook, For: fors})
		if err != nil {
			return err
		}
		if err := rules.WriteDir(*out, files, *format); err != nil {
			return err
		}
		for _, f := range files {
			n := 0
			for _, g := range f.Groups {
				n += len(g.Rules)
			}
			fmt.Fprintf(os.Stdout, "%s/%s: %d groups, %d rules\n", *out, f.Name, len(f.Groups), n)
		}
		return nil
	}}
}

// loadRuleInputs reads the configuration with its SLO files, or bare spec files with the
// defaults. Spec problems come back as "file:line: field: message", one per line.
func loadRuleInputs(configFile string, specFiles []string) (*slo.Config, []slo.SLO, error) {
	switch {
	case configFile != "" && len(specFiles) > 0:
		return nil, nil, fmt.Errorf("--config and --slo: give one of them (the configuration lists its own SLO files)")
	case configFile != "":
		return slo.Load(configFile)
	case len(specFiles) > 0:
		cfg, err := slo.ParseConfig(nil)
		if err != nil {
			return nil, nil, err
		}
		slos, problems := slo.ParseFiles(specFiles...)
		if len(problems) > 0 {
			return nil, nil, problems
		}
		return cfg, slos, nil
	default:
		return nil, nil, fmt.Errorf("--config or --slo is required")
	}
}

func parseForOverrides(values []string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, v := range values {
		name, d, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--alert.for %q: expected ALERT=DURATION", v)
		}
		dur, err := model.ParseDuration(d)
		if err != nil {
			return nil, fmt.Errorf("--alert.for %q: %w", v, err)
		}
		out[name] = time.Duration(dur)
	}
	return out, nil
}
