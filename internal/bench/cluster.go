package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/writ-dev/writ/internal/embedded"
)

// clusterName is the NATS cluster name of a bench's embedded nodes.
const clusterName = "writ-bench"

// startCluster starts n embedded servers as one JetStream cluster on
// loopback, each with its store under the run's directory and the run's
// sync setting, and waits until every node is current with a meta leader.
// Its nodes stop at close.
func (e *env) startCluster(ctx context.Context, n int) error {
	opts, err := embedded.LoopbackCluster(clusterName, "writ-bench-n", n, func(name string) string { return filepath.Join(e.dir, "jetstream", name) })
	if err != nil {
		return fmt.Errorf("bench: cluster: %w", err)
	}
	quiet := new(atomic.Bool)
	quiet.Store(true)
	nodes := make([]*embedded.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			o := opts[i]
			o.SyncAlways, o.JetStreamDomain, o.BlockProfileRate = e.o.Sync, e.domain, e.o.BlockProfileRate
			o.Logger = slog.New(settling{Handler: e.log.Handler().WithAttrs([]slog.Attr{slog.String("node", o.Name)}), quiet: quiet})
			nodes[i], errs[i] = embedded.Start(o)
		})
	}
	wg.Wait()
	var up []*embedded.Server
	for _, s := range nodes {
		if s != nil {
			up = append(up, s)
			e.urls = append(e.urls, s.ClientURL())
		}
	}
	e.onClose(func() {
		quiet.Store(true)
		shutdown(up)
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: cluster: %w", err)
	}
	err = e.awaitMeta(ctx, up)
	quiet.Store(false)
	return err
}

// settling passes a node's log on, but, while quiet, at debug level: nodes
// started at once fail to reach the peers not listening yet, and nodes
// stopped at once lose their peers mid-sentence; those complaints are
// expected, and would bury the ones that are not.
type settling struct {
	slog.Handler
	quiet *atomic.Bool
}

func (h settling) Handle(ctx context.Context, r slog.Record) error {
	if h.quiet.Load() && r.Level > slog.LevelDebug {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h settling) WithAttrs(as []slog.Attr) slog.Handler {
	return settling{Handler: h.Handler.WithAttrs(as), quiet: h.quiet}
}

func (h settling) WithGroup(name string) slog.Handler {
	return settling{Handler: h.Handler.WithGroup(name), quiet: h.quiet}
}

// shutdown stops the nodes at once: each hands the raft groups it leads to
// another on its way out, which one at a time would take a while.
func shutdown(nodes []*embedded.Server) {
	var wg sync.WaitGroup
	for _, s := range nodes {
		wg.Go(s.Shutdown)
	}
	wg.Wait()
}

// awaitMeta waits until every node is current with the JetStream meta
// leader, for up to setupTimeout.
func (e *env) awaitMeta(ctx context.Context, nodes []*embedded.Server) error {
	return await(ctx, "a JetStream meta leader", func(context.Context) (bool, error) {
		for _, s := range nodes {
			if !s.JetStreamCurrent() {
				return false, nil
			}
		}
		return true, nil
	})
}

// awaitStreams waits until every stream on the cluster (Writ's, its
// buckets', the relay's) and every consumer has a leader and all its
// replicas current, so that no election lands in a phase.
func (e *env) awaitStreams(ctx context.Context) error {
	return await(ctx, "a leader and current replicas for every stream", func(ctx context.Context) (bool, error) {
		behind, err := embedded.Behind(ctx, e.js, nil)
		return behind == "", err
	})
}

// await asks ready every 50 ms until it says so, for up to setupTimeout;
// an error it gives is the last word only when time is up.
func await(ctx context.Context, what string, ready func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	for {
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := ready(qctx)
		qcancel()
		if ok && err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: cluster: still waiting for %s: %w", what, errors.Join(ctx.Err(), err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
