package consumers

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// shutGate is a gate that stays shut.
type shutGate struct{ never chan struct{} }

func (g shutGate) Open() <-chan struct{} { return g.never }

// A loop waiting at a shut gate makes its consumer again when it is
// deleted meanwhile: the guard that shuts the issuer's gate on such a
// deletion opens only once the consumer is there again, and a loop that
// held every message it had pulled when its consumer went had no pull
// left to tell it so (the guard and the issuer then waited for each other
// for good).
func TestGatedLoopMakesItsDeletedConsumerAgain(t *testing.T) {
	_, _, js := streamS(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- consume(ctx, js, nopObserver{}, Durable{Name: "d", Stream: "S"}, durableConfig("d", "s.>"), 1, shutGate{make(chan struct{})}, slog.New(slog.DiscardHandler),
			func(context.Context, jetstream.Msg) error { return nil })
	}()
	t.Cleanup(func() { cancel(); <-done })
	exists := func() bool {
		_, err := js.Consumer(t.Context(), "S", "d")
		return err == nil
	}
	require.Eventually(t, exists, 5*time.Second, 10*time.Millisecond, "the loop makes its consumer, then waits at the gate")
	require.NoError(t, js.DeleteConsumer(t.Context(), "S", "d"))
	require.Eventually(t, exists, 5*time.Second, 10*time.Millisecond, "made again, the gate still shut")
}
