package history_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/request"
)

// setup is a test installation with no pipeline: only what a test appends
// is in the stream.
func setup(t *testing.T) (*writtest.Env, *history.Log) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	return e, logOn(t, e)
}

func logOn(t *testing.T, e *writtest.Env) *history.Log {
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	return history.New(history.Options{JS: js, Stream: "WRIT", Checker: events.Checker{Bundle: e.Runtime.Bundle}})
}

func author(who *identity.Identity) history.Author {
	return history.Author{Key: who.Key, Source: "writ://" + who.Principal.Domain + "/principals/" + who.Principal.Name}
}

func requested(t *testing.T, id string, who *identity.Identity, reason string) history.Event {
	xkey, err := issuer.HolderXKey(who.Key, id)
	require.NoError(t, err)
	xpub, err := xkey.PublicKey()
	require.NoError(t, err)
	return history.Event{Kind: events.KindRequested, Data: &events.Requested{HolderXKey: xpub,
		Domain:    writtest.Domain,
		Requester: events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
		Identity:  who.JWT, Action: "deploy", Resource: "staging/web", Urgency: "normal", Reason: reason,
	}}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestLoadFoldsWhatWasAppended(t *testing.T) {
	e, l := setup(t)
	carol := e.Identity("carol")
	id := "0190b7a4-0000-7000-8000-000000000001"

	h, err := l.Load(ctx(t), writtest.Domain, id, history.Reach{})
	require.NoError(t, err)
	assert.Empty(t, h.Records)
	assert.Equal(t, writtest.Domain, h.State.Domain, "an empty history names its request: what is appended starts it")
	assert.Equal(t, id, h.State.ID)

	seq, err := l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "first"))
	require.NoError(t, err)
	h, err = l.Load(ctx(t), writtest.Domain, id, history.Reach{})
	require.NoError(t, err)
	require.Len(t, h.Records, 1)
	assert.NoError(t, h.Records[0].Err, "inspected against the trust bundle, and genuine")
	assert.Equal(t, seq, h.State.LastSeq)
	assert.Equal(t, request.StatusRequested, h.State.Status)
	rec, ok := h.Record(seq)
	assert.True(t, ok)
	assert.Equal(t, events.KindRequested, rec.Kind)
}

func TestAppendExpectsTheHistoryToEndWhereItWasRead(t *testing.T) {
	e, l := setup(t)
	carol := e.Identity("carol")
	id := "0190b7a4-0000-7000-8000-000000000002"
	_, err := l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "first"))
	require.NoError(t, err)
	_, err = l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "second, from a stale read"))
	assert.ErrorIs(t, err, history.ErrConflict)
	assert.True(t, history.IsConflict(err))
}

func TestAppendRefusesAnOversizedBody(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	l := history.New(history.Options{JS: js, Stream: "WRIT", Checker: events.Checker{Bundle: e.Runtime.Bundle, MaxBody: 512}})
	carol := e.Identity("carol")
	id := "0190b7a4-0000-7000-8000-000000000003"
	_, err = l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, string(make([]byte, 600))))
	assert.ErrorIs(t, err, events.ErrOversized)
	h, err := l.Load(ctx(t), writtest.Domain, id, history.Reach{})
	require.NoError(t, err)
	assert.Empty(t, h.Records, "nothing is appended")
}

func TestExtendReadsAgainWhenAnotherWriterCameFirst(t *testing.T) {
	e, l := setup(t)
	carol, alice := e.Identity("carol"), e.Identity("alice")
	id := "0190b7a4-0000-7000-8000-000000000004"
	_, err := l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "first"))
	require.NoError(t, err)
	other := logOn(t, e) // another writer, with its own reads

	var seen []int // how many records each build saw
	x, err := l.Extend(ctx(t), writtest.Domain, id, history.Reach{}, author(alice), func(h *history.History) (*history.Event, error) {
		seen = append(seen, len(h.Records))
		if len(seen) == 1 {
			// Another writer appends between this read and this append.
			_, err := other.Append(ctx(t), writtest.Domain, id, h.State.LastSeq, author(carol), revoke(carol, h.State.LastDigest))
			require.NoError(t, err)
		}
		return &history.Event{Kind: events.KindRevoke, Ordinal: alice.Principal.Key, Data: revoke(alice, h.State.LastDigest).Data}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, []int{1, 2}, seen, "decided again on the history as the other writer left it")
	h, err := l.Load(ctx(t), writtest.Domain, id, history.Reach{})
	require.NoError(t, err)
	require.Len(t, h.Records, 3)
	assert.Equal(t, x.Seq, h.State.LastSeq)
}

func revoke(who *identity.Identity, prev string) history.Event {
	return history.Event{Kind: events.KindRevoke, Ordinal: who.Principal.Key, Data: &events.Revoke{
		Prev: prev, Domain: writtest.Domain, By: events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
		Identity: who.JWT, Reason: "test",
	}}
}

func TestExtendRecognisesItsOwnEarlierAttempt(t *testing.T) {
	e, l := setup(t)
	carol := e.Identity("carol")
	id := "0190b7a4-0000-7000-8000-000000000005"
	_, err := l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "first"))
	require.NoError(t, err)

	history.LoseAcks(l, 1, fmt.Errorf("publish: %w", nats.ErrTimeout))
	builds := 0
	x, err := l.Extend(ctx(t), writtest.Domain, id, history.Reach{}, author(carol), func(h *history.History) (*history.Event, error) {
		builds++
		ev := revoke(carol, h.State.LastDigest)
		ev.Ordinal = fmt.Sprint(builds) // a second build would make a second event
		return &ev, nil
	})
	require.NoError(t, err)
	assert.Equal(t, 1, builds, "the event stored with its acknowledgement lost is the outcome")
	require.NotNil(t, x.Event, "what was appended is said, as for an append acknowledged (react logs and counts it)")
	assert.Equal(t, events.KindRevoke, x.Event.Kind)
	h, err := l.Load(ctx(t), writtest.Domain, id, history.Reach{})
	require.NoError(t, err)
	require.Len(t, h.Records, 2, "appended once")
	assert.Equal(t, x.Seq, h.Records[1].Seq)
}

func TestExtendBuildingNothingAppendsNothing(t *testing.T) {
	e, l := setup(t)
	carol := e.Identity("carol")
	id := "0190b7a4-0000-7000-8000-000000000006"
	_, err := l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "first"))
	require.NoError(t, err)
	x, err := l.Extend(ctx(t), writtest.Domain, id, history.Reach{}, author(carol), func(*history.History) (*history.Event, error) { return nil, nil })
	require.NoError(t, err)
	assert.Zero(t, x.Seq)
	assert.Len(t, x.History.Records, 1)
}

func TestLoadReachesWhatItWroteBefore(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	l := history.New(history.Options{JS: js, Stream: "WRIT", Checker: events.Checker{Bundle: e.Runtime.Bundle}, Monotonic: true})
	carol := e.Identity("carol")
	id := "0190b7a4-0000-7000-8000-000000000007"
	seq, err := l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "first"))
	require.NoError(t, err)
	// A Log that is not monotonic (a component's) remembers nothing: it
	// reaches what it is told to, the message it was handed.
	other := logOn(t, e)
	history.Note(other, writtest.Domain, id, seq+1000)
	_, err = other.Load(ctx(t), writtest.Domain, id, history.Reach{Wait: 50 * time.Millisecond})
	require.NoError(t, err)
	// Told the history holds more than the stream has: the read is made
	// again until its bound, then says it stays behind.
	history.Note(l, writtest.Domain, id, seq+1000)
	_, err = l.Load(ctx(t), writtest.Domain, id, history.Reach{Wait: 50 * time.Millisecond})
	assert.ErrorIs(t, err, history.ErrBehind)
}

// An event with a condition of its own is appended only while the last
// message on the condition's filter is where the build read it: a message
// there first, even in another request's history, makes Extend read
// again and build again.
func TestExtendOnACondition(t *testing.T) {
	e, l := setup(t)
	carol := e.Identity("carol")
	id, other := "0190b7a4-0000-7000-8000-000000000008", "0190b7a4-0000-7000-8000-000000000009"
	for _, id := range []string{id, other} {
		_, err := l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "first"))
		require.NoError(t, err)
	}
	var conds []uint64 // the condition each build asked for
	lastRevoke := uint64(0)
	x, err := l.Extend(ctx(t), writtest.Domain, id, history.Reach{}, author(carol), func(h *history.History) (*history.Event, error) {
		conds = append(conds, lastRevoke)
		ev := revoke(carol, h.State.LastDigest)
		ev.Cond = &history.Cond{Filter: events.KindFilter(events.KindRevoke), Seq: lastRevoke}
		if len(conds) == 1 {
			// A revoke in another history, between this build and its append.
			oh, err := l.Load(ctx(t), writtest.Domain, other, history.Reach{})
			require.NoError(t, err)
			lastRevoke, err = l.Append(ctx(t), writtest.Domain, other, oh.State.LastSeq, author(carol), revoke(carol, oh.State.LastDigest))
			require.NoError(t, err)
		}
		return &ev, nil
	})
	require.NoError(t, err)
	require.Len(t, conds, 2, "built again once the condition failed")
	assert.Equal(t, []uint64{0, lastRevoke}, conds)
	assert.Greater(t, x.Seq, lastRevoke)
}

func TestUntilIsTheHistoryAsItStood(t *testing.T) {
	e, l := setup(t)
	carol := e.Identity("carol")
	id := "0190b7a4-0000-7000-8000-000000000008"
	first, err := l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "first"))
	require.NoError(t, err)
	h, err := l.Load(ctx(t), writtest.Domain, id, history.Reach{})
	require.NoError(t, err)
	_, err = l.Append(ctx(t), writtest.Domain, id, first, author(carol), revoke(carol, h.State.LastDigest))
	require.NoError(t, err)
	h, err = l.Load(ctx(t), writtest.Domain, id, history.Reach{})
	require.NoError(t, err)
	require.Len(t, h.Records, 2)
	then := h.Until(first)
	assert.Len(t, then.Records, 1)
	assert.Equal(t, first, then.State.LastSeq, "as it stood once the request was stored")
	assert.Equal(t, request.StatusRequested, then.State.Status)
	assert.Empty(t, h.Until(first-1).Records, "before anything")
	assert.Equal(t, id, h.Until(first-1).State.ID, "an empty history still names its request")
}

func TestAnIDIsOneToken(t *testing.T) {
	e, l := setup(t)
	carol := e.Identity("carol")
	for _, id := range []string{"*", ">", "a.b", "", "a b"} {
		_, err := l.Load(ctx(t), writtest.Domain, id, history.Reach{})
		assert.ErrorIs(t, err, history.ErrNotAnID, "load %q", id)
		_, err = l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, "x", carol, "junk"))
		assert.ErrorIs(t, err, history.ErrNotAnID, "append %q", id)
	}
}

func TestExtendGivesUpOnOutcomesItNeverLearns(t *testing.T) {
	e, l := setup(t)
	carol := e.Identity("carol")
	id := "0190b7a4-0000-7000-8000-000000000009"
	_, err := l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "first"))
	require.NoError(t, err)
	lost := fmt.Errorf("publish: %w", nats.ErrTimeout)
	history.FailAppends(l, 100, lost)
	builds := 0
	_, err = l.Extend(ctx(t), writtest.Domain, id, history.Reach{}, author(carol), func(h *history.History) (*history.Event, error) {
		builds++
		ev := revoke(carol, h.State.LastDigest)
		return &ev, nil
	})
	assert.ErrorIs(t, err, nats.ErrTimeout, "says what it could not learn")
	assert.Equal(t, 3, builds, "looked for its append twice more, then gave up")
}

func TestLoadWaitsBrieflyForAMessageNoticed(t *testing.T) {
	e, l := setup(t)
	carol := e.Identity("carol")
	id := "0190b7a4-0000-7000-8000-00000000000a"
	_, err := l.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "first"))
	require.NoError(t, err)
	h, err := l.Load(ctx(t), writtest.Domain, id, history.Reach{})
	require.NoError(t, err)
	held := h.Records[0].Digest

	h, err = l.Load(ctx(t), writtest.Domain, id, history.Reach{Digest: held, Wait: time.Minute})
	require.NoError(t, err, "a message the history holds is no wait")
	assert.Len(t, h.Records, 1)

	start := time.Now()
	h, err = l.Load(ctx(t), writtest.Domain, id, history.Reach{Digest: "sha256:never-stored", Wait: 200 * time.Millisecond})
	require.NoError(t, err, "a message never stored is given up on, and the history shown as it is")
	assert.Len(t, h.Records, 1)
	assert.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "read again for the time given")
}

// Two writers sealing the same event (same data, same key: two replicas of
// the auditor checkpointing the same tree) make the same message id, and
// the stream may take the second for a duplicate of the first (a cluster
// checks the message id before the expected sequence). Their bodies differ
// (each says when it was sealed): the second must not take the first's
// place for its own, or what it chains on next names a body the stream
// never held. Here the second appends where the first's message is last,
// so that one server, too, answers it with the first's sequence.
func TestAppendOfAnEqualEventSealedAgainIsAConflict(t *testing.T) {
	e, _ := setup(t)
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	at := func(ts time.Time) *history.Log {
		return history.New(history.Options{JS: js, Stream: "WRIT", Clock: func() time.Time { return ts },
			Checker: events.Checker{Bundle: e.Runtime.Bundle}})
	}
	t0 := time.Now().UTC().Truncate(time.Second)
	first, second := at(t0), at(t0.Add(time.Second))
	carol := e.Identity("carol")
	id := "0190b7a4-0000-7000-8000-0000000000d1"

	seq, err := first.Append(ctx(t), writtest.Domain, id, 0, author(carol), requested(t, id, carol, "same"))
	require.NoError(t, err)
	_, err = second.Append(ctx(t), writtest.Domain, id, seq, author(carol), requested(t, id, carol, "same"))
	require.ErrorIs(t, err, history.ErrConflict, "the stream holds the first writer's body, not the second's")

	// The first writer's own body sent again is the same append.
	again, err := first.Append(ctx(t), writtest.Domain, id, seq, author(carol), requested(t, id, carol, "same"))
	require.NoError(t, err)
	assert.Equal(t, seq, again)
}
