package trailkv_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
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
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/trailkv"
	"github.com/writ-dev/writ/internal/writtest"
)

// word is what the test's index keeps: a locked event's target, locked
// or not.
type word struct{ locked bool }

func fold(r events.Record) (string, word, bool) {
	d, ok := r.Data.(*events.Locked)
	if !ok {
		return "", word{}, false
	}
	return strings.ReplaceAll(d.Target.Name, "/", "."), word{locked: !d.Unlock}, true
}

type fixture struct {
	t   *testing.T
	e   *writtest.Env
	js  jetstream.JetStream
	idx *trailkv.Index[word]
}

func newFixture(t *testing.T) *fixture {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	checker := events.Checker{Bundle: e.Runtime.Bundle}
	idx := trailkv.NewIndex(store.Reader{NC: e.NC, Stream: "WRIT"}, checker, events.KindLocked, fold)
	return &fixture{t: t, e: e, js: js, idx: idx}
}

// locked appends a locked event about name, signed by key, under id (a
// new one when ""), and returns its stream sequence.
func (f *fixture) locked(key nkeys.KeyPair, id, name string, unlock bool) uint64 {
	f.t.Helper()
	if id == "" {
		id = uuid.Must(uuid.NewV7()).String()
	}
	out, err := events.Seal(events.Draft{
		Domain: writtest.Domain, RequestID: id, Kind: events.KindLocked, Source: "writ://acme/approval", Time: time.Now(),
		Data: &events.Locked{By: events.PrincipalRef{Domain: "acme", Name: "alice"},
			Target: events.LockTarget{Type: events.LockPrincipal, Name: name}, Unlock: unlock, Reason: "test"},
	}, key)
	require.NoError(f.t, err)
	return f.publish(out.Subject, out.Body, out.Header())
}

func (f *fixture) publish(subject string, body []byte, h map[string][]string) uint64 {
	f.t.Helper()
	m := &nats.Msg{Subject: subject, Data: body, Header: nats.Header(h)}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header.Set(events.HeaderMsgID, uuid.NewString()) // a copy is a new message
	ack, err := f.js.PublishMsg(f.t.Context(), m)
	require.NoError(f.t, err)
	return ack.Sequence
}

func TestIndexKeepsTheTrailsLatestWord(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	approval := f.e.Runtime.ApprovalKey
	assert.False(t, f.idx.Ready())

	lockA := f.locked(approval, "", "acme/a", false)
	require.NoError(t, f.idx.Sync(ctx, 0))
	assert.True(t, f.idx.Ready())
	e, ok := f.idx.Get("acme.a")
	require.True(t, ok)
	assert.Equal(t, lockA, e.Seq)
	assert.True(t, e.Value.locked)

	// A later word wins; another key keeps its own.
	unlockID := uuid.Must(uuid.NewV7()).String()
	unlockA := f.locked(approval, unlockID, "acme/a", true)
	f.locked(approval, "", "acme/b", false)
	require.NoError(t, f.idx.Sync(ctx, unlockA))
	e, _ = f.idx.Get("acme.a")
	assert.Equal(t, unlockA, e.Seq)
	assert.False(t, e.Value.locked)
	e, _ = f.idx.Get("acme.b")
	assert.True(t, e.Value.locked)

	// What does not count: a second answer in one history (a genuine
	// event copied again would relock a), one signed by a key not
	// entitled to the kind, junk on the subject.
	f.locked(approval, unlockID, "acme/a", false)
	f.locked(f.e.Runtime.PolicyKey, "", "acme/a", false)
	last := f.publish(events.Subject("acme", uuid.NewString(), events.KindLocked), []byte(`{"junk": true}`), nil)
	require.NoError(t, f.idx.Sync(ctx, last))
	e, _ = f.idx.Get("acme.a")
	assert.Equal(t, unlockA, e.Seq, "still the unlock")
	assert.Len(t, f.idx.Entries(), 2)
}

// logs keeps the records a test's keeper logs.
type logs struct {
	mu  sync.Mutex
	out []slog.Record
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.out = append(l.out, r)
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func (l *logs) warned(substr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.out {
		if r.Level == slog.LevelWarn && strings.Contains(r.Message, substr) {
			return true
		}
	}
	return false
}

func (f *fixture) keeper(log *logs) (*trailkv.Keeper[word], jetstream.KeyValue) {
	f.t.Helper()
	kv, err := f.js.CreateKeyValue(f.t.Context(), jetstream.KeyValueConfig{Bucket: "test-locks", History: 1})
	require.NoError(f.t, err)
	return &trailkv.Keeper[word]{
		Index:  f.idx,
		NC:     f.e.NC,
		Bucket: func(context.Context) (jetstream.KeyValue, error) { return kv, nil },
		Value: func(w word) ([]byte, bool) {
			return []byte("locked"), w.locked
		},
		What: "test", Log: slog.New(log), Grace: time.Nanosecond,
	}, kv
}

func TestKeeperApply(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	k, kv := f.keeper(&logs{})
	approval := f.e.Runtime.ApprovalKey

	out, err := k.Apply(ctx, "acme.a", 0)
	require.NoError(t, err)
	assert.Equal(t, trailkv.Unknown, out, "neither has it")

	seq := f.locked(approval, "", "acme/a", false)
	out, err = k.Apply(ctx, "acme.a", seq)
	require.NoError(t, err)
	assert.Equal(t, trailkv.Written, out)
	got, err := kv.Get(ctx, "acme.a")
	require.NoError(t, err)
	assert.Equal(t, "locked", string(got.Value()))
	out, err = k.Apply(ctx, "acme.a", seq)
	require.NoError(t, err)
	assert.Equal(t, trailkv.Agreed, out)

	// Changed by hand: put back.
	_, err = kv.PutString(ctx, "acme.a", "other")
	require.NoError(t, err)
	out, err = k.Apply(ctx, "acme.a", 0)
	require.NoError(t, err)
	assert.Equal(t, trailkv.Written, out)
	got, err = kv.Get(ctx, "acme.a")
	require.NoError(t, err)
	assert.Equal(t, "locked", string(got.Value()))

	// Unlocked in the trail: the entry goes.
	seq = f.locked(approval, "", "acme/a", true)
	out, err = k.Apply(ctx, "acme.a", seq)
	require.NoError(t, err)
	assert.Equal(t, trailkv.Written, out)
	_, err = kv.Get(ctx, "acme.a")
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound)

	// An entry the trail says nothing of is left as it is.
	_, err = kv.PutString(ctx, "acme.z", "by hand")
	require.NoError(t, err)
	out, err = k.Apply(ctx, "acme.z", 0)
	require.NoError(t, err)
	assert.Equal(t, trailkv.Unbacked, out)
	_, err = kv.Get(ctx, "acme.z")
	assert.NoError(t, err)
}

func TestKeeperRunPutsBackAndSaysSo(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	log := &logs{}
	k, kv := f.keeper(log)
	approval := f.e.Runtime.ApprovalKey
	// Recorded while no keeper ran: the first comparison applies it.
	f.locked(approval, "", "acme/a", false)
	_, err := kv.PutString(ctx, "acme.z", "by hand")
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	present := func(key string) func() bool {
		return func() bool { _, err := kv.Get(ctx, key); return err == nil }
	}
	require.Eventually(t, present("acme.a"), 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return log.warned("holds an entry no event in the trail records") }, 5*time.Second, 5*time.Millisecond,
		"an entry the trail does not record is reported")

	// Deleted by someone else: put back, with a warning.
	require.NoError(t, kv.Delete(ctx, "acme.a"))
	require.Eventually(t, present("acme.a"), 5*time.Second, 5*time.Millisecond)
	assert.Eventually(t, func() bool { return log.warned("disagreed with the trail") }, 5*time.Second, 5*time.Millisecond)
	_, err = kv.Get(ctx, "acme.z")
	assert.NoError(t, err, "left as it is")

	cancel()
	select {
	case err := <-done:
		assert.True(t, err == nil || errors.Is(err, context.Canceled), "%v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}
