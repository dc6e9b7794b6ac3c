package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/alecthomas/kingpin/v2"
	oklogrun "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/meridian-obs/meridian/ingest"
	_ "github.com/meridian-obs/meridian/internal/grpccodec"
	"github.com/meridian-obs/meridian/query"
	"github.com/meridian-obs/meridian/slo"
)

func queryCommand(app *kingpin.Application) subcommand {
	cmd := app.Command("query", "Global querier: one PromQL endpoint (Prometheus HTTP API) over the StoreAPI stores of every region, with deduplication and partial response.")
	endpoints := cmd.Flag("endpoint", "StoreAPI endpoint to query: host:port, dns+host:port or dnssrv+_grpc._tcp.name. Repeatable.").PlaceHolder("HOST:PORT").Strings()
	sdFiles := cmd.Flag("endpoint.sd-files", "File with StoreAPI targets in Prometheus file_sd format (YAML or JSON), reloaded on change. Repeatable.").PlaceHolder("FILE").Strings()
	httpAddr := cmd.Flag("http-address", "Listen address of the HTTP API.").Default("0.0.0.0:10902").String()
	httpConfig := cmd.Flag("http.config", "Web configuration file (TLS, basic auth) in exporter-toolkit format.").Default("").String()
	grpcAddr := cmd.Flag("grpc-address", "Listen address of the querier's own StoreAPI (stackable); empty serves none.").Default("0.0.0.0:10901").String()
	replicaLabels := cmd.Flag("query.replica-label", "Label whose values name replicas of the same series; series equal but for it are deduplicated. Repeatable.").Default("replica").Strings()
	partial := cmd.Flag("query.partial-response", "Answer with the stores that answered (and a warning per missing store) by default; a request overrides it with partial_response=true|false.").Default("true").Bool()
	storeTimeout := cmd.Flag("store.response-timeout", "Time each store has to answer one call before it is counted as missing; 0 waits as long as the query may run.").Default("30s").Duration()
	regionLabel := cmd.Flag("query.region-label", "External label naming a store's region in warnings.").Default("region").String()
	queryTimeout := cmd.Flag("query.timeout", "Maximum time one query may take.").Default("2m").Duration()
	maxSamples := cmd.Flag("query.max-samples", "Maximum number of samples one query may hold in memory at once.").Default("50000000").Int()
	lookback := cmd.Flag("query.lookback-delta", "How far back the engine looks for the last sample of a series.").Default("5m").Duration()
	maxConcurrent := cmd.Flag("query.max-concurrent", "Maximum number of queries evaluated at once; others wait.").Default("20").Int()
	probeInterval := cmd.Flag("endpoint.probe-interval", "How often each store is asked for Info.").Default("5s").Duration()
	labelCache := cmd.Flag("query.label-cache", "Answer label names and values of Meridian stores from the answers they gave before, until the store reports a change they depend on (it pushes every change at once; a store silent for 1s is asked again). --no-query.label-cache asks the stores every time.").Default("true").Bool()
	var clientTLS query.ClientTLS
	cmd.Flag("grpc-client-tls-secure", "Use TLS to the stores.").Default("false").BoolVar(&clientTLS.Secure)
	cmd.Flag("grpc-client-tls-cert", "Client certificate for mTLS to the stores.").Default("").StringVar(&clientTLS.Cert)
	cmd.Flag("grpc-client-tls-key", "Key of the client certificate.").Default("").StringVar(&clientTLS.Key)
	cmd.Flag("grpc-client-tls-ca", "CA bundle that verifies the stores' certificates.").Default("").StringVar(&clientTLS.CA)
	cmd.Flag("grpc-client-server-name", "Server name expected in the stores' certificates.").Default("").StringVar(&clientTLS.ServerName)
	var serverTLS query.ServerTLS
	cmd.Flag("grpc-server-tls-cert", "Certificate of the querier's StoreAPI server; empty serves plaintext.").Default("").StringVar(&serverTLS.Cert)
	cmd.Flag("grpc-server-tls-key", "Key of the StoreAPI server certificate.").Default("").StringVar(&serverTLS.Key)
	cmd.Flag("grpc-server-tls-client-ca", "CA that client certificates must be signed by (mTLS); empty accepts any client.").Default("").StringVar(&serverTLS.ClientCA)
	extLabels := cmd.Flag("label", "External label name=value (or name=\"value\") added by the querier's StoreAPI to every series. Repeatable; without any, the StoreAPI announces its stores' label sets, as Thanos Query does.").PlaceHolder("NAME=VALUE").Strings()
	sloConfig := cmd.Flag("slo.config", "Meridian SLO and readiness configuration file; enables /api/v1/slos, /api/v1/readiness, /readiness/<region> and their metrics.").PlaceHolder("FILE").String()
	sloInterval := cmd.Flag("slo.evaluation-interval", "How often SLOs and failover readiness are evaluated.").Default("30s").Duration()
	rf := rulerFlagsOf(cmd)

	return subcommand{cmd: cmd, run: func(ctx context.Context, logger *slog.Logger) error {
		var ext labels.Labels
		if len(*extLabels) > 0 {
			var err error
			if ext, err = ingest.ParseExternalLabels(*extLabels); err != nil {
				return fmt.Errorf("--label: %w", err)
			}
		}
		dial, err := clientTLS.DialOptions()
		if err != nil {
			return err
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			versioncollector.NewCollector("meridian"),
		)
		var local []query.LocalStore
		store, err := rf.openStore(logger, reg)
		if err != nil {
			return err
		}
		if store != nil {
			defer func() { _ = store.Close() }()
			local = append(local, store)
		}
		srv, err := query.NewServer(query.ServerConfig{
			Logger:     logger,
			Registerer: reg,
			Gatherer:   reg,
			StoreSet: query.StoreSetOptions{
				Endpoints:     *endpoints,
				SDFiles:       *sdFiles,
				DialOptions:   dial,
				ProbeInterval: *probeInterval,
				LabelCache:    *labelCache,
			},
			Fanout: query.FanoutOptions{
				ReplicaLabels:        *replicaLabels,
				StoreResponseTimeout: *storeTimeout,
				PartialResponse:      *partial,
				RegionLabel:          *regionLabel,
			},
			Engine: query.EngineOptions{
				Timeout:       *queryTimeout,
				MaxSamples:    *maxSamples,
				LookbackDelta: *lookback,
				MaxConcurrent: *maxConcurrent,
			},
			HTTPAddress:    *httpAddr,
			HTTPConfigFile: *httpConfig,
			GRPCAddress:    *grpcAddr,
			GRPCServerTLS:  serverTLS,
			ExternalLabels: ext,
			LocalStores:    local,
			Flags:          flagValues(app, cmd),
		})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var g oklogrun.Group
		g.Add(func() error { return srv.Run(ctx) }, func(error) { cancel() })
		if store != nil {
			ruler, err := rf.newRuler(logger, reg, srv, store, query.EngineOptions{MaxSamples: *maxSamples, LookbackDelta: *lookback})
			if err != nil {
				return err
			}
			srv.ServeRules(ruler)
			ruler.Register(srv.Router())
			g.Add(func() error { return ruler.Run(ctx) }, func(error) { cancel() })
			g.Add(func() error { return ruler.ReloadOnSignal(ctx) }, func(error) { cancel() })
		}
		if *sloConfig != "" {
			q := slo.NewEngineQuerier(srv.Engine(), srv.Queryable())
			svc, err := slo.LoadService(logger, reg, *sloConfig, q, storeHealth{set: srv.StoreSet()}, slo.ServiceOptions{Interval: *sloInterval})
			if err != nil {
				return err
			}
			svc.Register(srv.Router())
			g.Add(func() error { return svc.Run(ctx) }, func(error) { cancel() })
		}
		logger.Info("starting querier", "http", srv.HTTPAddr(), "grpc", srv.GRPCAddr(), "endpoints", len(*endpoints), "sd_files", len(*sdFiles))
		start := time.Now()
		err = g.Run()
		logger.Info("querier stopped", "uptime", time.Since(start).Round(time.Second))
		return err
	}}
}

// storeHealth gives the querier's store set to failover readiness (reachability).
type storeHealth struct{ set *query.StoreSet }

func (h storeHealth) Stores() []slo.StoreHealth {
	var out []slo.StoreHealth
	for _, st := range h.set.Stores() {
		out = append(out, slo.StoreHealth{Region: st.Region, Address: st.Address, Healthy: st.Healthy})
	}
	return out
}

// flagValues lists the global and subcommand flags with their values, for /api/v1/status/flags.
func flagValues(app *kingpin.Application, cmd *kingpin.CmdClause) map[string]string {
	out := map[string]string{}
	for _, f := range append(app.Model().Flags, cmd.Model().Flags...) {
		if f.Value != nil {
			out[f.Name] = f.Value.String()
		}
	}
	return out
}
