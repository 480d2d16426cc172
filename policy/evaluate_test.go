package policy_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/policy"
)

// A recorded policy set compiles back to the same set; a changed one does
// not pass for the digest it claims.
func TestFromSourceRoundTrip(t *testing.T) {
	s := sample(t, "permit (principal, action == Action::\"read\", resource);\n")
	back, err := policy.FromSource(s.Source(), s.Digest())
	require.NoError(t, err)
	assert.Equal(t, s.Digest(), back.Digest())
	assert.Equal(t, s.Source(), back.Source())

	src := s.Source()
	src[len(src)-3] ^= 1
	_, err = policy.FromSource(src, s.Digest())
	require.ErrorIs(t, err, policy.ErrLoad)
	_, err = policy.FromSource([]byte("permit (principal, action, resource);\n"), s.Digest())
	require.ErrorIs(t, err, policy.ErrLoad)
}

// An evaluation re-computed from what it recorded, after a JSON round trip,
// is the same evaluation: that is what audit re-evaluation relies on.
func TestEvaluateRoundTripsThroughItsRecord(t *testing.T) {
	s := sample(t)
	f, _ := sampleFlows(t)
	for _, in := range []policy.Input{
		{Principal: bot, Action: "deploy", Domain: "acme", Resource: "services/api", Context: policy.Context{Urgency: "normal", Origin: "acme", Time: t0.Add(1234567 * time.Nanosecond)}},
		{Principal: carol, Action: "db.migrate", Domain: "acme", Resource: "db/orders", Context: policy.Context{
			Urgency: "high", Reason: "fix", Ticket: "T-1", Origin: "acme", TTL: 5 * time.Minute, Time: t0,
			Params: map[string]string{"a": "b"}, ResourceState: map[string]string{"frozen": "false"}, DomainState: map[string]string{"x": "y"},
		}},
	} {
		ev := policy.Evaluate(s, f, in, nil)
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		var rec events.Evaluated
		require.NoError(t, json.Unmarshal(b, &rec))
		c, err := policy.ContextFromRecord(rec.Context)
		require.NoError(t, err)
		assert.True(t, c.Time.Equal(in.Context.Time), "the recorded time keeps its fraction of a second")
		again := policy.Evaluate(s, f, policy.Input{Principal: in.Principal, Action: in.Action, Domain: in.Domain, Resource: in.Resource, Context: c}, nil)
		assert.Equal(t, ev.Outcome, again.Outcome)
		assert.Equal(t, ev.Reasons, again.Reasons)
		assert.Equal(t, ev.Flows, again.Flows)
		assert.Equal(t, ev.MaxTTLSeconds, again.MaxTTLSeconds)
		assert.True(t, policy.SameContext(rec.Context, again.Context))
	}
}

func TestContextFromRecordRefusesWrongTypes(t *testing.T) {
	_, err := policy.ContextFromRecord(map[string]any{"now": "yesterday"})
	require.ErrorIs(t, err, policy.ErrContext)
	_, err = policy.ContextFromRecord(map[string]any{"now": "2025-01-01T00:00:00Z", "params": map[string]any{"a": 1.0}})
	require.ErrorIs(t, err, policy.ErrContext)
	assert.False(t, policy.SameContext(map[string]any{"now": "2025-01-01T00:00:00Z", "urgency": "low"}, map[string]any{"now": "2025-01-01T00:00:00Z", "urgency": "high"}))
}
