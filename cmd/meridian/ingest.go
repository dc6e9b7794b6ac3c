package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/alecthomas/kingpin/v2"
)

func ingestCommand(app *kingpin.Application) subcommand {
	cmd := app.Command("ingest", "Per-region store: Prometheus remote-write receiver, embedded TSDB, Thanos StoreAPI server.")
	return subcommand{cmd: cmd, run: func(ctx context.Context, logger *slog.Logger) error {
		return errors.New("not built yet")
	}}
}
