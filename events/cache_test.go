package events_test

import (
	"testing"
	"time"

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

	// A message with no stored time depends on now: never cached.
	unstored := good
	unstored.Time, unstored.Seq = time.Time{}, 99
	n := cache.Len()
	assert.NotSame(t, c.Inspect(unstored, t0).Data, c.Inspect(unstored, t0).Data, "inspected each time")
	assert.Equal(t, n, cache.Len())

	// Bounded: the oldest entry goes first.
	for seq := uint64(2); seq <= 4; seq++ {
		m := good
		m.Seq = seq
		c.Inspect(m, t0)
	}
	assert.Equal(t, 2, cache.Len())
}
