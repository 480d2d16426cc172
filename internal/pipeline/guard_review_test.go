package pipeline_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/internal/writtest"
)

// cutDialer dials TCP until cut: then it closes what it dialed and refuses
// to dial again until mended, as a network partition would.
type cutDialer struct {
	mu     sync.Mutex
	refuse bool
	conns  []net.Conn
}

func (d *cutDialer) Dial(network, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.refuse {
		return nil, errors.New("cut by the test")
	}
	c, err := net.Dial(network, address)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *cutDialer) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refuse = true
	for _, c := range d.conns {
		_ = c.Close()
	}
	d.conns = nil
}

func (d *cutDialer) mend() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refuse = false
}

// A change made through the JetStream API while the guard's connection is
// down is told by an API audit the guard never hears. Hearing the audits of
// its own read-backs before and after, it reads back only every Quiet:
// the weakening goes unnoticed that long (here an hour) instead of within
// Interval of the connection's return.
func TestReviewGuardNoticesAChangeMadeWhileItWasDisconnected(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	log := slog.New(slog.DiscardHandler)
	d := &cutDialer{}
	var guardNC *nats.Conn
	connect, err := pipeline.RoleConnector(e.Runtime, "", log, func(opts ...nats.Option) (*nats.Conn, error) {
		if guardNC == nil { // the guard connects first (pipeline.Build)
			nc, err := nats.Connect(e.Server.ClientURL(), append(opts, nats.SetCustomDialer(d), nats.ReconnectWait(50*time.Millisecond))...)
			guardNC = nc
			return nc, err
		}
		return e.Server.Connect(opts...)
	})
	require.NoError(t, err)
	cfg := consumers.GuardConfig{Interval: 200 * time.Millisecond, Quiet: time.Hour}
	p, err := pipeline.Build(e.NC, e.Runtime, pipeline.Options{Logger: log, Guard: cfg, Connect: connect})
	require.NoError(t, err)
	guard := p.Guard()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { s := guard.Status(); return s.Open && s.Rounds >= 2 }, 10*time.Second, 10*time.Millisecond)
	// Quiet now: it hears its read-backs' audits.
	rounds := guard.Status().Rounds
	time.Sleep(time.Second)
	require.Equal(t, rounds, guard.Status().Rounds, "the guard reads back quietly")

	d.cut()
	require.Eventually(t, func() bool { return !guardNC.IsConnected() }, 5*time.Second, 5*time.Millisecond)
	weaken, _ := editStream(consumers.DefaultStream, func(c *jetstream.StreamConfig) { c.MaxMsgs = 1_000_000 })
	weaken(t, js)
	d.mend()
	require.Eventually(t, guardNC.IsConnected, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return !guard.Status().Open }, 15*cfg.Interval, 5*time.Millisecond,
		"the guard did not notice, within %d read-back intervals of its return, a weakening made while it was away", 15)
}
