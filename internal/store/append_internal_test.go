package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/embedded"
)

// A retry after a publish whose outcome was unknown finds the history
// moved on: by this very message (stored, only its acknowledgement lost),
// which is success with its sequence, or by another, which is a conflict.
func TestRetryAfterAnUnknownOutcome(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "WRIT", Subjects: []string{"writ.*.*.*"}, AllowDirect: true})
	require.NoError(t, err)
	kp, _ := nkeys.CreateServer()
	id := uuid.NewString()
	seal := func(n int) events.Outgoing {
		out, err := events.Seal(events.Draft{Domain: "acme", RequestID: id, Kind: events.KindRefused, Ordinal: fmt.Sprint(n),
			Source: "writ://acme/test", Time: time.Now(), Data: map[string]int{"n": n}}, kp)
		require.NoError(t, err)
		return out
	}
	filter := events.RequestFilter("acme", id)
	first := seal(1)
	seq, err := publish(t.Context(), js, "WRIT", first, 0, filter, false)
	require.NoError(t, err)

	// The acknowledgement was lost: the retry sends the same message.
	again, err := publish(t.Context(), js, "WRIT", first, 0, filter, true)
	require.NoError(t, err)
	require.Equal(t, seq, again)
	// A first attempt that conflicts is a conflict.
	_, err = publish(t.Context(), js, "WRIT", first, 0, filter, false)
	require.ErrorIs(t, err, ErrConflict)
	// Another writer's message moved the history on: a conflict, retry or not.
	_, err = publish(t.Context(), js, "WRIT", seal(2), 0, filter, true)
	require.ErrorIs(t, err, ErrConflict)
	require.False(t, unknownOutcome(ErrConflict))
}
