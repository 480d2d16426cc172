package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
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

// waits is a store.Waiter that records what it was told.
type waits struct {
	mu       sync.Mutex
	reasons  []string
	answered int
	heard    chan struct{} // closed at the first wait
}

func newWaits() *waits { return &waits{heard: make(chan struct{})} }

func (w *waits) Waiting(reason string) func() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.reasons) == 0 {
		close(w.heard)
	}
	w.reasons = append(w.reasons, reason)
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.answered++
	}
}

func (w *waits) seen() ([]string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.reasons...), w.answered
}

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nats.ErrNoResponders, true},
		{fmt.Errorf("store: stream WRIT: %w", nats.ErrNoResponders), true},
		{nats.ErrTimeout, true},
		{context.DeadlineExceeded, true},
		{jetstream.ErrNoStreamResponse, true},
		{nats.ErrConnectionReconnecting, true},
		{store.ErrBehind, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 500, ErrorCode: 10118, Description: "stream is offline"}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10163, Description: "expected last sequence per subject temporarily unavailable"}, true},

		{nil, false},
		{context.Canceled, false},
		{nats.ErrConnectionClosed, false},
		{jetstream.ErrStreamNotFound, false},
		{jetstream.ErrJetStreamNotEnabled, false},
		{store.ErrConflict, false},
		{store.ErrNoStream, false},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, false},
		{fmt.Errorf("%w: %w", store.ErrGaveUp, nats.ErrNoResponders), false}, // one bound for nested retries
		{errors.New("nats: permissions violation"), false},
	} {
		assert.Equal(t, tc.want, store.Transient(tc.err), "%v", tc.err)
	}
}

// A stream whose only server is restarting: nobody answers its direct
// gets, and no publish reaches it. Reads and appends wait for it under
// the retry rule — longer than the 1.5 s a read used to allow — say that
// they wait, and go on when it is back; bounded by the caller, they give
// up with ErrGaveUp and the caller's deadline.
func TestRetryWaitsForAStreamWhoseServerRestarts(t *testing.T) {
	dir := t.TempDir()
	opts, err := embedded.LoopbackCluster("retry", "n", 3, func(name string) string { return filepath.Join(dir, name) })
	require.NoError(t, err)
	nodes := make([]*embedded.Server, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Go(func() { nodes[i], errs[i] = embedded.Start(opts[i]) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	t.Cleanup(func() {
		for _, n := range nodes {
			if n != nil {
				n.Shutdown()
			}
		}
	})
	nc, err := nats.Connect(nodes[1].ClientURL(), nats.MaxReconnects(-1))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	// One replica, on node 0 (the reader is on node 1).
	var s jetstream.Stream
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "WRIT", Subjects: []string{"writ.*.*.*"}, AllowDirect: true})
		return err == nil
	}, time.Minute, 100*time.Millisecond, "the stream: %v", err)
	home := s.CachedInfo().Cluster.Leader
	host := -1
	for i, n := range nodes {
		if n.Name() == home {
			host = i
		}
	}
	require.GreaterOrEqual(t, host, 0)
	if host == 1 {
		// The reader must not be on the server that goes down.
		nc.Close()
		nc, err = nats.Connect(nodes[2].ClientURL(), nats.MaxReconnects(-1))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err = jetstream.New(nc)
		require.NoError(t, err)
	}
	kp, _ := nkeys.CreateServer()
	id := uuid.NewString()
	filter := events.RequestFilter("acme", id)
	seal := func(n int) events.Outgoing {
		out, err := events.Seal(draft(id, n), kp)
		require.NoError(t, err)
		return out
	}
	last, err := store.Append(t.Context(), js, "WRIT", seal(0), 0, filter)
	require.NoError(t, err)
	r := store.Reader{NC: nc, Stream: "WRIT"}

	nodes[host].Shutdown()
	nodes[host] = nil

	// Bounded by the caller: gives up, and says why. (A get routed to the
	// server going down, before its cluster knows, gets no answer: the
	// reader's patience is short here, so that it fails within the bound.)
	w := newWaits()
	ctx, cancel := context.WithTimeout(store.WithWaiter(t.Context(), w), time.Second)
	impatient := r
	impatient.Patience = 200 * time.Millisecond
	_, err = impatient.Load(ctx, filter, 1)
	cancel()
	require.ErrorIs(t, err, store.ErrGaveUp)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, store.ErrNoStream, "the stream exists: nobody answers for it for now")
	reasons, answered := w.seen()
	require.Len(t, reasons, 1)
	assert.Contains(t, []string{"stream leader election", "an answer from the stream"}, reasons[0])
	assert.Equal(t, 1, answered)

	// Waiting through the restart: a read, a scan and an append started
	// while it is down finish once it is back.
	w = newWaits()
	ctx = store.WithWaiter(t.Context(), w)
	type result struct {
		msgs []events.Message
		seq  uint64
		err  error
	}
	load, scan, appended := make(chan result, 1), make(chan result, 1), make(chan result, 1)
	go func() {
		msgs, err := r.Load(ctx, filter, 1)
		load <- result{msgs: msgs, err: err}
	}()
	go func() {
		var msgs []events.Message
		err := store.Scan(ctx, js, "WRIT", "writ.>", time.Time{}, func(m events.Message) error {
			msgs = append(msgs, m)
			return nil
		})
		scan <- result{msgs: msgs, err: err}
	}()
	go func() {
		seq, err := store.Append(ctx, js, "WRIT", seal(1), last, filter)
		appended <- result{seq: seq, err: err}
	}()
	select {
	case <-w.heard:
	case <-time.After(10 * time.Second):
		t.Fatal("no operation said it waits")
	}
	// Down for longer than the reads used to wait for a stream nobody
	// answers for (1.5 s), then back.
	time.Sleep(2500 * time.Millisecond)
	select {
	case res := <-load:
		t.Fatalf("the read ended while the stream's server was down: %v", res.err)
	case res := <-scan:
		t.Fatalf("the scan ended while the stream's server was down: %v", res.err)
	default:
	}
	nodes[host], err = embedded.Start(opts[host])
	require.NoError(t, err)

	for name, ch := range map[string]chan result{"load": load, "scan": scan, "append": appended} {
		select {
		case res := <-ch:
			require.NoError(t, res.err, name)
			if name == "append" {
				assert.Greater(t, res.seq, last, name)
			} else {
				assert.NotEmpty(t, res.msgs, name)
			}
		case <-time.After(store.Patience):
			t.Fatalf("%s did not finish after the stream's server came back", name)
		}
	}
	reasons, answered = w.seen()
	assert.NotEmpty(t, reasons)
	assert.Equal(t, len(reasons), answered, "every wait ended")
}

// A read of a stream that does not exist, or an append no stream takes,
// is not waited on: the JetStream API says so at once.
func TestRetryDoesNotWaitForAMissingStream(t *testing.T) {
	js, r := setup(t)
	r.Stream = "NOPE"
	t0 := time.Now()
	_, err := r.Load(t.Context(), "writ.>", 1)
	require.ErrorIs(t, err, store.ErrNoStream)
	assert.Less(t, time.Since(t0), time.Second)

	// A server with no stream at all.
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err = jetstream.New(nc)
	require.NoError(t, err)
	kp, _ := nkeys.CreateServer()
	out, err := events.Seal(events.Draft{Domain: "nope", RequestID: uuid.NewString(), Kind: events.KindRefused,
		Source: "writ://nope/test", Time: time.Now(), Data: map[string]int{"n": 1}}, kp)
	require.NoError(t, err)
	t0 = time.Now()
	_, err = store.Append(t.Context(), js, "NOPE", out, 0, out.Subject)
	require.ErrorIs(t, err, store.ErrNoStream, "no stream takes %s", out.Subject)
	assert.False(t, store.IsUnknownOutcome(err), "nothing could have stored it")
	assert.Less(t, time.Since(t0), time.Second)
}

// When ctx ends during an attempt, the error says what the attempts were
// waiting for, not only that the last one was cut short.
func TestRetrySaysWhatItWaitedForWhenCtxEndsMidAttempt(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	n := 0
	err := store.Retry(ctx, func(ctx context.Context) error {
		n++
		if n == 1 {
			return store.ErrBehind
		}
		<-ctx.Done() // the next attempt is still running when ctx ends
		return fmt.Errorf("read: %w", ctx.Err())
	})
	assert.ErrorIs(t, err, store.ErrGaveUp)
	assert.ErrorIs(t, err, store.ErrBehind, "what it waited for")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}
