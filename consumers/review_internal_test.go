package consumers

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// With more than one worker, every worker busy past the ack wait, no
// message is delivered twice: what the loop has been delivered it holds
// (in-progress beats), none waits unheld in the client library behind a
// full queue, as a pull of the workers' count had them wait.
func TestReviewPulledBeyondTheQueueIsNotRedelivered(t *testing.T) {
	const workers = 2
	cfg := durableConfig("d", "s.>")
	cfg.AckWait = progressEvery + time.Second
	hold := cfg.AckWait + 1500*time.Millisecond
	rec := &handled{times: map[string]int{}, delivered: map[string]uint64{}}
	busy := make(chan struct{}, workers)
	_, publish := lookaheadEnv(t, workers, cfg, func(ctx context.Context, m jetstream.Msg) error {
		rec.take(m)
		if s := string(m.Data()); s == "0" || s == "1" {
			busy <- struct{}{}
			time.Sleep(hold) // both workers busy past the ack wait
		}
		return nil
	})
	const n = 3 * workers
	for i := range n {
		publish(i)
	}
	<-busy
	<-busy
	require.Eventually(t, func() bool {
		for i := range n {
			if rec.count(string(rune('0'+i))) == 0 {
				return false
			}
		}
		return true
	}, 4*hold, 10*time.Millisecond)
	publish(n) // the barrier: a redelivery comes before it is handled
	require.Eventually(t, func() bool { return rec.count(string(rune('0'+n))) == 1 }, 5*time.Second, 10*time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := range n + 1 {
		k := string(rune('0' + i))
		assert.Equal(t, 1, rec.times[k], "message %s handled", k)
		assert.Equal(t, uint64(1), rec.delivered[k], "message %s delivered", k)
	}
}
