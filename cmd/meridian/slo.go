package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/meridian-obs/meridian/slo"
)

// sloCommandGroup returns the "slo" command that groups the SLO subcommands, creating it once.
func sloCommandGroup(app *kingpin.Application) *kingpin.CmdClause {
	if c := app.GetCommand("slo"); c != nil {
		return c
	}
	return app.Command("slo", "Cross-region SLOs: validate spec files, print their status.")
}

// sloValidateCommand checks Sloth and OpenSLO spec files; every problem is printed as
// "file:line: field: message" and the exit code is 1 when there is any.
func sloValidateCommand(app *kingpin.Application) subcommand {
	cmd := sloCommandGroup(app).Command("validate", "Validate Sloth (prometheus/v1) and OpenSLO (v1) SLO spec files. Exit code 0 when all are valid, 1 otherwise.")
	files := cmd.Arg("file", "SLO spec files.").Required().Strings()
	return subcommand{cmd: cmd, run: func(context.Context, *slog.Logger) error {
		slos, problems := slo.ParseFiles(*files...)
		for _, p := range problems {
			fmt.Fprintln(os.Stdout, p.String())
		}
		if len(problems) > 0 {
			return fmt.Errorf("%d problems in %d files", len(problems), len(*files))
		}
		fmt.Fprintf(os.Stdout, "%d SLOs in %d files: valid\n", len(slos), len(*files))
		return nil
	}}
}

// sloStatusCommand evaluates the configured SLOs once against a Prometheus-compatible API and
// prints them as a table.
func sloStatusCommand(app *kingpin.Application) subcommand {
	cmd := sloCommandGroup(app).Command("status", "Evaluate the configured SLOs once against a query API and print global and per-region ratios, burn rates and budgets.")
	configFile := cmd.Flag("config", "SLO configuration file (YAML).").Required().ExistingFile()
	queryURL := cmd.Flag("query.url", "Prometheus-compatible query API (meridian query, Prometheus, Thanos Query).").Required().URL()
	timeout := cmd.Flag("query.timeout", "Timeout of the whole evaluation.").Default("2m").Duration()
	return subcommand{cmd: cmd, run: func(ctx context.Context, logger *slog.Logger) error {
		cfg, slos, err := slo.Load(*configFile)
		if err != nil {
			return err
		}
		opts := cfg.EngineOptions()
		opts.Timeout = *timeout
		engine, err := slo.NewEngine(logger, slo.NewHTTPQuerier((*queryURL).String(), &http.Client{Timeout: *timeout}), slos, opts)
		if err != nil {
			return fmt.Errorf("config %s: %w", *configFile, err)
		}
		results := engine.Evaluate(ctx, time.Now())
		if err := slo.WriteStatusTable(os.Stdout, results); err != nil {
			return err
		}
		for _, r := range results {
			if r.Error != "" {
				return fmt.Errorf("slo %s/%s could not be evaluated", r.Service, r.Name)
			}
		}
		return nil
	}}
}
