package rules

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/common/route"
)

// Register mounts POST (and PUT) /-/reload, which reloads the rule files as SIGHUP does and
// answers 500 with the reason when they do not load (the previous rules keep running), as
// Prometheus's and Thanos Ruler's lifecycle endpoint does.
func (r *Ruler) Register(router *route.Router) {
	router.Post("/-/reload", r.serveReload)
	router.Put("/-/reload", r.serveReload)
}

func (r *Ruler) serveReload(w http.ResponseWriter, _ *http.Request) {
	if err := r.Reload(); err != nil {
		r.logger.Error("rule reload failed, previous rules kept", "trigger", "http", "err", err)
		http.Error(w, fmt.Sprintf("failed to reload rules: %s", err), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
	fmt.Fprintln(w, "rules reloaded")
}

// ReloadOnSignal reloads the rule files on every SIGHUP until ctx ends; a run-group actor.
func (r *Ruler) ReloadOnSignal(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			if err := r.Reload(); err != nil {
				r.logger.Error("rule reload failed, previous rules kept", "trigger", "SIGHUP", "err", err)
			}
		}
	}
}
