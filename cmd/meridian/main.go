// Command meridian is the single Meridian binary. Each role is a subcommand; this package only
// parses flags, builds the components of the chosen role and runs them.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"

	"github.com/meridian-obs/meridian/internal/buildtag"
)

// subcommand is one role of the binary: its flags live on cmd, run starts it and blocks until
// ctx is cancelled or the role fails.
type subcommand struct {
	cmd *kingpin.CmdClause
	run func(ctx context.Context, logger *slog.Logger) error
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	_ = buildtag.Slicelabels

	app := kingpin.New("meridian", "Meridian: one global PromQL view over many regions, with cross-region SLOs and failover readiness.")
	app.Version(version.Print("meridian"))
	app.HelpFlag.Short('h')
	logLevel := app.Flag("log.level", "Only log messages with the given severity or above. One of: [debug, info, warn, error]").
		Default("info").Enum("debug", "info", "warn", "error")
	logFormat := app.Flag("log.format", "Output format of log messages. One of: [logfmt, json]").
		Default("logfmt").Enum("logfmt", "json")

	subs := []subcommand{
		ingestCommand(app),
		queryCommand(app),
		readinessCommand(app),
		simulateCommand(app),
		devCommand(app),
		sloValidateCommand(app), sloStatusCommand(app),
		rulesGenerateCommand(app),
		dashboardsGenerateCommand(app), dashboardsProvisionCommand(app),
	}

	selected, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "meridian: error: %v, try --help\n", err)
		return 2
	}
	logger := newLogger(*logLevel, *logFormat)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, s := range subs {
		if s.cmd.FullCommand() != selected {
			continue
		}
		if err := s.run(ctx, logger); err != nil {
			logger.Error("exiting", "command", selected, "err", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "meridian: error: unknown command %q, try --help\n", selected)
	return 2
}

func newLogger(level, format string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
