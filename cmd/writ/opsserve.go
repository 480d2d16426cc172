package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/ops"
	"github.com/writ-dev/writ/internal/pipeline"
)

// newLogger is serve's logger: --log-level and --log-format (text, or
// json: one object a line, for log collectors).
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("--log-level: %v", err)
	}
	o := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, usageError("--log-format %q: want text or json", format)
}

// opsServer is serve's operations endpoints; a nil one serves nothing.
type opsServer struct {
	ops  *ops.Ops
	addr string
	log  *slog.Logger
}

// newOpsServer is the operations endpoints for addr; "" serves none. srv
// is the embedded server (nil on a NATS of serve's own): a federated
// domain's leafnode links are its.
func newOpsServer(addr string, nc *nats.Conn, cfg *config.Config, srv *embedded.Server, log *slog.Logger) (*opsServer, error) {
	if addr == "" {
		return nil, nil
	}
	var fed *ops.Federation
	if srv != nil && cfg.Federation != nil {
		fed = &ops.Federation{Links: srv.LeafLinks, Spokes: len(cfg.Federation.Spokes)}
	}
	o, err := ops.New(ops.Options{
		NC: nc, Domain: cfg.Domain, Stream: cfg.Stream.Name, Timers: cfg.Stream.Timers, Logger: log, Federation: fed,
	})
	if err != nil {
		return nil, err
	}
	return &opsServer{ops: o, addr: addr, log: log}, nil
}

// observer is what the pipeline reports to.
func (s *opsServer) observer() consumers.Observer {
	if s == nil {
		return nil
	}
	return s.ops
}

// start listens, then samples the server and answers HTTP for p until the
// returned stop is called: after the pipeline has drained, so that
// readiness reports the drain (503) rather than a refused connection.
func (s *opsServer) start(ctx context.Context, p *pipeline.Pipeline, stdout io.Writer) (stop func(), err error) {
	if s == nil {
		return func() {}, nil
	}
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	fmt.Fprintf(stdout, "Operations endpoints on http://%s (/healthz, /readyz, /metrics)\n", l.Addr())
	s.ops.Expect(p.Names(), p.Durables())
	if g := p.Guard(); g != nil {
		s.ops.Guard(g)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{}, 2)
	go func() { _ = s.ops.Run(ctx); done <- struct{}{} }()
	go func() {
		if err := s.ops.Serve(ctx, l); err != nil {
			s.log.Error("operations endpoints stopped", "err", err)
		}
		done <- struct{}{}
	}()
	return func() { cancel(); <-done; <-done }, nil
}
