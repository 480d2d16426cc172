package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/store"
)

// serveWRIT is an embedded server holding a WRIT stream that allows direct
// gets, a connection to it and its JetStream, stopped at the end of t.
func serveWRIT(t testing.TB) (*embedded.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
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
	return srv, nc, js
}

func setup(t testing.TB) (jetstream.JetStream, store.Reader) {
	t.Helper()
	_, nc, js := serveWRIT(t)
	return js, store.Reader{NC: nc, Stream: "WRIT", Batch: 7}
}

func draft(id string, n int) events.Draft {
	return events.Draft{Domain: "acme", RequestID: id, Kind: events.KindRefused, Ordinal: fmt.Sprint(n),
		Source: "writ://acme/test", Time: time.Now(), Data: map[string]int{"n": n}}
}

func TestAppendAndLoad(t *testing.T) {
	js, r := setup(t)
	kp, _ := nkeys.CreateServer()
	id, other := uuid.NewString(), uuid.NewString()
	var last uint64
	for n := range 20 { // more than one batch of 7
		out, err := events.Seal(draft(id, n), kp)
		require.NoError(t, err)
		last, err = store.Append(t.Context(), js, "WRIT", out, last, events.RequestFilter("acme", id))
		require.NoError(t, err)
		// Noise on another request: not part of id's history.
		noise, _ := events.Seal(draft(other, n), kp)
		_, err = js.Publish(t.Context(), noise.Subject, noise.Body)
		require.NoError(t, err)
	}
	msgs, err := r.Load(t.Context(), events.RequestFilter("acme", id), 1)
	require.NoError(t, err)
	require.Len(t, msgs, 20)
	for i, m := range msgs {
		assert.Equal(t, events.Subject("acme", id, events.KindRefused), m.Subject)
		assert.Contains(t, string(m.Body), fmt.Sprintf(`"n":%d`, i))
		assert.NotEmpty(t, m.Header[events.HeaderSignature])
		assert.False(t, m.Time.IsZero())
		if i > 0 {
			assert.Greater(t, m.Seq, msgs[i-1].Seq)
		}
	}
	none, err := r.Load(t.Context(), events.RequestFilter("acme", uuid.NewString()), 1)
	require.NoError(t, err)
	assert.Empty(t, none)
}

func TestAppendDetectsAConcurrentWriter(t *testing.T) {
	js, r := setup(t)
	kp, _ := nkeys.CreateServer()
	id := uuid.NewString()
	filter := events.RequestFilter("acme", id)
	first, _ := events.Seal(draft(id, 1), kp)
	seq, err := store.Append(t.Context(), js, "WRIT", first, 0, filter)
	require.NoError(t, err)

	// A second writer that read the history before the first append.
	second, _ := events.Seal(draft(id, 2), kp)
	_, err = store.Append(t.Context(), js, "WRIT", second, 0, filter)
	assert.True(t, store.IsConflict(err), "got %v", err)

	// A retry of the first append (its ack lost, say) is a conflict too:
	// the server checks the expected sequence before the message id, and
	// the writer re-reads and finds its effect there.
	_, err = store.Append(t.Context(), js, "WRIT", first, 0, filter)
	assert.True(t, store.IsConflict(err), "got %v", err)
	msgs, err := r.Load(t.Context(), filter, 1)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Equal(t, seq, msgs[0].Seq)
}

func TestLoadFromAMissingStream(t *testing.T) {
	_, r := setup(t)
	r.Stream = "NOPE"
	_, err := r.Load(t.Context(), "writ.>", 1)
	assert.ErrorIs(t, err, store.ErrNoStream)
}

// A publisher can store headers named like the ones the server adds on a
// direct get; the reader must believe only the server's.
func TestLoadIgnoresForgedServerHeaders(t *testing.T) {
	js, r := setup(t)
	kp, _ := nkeys.CreateServer()
	id := uuid.NewString()
	filter := events.RequestFilter("acme", id)
	first, _ := events.Seal(draft(id, 1), kp)
	_, err := store.Append(t.Context(), js, "WRIT", first, 0, filter)
	require.NoError(t, err)

	forged := nats.NewMsg(events.Subject("acme", id, events.KindRefused))
	forged.Data = []byte(`{}`)
	forged.Header.Set("Nats-Subject", "writ.beta."+id+".evaluated")
	forged.Header.Set("Nats-Sequence", "1")
	forged.Header.Set("Nats-Time-Stamp", "2001-01-01T00:00:00Z")
	forged.Header.Set("Status", "404")
	ack, err := js.PublishMsg(t.Context(), forged)
	require.NoError(t, err)
	second, _ := events.Seal(draft(id, 2), kp)
	_, err = store.Append(t.Context(), js, "WRIT", second, ack.Sequence, filter)
	require.NoError(t, err)

	msgs, err := r.Load(t.Context(), filter, 1)
	require.NoError(t, err)
	require.Len(t, msgs, 3, "a forged Status must not end the read")
	m := msgs[1]
	assert.Equal(t, ack.Sequence, m.Seq)
	assert.Equal(t, events.Subject("acme", id, events.KindRefused), m.Subject)
	assert.WithinDuration(t, time.Now(), m.Time, time.Minute)
	for _, k := range []string{"Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Status"} {
		assert.NotContains(t, m.Header, k)
	}
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		filter, subject string
		want            bool
	}{
		{"writ.acme.x.>", "writ.acme.x.requested", true},
		{"writ.acme.x.>", "writ.acme.x", false},
		{"writ.acme.x.>", "writ.beta.x.requested", false},
		{"writ.*.x.requested", "writ.beta.x.requested", true},
		{"writ.*.x.requested", "writ.beta.x.voted", false},
		{"writ.*.x.requested", "writ.beta.x.requested.more", false},
		{"writ.*.*.*", "writ..x.y", false},
	} {
		assert.Equal(t, tc.want, store.Matches(tc.filter, tc.subject), "%s ~ %s", tc.filter, tc.subject)
	}
}

// ScanAll reads every message once, in order, across batches and over
// deleted messages, and stops at the end the stream had when it began.
func TestScanAll(t *testing.T) {
	js, r := setup(t)
	for i := 0; i < 40; i++ {
		_, err := js.Publish(t.Context(), fmt.Sprintf("writ.acme.x%d.requested", i), []byte("{}"))
		require.NoError(t, err)
	}
	s, err := js.Stream(t.Context(), "WRIT")
	require.NoError(t, err)
	for _, seq := range []uint64{3, 20, 21, 39} {
		require.NoError(t, s.DeleteMsg(t.Context(), seq))
	}
	var seqs []uint64
	require.NoError(t, r.ScanAll(t.Context(), 1, func(m events.Message) error {
		seqs = append(seqs, m.Seq)
		if m.Seq == 10 {
			_, err := js.Publish(t.Context(), "writ.acme.late.requested", []byte("{}"))
			require.NoError(t, err)
		}
		return nil
	}))
	require.Len(t, seqs, 36, "40 less 4 deleted; not the one published during the scan")
	assert.Equal(t, uint64(40), seqs[len(seqs)-1])
	assert.True(t, slices.IsSorted(seqs))
}

// A read whose answer never comes (the replica that took it went down) is
// asked for again after the reader's patience, not waited on until the
// caller gives up.
func TestLoadAsksAgainWhenTheAnswerIsLost(t *testing.T) {
	js, r := setup(t)
	kp, _ := nkeys.CreateServer()
	id := uuid.NewString()
	var last uint64
	for n := range 10 {
		out, err := events.Seal(draft(id, n), kp)
		require.NoError(t, err)
		last, err = store.Append(t.Context(), js, "WRIT", out, last, events.RequestFilter("acme", id))
		require.NoError(t, err)
	}
	// A responder in front of the stream that loses the first ask.
	var asks atomic.Int32
	sub, err := r.NC.Subscribe("$LOSSY.API.DIRECT.GET.WRIT", func(m *nats.Msg) {
		if asks.Add(1) == 1 {
			return
		}
		_ = r.NC.PublishRequest("$JS.API.DIRECT.GET.WRIT", m.Reply, m.Data)
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	r.APIPrefix, r.Patience = "$LOSSY.API", 200*time.Millisecond

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	msgs, err := r.Load(ctx, events.RequestFilter("acme", id), 1)
	require.NoError(t, err)
	assert.Len(t, msgs, 10)
	assert.EqualValues(t, 3, asks.Load(), "the lost ask again, then the second batch of 7")

	// Nobody answering at all is still bounded by the caller.
	r.APIPrefix = "$SILENT.API"
	silent, err := r.NC.Subscribe("$SILENT.API.DIRECT.GET.WRIT", func(*nats.Msg) {})
	require.NoError(t, err)
	defer func() { _ = silent.Unsubscribe() }()
	ctx, cancel = context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	_, err = r.Load(ctx, events.RequestFilter("acme", id), 1)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// LoadReaching reads again while the history ends before the sequence
// asked for (a lagging replica's answer), and says so when it stays behind.
func TestLoadReaching(t *testing.T) {
	js, r := setup(t)
	kp, _ := nkeys.CreateServer()
	id := uuid.NewString()
	filter := events.RequestFilter("acme", id)
	var last uint64
	add := func(n int) {
		out, err := events.Seal(draft(id, n), kp)
		require.NoError(t, err)
		last, err = store.Append(t.Context(), js, "WRIT", out, last, filter)
		require.NoError(t, err)
	}
	for n := range 3 {
		add(n)
	}

	msgs, err := r.LoadReaching(t.Context(), filter, last, time.Second)
	require.NoError(t, err)
	assert.Len(t, msgs, 3, "already there")

	none, err := r.LoadReaching(t.Context(), events.RequestFilter("acme", uuid.NewString()), 0, time.Second)
	require.NoError(t, err)
	assert.Empty(t, none, "floor 0: no message is an answer")

	_, err = r.LoadReaching(t.Context(), filter, last+1, 50*time.Millisecond)
	assert.ErrorIs(t, err, store.ErrBehind)

	// The message arrives while it reads again.
	want := last + 1
	go func() {
		time.Sleep(30 * time.Millisecond)
		add(3)
	}()
	msgs, err = r.LoadReaching(t.Context(), filter, want, 5*time.Second)
	require.NoError(t, err)
	require.Len(t, msgs, 4)
	assert.Equal(t, want, msgs[3].Seq)

	// Without a bound of its own, it reads until ctx ends, and says what
	// it waited for (not the read that ctx's end cut short).
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err = r.LoadReaching(ctx, filter, want+1, 0)
	assert.ErrorIs(t, err, store.ErrBehind)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}
