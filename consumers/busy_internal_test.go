package consumers

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/internal/embedded"
)

// Messages that arrive while every worker has been busy for seconds are
// delivered once, as soon as a worker is free. (A consumer that buffered
// deliveries ahead of its workers in a fixed-size client buffer let idle
// heartbeats fill it while they were busy; the client then dropped the
// next deliveries, which came back only after the ack wait, delivered
// twice.)
func TestBusyWorkersLoseNoDelivery(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	var slow atomic.Int64
	nc, err := srv.Connect(nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			slow.Add(1)
		}
	}))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := t.Context()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	require.NoError(t, err)

	const n = 10
	var mu sync.Mutex
	delivered := map[string]uint64{} // by message, its last delivery count
	release := make(chan struct{})
	h := func(ctx context.Context, m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		mu.Lock()
		delivered[string(m.Data())] = md.NumDelivered
		mu.Unlock()
		if string(m.Data()) == "0" {
			<-release // the only worker, busy
		}
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- consume(cctx, js, nopObserver{}, Durable{Name: "d", Stream: "S"}, durableConfig("d", "s.>"), 1, nil, slog.New(slog.DiscardHandler), h)
	}()
	defer func() { cancel(); <-done }()
	publish := func(i int) {
		_, err := js.Publish(ctx, "s.x", []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
	publish(0)
	publish(1)
	time.Sleep(3500 * time.Millisecond) // busy for several heartbeats
	for i := 2; i < n; i++ {
		publish(i)
	}
	close(release)
	released := time.Now()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) == n
	}, 2*AckWait, 10*time.Millisecond, "every message handled")
	took := time.Since(released)
	mu.Lock()
	defer mu.Unlock()
	for msg, times := range delivered {
		assert.Equal(t, uint64(1), times, "message %s delivered once", msg)
	}
	assert.Less(t, took, AckWait, "handled without waiting out an ack wait")
	assert.Zero(t, slow.Load(), "no delivery dropped by the client")
	t.Logf("all %d handled %s after the worker was free", n, took.Round(time.Millisecond))
}
