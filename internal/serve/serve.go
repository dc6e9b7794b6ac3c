// Package serve runs Meridian's HTTP and gRPC servers as actors of an oklog/run group: each
// serves on a listener bound beforehand (so port 0 works and the address is known early) and
// stops gracefully, within a bound, when the group is interrupted.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/exporter-toolkit/web"
	"google.golang.org/grpc"
)

// ShutdownTimeout bounds how long in-flight HTTP and gRPC calls may take to finish on shutdown.
const ShutdownTimeout = 10 * time.Second

// HTTP adds an actor serving srv on lis with the exporter-toolkit web configuration in
// configFile (TLS, client CA, basic auth; empty serves plain HTTP).
func HTTP(g *run.Group, lis net.Listener, srv *http.Server, configFile string, logger *slog.Logger) {
	flags := &web.FlagConfig{
		WebListenAddresses: &[]string{lis.Addr().String()},
		WebSystemdSocket:   new(bool),
		WebConfigFile:      &configFile,
	}
	g.Add(func() error {
		// web.Serve rather than web.ListenAndServe: the listener is already bound.
		if err := web.Serve(lis, srv, flags, logger); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server on %s: %w", lis.Addr(), err)
		}
		return nil
	}, func(error) {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			logger.Warn("http server shutdown", "address", lis.Addr().String(), "err", err)
		}
	})
}

// GRPC adds an actor serving srv on lis. On interrupt, beforeStop (may be nil) runs first, then
// in-flight calls get ShutdownTimeout to finish before the server is stopped hard.
func GRPC(g *run.Group, lis net.Listener, srv *grpc.Server, beforeStop func()) {
	g.Add(func() error {
		if err := srv.Serve(lis); err != nil {
			return fmt.Errorf("grpc server on %s: %w", lis.Addr(), err)
		}
		return nil
	}, func(error) {
		if beforeStop != nil {
			beforeStop()
		}
		stopped := make(chan struct{})
		go func() {
			srv.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(ShutdownTimeout):
			srv.Stop()
		}
	})
}
