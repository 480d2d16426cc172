package events_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
)

// A signed body that names a key twice in one object is refused: the
// schema check sees the last of the two, while decoding merges both, so
// a request could carry parameters no schema checked ("bad key!" is no
// parameter name the schema allows).
func TestInspectRefusesADuplicateKey(t *testing.T) {
	f := newFixture(t)
	data, err := json.Marshal(f.requested(f.alice, "acme", "alice"))
	require.NoError(t, err)
	honest := seal(t, events.KindRequested, json.RawMessage(data), f.alice.Key)
	require.True(t, events.Checker{Bundle: f.bundle}.Inspect(honest, t0).Valid())

	twice := strings.Replace(string(data), `"params":{"replica":"2"}`, `"params":{"bad key!":"1"},"params":{"replica":"2"}`, 1)
	require.NotEqual(t, string(data), twice)
	m := seal(t, events.KindRequested, json.RawMessage(twice), f.alice.Key)
	r := events.Checker{Bundle: f.bundle}.Inspect(m, t0)
	require.ErrorIs(t, r.Err, events.ErrMalformed)
	assert.Contains(t, r.Err.Error(), `"params" appears twice`)
	assert.Equal(t, "malformed", events.Code(r.Err))
}

// Inspect decodes an event's envelope and data in one pass; what it gets
// is what decoding the envelope, then its data, gets, for every kind.
func TestInspectDecodesAsTwoSteps(t *testing.T) {
	f := newFixture(t)
	for _, k := range allKinds {
		m := seal(t, k, f.sample(k), f.signer(k))
		r := events.Checker{Bundle: f.bundle}.Inspect(m, t0)
		require.True(t, r.Valid(), "%s: %v", k, r.Err)
		var env events.Envelope
		require.NoError(t, json.Unmarshal(m.Body, &env))
		want := events.NewData(k)
		require.NoError(t, json.Unmarshal(env.Data, want))
		assert.Equal(t, want, r.Data, k)
		env.Data = nil
		assert.Equal(t, env, r.Envelope, k)
	}
}
