package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /healthz, /readyz (200, or 503 with the Report's
// problems; both JSON) and /metrics (Prometheus text).
// /readyz?require=federation is 503 too while a spoke is not linked to
// its hub (Ready reports that as a warning of a 200).
func (o *Ops) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeReport(w, o.Health()) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		switch req := r.URL.Query()["require"]; {
		case len(req) == 0:
			writeReport(w, o.Ready())
		case len(req) == 1 && req[0] == "federation":
			writeReport(w, o.ReadyLinked())
		default:
			http.Error(w, fmt.Sprintf("require=%s: the only requirement /readyz knows is require=federation", strings.Join(req, ",")), http.StatusBadRequest)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{}))
	return mux
}

func writeReport(w http.ResponseWriter, r Report) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !r.OK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(r)
}

// Serve answers HTTP on l until ctx ends, then closes it.
func (o *Ops) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: o.Handler(), ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
