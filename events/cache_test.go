package events_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// The cache answers for the very message it judged, by the same bundle,
// and for nothing else: a copy that differs in any part the judgement rests
// on is inspected afresh.
func TestInspectCache(t *testing.T) {
	f := newFixture(t)
	good := seal(t, events.KindRequested, f.requested(f.alice, "acme", "alice"), f.alice.Key)
	cache := events.NewInspectCache(2)
	c := events.Checker{Bundle: f.bundle, Cache: cache}

	first := c.Inspect(good, t0)
	require.True(t, first.Valid(), first.Err)
	again := c.Inspect(good, t0)
	require.True(t, again.Valid())
	assert.Same(t, first.Data, again.Data, "the second read is answered from the cache")
	assert.Equal(t, 1, cache.Len())

	forged := func(edit func(m *events.Message)) events.Message {
		m := good
		m.Header = map[string][]string{}
		for k, v := range good.Header {
			m.Header[k] = v
		}
		m.Body = append([]byte(nil), good.Body...)
		edit(&m)
		return m
	}
	for name, m := range map[string]events.Message{
		"a body changed under the same signature": forged(func(m *events.Message) { m.Body[len(m.Body)-2] ^= 1 }),
		"another signature":                       forged(func(m *events.Message) { m.Header[events.HeaderSignature] = []string{"AAAA"} }),
		"another signer":                          forged(func(m *events.Message) { m.Header[events.HeaderSigner] = []string{pub(t, f.policy)} }),
		"another stored time":                     forged(func(m *events.Message) { m.Time = m.Time.Add(-48 * 3600e9) }),
	} {
		r := c.Inspect(m, t0)
		assert.False(t, r.Data == first.Data, "%s: not answered from the cache", name)
		if name != "another stored time" {
			assert.False(t, r.Valid(), name)
		}
		assert.True(t, c.Inspect(good, t0).Valid(), "%s: the genuine message is still judged valid", name)
	}

	// Judged by another bundle, one that no longer trusts acme's account.
	distrust := f.bundle.Clone()
	require.NoError(t, distrust.Remove("acme"))
	r := events.Checker{Bundle: distrust, Cache: cache}.Inspect(good, t0)
	assert.ErrorIs(t, r.Err, identity.ErrUnknownDomain, "not the other bundle's verdict")

	// A principal's message with no stored time is judged at now: never
	// cached.
	unstored := good
	unstored.Time, unstored.Seq = time.Time{}, 99
	n := cache.Len()
	assert.NotSame(t, c.Inspect(unstored, t0).Data, c.Inspect(unstored, t0).Data, "inspected each time")
	assert.Equal(t, n, cache.Len())

	// A component's verdict rests on the bytes: its notice (no sequence,
	// no stored time) is judged once, and the stored copy is answered from
	// that verdict.
	evaluated := seal(t, events.KindEvaluated, f.sample(events.KindEvaluated), f.signer(events.KindEvaluated))
	notice := evaluated
	notice.Seq, notice.Time = 0, time.Time{}
	heard := c.Inspect(notice, t0)
	require.True(t, heard.Valid(), heard.Err)
	stored := c.Inspect(evaluated, t0)
	assert.Same(t, heard.Data, stored.Data, "the stored copy is answered from the notice's verdict")
	assert.Equal(t, evaluated.Seq, stored.Seq, "with the stored copy's own sequence and time")
	assert.Equal(t, evaluated.Time, stored.Time)

	// Bounded: the oldest entry goes first. Three requests that differ in
	// their bodies, in a cache of two.
	var three []events.Message
	var verdicts []any
	for i := range 3 {
		d := f.requested(f.alice, "acme", "alice")
		d.Reason = fmt.Sprintf("reason %d", i)
		m := seal(t, events.KindRequested, d, f.alice.Key)
		m.Seq = uint64(10 + i)
		three = append(three, m)
		verdicts = append(verdicts, c.Inspect(m, t0).Data)
	}
	assert.Equal(t, 2, cache.Len())
	assert.Same(t, verdicts[2], c.Inspect(three[2], t0).Data, "the newest is held")
	assert.NotSame(t, verdicts[0], c.Inspect(three[0], t0).Data, "the oldest went first")
}

// What Remember records of an event this process sealed is what Inspect
// would have concluded from the stored message: a component's at once, a
// principal's once its stored time is known (its identity is judged then).
// Nothing is remembered for a key not entitled to a component's kind.
func TestRememberAgreesWithInspect(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		k    events.Kind
		data any
		key  nkeys.KeyPair
	}{
		{events.KindEvaluated, f.sample(events.KindEvaluated), f.signer(events.KindEvaluated)},
		{events.KindGranted, f.sample(events.KindGranted), f.signer(events.KindGranted)},
		{events.KindApproved, f.sample(events.KindApproved), f.signer(events.KindApproved)},
		{events.KindRequested, f.requested(f.alice, "acme", "alice"), f.alice.Key},
		{events.KindRequested, f.requested(f.alice, "acme", "alice"), f.bob.Key}, // signed by another than its identity
		{events.KindVoted, f.sample(events.KindVoted), f.bob.Key},
	} {
		k := c.k
		out, err := events.Seal(events.Draft{Domain: "acme", RequestID: reqID, Kind: k, Source: "writ://acme/test", Time: t0, Data: c.data}, c.key)
		require.NoError(t, err)
		stored := events.Message{Subject: out.Subject, Seq: 7, Time: t0.Add(time.Second), Header: out.Header(), Body: out.Body}
		want := events.Checker{Bundle: f.bundle}.Inspect(stored, t0)

		ch := events.Checker{Bundle: f.bundle, Cache: events.NewInspectCache(8)}
		ch.Remember(out, 7)
		require.Equal(t, 1, ch.Cache.Len(), k)
		got := ch.Inspect(stored, t0)
		assert.Equal(t, want, got, "%s: remembered as Inspect judges it", k)
		assert.Equal(t, want, ch.Inspect(stored, t0), "%s: and read again", k)

		// A changed copy at that sequence is inspected afresh.
		bad := stored
		bad.Body = append(append([]byte(nil), stored.Body[:len(stored.Body)-1]...), ' ')
		assert.False(t, ch.Inspect(bad, t0).Valid(), k)
	}
	ch := events.Checker{Bundle: f.bundle, Cache: events.NewInspectCache(8)}
	out, err := events.Seal(events.Draft{Domain: "acme", RequestID: reqID, Kind: events.KindEvaluated, Source: "writ://acme/test", Time: t0, Data: f.sample(events.KindEvaluated)}, f.issuer)
	require.NoError(t, err)
	ch.Remember(out, 9)
	assert.Zero(t, ch.Cache.Len(), "an evaluation by the issuer's key")
}

// A principal's event remembered as sealed is not judged from a notice of
// it (no stored time: its identity would be judged at none); the stored
// copy read after is judged as Inspect judges it.
func TestRememberedPrincipalNotJudgedFromItsNotice(t *testing.T) {
	f := newFixture(t)
	out, err := events.Seal(events.Draft{Domain: "acme", RequestID: reqID, Kind: events.KindRequested, Source: "writ://acme/test", Time: t0, Data: f.requested(f.alice, "acme", "alice")}, f.alice.Key)
	require.NoError(t, err)
	stored := events.Message{Subject: out.Subject, Seq: 7, Time: t0.Add(time.Second), Header: out.Header(), Body: out.Body}
	want := events.Checker{Bundle: f.bundle}.Inspect(stored, t0)
	require.True(t, want.Valid(), want.Err)

	ch := events.Checker{Bundle: f.bundle, Cache: events.NewInspectCache(8)}
	ch.Remember(out, 7)
	notice := events.Message{Subject: out.Subject, Header: out.Header(), Body: out.Body}
	// Heard long after alice's identity expired: judged at now, refused.
	late := t0.AddDate(50, 0, 0)
	require.Error(t, events.Checker{Bundle: f.bundle}.Inspect(notice, late).Err, "the identity has expired by then")
	heard := ch.Inspect(notice, late)
	assert.Error(t, heard.Err, "the notice is judged at now, not answered from what was remembered")
	assert.Equal(t, want, ch.Inspect(stored, t0), "the stored copy is judged as Inspect judges it")
}
