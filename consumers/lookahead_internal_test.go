package consumers

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/internal/embedded"
)

// handled records, by message body, how often a consumer's handler took
// each message and its delivery count the last time.
type handled struct {
	mu        sync.Mutex
	times     map[string]int
	delivered map[string]uint64
}

func (r *handled) take(m jetstream.Msg) {
	md, _ := m.Metadata()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.times[string(m.Data())]++
	if md != nil {
		r.delivered[string(m.Data())] = md.NumDelivered
	}
}

func (r *handled) count(body string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.times[body]
}

// streamS is an embedded server holding a stream S (subjects s.>), a
// connection to it and its JetStream, all stopped at the end of the test.
func streamS(t *testing.T) (*embedded.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	require.NoError(t, err)
	return srv, nc, js
}

// lookaheadEnv is a stream S (subjects s.>) on an embedded server, and a
// consume loop over it with workers and h, stopped at the end of the test.
func lookaheadEnv(t *testing.T, workers int, cfg jetstream.ConsumerConfig, h handlerFunc) (jetstream.JetStream, func(i int)) {
	t.Helper()
	_, _, js := streamS(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- consume(ctx, js, nopObserver{}, Durable{Name: "d", Stream: "S"}, cfg, workers, nil, slog.New(slog.DiscardHandler), h)
	}()
	t.Cleanup(func() { cancel(); <-done })
	publish := func(i int) {
		_, err := js.Publish(t.Context(), "s.x", []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
	return js, publish
}

// While every worker is busy, the loop holds as many messages again, pulled
// ahead: a worker done with one finds the next in hand, without a pull's
// round trip (which, under sync_always, waits for the write being synced).
// Its pull subscription holds one more, waiting for room, and no more: a
// message the server has delivered is always one the loop holds.
func TestConsumePullsAheadOfBusyWorkers(t *testing.T) {
	const workers = 2
	rec := &handled{times: map[string]int{}, delivered: map[string]uint64{}}
	started := make(chan struct{}, 4*workers)
	release := make(chan struct{})
	js, publish := lookaheadEnv(t, workers, durableConfig("d", "s.>"), func(ctx context.Context, m jetstream.Msg) error {
		rec.take(m)
		started <- struct{}{}
		<-release
		return nil
	})
	// Run before the loop is stopped (cleanups run last first), so that a
	// failure below does not leave the workers waiting.
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	for i := range 4 * workers {
		publish(i)
	}
	for range workers {
		<-started // every worker busy
	}
	cons, err := js.Consumer(t.Context(), "S", "d")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumAckPending == 2*workers+1
	}, 5*time.Second, 10*time.Millisecond, "as many messages in the queue as there are workers, all of them busy, and one more held by the subscription")
	info, err := cons.Info(t.Context())
	require.NoError(t, err)
	assert.Equal(t, uint64(2*workers-1), info.NumPending, "and no more: the rest wait in the stream")
	assert.Empty(t, started, "no message handled beyond the workers")

	free()
	require.Eventually(t, func() bool {
		for i := range 4 * workers {
			if rec.count(strconv.Itoa(i)) != 1 {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "every message handled once")
}

// A message pulled ahead tells the server it is in progress while it waits
// for a worker: one that waits longer than the ack wait is not delivered
// again.
func TestPulledAheadIsNotRedelivered(t *testing.T) {
	cfg := durableConfig("d", "s.>")
	// Longer than a beat (progressEvery), shorter than the wait below.
	cfg.AckWait = progressEvery + time.Second
	hold := cfg.AckWait + 1500*time.Millisecond
	rec := &handled{times: map[string]int{}, delivered: map[string]uint64{}}
	busy := make(chan struct{})
	js, publish := lookaheadEnv(t, 1, cfg, func(ctx context.Context, m jetstream.Msg) error {
		rec.take(m)
		if string(m.Data()) == "0" {
			close(busy)
			// The only worker, busy past the ack wait of the message
			// pulled ahead of it.
			time.Sleep(hold)
		}
		return nil
	})
	publish(0)
	publish(1)
	<-busy
	cons, err := js.Consumer(t.Context(), "S", "d")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumAckPending == 2
	}, 5*time.Second, 10*time.Millisecond, "message 1 pulled ahead while message 0 is handled")
	require.Eventually(t, func() bool { return rec.count("1") == 1 }, 2*hold, 10*time.Millisecond)
	// The barrier: a redelivery of message 1 would come before message 2.
	publish(2)
	require.Eventually(t, func() bool { return rec.count("2") == 1 }, 5*time.Second, 10*time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Equal(t, map[string]int{"0": 1, "1": 1, "2": 1}, rec.times, "every message handled once")
	assert.Equal(t, map[string]uint64{"0": 1, "1": 1, "2": 1}, rec.delivered, "and delivered once")
}
