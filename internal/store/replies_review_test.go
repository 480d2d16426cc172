package store_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
)

// A read's reply subject must not be derivable from an earlier one: a
// party that sees one read's reply subject (a spoke sees those of every
// read of its own stream, and may publish into any domain's inbox) must not
// be able to answer the connection's later reads first.
func TestReviewReplySubjectsAreNotPredictable(t *testing.T) {
	srv, nc, _ := serveWRIT(t)
	spy, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(spy.Close)
	seen := make(chan string, 16)
	sub, err := spy.Subscribe("$JS.API.DIRECT.GET.WRIT", func(m *nats.Msg) { seen <- m.Reply })
	require.NoError(t, err)
	require.NoError(t, spy.Flush())
	r := store.Reader{NC: nc, Stream: "WRIT"}
	_, err = r.Last(t.Context(), events.Subject("acme", uuid.NewString(), events.KindRefused))
	require.NoError(t, err)
	first := <-seen
	_, err = r.Last(t.Context(), events.Subject("acme", uuid.NewString(), events.KindRefused))
	require.NoError(t, err)
	second := <-seen
	_ = sub.Unsubscribe()
	i := strings.LastIndexByte(first, '.')
	token := second[strings.LastIndexByte(second, '.')+1:]
	assert.GreaterOrEqual(t, len(token), 16, "a reply token long enough not to be guessed: %q", token)
	if n, err := strconv.ParseUint(first[i+1:], 36, 64); err == nil {
		assert.NotEqual(t, first[:i+1]+strconv.FormatUint(n+1, 36), second, "the next read's reply subject follows from the last one's")
	}
}

// The consequence: having seen one read's reply subject, a party that may
// publish into the connection's inbox answers the later reads first with
// "nothing matches", and the reader believes it.
func TestReviewForgedAnswerToAPredictedRead(t *testing.T) {
	srv, nc, js := serveWRIT(t)
	spy, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(spy.Close)
	kp, _ := nkeys.CreateServer()
	id := uuid.NewString()
	var last uint64
	for n := range 5 {
		out, err := events.Seal(draft(id, n), kp)
		require.NoError(t, err)
		last, err = store.Append(t.Context(), js, "WRIT", out, last, events.RequestFilter("acme", id))
		require.NoError(t, err)
	}
	// The spy sees one read (as a spoke sees a read of its own stream).
	seen := make(chan string, 16)
	sub, err := spy.Subscribe("$JS.API.DIRECT.GET.WRIT", func(m *nats.Msg) { seen <- m.Reply })
	require.NoError(t, err)
	require.NoError(t, spy.Flush())
	r := store.Reader{NC: nc, Stream: "WRIT", Batch: 10}
	_, err = r.Last(t.Context(), events.Subject("acme", uuid.NewString(), events.KindRefused))
	require.NoError(t, err)
	reply := <-seen
	require.NoError(t, sub.Unsubscribe()) // from now on it sees no request
	i := strings.LastIndexByte(reply, '.')
	base := reply[:i+1]
	// A count is guessed from the last one; anything else, from 0.
	n, _ := strconv.ParseUint(reply[i+1:], 36, 64)
	var stop atomic.Bool
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	go func() {
		forged := nats.NewMsg("")
		forged.Header.Set("Status", "404")
		for k := 0; !stop.Load() && ctx.Err() == nil; k++ {
			// Flood the next few tokens: reads to come.
			for j := uint64(1); j <= 64; j++ {
				forged.Subject = base + strconv.FormatUint(n+j, 36)
				_ = spy.PublishMsg(forged)
			}
		}
	}()
	fooled := 0
	const rounds = 20
	for range rounds {
		msgs, err := r.Load(ctx, events.RequestFilter("acme", id), 1)
		require.NoError(t, err)
		if len(msgs) != 5 {
			fooled++
		}
	}
	stop.Store(true)
	assert.Zero(t, fooled, "reads of %d made to find no history by a forged answer", rounds)
}
