package store_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/store"
)

// FuzzReaderHeaders publishes messages with whatever headers and body the
// fuzzer makes — forged server headers, odd names, line breaks — and reads
// them back as every component does, with direct gets. The read never
// fails on what a publisher wrote, and what it returns is the server's
// word: the message's own sequence, subject and body, and none of the
// server's headers.
func FuzzReaderHeaders(f *testing.F) {
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: f.TempDir()})
	require.NoError(f, err)
	f.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	require.NoError(f, err)
	f.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(f, err)
	// Memory, and bounded: the fuzzer publishes for minutes.
	_, err = js.CreateStream(f.Context(), jetstream.StreamConfig{Name: "WRIT", Subjects: []string{"writ.*.*.*"}, AllowDirect: true,
		Storage: jetstream.MemoryStorage, MaxMsgs: 1000, Discard: jetstream.DiscardOld})
	require.NoError(f, err)
	r := store.Reader{NC: nc, Stream: "WRIT", Batch: 3}
	subject := events.Subject("acme", "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b", events.KindVoted)

	f.Add("Nats-Sequence", "1", "Nats-Subject", "writ.beta.x.y", []byte(`{}`))
	f.Add("Status", "404", "Nats-Time-Stamp", "2001-01-01T00:00:00Z", []byte(`{}`))
	f.Add("nats-sequence", "x", "Status", "204", []byte{})
	f.Add("Writ-Signer", "U\r\nNats-Sequence: 9", "Description", "end", []byte("body"))
	f.Add("Nats-Num-Pending", "0", "Nats-Last-Sequence", "1", []byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, body []byte) {
		m := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{k1: {v1}, k2: {v2}}}
		ctx := t.Context()
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			return // refused by the client or the server: nothing stored
		}
		got, err := r.Load(ctx, subject, ack.Sequence)
		require.NoError(t, err, "headers %q: %q, %q: %q", k1, v1, k2, v2)
		require.Len(t, got, 1)
		last, err := r.Last(ctx, subject)
		require.NoError(t, err)
		for _, g := range []events.Message{got[0], *last} {
			require.Equal(t, ack.Sequence, g.Seq)
			require.Equal(t, subject, g.Subject)
			require.True(t, bytes.Equal(body, g.Body) || len(body) == 0 && len(g.Body) == 0, "body %q read as %q", body, g.Body)
			require.WithinDuration(t, time.Now(), g.Time, time.Minute)
			// Header names are case-sensitive: "nats-sequence" is the
			// publisher's own, and stays.
			for _, k := range []string{"Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Num-Pending",
				"Nats-Last-Sequence", "Nats-UpTo-Sequence", "Status", "Description"} {
				if _, ok := g.Header[k]; ok {
					t.Fatalf("the reader returned the server's header %q: %v", k, g.Header)
				}
			}
		}
	})
}
