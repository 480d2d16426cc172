package consumers

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// An idle consumer loop keeps one subscription for its life: it neither
// subscribes nor unsubscribes while nothing comes. Interest that comes and
// goes crosses every leafnode link (a pull with a fresh reply inbox each
// second, in every loop of every domain, was what a federation's hub and
// each of its spokes spent their idle time on). The message published
// after the idle window is the barrier: the loop was pulling all along.
func TestIdleLoopKeepsItsSubscription(t *testing.T) {
	srv, _, js := streamS(t)
	got := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- consume(ctx, js, nopObserver{}, Durable{Name: "d", Stream: "S"}, durableConfig("d", "s.>"), 4, nil, slog.New(slog.DiscardHandler),
			func(_ context.Context, m jetstream.Msg) error { got <- string(m.Data()); return nil })
	}()
	t.Cleanup(func() { cancel(); <-done })

	// Settled: the loop has made its consumer and handled a first message.
	_, err := js.Publish(t.Context(), "s.x", []byte("first"))
	require.NoError(t, err)
	require.Equal(t, "first", <-got)
	before, err := srv.Subsz()
	require.NoError(t, err)
	time.Sleep(3 * time.Second) // the idle window measured, three of the old loop's pulls
	_, err = js.Publish(t.Context(), "s.x", []byte("after"))
	require.NoError(t, err)
	select {
	case body := <-got:
		require.Equal(t, "after", body)
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not take a message published after the idle window")
	}
	after, err := srv.Subsz()
	require.NoError(t, err)
	require.Zero(t, after.NumInserts-before.NumInserts, "subscriptions made while idle")
	require.Zero(t, after.NumRemoves-before.NumRemoves, "subscriptions dropped while idle")
}
