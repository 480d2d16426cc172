package store_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
)

// Reads share one reply subscription per connection: a read adds and
// drops no interest on the server (which a federation's hub would pass to
// every spoke), found or not, single or batched, concurrent or not.
func TestReadsAddNoSubscriptions(t *testing.T) {
	srv, nc, js := serveWRIT(t)
	r := store.Reader{NC: nc, Stream: "WRIT", Batch: 3}
	kp, _ := nkeys.CreateServer()
	id := uuid.NewString()
	var last uint64
	for n := range 10 {
		out, err := events.Seal(draft(id, n), kp)
		require.NoError(t, err)
		last, err = store.Append(t.Context(), js, "WRIT", out, last, events.RequestFilter("acme", id))
		require.NoError(t, err)
	}
	read := func() { // from several goroutines: assert, not require
		msgs, err := r.Load(t.Context(), events.RequestFilter("acme", id), 1)
		assert.NoError(t, err)
		assert.Len(t, msgs, 10)
		_, err = r.Last(t.Context(), events.Subject("acme", id, events.KindRefused))
		assert.NoError(t, err)
		none, err := r.Load(t.Context(), events.RequestFilter("acme", uuid.NewString()), 1)
		assert.NoError(t, err)
		assert.Empty(t, none)
	}
	read() // the connection's reply subscription is made here
	before, err := srv.Subsz()
	require.NoError(t, err)
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 5 {
				read()
			}
		}()
	}
	for range 4 {
		<-done
	}
	after, err := srv.Subsz()
	require.NoError(t, err)
	require.Zero(t, after.NumInserts-before.NumInserts, "subscriptions made by reads")
	require.Zero(t, after.NumRemoves-before.NumRemoves, "subscriptions dropped by reads")
}
