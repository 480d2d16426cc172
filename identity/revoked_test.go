package identity_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/identity"
)

func TestVerifyUserRevokedKeys(t *testing.T) {
	tr := newTrust(t)
	stranger := mustKey(t, nkeys.CreateAccount)
	alice := issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "alice", TTL: time.Hour, Now: t0})
	tests := []struct {
		name    string
		revoke  map[string][]string // domain → keys
		token   string
		want    error // nil: accepted
		wantMsg string
	}{
		{name: "nothing revoked", token: alice.JWT},
		{
			name: "acme's account key revoked while still listed", revoke: map[string][]string{"acme": {pub(t, tr.acme)}},
			token: alice.JWT, want: identity.ErrKeyRevoked, wantMsg: "revoked for \"acme\"",
		},
		{
			name: "a key revoked for other does not touch acme", revoke: map[string][]string{"other": {pub(t, tr.acme)}},
			token: alice.JWT,
		},
		{
			name: "revoked and not listed: revoked is the reason", revoke: map[string][]string{"acme": {pub(t, stranger)}},
			token: issue(t, stranger, identity.UserSpec{Domain: "acme", Name: "mallory"}).JWT, want: identity.ErrKeyRevoked,
		},
		{
			name: "signing key on behalf of a revoked account", revoke: map[string][]string{"acme": {pub(t, tr.acme)}},
			token: userJWT(t, mustKey(t, nkeys.CreateAccount), func(uc *jwt.UserClaims) { uc.IssuerAccount = pub(t, tr.acme) }),
			want:  identity.ErrKeyRevoked,
		},
		{
			name: "a revoked component key says nothing about principals", revoke: map[string][]string{"acme": {pub(t, tr.policy)}},
			token: alice.JWT,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tr.bundle.Clone()
			for d, keys := range tt.revoke {
				b.Domains[d].Revoked = keys
			}
			require.NoError(t, b.Validate())
			p, err := b.VerifyUser(tt.token, t0)
			if tt.want == nil {
				require.NoError(t, err)
				assert.Equal(t, "acme/alice", p.ID())
				return
			}
			assert.ErrorIs(t, err, tt.want)
			assert.NotErrorIs(t, err, identity.ErrUntrustedKey, "a revoked key is its own reason")
			if tt.wantMsg != "" {
				assert.ErrorContains(t, err, tt.wantMsg)
			}
			assert.Zero(t, p)
		})
	}
}

// The four refusals a federation operator must tell apart.
func TestVerifyUserDistinctReasons(t *testing.T) {
	tr := newTrust(t)
	revoked := tr.bundle.Clone()
	revoked.Domains["acme"].Revoked = []string{pub(t, tr.acme)}
	errs := map[string]error{}
	_, errs["unknown domain"] = tr.bundle.VerifyUser(issue(t, tr.acme, identity.UserSpec{Domain: "ghost", Name: "casper"}).JWT, t0)
	_, errs["wrong key"] = tr.bundle.VerifyUser(issue(t, tr.other, identity.UserSpec{Domain: "acme", Name: "alice"}).JWT, t0)
	_, errs["expired"] = tr.bundle.VerifyUser(issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "old", TTL: time.Hour, Now: t0.Add(-2 * time.Hour)}).JWT, t0)
	_, errs["revoked"] = revoked.VerifyUser(issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "alice"}).JWT, t0)
	sentinels := map[string]error{
		"unknown domain": identity.ErrUnknownDomain, "wrong key": identity.ErrUntrustedKey,
		"expired": identity.ErrIdentityExpired, "revoked": identity.ErrKeyRevoked,
	}
	for name, err := range errs {
		for other, sentinel := range sentinels {
			if other == name {
				assert.ErrorIs(t, err, sentinel, name)
			} else {
				assert.NotErrorIs(t, err, sentinel, "%s is not %s", name, other)
			}
		}
	}
}

func TestBundleRevokedComponents(t *testing.T) {
	tr := newTrust(t)
	b := tr.bundle.Clone()
	added, err := b.Revoke("acme", pub(t, tr.policy))
	require.NoError(t, err)
	assert.True(t, added)

	assert.False(t, b.Entitled("acme", identity.RolePolicy, pub(t, tr.policy)), "revoked, though still listed")
	_, ok := b.RoleOf("acme", pub(t, tr.policy))
	assert.False(t, ok, "a revoked key plays no role")
	assert.True(t, b.Entitled("acme", identity.RoleIssuer, pub(t, tr.issuer)), "the other components are untouched")
	assert.True(t, b.Entitled("other", identity.RoleIssuer, pub(t, tr.otherIssuer)))
	assert.True(t, tr.bundle.Entitled("acme", identity.RolePolicy, pub(t, tr.policy)), "Clone is deep: the original is untouched")

	added, err = b.Revoke("acme", pub(t, tr.policy))
	require.NoError(t, err)
	assert.False(t, added, "revoking twice changes nothing")
	assert.Len(t, b.Domains["acme"].Revoked, 1)
}

func TestBundleValidateRevoked(t *testing.T) {
	account := pub(t, mustKey(t, nkeys.CreateAccount))
	server := pub(t, mustKey(t, nkeys.CreateServer))
	user := pub(t, mustKey(t, nkeys.CreateUser))
	curve := pub(t, mustKey(t, nkeys.CreateCurveKeys))
	tests := []struct {
		revoked []string
		ok      bool
	}{
		{[]string{account}, true},
		{[]string{server}, true},
		{[]string{account, server}, true},
		{[]string{user}, false},
		{[]string{curve}, false},
		{[]string{"SAAB"}, false},
		{[]string{""}, false},
	}
	for _, tt := range tests {
		b := identity.Bundle{Domains: map[string]*identity.Domain{"acme": {Accounts: []string{account}, Revoked: tt.revoked}}}
		err := b.Validate()
		if tt.ok {
			assert.NoError(t, err, "%q", tt.revoked)
		} else {
			assert.ErrorIs(t, err, identity.ErrInvalidBundle, "%q", tt.revoked)
			assert.ErrorContains(t, err, "is not an account or server public key", "%q", tt.revoked)
		}
	}
}

func TestBundleAdd(t *testing.T) {
	tr := newTrust(t)
	newAccount := pub(t, mustKey(t, nkeys.CreateAccount))
	newServer := pub(t, mustKey(t, nkeys.CreateServer))
	tests := []struct {
		name   string
		domain string
		add    identity.Domain
		prep   func(b *identity.Bundle)
		added  int
		want   error  // nil: accepted
		errMsg string // a fragment of the refusal
		check  func(t *testing.T, b *identity.Bundle)
	}{
		{
			name: "a new domain", domain: "globex",
			add:   identity.Domain{Accounts: []string{newAccount}, Components: map[identity.Role][]string{identity.RoleIssuer: {newServer}}},
			added: 2,
			check: func(t *testing.T, b *identity.Bundle) {
				assert.True(t, b.Entitled("globex", identity.RoleIssuer, newServer))
				assert.Equal(t, []string{newAccount}, b.Domains["globex"].Accounts)
			},
		},
		{
			name: "extends a domain", domain: "acme",
			add: identity.Domain{Accounts: []string{newAccount}}, added: 1,
			check: func(t *testing.T, b *identity.Bundle) {
				assert.Equal(t, []string{pub(t, tr.acme), newAccount}, b.Domains["acme"].Accounts)
				assert.True(t, b.Entitled("acme", identity.RolePolicy, pub(t, tr.policy)), "what was there stays")
			},
		},
		{
			name: "keys already listed: nothing new", domain: "acme",
			add:   identity.Domain{Accounts: []string{pub(t, tr.acme)}, Components: map[identity.Role][]string{identity.RolePolicy: {pub(t, tr.policy)}}},
			added: 0,
		},
		{
			name: "revocations are merged", domain: "acme",
			add: identity.Domain{Revoked: []string{newServer}}, added: 1,
			check: func(t *testing.T, b *identity.Bundle) {
				assert.Equal(t, []string{newServer}, b.Domains["acme"].Revoked)
			},
		},
		{
			name: "account key of another domain", domain: "acme",
			add:  identity.Domain{Accounts: []string{pub(t, tr.other)}},
			want: identity.ErrKeyInOtherDomain, errMsg: `already trusted for domain "other"`,
		},
		{
			name: "component key of another domain", domain: "globex",
			add:  identity.Domain{Components: map[identity.Role][]string{identity.RoleIssuer: {pub(t, tr.otherIssuer)}}},
			want: identity.ErrKeyInOtherDomain,
		},
		{
			name: "a key in another role of the same domain", domain: "acme",
			add:  identity.Domain{Components: map[identity.Role][]string{identity.RoleApproval: {pub(t, tr.policy)}}},
			want: identity.ErrKeyRoleConflict, errMsg: "policy key, not its approval key",
		},
		{
			name: "a key revoked for the domain", domain: "acme",
			prep: func(b *identity.Bundle) { b.Domains["acme"].Revoked = []string{newAccount} },
			add:  identity.Domain{Accounts: []string{newAccount}},
			want: identity.ErrKeyIsRevoked,
		},
		{
			name: "server key as account", domain: "acme",
			add:  identity.Domain{Accounts: []string{newServer}},
			want: identity.ErrInvalidKey,
		},
		{
			name: "account key as component", domain: "acme",
			add:  identity.Domain{Components: map[identity.Role][]string{identity.RoleIssuer: {newAccount}}},
			want: identity.ErrInvalidKey,
		},
		{
			name: "user key revoked", domain: "acme",
			add:  identity.Domain{Revoked: []string{pub(t, mustKey(t, nkeys.CreateUser))}},
			want: identity.ErrInvalidKey,
		},
		{
			name: "unknown role", domain: "acme",
			add:    identity.Domain{Components: map[identity.Role][]string{"janitor": {newServer}}},
			errMsg: `unknown role "janitor"`,
		},
		{
			name: "invalid domain name", domain: "Globex",
			add:    identity.Domain{Accounts: []string{newAccount}},
			errMsg: "invalid domain name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tr.bundle.Clone()
			if tt.prep != nil {
				tt.prep(b)
			}
			before := b.Clone()
			n, err := b.Add(tt.domain, tt.add)
			if tt.want == nil && tt.errMsg == "" {
				require.NoError(t, err)
				assert.Equal(t, tt.added, n)
				require.NoError(t, b.Validate())
				if tt.check != nil {
					tt.check(t, b)
				}
				return
			}
			require.Error(t, err)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
			if tt.errMsg != "" {
				assert.ErrorContains(t, err, tt.errMsg)
			}
			assert.Equal(t, before, b, "a refused edit changes nothing")
		})
	}

	t.Run("the conflict names both domains", func(t *testing.T) {
		_, err := tr.bundle.Clone().Add("globex", identity.Domain{Accounts: []string{pub(t, tr.acme)}})
		var conflict *identity.KeyConflictError
		require.ErrorAs(t, err, &conflict)
		assert.Equal(t, identity.KeyConflictError{Key: pub(t, tr.acme), Domain: "globex", Owner: "acme"}, *conflict)
	})
}

func TestBundleRemove(t *testing.T) {
	tr := newTrust(t)
	tests := []struct {
		name  string
		edit  func(b *identity.Bundle) error
		want  error
		check func(t *testing.T, b *identity.Bundle)
	}{
		{
			name: "a domain", edit: func(b *identity.Bundle) error { return b.Remove("other") },
			check: func(t *testing.T, b *identity.Bundle) { assert.NotContains(t, b.Domains, "other") },
		},
		{
			name: "an unknown domain", edit: func(b *identity.Bundle) error { return b.Remove("ghost") },
			want: identity.ErrUnknownDomain,
		},
		{
			name: "an account key", edit: func(b *identity.Bundle) error { return b.RemoveKey("acme", pub(t, tr.acme)) },
			check: func(t *testing.T, b *identity.Bundle) { assert.Empty(t, b.Domains["acme"].Accounts) },
		},
		{
			name: "a component key", edit: func(b *identity.Bundle) error { return b.RemoveKey("acme", pub(t, tr.policy)) },
			check: func(t *testing.T, b *identity.Bundle) {
				assert.NotContains(t, b.Domains["acme"].Components, identity.RolePolicy)
				assert.True(t, b.Entitled("acme", identity.RoleIssuer, pub(t, tr.issuer)))
			},
		},
		{
			name: "a key of another domain", edit: func(b *identity.Bundle) error { return b.RemoveKey("acme", pub(t, tr.otherIssuer)) },
			want: identity.ErrKeyNotListed,
		},
		{
			name: "a key of an unknown domain", edit: func(b *identity.Bundle) error { return b.RemoveKey("ghost", pub(t, tr.acme)) },
			want: identity.ErrUnknownDomain,
		},
		{
			name: "a listed, revoked key: the revocation stays",
			edit: func(b *identity.Bundle) error {
				if _, err := b.Revoke("acme", pub(t, tr.policy)); err != nil {
					return err
				}
				return b.RemoveKey("acme", pub(t, tr.policy))
			},
			check: func(t *testing.T, b *identity.Bundle) {
				assert.Equal(t, []string{pub(t, tr.policy)}, b.Domains["acme"].Revoked)
			},
		},
		{
			name: "a key that is only revoked",
			edit: func(b *identity.Bundle) error {
				k := pub(t, mustKey(t, nkeys.CreateServer))
				if _, err := b.Revoke("acme", k); err != nil {
					return err
				}
				return b.RemoveKey("acme", k)
			},
			want: identity.ErrKeyNotListed,
		},
		{
			name: "revoke for an unknown domain",
			edit: func(b *identity.Bundle) error { _, err := b.Revoke("ghost", pub(t, tr.acme)); return err },
			want: identity.ErrUnknownDomain,
		},
		{
			name: "revoke a user key",
			edit: func(b *identity.Bundle) error {
				_, err := b.Revoke("acme", pub(t, mustKey(t, nkeys.CreateUser)))
				return err
			},
			want: identity.ErrInvalidKey,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tr.bundle.Clone()
			err := tt.edit(b)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
				return
			}
			require.NoError(t, err)
			require.NoError(t, b.Validate())
			tt.check(t, b)
		})
	}
}

func TestBundleSaveIsAtomicAndValid(t *testing.T) {
	tr := newTrust(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "trust.json")
	require.NoError(t, tr.bundle.Save(path))
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	t.Run("an invalid bundle is not written", func(t *testing.T) {
		bad := tr.bundle.Clone()
		bad.Domains["acme"].Revoked = []string{"not-a-key"}
		err := bad.Save(path)
		assert.ErrorIs(t, err, identity.ErrInvalidBundle)
		after, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, before, after, "the file on disk is untouched")
		assert.ErrorContains(t, (&identity.Bundle{}).Save(path), "no domains")
	})

	t.Run("readers see a whole bundle, old or new, while it is rewritten", func(t *testing.T) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var readErr error
		var reads int
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := identity.LoadBundle(path); err != nil {
					readErr = err
					return
				}
				reads++
			}
		}()
		b := tr.bundle.Clone()
		for i := range 50 {
			k := pub(t, mustKey(t, nkeys.CreateServer))
			_, err := b.Revoke("acme", k)
			require.NoError(t, err)
			require.NoError(t, b.Save(path), "save %d", i)
		}
		close(stop)
		wg.Wait()
		require.NoError(t, readErr)
		assert.Positive(t, reads)
		got, err := identity.LoadBundle(path)
		require.NoError(t, err)
		assert.Len(t, got.Domains["acme"].Revoked, 50)
	})

	t.Run("no temporary file is left behind", func(t *testing.T) {
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1)
		assert.Equal(t, "trust.json", entries[0].Name())
		st, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	})

	t.Run("revoked keys survive a round trip", func(t *testing.T) {
		b := tr.bundle.Clone()
		b.Domains["acme"].Revoked = []string{pub(t, tr.policy)}
		require.NoError(t, b.Save(path))
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		var doc map[string]map[string]map[string]any
		require.NoError(t, json.Unmarshal(raw, &doc))
		assert.Equal(t, []any{pub(t, tr.policy)}, doc["domains"]["acme"]["revoked"], "the JSON field is \"revoked\"")
		got, err := identity.LoadBundle(path)
		require.NoError(t, err)
		assert.Equal(t, b, got)
	})
}

func TestValidPrincipalName(t *testing.T) {
	for name, want := range map[string]bool{
		"alice": true, "deploy-bot": true, "Alice.Smith": true, "svc@team": true, "a": true,
		"": false, ".hidden": false, "-x": false, "a/b": false, "../x": false, "a b": false,
	} {
		assert.Equal(t, want, identity.ValidPrincipalName(name), "%q", name)
	}
}
