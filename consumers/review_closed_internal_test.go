package consumers

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// The connection closes while the queue is full and the Consume callback
// waits for a credit. pullWhileOpen returns (cc.Closed() is closed as
// soon as the subscription is invalid, not when the callback returns), and
// the callback is left behind. When the loop then stops, consume closes
// q.ready, and the callback, given a credit by the last worker, sends on
// the closed channel: the process panics.
func TestReviewConnectionClosedWhileTheQueueIsFull(t *testing.T) {
	_, nc, js := streamS(t)
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- consume(ctx, js, nopObserver{}, Durable{Name: "d", Stream: "S"}, durableConfig("d", "s.>"), 1, nil, slog.New(slog.DiscardHandler),
			func(context.Context, jetstream.Msg) error { started <- struct{}{}; <-release; return nil })
	}()
	for i := range 4 {
		_, err := js.Publish(t.Context(), "s.x", []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
	<-started
	cons, err := js.Consumer(t.Context(), "S", "d")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumAckPending == 3 // handled, queued, and one in the callback
	}, 5*time.Second, 10*time.Millisecond)
	nc.Close()
	time.Sleep(500 * time.Millisecond) // the loop sees the subscription closed
	cancel()
	time.Sleep(500 * time.Millisecond) // consume closes q.ready
	close(release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("consume did not return")
	}
	time.Sleep(200 * time.Millisecond)
}
