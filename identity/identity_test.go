package identity_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/identity"
)

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func mustKey(t testing.TB, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	require.NoError(t, err)
	return kp
}

func pub(t testing.TB, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	require.NoError(t, err)
	return p
}

func seed(t testing.TB, kp nkeys.KeyPair) []byte {
	t.Helper()
	s, err := kp.Seed()
	require.NoError(t, err)
	return s
}

// trust holds two domains, acme and other, each with its own account key.
type trust struct {
	bundle         *identity.Bundle
	acme, other    nkeys.KeyPair
	policy, issuer nkeys.KeyPair // acme's
	otherIssuer    nkeys.KeyPair
}

func newTrust(t testing.TB) *trust {
	t.Helper()
	tr := &trust{
		acme: mustKey(t, nkeys.CreateAccount), other: mustKey(t, nkeys.CreateAccount),
		policy: mustKey(t, nkeys.CreateServer), issuer: mustKey(t, nkeys.CreateServer),
		otherIssuer: mustKey(t, nkeys.CreateServer),
	}
	tr.bundle = &identity.Bundle{Domains: map[string]*identity.Domain{
		"acme": {Accounts: []string{pub(t, tr.acme)}, Components: map[identity.Role][]string{
			identity.RolePolicy: {pub(t, tr.policy)}, identity.RoleIssuer: {pub(t, tr.issuer)},
		}},
		"other": {Accounts: []string{pub(t, tr.other)}, Components: map[identity.Role][]string{
			identity.RoleIssuer: {pub(t, tr.otherIssuer)},
		}},
	}}
	require.NoError(t, tr.bundle.Validate())
	return tr
}

func issue(t testing.TB, account nkeys.KeyPair, s identity.UserSpec) *identity.Identity {
	t.Helper()
	creds, err := identity.IssueUser(account, s)
	require.NoError(t, err)
	id, err := identity.ParseCreds(creds)
	require.NoError(t, err)
	return id
}

// userJWT signs a user JWT built by edit, for tokens IssueUser cannot make.
func userJWT(t testing.TB, signer nkeys.KeyPair, edit func(uc *jwt.UserClaims)) string {
	t.Helper()
	uc := jwt.NewUserClaims(pub(t, mustKey(t, nkeys.CreateUser)))
	uc.Name = "someone"
	uc.Tags.Add(identity.TagDomain + "acme")
	edit(uc)
	token, err := uc.Encode(signer)
	require.NoError(t, err)
	return token
}

func TestVerifyUser(t *testing.T) {
	tr := newTrust(t)
	alice := issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "alice", Groups: []string{"sre-leads", "oncall"}, TTL: time.Hour, Now: t0})

	p, err := tr.bundle.VerifyUser(alice.JWT, t0)
	require.NoError(t, err)
	assert.Equal(t, identity.Principal{
		Domain: "acme", Name: "alice", Key: pub(t, alice.Key), Account: pub(t, tr.acme),
		Groups: []string{"oncall", "sre-leads"}, Expires: t0.Add(time.Hour),
	}, p)
	assert.Equal(t, "acme/alice", p.ID())
	assert.True(t, p.InGroup("oncall"))
	assert.False(t, p.InGroup("sre"))
}

func TestVerifyUserRefuses(t *testing.T) {
	tr := newTrust(t)
	signingKey := mustKey(t, nkeys.CreateAccount)
	tests := []struct {
		name  string
		token string
		now   time.Time
		want  error
	}{
		{
			name:  "domain the bundle does not know",
			token: issue(t, tr.acme, identity.UserSpec{Domain: "ghost", Name: "casper"}).JWT,
			want:  identity.ErrUnknownDomain,
		},
		{
			name:  "claims acme, signed by other's account",
			token: issue(t, tr.other, identity.UserSpec{Domain: "acme", Name: "alice"}).JWT,
			want:  identity.ErrUntrustedKey,
		},
		{
			name:  "claims acme, signed by an account no domain trusts",
			token: issue(t, mustKey(t, nkeys.CreateAccount), identity.UserSpec{Domain: "acme", Name: "alice"}).JWT,
			want:  identity.ErrUntrustedKey,
		},
		{
			name: "signed by a signing key on behalf of acme's account",
			token: userJWT(t, signingKey, func(uc *jwt.UserClaims) {
				uc.IssuerAccount = pub(t, tr.acme)
			}),
			want: identity.ErrUntrustedKey,
		},
		{
			name: "signed by acme's account and naming an issuer account anyway",
			token: userJWT(t, tr.acme, func(uc *jwt.UserClaims) {
				uc.IssuerAccount = pub(t, tr.acme)
			}),
			want: identity.ErrUntrustedKey,
		},
		{
			name:  "expired an hour ago",
			token: issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "old", TTL: time.Hour, Now: t0.Add(-2 * time.Hour)}).JWT,
			want:  identity.ErrIdentityExpired,
		},
		{
			name:  "expires right now",
			token: issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "old", TTL: time.Hour, Now: t0.Add(-time.Hour)}).JWT,
			want:  identity.ErrIdentityExpired,
		},
		{
			name:  "not valid yet",
			token: userJWT(t, tr.acme, func(uc *jwt.UserClaims) { uc.NotBefore = t0.Add(time.Minute).Unix() }),
			want:  identity.ErrNotYetValid,
		},
		{
			name: "no domain tag",
			token: userJWT(t, tr.acme, func(uc *jwt.UserClaims) {
				uc.Tags = nil
				uc.Tags.Add(identity.TagGroup + "sre-leads")
			}),
			want: identity.ErrNoDomain,
		},
		{
			name:  "two domain tags",
			token: userJWT(t, tr.acme, func(uc *jwt.UserClaims) { uc.Tags.Add(identity.TagDomain + "other") }),
			want:  identity.ErrIdentityMalformed,
		},
		{
			name:  "no name",
			token: userJWT(t, tr.acme, func(uc *jwt.UserClaims) { uc.Name = "" }),
			want:  identity.ErrIdentityMalformed,
		},
		{
			name:  "not a JWT",
			token: "alice",
			want:  identity.ErrIdentityMalformed,
		},
		{
			name: "account JWT instead of a user JWT",
			token: func() string {
				ac := jwt.NewAccountClaims(pub(t, tr.acme))
				ac.Name = "acme"
				tok, err := ac.Encode(mustKey(t, nkeys.CreateOperator))
				require.NoError(t, err)
				return tok
			}(),
			want: identity.ErrIdentityMalformed,
		},
		{
			name: "payload changed after signing",
			token: func() string {
				tok := issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "alice"}).JWT
				other := issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "mallory"}).JWT
				parts, otherParts := strings.Split(tok, "."), strings.Split(other, ".")
				return parts[0] + "." + otherParts[1] + "." + parts[2]
			}(),
			want: identity.ErrIdentityMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			p, err := tr.bundle.VerifyUser(tt.token, now)
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.want)
			assert.Zero(t, p, "a refused identity names nobody")
		})
	}
}

func TestVerifyUserValidityWindow(t *testing.T) {
	tr := newTrust(t)
	id := issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "alice", TTL: time.Hour, Now: t0})
	_, err := tr.bundle.VerifyUser(id.JWT, t0.Add(time.Hour-time.Second))
	assert.NoError(t, err, "valid until its last second")
	_, err = tr.bundle.VerifyUser(id.JWT, t0.Add(time.Hour))
	assert.ErrorIs(t, err, identity.ErrIdentityExpired)

	forever := issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "bot"})
	p, err := tr.bundle.VerifyUser(forever.JWT, t0.AddDate(50, 0, 0))
	require.NoError(t, err, "TTL zero: no expiry")
	assert.True(t, p.Expires.IsZero())

	nbf := userJWT(t, tr.acme, func(uc *jwt.UserClaims) { uc.NotBefore = t0.Unix() })
	_, err = tr.bundle.VerifyUser(nbf, t0)
	assert.NoError(t, err, "valid from its nbf")
	_, err = tr.bundle.VerifyUser(nbf, t0.Add(-time.Second))
	assert.ErrorIs(t, err, identity.ErrNotYetValid)
}

func TestBundleRoles(t *testing.T) {
	tr := newTrust(t)
	role, ok := tr.bundle.RoleOf("acme", pub(t, tr.policy))
	assert.True(t, ok)
	assert.Equal(t, identity.RolePolicy, role)

	_, ok = tr.bundle.RoleOf("other", pub(t, tr.policy))
	assert.False(t, ok, "a key trusted for acme plays no role for other")
	_, ok = tr.bundle.RoleOf("ghost", pub(t, tr.policy))
	assert.False(t, ok)
	_, ok = tr.bundle.RoleOf("acme", pub(t, tr.acme))
	assert.False(t, ok, "an account key is no component")

	assert.True(t, tr.bundle.Entitled("acme", identity.RoleIssuer, pub(t, tr.issuer)))
	assert.False(t, tr.bundle.Entitled("acme", identity.RoleIssuer, pub(t, tr.otherIssuer)), "other's issuer does not sign for acme")
	assert.False(t, tr.bundle.Entitled("acme", identity.RoleIssuer, pub(t, tr.policy)), "acme's policy key is not its issuer")
	assert.False(t, tr.bundle.Entitled("acme", identity.RoleApproval, pub(t, tr.policy)))
	assert.False(t, tr.bundle.Entitled("ghost", identity.RoleIssuer, pub(t, tr.issuer)))
}

func TestBundleValidate(t *testing.T) {
	account := pub(t, mustKey(t, nkeys.CreateAccount))
	server := pub(t, mustKey(t, nkeys.CreateServer))
	user := pub(t, mustKey(t, nkeys.CreateUser))
	tests := []struct {
		name string
		b    identity.Bundle
		want string // a fragment of the error naming what is wrong; "" means valid
	}{
		{"valid", identity.Bundle{Domains: map[string]*identity.Domain{"acme": {Accounts: []string{account}, Components: map[identity.Role][]string{identity.RoleIssuer: {server}}}}}, ""},
		{"domain without keys", identity.Bundle{Domains: map[string]*identity.Domain{"acme": {}}}, ""},
		{"no domains", identity.Bundle{}, "no domains"},
		{"upper-case domain", identity.Bundle{Domains: map[string]*identity.Domain{"Acme": {}}}, `"Acme": invalid name`},
		{"domain with a dot", identity.Bundle{Domains: map[string]*identity.Domain{"acme.corp": {}}}, "invalid name"},
		{"nil domain", identity.Bundle{Domains: map[string]*identity.Domain{"acme": nil}}, "empty"},
		{"user key as account", identity.Bundle{Domains: map[string]*identity.Domain{"acme": {Accounts: []string{user}}}}, "not an account public key"},
		{"server key as account", identity.Bundle{Domains: map[string]*identity.Domain{"acme": {Accounts: []string{server}}}}, "not an account public key"},
		{"unknown role", identity.Bundle{Domains: map[string]*identity.Domain{"acme": {Components: map[identity.Role][]string{"janitor": {server}}}}}, `unknown role "janitor"`},
		{"account key as component", identity.Bundle{Domains: map[string]*identity.Domain{"acme": {Components: map[identity.Role][]string{identity.RolePolicy: {account}}}}}, "not a server public key"},
		{"seed as component", identity.Bundle{Domains: map[string]*identity.Domain{"acme": {Components: map[identity.Role][]string{identity.RolePolicy: {"SNAB"}}}}}, "not a server public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.b.Validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, identity.ErrInvalidBundle)
			assert.ErrorContains(t, err, tt.want)
		})
	}

	t.Run("every error is reported", func(t *testing.T) {
		b := identity.Bundle{Domains: map[string]*identity.Domain{
			"Bad": {Accounts: []string{user}},
			"ok":  {Components: map[identity.Role][]string{"janitor": {user}}},
		}}
		err := b.Validate()
		require.Error(t, err)
		for _, frag := range []string{"invalid name", "not an account public key", "unknown role", "not a server public key"} {
			assert.ErrorContains(t, err, frag)
		}
	})
}

func TestBundleSaveLoad(t *testing.T) {
	tr := newTrust(t)
	path := filepath.Join(t.TempDir(), "trust.json")
	require.NoError(t, tr.bundle.Save(path))
	got, err := identity.LoadBundle(path)
	require.NoError(t, err)
	assert.Equal(t, tr.bundle, got)

	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"domains":{"ACME":{}}}`), 0o644))
	_, err = identity.LoadBundle(bad)
	assert.ErrorContains(t, err, "invalid name")

	require.NoError(t, os.WriteFile(bad, []byte(`{"domains":`), 0o644))
	_, err = identity.LoadBundle(bad)
	assert.Error(t, err)

	_, err = identity.LoadBundle(filepath.Join(t.TempDir(), "missing.json"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestRolesAndNames(t *testing.T) {
	for _, r := range identity.Roles {
		got, err := identity.ParseRole(string(r))
		require.NoError(t, err)
		assert.Equal(t, r, got)
	}
	for _, s := range []string{"", "Policy", "admin"} {
		_, err := identity.ParseRole(s)
		assert.Error(t, err, "%q", s)
	}

	tests := map[string]bool{
		"acme": true, "a": true, "0": true, "acme-corp": true, "a1-b2": true, strings.Repeat("a", 63): true,
		"": false, "Acme": false, "-acme": false, "acme_corp": false, "acme.corp": false, "acme corp": false,
		"acme/x": false, "*": false, ">": false, strings.Repeat("a", 64): false,
	}
	for name, want := range tests {
		assert.Equal(t, want, identity.ValidDomainName(name), "%q", name)
	}
}

// VerifyUser remembers a token whose signature it checked, but what the
// bundle says of it is decided on every call: a cached token is still
// refused once its key is revoked, once it has expired, or by a bundle
// that does not trust its domain; and a caller's copy is its own.
func TestVerifyUserDecidesAgainEachCall(t *testing.T) {
	tr := newTrust(t)
	alice := issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "alice", Groups: []string{"sre-leads"}, TTL: time.Hour, Now: t0})
	p, err := tr.bundle.VerifyUser(alice.JWT, t0)
	require.NoError(t, err)
	p.Groups[0] = "admins" // a caller scribbling on its copy
	again, err := tr.bundle.VerifyUser(alice.JWT, t0)
	require.NoError(t, err)
	assert.Equal(t, []string{"sre-leads"}, again.Groups)

	_, err = tr.bundle.VerifyUser(alice.JWT, t0.Add(2*time.Hour))
	assert.ErrorIs(t, err, identity.ErrIdentityExpired)

	revoked := tr.bundle.Clone()
	_, err = revoked.Revoke("acme", pub(t, tr.acme))
	require.NoError(t, err)
	_, err = revoked.VerifyUser(alice.JWT, t0)
	assert.ErrorIs(t, err, identity.ErrKeyRevoked)

	other := tr.bundle.Clone()
	require.NoError(t, other.Remove("acme"))
	_, err = other.VerifyUser(alice.JWT, t0)
	assert.ErrorIs(t, err, identity.ErrUnknownDomain)

	// A token changed in one byte of its signature is another token.
	forged := alice.JWT[:len(alice.JWT)-2] + "AA"
	if forged == alice.JWT {
		forged = alice.JWT[:len(alice.JWT)-2] + "BB"
	}
	_, err = tr.bundle.VerifyUser(forged, t0)
	assert.ErrorIs(t, err, identity.ErrIdentityMalformed)
}
