package notify_test

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/notify"
)

// DeadLetters reads back what the notifier gave up on: none before its
// stream exists, then each record in order, skipping what does not decode.
func TestDeadLetters(t *testing.T) {
	e := writtest.Start(t, writtest.Options{}) // no notify section: no notifier, no stream
	ctx := t.Context()
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	got, err := notify.DeadLetters(ctx, js, "", writtest.Domain)
	require.NoError(t, err)
	assert.Empty(t, got, "no stream yet: nothing given up on")

	_, err = js.CreateStream(ctx, notify.DeadLetterStreamConfig(notify.DefaultDeadLetterStream, writtest.Domain, 1))
	require.NoError(t, err)
	put := func(id string, body []byte) uint64 {
		ack, err := js.Publish(ctx, notify.DeadLetterSubject(writtest.Domain, id), body)
		require.NoError(t, err)
		return ack.Sequence
	}
	letter := func(id string) []byte {
		b, err := json.Marshal(notify.DeadLetter{Version: notify.DeadLetterVersion, Domain: writtest.Domain, RequestID: id,
			EventKind: "granted", Target: "https://hooks.example/…#ab", Attempts: 6, LastError: "answered 502 Bad Gateway"})
		require.NoError(t, err)
		return b
	}
	first := put("r1", letter("r1"))
	put("r2", []byte("not json"))
	last := put("r3", letter("r3"))

	for _, domain := range []string{writtest.Domain, "*"} {
		got, err = notify.DeadLetters(ctx, js, notify.DefaultDeadLetterStream, domain)
		require.NoError(t, err)
		require.Len(t, got, 2, "the record that does not decode is left out")
		assert.Equal(t, []uint64{first, last}, []uint64{got[0].Seq, got[1].Seq})
		assert.Equal(t, "r1", got[0].RequestID)
		assert.Equal(t, 6, got[0].Attempts)
		assert.False(t, got[0].At.IsZero(), "when the stream stored it")
	}
	got, err = notify.DeadLetters(ctx, js, "", "beta")
	require.NoError(t, err)
	assert.Empty(t, got, "another domain's")
}
