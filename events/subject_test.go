package events_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
)

func TestKind(t *testing.T) {
	tests := []struct {
		kind     events.Kind
		name     string
		typ      string
		byPeople bool
	}{
		{events.KindRequested, "requested", events.TypeRequested, true},
		{events.KindRejected, "rejected", events.TypeRejected, false},
		{events.KindEvaluated, "evaluated", events.TypeEvaluated, false},
		{events.KindVoted, "voted", events.TypeVoted, true},
		{events.KindApproved, "approved", events.TypeApproved, false},
		{events.KindDenied, "denied", events.TypeDenied, false},
		{events.KindExpired, "expired", events.TypeExpired, false},
		{events.KindGranted, "granted", events.TypeGranted, false},
		{events.KindRefused, "refused", events.TypeRefused, false},
		{events.KindRedeemed, "redeemed", events.TypeRedeemed, false},
		{events.KindRevoked, "revoked", events.TypeRevoked, false},
		{events.KindRevoke, "revoke", events.TypeRevoke, true},
		{events.KindLock, "lock", events.TypeLock, true},
		{events.KindLocked, "locked", events.TypeLocked, false},
		{events.KindEscalated, "escalated", events.TypeEscalated, false},
		{events.KindAlerted, "alerted", events.TypeAlerted, false},
		{events.KindReviewed, "reviewed", events.TypeReviewed, false},
		{events.KindPolicy, "policy", events.TypePolicy, false},
		{events.KindCheckpoint, "checkpoint", events.TypeCheckpoint, false},
		{events.KindWitnessed, "witnessed", events.TypeWitnessed, false},
		{events.KindState, "state", events.TypeState, true},
		{events.KindStated, "stated", events.TypeStated, false},
		{events.KindCounted, "counted", events.TypeCounted, false},
	}
	require.Len(t, tests, len(allKinds))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.name, tt.kind.String())
			assert.Equal(t, tt.typ, tt.kind.Type())
			ns := "writ.request."
			if tt.kind == events.KindCheckpoint || tt.kind == events.KindWitnessed {
				ns = "writ.audit." // about the stream, not a request
			}
			version := ".v1"
			if tt.kind == events.KindAlerted || tt.kind == events.KindReviewed {
				version = ".v2" // v1 is still read (Types)
			}
			assert.Equal(t, ns+tt.name+version, tt.kind.Type(), "wire name")
			assert.Equal(t, tt.kind.Type(), tt.kind.Types()[0], "written: the current version")
			assert.Equal(t, tt.byPeople, tt.kind.FromPrincipal())
			k, err := events.ParseKind(tt.name)
			require.NoError(t, err)
			assert.Equal(t, tt.kind, k)
		})
	}
}

func TestKindNone(t *testing.T) {
	assert.Equal(t, "", events.KindNone.String())
	assert.Equal(t, "", events.KindNone.Type())
	assert.Equal(t, "", events.Kind(99).Type())
	assert.Equal(t, "kind(99)", events.Kind(99).String())
	assert.False(t, events.KindNone.FromPrincipal())
	for _, s := range []string{"", "Requested", "requested.v1", "kind(99)", " voted"} {
		k, err := events.ParseKind(s)
		assert.Error(t, err, "%q", s)
		assert.Equal(t, events.KindNone, k)
	}
}

func TestSubjects(t *testing.T) {
	assert.Equal(t, "writ.acme."+reqID+".granted", events.Subject("acme", reqID, events.KindGranted))
	assert.Equal(t, "writ.acme."+reqID+".>", events.RequestFilter("acme", reqID))
	assert.Equal(t, "writ.*.*.voted", events.KindFilter(events.KindVoted))
	assert.Equal(t, reqID+".evaluated", events.MsgID(reqID, events.KindEvaluated, ""))
	assert.Equal(t, reqID+".voted.UABC", events.MsgID(reqID, events.KindVoted, "UABC"))
}

func TestParseSubject(t *testing.T) {
	tests := []struct {
		subject string
		domain  string
		id      string
		kind    events.Kind
		ok      bool
	}{
		{"writ.acme." + reqID + ".requested", "acme", reqID, events.KindRequested, true},
		{"writ.other-2." + reqID + ".refused", "other-2", reqID, events.KindRefused, true},
		{"writ.acme." + reqID, "", "", events.KindNone, false},
		{"writ.acme." + reqID + ".requested.extra", "", "", events.KindNone, false},
		{"writs.acme." + reqID + ".requested", "", "", events.KindNone, false},
		{"writ.acme.not-a-uuid.requested", "", "", events.KindNone, false},
		{"writ.acme.0b7e6f1a3c2d4e5f8a9b0c1d2e3f4a5b.requested", "", "", events.KindNone, false},
		{"writ.acme.{" + reqID + "}.requested", "", "", events.KindNone, false},
		{"writ.acme." + reqID + ".cancelled", "", "", events.KindNone, false},
		{"writ.acme." + reqID + ".", "", "", events.KindNone, false},
		{"", "", "", events.KindNone, false},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			d, id, k, err := events.ParseSubject(tt.subject)
			if !tt.ok {
				assert.ErrorIs(t, err, events.ErrSubject)
				assert.Equal(t, events.KindNone, k)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.domain, d)
			assert.Equal(t, tt.id, id)
			assert.Equal(t, tt.kind, k)
			assert.Equal(t, tt.subject, events.Subject(d, id, k), "Subject inverts ParseSubject")
		})
	}
}

func TestPrincipalRefID(t *testing.T) {
	assert.Equal(t, "acme/alice", events.PrincipalRef{Domain: "acme", Name: "alice"}.ID())
}

// Every event's data chains to its predecessor.
func TestEveryKindHasPrev(t *testing.T) {
	for _, k := range allKinds {
		d := events.NewData(k)
		require.NotNil(t, d, k.String())
		require.True(t, events.SetPrev(d, "sha256:ab"), k.String())
		assert.Equal(t, "sha256:ab", events.Prev(d), k.String())
	}
	assert.False(t, events.SetPrev(struct{}{}, "x"))
	assert.Equal(t, "", events.Prev(nil))
}
