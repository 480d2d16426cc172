package events_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// TestInspectFederationRefusals checks that the four ways a request from
// another domain's principal can fail identity checks are told apart, each
// with its own reason code: the domain is unknown, the identity is signed by
// a key that is not its domain's, it has expired, or its domain's key was
// revoked.
func TestInspectFederationRefusals(t *testing.T) {
	f := newFixture(t)
	revoked := f.bundle.Clone()
	_, err := revoked.Revoke("acme", pub(t, f.acct)) // still listed in acme's accounts
	require.NoError(t, err)
	require.NoError(t, revoked.Validate())

	tests := []struct {
		name   string
		bundle *identity.Bundle
		id     *identity.Identity
		claims events.PrincipalRef
		want   error
		code   string
	}{
		{"unknown domain", f.bundle, f.ghost, events.PrincipalRef{Domain: "ghost", Name: "casper"}, identity.ErrUnknownDomain, "unknown-domain"},
		{"wrong key: claims acme, signed by other's account", f.bundle, f.impostor, events.PrincipalRef{Domain: "acme", Name: "alice"}, identity.ErrUntrustedKey, "untrusted-key"},
		{"expired identity", f.bundle, f.expired, events.PrincipalRef{Domain: "acme", Name: "old"}, identity.ErrIdentityExpired, "identity-expired"},
		{"revoked account key", revoked, f.alice, events.PrincipalRef{Domain: "acme", Name: "alice"}, identity.ErrKeyRevoked, "key-revoked"},
	}
	codes := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := seal(t, events.KindRequested, f.requested(tt.id, tt.claims.Domain, tt.claims.Name), tt.id.Key)
			r := events.Checker{Bundle: tt.bundle}.Inspect(m, t0)
			require.Error(t, r.Err)
			assert.ErrorIs(t, r.Err, tt.want)
			assert.Equal(t, tt.code, events.Code(r.Err))
			assert.Nil(t, r.Principal)
			codes[tt.name] = events.Code(r.Err)
		})
	}
	distinct := map[string]bool{}
	for _, c := range codes {
		distinct[c] = true
	}
	assert.Len(t, distinct, len(tests), "each refusal has its own reason: %v", codes)

	t.Run("the same request passes before the revocation", func(t *testing.T) {
		m := seal(t, events.KindRequested, f.requested(f.alice, "acme", "alice"), f.alice.Key)
		assert.NoError(t, events.Checker{Bundle: f.bundle}.Inspect(m, t0).Err)
	})
}

// A revoked component key no longer entitles its holder to emit its kinds,
// nor to refuse, though it is still listed.
func TestInspectRevokedComponentKey(t *testing.T) {
	f := newFixture(t)
	revoked := f.bundle.Clone()
	for _, k := range []string{pub(t, f.policy), pub(t, f.approval)} {
		_, err := revoked.Revoke("acme", k)
		require.NoError(t, err)
	}
	for _, k := range []events.Kind{events.KindEvaluated, events.KindApproved, events.KindRefused} {
		t.Run(k.String(), func(t *testing.T) {
			m := seal(t, k, f.sample(k), f.signer(k))
			require.NoError(t, events.Checker{Bundle: f.bundle}.Inspect(m, t0).Err, "accepted before the revocation")
			r := events.Checker{Bundle: revoked}.Inspect(m, t0)
			assert.ErrorIs(t, r.Err, events.ErrNotEntitled)
			assert.Equal(t, "signer-not-entitled", events.Code(r.Err))
			assert.Empty(t, r.Role)
		})
	}
	m := seal(t, events.KindGranted, f.sample(events.KindGranted), f.issuer)
	assert.NoError(t, events.Checker{Bundle: revoked}.Inspect(m, t0).Err, "the issuer's key was not revoked")
}
