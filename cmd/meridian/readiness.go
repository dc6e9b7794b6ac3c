package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/meridian-obs/meridian/slo"
)

// readinessCommand prints the failover readiness of every region, or of one with --fail. The
// exit code is 0 whenever a report was printed, whatever the states in it (read the states,
// or use /readiness/<region>, to act on them); 1 when the configuration is invalid, the
// region is unknown or no input could be queried.
func readinessCommand(app *kingpin.Application) subcommand {
	cmd := app.Command("readiness", "Print the failover readiness of every region (or of one with --fail): state, score, components with their inputs, gates and reason. Exit code 0 when the report was printed, 1 on error.")
	configFile := cmd.Flag("config", "SLO and readiness configuration file (YAML).").Required().ExistingFile()
	queryURL := cmd.Flag("query.url", "Prometheus-compatible query API to read the inputs from (meridian query, Prometheus, Thanos Query).").Required().URL()
	timeout := cmd.Flag("query.timeout", "Timeout of each query.").Default("1m").Duration()
	fail := cmd.Flag("fail", "Score the loss of this region only (a what-if drill).").String()
	output := cmd.Flag("output", "Report format. One of: [text, json]").Default("text").Enum("text", "json")
	return subcommand{cmd: cmd, run: func(ctx context.Context, logger *slog.Logger) error {
		cfg, slos, err := slo.Load(*configFile)
		if err != nil {
			return err
		}
		q := slo.NewHTTPQuerier((*queryURL).String(), &http.Client{Timeout: *timeout})
		opts := slo.ReadinessOptions{RegionLabel: cfg.RegionLabel, Logger: logger}
		if len(slos) > 0 {
			engine, err := slo.NewEngine(logger, q, slos, cfg.EngineOptions())
			if err != nil {
				return fmt.Errorf("slo engine: %w", err)
			}
			opts.SLOHealth = engine
		}
		rcfg := slo.ReadinessConfig{}
		if cfg.Readiness != nil {
			rcfg = *cfg.Readiness
		}
		evaluator, err := slo.NewReadinessEvaluator(rcfg, q, opts)
		if err != nil {
			return fmt.Errorf("config %s: %w", *configFile, err)
		}

		now := time.Now()
		var rep *slo.ReadinessReport
		if *fail != "" {
			res, warnings, err := evaluator.EvaluateRegion(ctx, *fail, now)
			if err != nil {
				return err
			}
			rep = &slo.ReadinessReport{EvaluatedAt: now, Topology: evaluator.Topology(), Regions: []slo.ReadinessResult{res}, Warnings: warnings}
		} else if rep, err = evaluator.Evaluate(ctx, now); err != nil {
			return err
		}
		if *output == "json" {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}
		return slo.WriteReadinessText(os.Stdout, rep)
	}}
}
