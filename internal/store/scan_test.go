package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
)

// fill publishes n messages alternately on writ.acme.a.requested and
// writ.acme.b.voted (body: the index), waiting for every ack.
func fill(t testing.TB, js jetstream.JetStream, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subjects := []string{"writ.acme.a.requested", "writ.acme.b.voted"}
	for i := range n {
		_, err := js.PublishAsync(subjects[i%2], []byte(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishing did not finish")
	}
}

// scan runs store.Scan and returns the sequences it was given, checking
// each message's subject against filter.
func scan(t testing.TB, js jetstream.JetStream, filter string, since time.Time) []uint64 {
	t.Helper()
	var seqs []uint64
	require.NoError(t, store.Scan(t.Context(), js, "WRIT", filter, since, func(m events.Message) error {
		require.True(t, store.Matches(filter, m.Subject), m.Subject)
		require.NotEmpty(t, m.Body)
		require.False(t, m.Time.IsZero())
		seqs = append(seqs, m.Seq)
		return nil
	}))
	return seqs
}

func seqRange(from, to, step uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s += step {
		out = append(out, s)
	}
	return out
}

// Scan reads every matching message once, oldest first, across many
// batches, from a start time, over deleted messages, and stops at the end
// the stream had when it began.
func TestScan(t *testing.T) {
	js, r := setup(t)
	ctx := t.Context()

	assert.Empty(t, scan(t, js, "writ.>", time.Time{}), "an empty stream")

	fill(t, js, 3000) // about 6 batches of 256 for each kind
	assert.Equal(t, seqRange(1, 3000, 1), scan(t, js, "writ.>", time.Time{}))
	assert.Equal(t, seqRange(1, 2999, 2), scan(t, js, "writ.*.*.requested", time.Time{}))
	assert.Equal(t, seqRange(2, 3000, 2), scan(t, js, "writ.acme.b.voted", time.Time{}))
	assert.Empty(t, scan(t, js, "writ.acme.*.granted", time.Time{}), "a filter that matches nothing")

	t.Run("since", func(t *testing.T) {
		all, err := r.Load(ctx, "writ.>", 1)
		require.NoError(t, err)
		for _, from := range []int{0, 1, 1234, 2999} {
			since := all[from].Time
			var want []uint64
			for _, m := range all {
				if !m.Time.Before(since) && store.Matches("writ.*.*.requested", m.Subject) {
					want = append(want, m.Seq)
				}
			}
			assert.Equal(t, want, scan(t, js, "writ.*.*.requested", since), "since message %d", from)
		}
		assert.Empty(t, scan(t, js, "writ.>", all[2999].Time.Add(time.Millisecond)), "since after the last message")
	})

	t.Run("gaps", func(t *testing.T) {
		s, err := js.Stream(ctx, "WRIT")
		require.NoError(t, err)
		deleted := map[uint64]bool{1: true, 2: true, 2999: true, 3000: true}
		for seq := uint64(700); seq < 1300; seq++ { // more than a batch in a row
			deleted[seq] = true
		}
		for seq := uint64(255); seq < 260; seq++ { // at a batch's edge
			deleted[seq] = true
		}
		for seq := range deleted {
			require.NoError(t, s.DeleteMsg(ctx, seq))
		}
		var want []uint64
		for seq := uint64(1); seq <= 3000; seq += 2 {
			if !deleted[seq] {
				want = append(want, seq)
			}
		}
		assert.Equal(t, want, scan(t, js, "writ.*.*.requested", time.Time{}), "the last matching message deleted too")
	})

	t.Run("up to where it began", func(t *testing.T) {
		var n int
		err := store.Scan(ctx, js, "WRIT", "writ.>", time.Time{}, func(m events.Message) error {
			if n++; n == 10 {
				_, err := js.Publish(ctx, "writ.acme.late.requested", []byte("late"))
				require.NoError(t, err)
			}
			assert.NotEqual(t, "writ.acme.late.requested", m.Subject)
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, 3000-2-2-600-5, n)
	})

	t.Run("fn's error ends it", func(t *testing.T) {
		stop := fmt.Errorf("enough")
		var n int
		err := store.Scan(ctx, js, "WRIT", "writ.>", time.Time{}, func(events.Message) error {
			if n++; n == 300 {
				return stop
			}
			return nil
		})
		assert.ErrorIs(t, err, stop)
		assert.Equal(t, 300, n)
	})

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		var n int
		err := store.Scan(cctx, js, "WRIT", "writ.>", time.Time{}, func(events.Message) error {
			if n++; n == 10 {
				cancel()
			}
			return nil
		})
		assert.ErrorIs(t, err, context.Canceled)
		assert.Less(t, n, 300, "at most the batch in hand")
	})
}

// A stream that does not exist is reported as jetstream.ErrStreamNotFound
// (what `writ audit deadletter` checks for), and one that does not allow
// direct gets says so: neither reads as an empty stream.
func TestScanWithoutAStreamToRead(t *testing.T) {
	js, _ := setup(t)
	err := store.Scan(t.Context(), js, "NOPE", ">", time.Time{}, func(events.Message) error { return nil })
	assert.ErrorIs(t, err, jetstream.ErrStreamNotFound)

	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "SHUT", Subjects: []string{"shut.>"}})
	require.NoError(t, err)
	_, err = js.Publish(t.Context(), "shut.x", []byte("x"))
	require.NoError(t, err)
	err = store.Scan(t.Context(), js, "SHUT", ">", time.Time{}, func(events.Message) error { return nil })
	assert.ErrorIs(t, err, store.ErrNoDirect)
}

// Replicas answer direct gets too, and one may be behind: an answer that
// ends before the scan's last message is asked for again, not taken for
// the end of the stream. A batch that ends early (the server's byte limit)
// with more pending is read on from where it ended.
func TestScanAsksAgainWhenAReplicaIsBehind(t *testing.T) {
	js, r := setup(t)
	fill(t, js, 600)
	// A responder in front of the stream: the first ask of each batch
	// after the first is answered as a replica that does not have those
	// messages yet would; the others get at most 100 messages.
	var asks, behind int
	seen := map[string]bool{}
	sub, err := r.NC.Subscribe("$LAG.API.DIRECT.GET.WRIT", func(m *nats.Msg) {
		asks++
		var get map[string]any
		if json.Unmarshal(m.Data, &get) != nil || get["batch"] == nil {
			_ = r.NC.PublishRequest("$JS.API.DIRECT.GET.WRIT", m.Reply, m.Data)
			return
		}
		if get["seq"] != 1.0 && !seen[string(m.Data)] {
			seen[string(m.Data)] = true
			behind++
			_ = r.NC.PublishMsg(&nats.Msg{Subject: m.Reply, Header: nats.Header{"Status": []string{"404"}}})
			return
		}
		get["batch"] = 100
		short, _ := json.Marshal(get)
		_ = r.NC.PublishRequest("$JS.API.DIRECT.GET.WRIT", m.Reply, short)
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	lagging, err := jetstream.NewWithAPIPrefix(r.NC, "$LAG.API")
	require.NoError(t, err)

	assert.Equal(t, seqRange(1, 600, 1), scan(t, lagging, "writ.>", time.Time{}))
	assert.Equal(t, 5, behind, "batches 2 to 6 of 100")
	assert.Equal(t, 1+1+5*2, asks, "the last message, the first batch, the five others twice")

	// A replica that stays behind ends the scan with an error, never with
	// a short read.
	never, err := r.NC.Subscribe("$BEHIND.API.DIRECT.GET.WRIT", func(m *nats.Msg) {
		if bytes.Contains(m.Data, []byte(`"batch"`)) {
			_ = r.NC.PublishMsg(&nats.Msg{Subject: m.Reply, Header: nats.Header{"Status": []string{"404"}}})
			return
		}
		_ = r.NC.PublishRequest("$JS.API.DIRECT.GET.WRIT", m.Reply, m.Data)
	})
	require.NoError(t, err)
	defer func() { _ = never.Unsubscribe() }()
	stuck, err := jetstream.NewWithAPIPrefix(r.NC, "$BEHIND.API")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err = store.Scan(ctx, stuck, "WRIT", "writ.>", time.Time{}, func(events.Message) error { return nil })
	assert.ErrorIs(t, err, store.ErrBehind)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// Scan needs no consumer: a user who may only read the stream by direct
// get (as principals will) scans it whole, and no consumer is left.
func TestScanCreatesNoConsumer(t *testing.T) {
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
		Users: []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: "reader", Password: "reader", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"$JS.API.DIRECT.GET.WRIT"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
			}},
		},
	})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	require.True(t, ns.ReadyForConnections(5*time.Second))
	connect := func(user string) (*nats.Conn, jetstream.JetStream) {
		nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(user, user), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		return nc, js
	}
	_, admin := connect("admin")
	s, err := admin.CreateStream(t.Context(), jetstream.StreamConfig{Name: "WRIT", Subjects: []string{"writ.*.*.*"}, AllowDirect: true})
	require.NoError(t, err)
	fill(t, admin, 2000)

	_, reader := connect("reader")
	// The barrier: the way Scan read before, a consumer, is refused.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err = reader.OrderedConsumer(ctx, "WRIT", jetstream.OrderedConsumerConfig{})
	require.Error(t, err, "the reader may not create a consumer")

	assert.Equal(t, seqRange(1, 2000, 1), scan(t, reader, "writ.>", time.Time{}))
	assert.Equal(t, seqRange(2, 2000, 2), scan(t, reader, "writ.*.*.voted", time.Time{}))
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	assert.Zero(t, info.State.Consumers)
}
