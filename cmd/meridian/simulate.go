package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	rungroup "github.com/oklog/run"

	"github.com/meridian-obs/meridian/internal/simulate"
)

func simulateCommand(app *kingpin.Application) subcommand {
	var names []string
	for _, p := range simulate.DefaultProfiles() {
		names = append(names, p.Name)
	}
	cmd := app.Command("simulate", "Workload simulator for one region: serves its metrics and chaos controls (/metrics, /controls, POST /errors, /capacity, /traffic, /lag) and pushes them to a remote-write URL when one is given.")
	region := cmd.Flag("region", "Region to simulate, one of: "+strings.Join(names, ", ")+".").Default(names[0]).Enum(names...)
	listen := cmd.Flag("web.listen-address", "Address to serve the exporter and the controls on.").Default("127.0.0.1:9100").String()
	writeURL := cmd.Flag("remote-write.url", "Remote-write endpoint to push to (backfill, then live samples); none: only serve.").PlaceHolder("URL").String()
	backfill := cmd.Flag("backfill", "History pushed at start.").Default("6h").Duration()
	step := cmd.Flag("step", "Interval between pushed samples.").Default("15s").Duration()
	seed := cmd.Flag("seed", "Seed of the generated data: same seed, same data.").Default("1").Uint64()
	regionLabel := cmd.Flag("region-label", "Add a label with this name holding the region to every series (for one Prometheus holding all regions).").PlaceHolder("NAME").String()
	var ratioSet bool
	errorRatio := cmd.Flag("error-ratio", "Share of requests answered with a 5xx code (default: the region's profile).").IsSetByUser(&ratioSet).PlaceHolder("RATIO").Float64()

	return subcommand{cmd: cmd, run: func(ctx context.Context, logger *slog.Logger) error {
		profiles := simulate.DefaultProfiles()
		i := slices.IndexFunc(profiles, func(p simulate.RegionProfile) bool { return p.Name == *region })
		profile := profiles[i]
		if ratioSet {
			profile.ErrorRatio = *errorRatio
		}
		opts := []simulate.Option{
			simulate.WithProfiles(profile), simulate.WithSeed(*seed), simulate.WithBackfill(*backfill),
			simulate.WithLogger(logger),
		}
		if *regionLabel != "" {
			opts = append(opts, simulate.WithRegionLabel(*regionLabel))
		}
		sim, err := simulate.New(opts...)
		if err != nil {
			return err
		}
		handler, err := sim.Handler(*region)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", *listen, err)
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		logger.Info("simulator serving", "region", *region, "metrics", "http://"+ln.Addr().String()+"/metrics")

		var g rungroup.Group
		g.Add(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
			return nil
		}, func(error) {
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdown)
		})
		if *writeURL != "" {
			pushCtx, cancel := context.WithCancel(ctx)
			g.Add(func() error {
				return sim.Push(pushCtx, *region, *writeURL, *step)
			}, func(error) { cancel() })
		}
		runCtx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			<-runCtx.Done()
			return nil
		}, func(error) { cancel() })
		return g.Run()
	}}
}
