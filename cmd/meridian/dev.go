package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/meridian-obs/meridian/dev"
	_ "github.com/meridian-obs/meridian/internal/grpccodec"
)

func devCommand(app *kingpin.Application) subcommand {
	cmd := app.Command("dev", "Everything in one process on loopback: three simulated regions (ingest nodes fed by remote write), the global querier, SLOs, failover readiness and chaos controls.")
	var cfg dev.Config
	cmd.Flag("http-address", "Listen address of the querier's HTTP API (PromQL, SLOs, readiness, chaos controls).").Default(dev.DefaultHTTPAddress).StringVar(&cfg.HTTPAddress)
	cmd.Flag("data-dir", "Directory of the regions' TSDBs, kept on exit. Default: a temporary directory removed on exit.").PlaceHolder("DIR").StringVar(&cfg.DataDir)
	cmd.Flag("config", "SLO and readiness configuration (see examples/meridian.yml). Default: the embedded examples, written into the data directory.").PlaceHolder("FILE").ExistingFileVar(&cfg.ConfigFile)
	cmd.Flag("seed", "Seed of the simulated data: same seed, same data.").Default("1").Uint64Var(&cfg.Seed)
	cmd.Flag("backfill", "History pushed to every region at start, so that SLO windows have data at once.").Default("6h").DurationVar(&cfg.Backfill)
	cmd.Flag("step", "Interval between simulated samples.").Default("15s").DurationVar(&cfg.Step)
	cmd.Flag("eval-interval", "Interval between evaluations of the SLOs and of failover readiness.").Default("10s").DurationVar(&cfg.EvaluationInterval)
	cmd.Flag("store.response-timeout", "Time a region has to answer before it is reported missing.").Default("2s").DurationVar(&cfg.StoreResponseTimeout)
	cmd.Flag("alertmanager.url", "Alertmanager to send the ruler's alerts to (API v2). Repeatable; without any, the alerts are on /api/v1/alerts only.").PlaceHolder("URL").StringsVar(&cfg.Alertmanagers)
	faults := map[string]*[]string{
		dev.FaultDown:     cmd.Flag("down", "Start with the region cut off from the querier. Repeatable.").PlaceHolder("REGION").Strings(),
		dev.FaultLatency:  cmd.Flag("latency", "Start with latency between the querier and the region. Repeatable.").PlaceHolder("REGION=3s").Strings(),
		dev.FaultErrors:   cmd.Flag("errors", "Start with this share of the region's requests failing (5xx). Repeatable.").PlaceHolder("REGION=0.2").Strings(),
		dev.FaultCapacity: cmd.Flag("capacity", "Start with the region's allocatable CPU and memory scaled by this factor. Repeatable.").PlaceHolder("REGION=0.5").Strings(),
	}

	return subcommand{cmd: cmd, run: func(ctx context.Context, logger *slog.Logger) error {
		for _, kind := range []string{dev.FaultDown, dev.FaultLatency, dev.FaultErrors, dev.FaultCapacity} {
			fs, err := dev.ParseFaults(kind, *faults[kind])
			if err != nil {
				return err
			}
			cfg.Faults = append(cfg.Faults, fs...)
		}
		if cfg.Backfill == 0 {
			cfg.Backfill = -1 // --backfill 0: none, rather than the library default
		}
		cfg.Logger = logger
		cfg.Flags = flagValues(app, cmd)
		env, err := dev.New(cfg)
		if err != nil {
			return err
		}
		go func() {
			select {
			case <-env.Ready():
				if err := dev.WriteBanner(os.Stdout, env.Info(), os.Args[0]); err != nil {
					logger.Warn("print banner", "err", err)
				}
			case <-ctx.Done():
			}
		}()
		return env.Run(ctx)
	}}
}
