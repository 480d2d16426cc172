package policy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/policy"
)

// FuzzFromSource feeds arbitrary recorded sources to FromSource (the policy
// record of the trail, read back by audits). A source compiles only into
// the set it is the source of: under the digest of a genuine set, only
// that set's source; under its own digest, a set whose source is exactly
// it.
func FuzzFromSource(f *testing.F) {
	s := sample(f, `@id("two") forbid (principal, action, resource) when { context.urgency == "low" };`)
	src, digest := s.Source(), s.Digest()
	again, err := policy.FromSource(src, digest)
	require.NoError(f, err)
	require.Equal(f, digest, again.Digest())
	f.Add(src)
	f.Add([]byte("-- a.cedar\npermit (principal, action, resource);\n"))
	f.Add([]byte("-- b\nx\n-- a\ny\n"))
	f.Add([]byte("-- a\n"))
	f.Add([]byte("--  \n\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		if s, err := policy.FromSource(text, digest); err == nil && !bytes.Equal(s.Source(), src) {
			t.Fatalf("compiled %q as the recorded set %s", text, digest)
		}
		s, err := policy.FromSource(text, events.Digest(text))
		if err != nil {
			if !errors.Is(err, policy.ErrLoad) {
				t.Fatalf("refused without ErrLoad: %v", err)
			}
			return
		}
		if !bytes.Equal(s.Source(), text) || s.Digest() != events.Digest(text) {
			t.Fatalf("source %q compiled as %q", text, s.Source())
		}
		s.Decide(input(carol, "restart", "prod/db"))
	})
}

// FuzzContextFromRecord feeds arbitrary JSON, as an evaluated event's
// context decodes, to ContextFromRecord (re-evaluation in audits). It
// refuses with ErrContext or reads a context that records and reads back
// the same, and that is the same as itself.
func FuzzContextFromRecord(f *testing.F) {
	c := policy.Context{Urgency: "high", Reason: "why", Ticket: "OPS-1", Origin: "acme", TTL: 90 * time.Second,
		Params: map[string]string{"a": "b"}, Time: t0.Add(time.Nanosecond),
		ResourceState: map[string]string{"on_call": "alice"}, DomainState: map[string]string{"incident_active": "true"}}
	b, err := json.Marshal(c.Record())
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte(`{"now": "2025-03-14T09:00:00Z", "ttl_seconds": 1e300}`))
	f.Add([]byte(`{"now": "2025-03-14T09:00:00+02:00", "params": {"x": 1}, "resource_state": []}`))
	f.Add([]byte(`{"ttl_seconds": "600"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, text []byte) {
		var r map[string]any
		if json.Unmarshal(text, &r) != nil {
			return
		}
		c, err := policy.ContextFromRecord(r)
		if err != nil {
			if !errors.Is(err, policy.ErrContext) {
				t.Fatalf("refused without ErrContext: %v", err)
			}
			if policy.SameContext(r, r) {
				t.Fatal("an unreadable context is the same as itself")
			}
			return
		}
		if !policy.SameContext(r, r) {
			t.Fatal("a readable context is not the same as itself")
		}
		// Recorded, sent and read back: once it has been recorded, the
		// record is its own fixed point.
		once := roundTrip(t, c.Record())
		c2, err := policy.ContextFromRecord(once)
		require.NoError(t, err, "a recorded context reads back")
		twice := roundTrip(t, c2.Record())
		if !policy.SameContext(once, twice) {
			t.Fatalf("recorded again, %v reads as %v", once, twice)
		}
	})
}

// roundTrip is a record as the trail gives it back: through JSON.
func roundTrip(t *testing.T, r map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(r)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}
