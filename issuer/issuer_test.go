package issuer_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/issuer"
)

const reqID = "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b"

var nbf = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

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

// world has two domains, acme and other, each with its own issuer, and a
// requester of acme.
type world struct {
	bundle            *identity.Bundle
	acme, other       *issuer.Issuer
	acmeKey, otherKey nkeys.KeyPair
	acmePolicy        nkeys.KeyPair
	holder            nkeys.KeyPair
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{
		acmeKey: mustKey(t, nkeys.CreateServer), otherKey: mustKey(t, nkeys.CreateServer),
		acmePolicy: mustKey(t, nkeys.CreateServer), holder: mustKey(t, nkeys.CreateUser),
	}
	w.bundle = &identity.Bundle{Domains: map[string]*identity.Domain{
		"acme": {Components: map[identity.Role][]string{
			identity.RoleIssuer: {pub(t, w.acmeKey)}, identity.RolePolicy: {pub(t, w.acmePolicy)},
		}},
		"other": {Components: map[identity.Role][]string{identity.RoleIssuer: {pub(t, w.otherKey)}}},
	}}
	require.NoError(t, w.bundle.Validate())
	var err error
	w.acme, err = issuer.New(w.acmeKey, mustKey(t, nkeys.CreateCurveKeys))
	require.NoError(t, err)
	w.other, err = issuer.New(w.otherKey, mustKey(t, nkeys.CreateCurveKeys))
	require.NoError(t, err)
	return w
}

func (w *world) constraints(t testing.TB) issuer.Constraints {
	t.Helper()
	return issuer.Constraints{
		RequestID:    reqID,
		Holder:       pub(t, w.holder),
		Audience:     "acme",
		Action:       "restart",
		Resource:     "prod/db",
		ParamsDigest: issuer.ParamsDigest(map[string]string{"replica": "2"}),
		Evidence:     "sha256:" + strings.Repeat("ab", 32),
		NotBefore:    nbf,
		TTL:          10 * time.Minute,
	}
}

func mint(t testing.TB, i *issuer.Issuer, c issuer.Constraints) string {
	t.Helper()
	token, _, err := i.Mint(c)
	require.NoError(t, err)
	return token
}

func TestMintVerify(t *testing.T) {
	w := newWorld(t)
	c := w.constraints(t)
	c.BreakGlass = true
	token, claims, err := w.acme.Mint(c)
	require.NoError(t, err)

	assert.Equal(t, issuer.Claims{
		ID: claims.ID, IssuedAt: claims.IssuedAt, Nonce: claims.Nonce, // random or clock
		Issuer: pub(t, w.acmeKey), Holder: c.Holder, Audience: "acme",
		NotBefore: nbf, Expires: nbf.Add(10 * time.Minute),
		RequestID: reqID, Action: "restart", Resource: "prod/db",
		ParamsDigest: c.ParamsDigest, Evidence: c.Evidence, BreakGlass: true,
	}, claims)
	assert.NotEmpty(t, claims.ID)
	assert.Len(t, claims.Nonce, 32)

	got, err := issuer.Verify(token, issuer.VerifyOptions{
		Bundle: w.bundle, Audience: "acme", Action: "restart", Resource: "prod/db", Now: nbf.Add(time.Minute),
	})
	require.NoError(t, err)
	assert.Equal(t, claims, got)

	// Empty checks accept any action and any resource...
	_, err = issuer.Verify(token, issuer.VerifyOptions{Bundle: w.bundle, Audience: "acme", Now: nbf.Add(time.Minute)})
	assert.NoError(t, err)
	// ...but the verifier must always say which domain it is.
	_, err = issuer.Verify(token, issuer.VerifyOptions{Bundle: w.bundle, Now: nbf.Add(time.Minute)})
	assert.ErrorIs(t, err, issuer.ErrNoAudience)
}

func TestMintIsFresh(t *testing.T) {
	w := newWorld(t)
	c := w.constraints(t)
	a, ca, err := w.acme.Mint(c)
	require.NoError(t, err)
	b, cb, err := w.acme.Mint(c)
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
	assert.NotEqual(t, ca.Nonce, cb.Nonce)
	assert.NotEqual(t, issuer.TokenHash(a), issuer.TokenHash(b))
}

func TestGrantIDIsUnique(t *testing.T) {
	w := newWorld(t)
	c := w.constraints(t)
	_, ca, err := w.acme.Mint(c)
	require.NoError(t, err)
	c.RequestID = "11111111-2222-4333-8444-555555555555"
	_, cb, err := w.acme.Mint(c)
	require.NoError(t, err)
	assert.NotEqual(t, ca.Nonce, cb.Nonce)
	assert.NotEqual(t, ca.ID, cb.ID, "two grants, for two requests, share a jti")
}

func TestVerifyRefuses(t *testing.T) {
	w := newWorld(t)
	c := w.constraints(t)
	good := mint(t, w.acme, c)
	toOther := c
	toOther.Audience = "other"
	opts := func(edit func(o *issuer.VerifyOptions)) issuer.VerifyOptions {
		o := issuer.VerifyOptions{Bundle: w.bundle, Audience: "acme", Action: "restart", Resource: "prod/db", Now: nbf.Add(time.Minute)}
		if edit != nil {
			edit(&o)
		}
		return o
	}
	policyIssuer, err := issuer.New(w.acmePolicy, mustKey(t, nkeys.CreateCurveKeys))
	require.NoError(t, err)

	generic := func(signer nkeys.KeyPair, edit func(gc *jwt.GenericClaims)) string {
		gc := jwt.NewGenericClaims(c.Holder)
		gc.Audience = "acme"
		gc.NotBefore = nbf.Unix()
		gc.Expires = nbf.Add(time.Hour).Unix()
		gc.Data["action"], gc.Data["resource"] = "restart", "prod/db"
		edit(gc)
		tok, err := gc.Encode(signer)
		require.NoError(t, err)
		return tok
	}

	tests := []struct {
		name  string
		token string
		opts  issuer.VerifyOptions
		want  error
	}{
		{"other's issuer minting for acme", mint(t, w.other, c), opts(nil), issuer.ErrUntrustedIssuer},
		{"no audience named by the verifier", good, opts(func(o *issuer.VerifyOptions) { o.Audience = "" }), issuer.ErrNoAudience},
		{"acme's issuer minting for other", mint(t, w.acme, toOther), opts(func(o *issuer.VerifyOptions) { o.Audience = "other" }), issuer.ErrUntrustedIssuer},
		{"acme's policy key minting", mint(t, policyIssuer, c), opts(nil), issuer.ErrUntrustedIssuer},
		{"an issuer no domain trusts", mint(t, mustIssuer(t), c), opts(nil), issuer.ErrUntrustedIssuer},
		{"no bundle", good, opts(func(o *issuer.VerifyOptions) { o.Bundle = nil }), issuer.ErrUntrustedIssuer},
		{"audience other, verified by acme", mint(t, w.other, toOther), opts(nil), issuer.ErrWrongAudience},
		{"wrong audience", good, opts(func(o *issuer.VerifyOptions) { o.Audience = "other" }), issuer.ErrWrongAudience},
		{"wrong action", good, opts(func(o *issuer.VerifyOptions) { o.Action = "drop-database" }), issuer.ErrWrongAction},
		{"wrong resource", good, opts(func(o *issuer.VerifyOptions) { o.Resource = "prod/db2" }), issuer.ErrWrongResource},
		{"resource prefix", good, opts(func(o *issuer.VerifyOptions) { o.Resource = "prod" }), issuer.ErrWrongResource},
		{"expired beyond the leeway", good, opts(func(o *issuer.VerifyOptions) { o.Now = nbf.Add(10*time.Minute + 31*time.Second) }), issuer.ErrExpired},
		{"expired at exp plus the leeway", good, opts(func(o *issuer.VerifyOptions) { o.Now = nbf.Add(10*time.Minute + 30*time.Second) }), issuer.ErrExpired},
		{"expired beyond a 5s leeway", good, opts(func(o *issuer.VerifyOptions) {
			o.Now, o.Leeway = nbf.Add(10*time.Minute+5*time.Second), 5*time.Second
		}), issuer.ErrExpired},
		{"a leeway above the maximum is capped", good, opts(func(o *issuer.VerifyOptions) {
			o.Now, o.Leeway = nbf.Add(10*time.Minute+issuer.MaxLeeway), time.Hour
		}), issuer.ErrExpired},
		{"a negative leeway is none", good, opts(func(o *issuer.VerifyOptions) {
			o.Now, o.Leeway = nbf.Add(10*time.Minute), -time.Hour
		}), issuer.ErrExpired},
		{"not yet valid beyond the leeway", good, opts(func(o *issuer.VerifyOptions) { o.Now = nbf.Add(-31 * time.Second) }), issuer.ErrNotYetValid},
		{"not yet valid with a negative leeway", good, opts(func(o *issuer.VerifyOptions) {
			o.Now, o.Leeway = nbf.Add(-time.Second), -time.Hour
		}), issuer.ErrNotYetValid},
		{"generic JWT without a type", generic(w.acmeKey, func(*jwt.GenericClaims) {}), opts(nil), issuer.ErrWrongType},
		{"generic JWT of another type", generic(w.acmeKey, func(gc *jwt.GenericClaims) { gc.Data["type"] = "grant" }), opts(nil), issuer.ErrWrongType},
		{"user JWT", func() string {
			uc := jwt.NewUserClaims(c.Holder)
			uc.Audience = "acme"
			tok, err := uc.Encode(mustKey(t, nkeys.CreateAccount))
			require.NoError(t, err)
			return tok
		}(), opts(nil), issuer.ErrWrongType},
		{"not a JWT", "restart prod/db", opts(nil), issuer.ErrMalformed},
		{"empty", "", opts(nil), issuer.ErrMalformed},
		{"payload of another grant", func() string {
			other := mint(t, w.acme, toOther)
			p, q := strings.Split(good, "."), strings.Split(other, ".")
			return p[0] + "." + q[1] + "." + p[2]
		}(), opts(nil), issuer.ErrMalformed},
		{"signature of another grant", func() string {
			other := mint(t, w.acme, c)
			p, q := strings.Split(good, "."), strings.Split(other, ".")
			return p[0] + "." + p[1] + "." + q[2]
		}(), opts(nil), issuer.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := issuer.Verify(tt.token, tt.opts)
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

func mustIssuer(t testing.TB) *issuer.Issuer {
	t.Helper()
	i, err := issuer.New(mustKey(t, nkeys.CreateServer), mustKey(t, nkeys.CreateCurveKeys))
	require.NoError(t, err)
	return i
}

func TestVerifyWindow(t *testing.T) {
	w := newWorld(t)
	token := mint(t, w.acme, w.constraints(t))
	exp := nbf.Add(10 * time.Minute)
	tests := []struct {
		name   string
		now    time.Time
		leeway time.Duration
	}{
		{"at nbf", nbf, 0},
		{"within the leeway before nbf", nbf.Add(-29 * time.Second), 0},
		{"exactly the leeway before nbf", nbf.Add(-30 * time.Second), 0},
		{"a second before exp", exp.Add(-time.Second), 0},
		{"within the leeway after exp", exp.Add(29 * time.Second), 0},
		{"within a longer leeway after exp", exp.Add(59 * time.Second), time.Minute},
		{"within the maximum leeway", exp.Add(issuer.MaxLeeway - time.Second), time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := issuer.Verify(token, issuer.VerifyOptions{Bundle: w.bundle, Audience: "acme", Now: tt.now, Leeway: tt.leeway})
			assert.NoError(t, err)
		})
	}
}

func TestVerifyNowDefaultsToTheClock(t *testing.T) {
	w := newWorld(t)
	c := w.constraints(t)
	c.NotBefore = time.Now().Add(-time.Minute)
	_, err := issuer.Verify(mint(t, w.acme, c), issuer.VerifyOptions{Bundle: w.bundle, Audience: c.Audience})
	assert.NoError(t, err)
	c.NotBefore = time.Now().Add(-time.Hour)
	_, err = issuer.Verify(mint(t, w.acme, c), issuer.VerifyOptions{Bundle: w.bundle, Audience: c.Audience})
	assert.ErrorIs(t, err, issuer.ErrExpired)
}

func TestMintRefuses(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name string
		edit func(c *issuer.Constraints)
	}{
		{"TTL 5s", func(c *issuer.Constraints) { c.TTL = 5 * time.Second }},
		{"TTL just under 10s", func(c *issuer.Constraints) { c.TTL = 10*time.Second - time.Nanosecond }},
		{"TTL 25h", func(c *issuer.Constraints) { c.TTL = 25 * time.Hour }},
		{"TTL just over 24h", func(c *issuer.Constraints) { c.TTL = 24*time.Hour + time.Nanosecond }},
		{"no TTL", func(c *issuer.Constraints) { c.TTL = 0 }},
		{"negative TTL", func(c *issuer.Constraints) { c.TTL = -time.Minute }},
		{"holder is an account key", func(c *issuer.Constraints) { c.Holder = pub(t, mustKey(t, nkeys.CreateAccount)) }},
		{"holder is a server key", func(c *issuer.Constraints) { c.Holder = pub(t, w.acmeKey) }},
		{"holder is a curve key", func(c *issuer.Constraints) { c.Holder = pub(t, mustKey(t, nkeys.CreateCurveKeys)) }},
		{"holder is a name", func(c *issuer.Constraints) { c.Holder = "acme/carol" }},
		{"no holder", func(c *issuer.Constraints) { c.Holder = "" }},
		{"audience is not a domain name", func(c *issuer.Constraints) { c.Audience = "Acme" }},
		{"no audience", func(c *issuer.Constraints) { c.Audience = "" }},
		{"no action", func(c *issuer.Constraints) { c.Action = "" }},
		{"no resource", func(c *issuer.Constraints) { c.Resource = "" }},
		{"no request id", func(c *issuer.Constraints) { c.RequestID = "" }},
		{"no not-before", func(c *issuer.Constraints) { c.NotBefore = time.Time{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := w.constraints(t)
			tt.edit(&c)
			token, claims, err := w.acme.Mint(c)
			assert.ErrorIs(t, err, issuer.ErrConstraint)
			assert.Empty(t, token)
			assert.Zero(t, claims)
		})
	}
	for _, ttl := range []time.Duration{issuer.MinTTL, issuer.MaxTTL} {
		c := w.constraints(t)
		c.TTL = ttl
		_, claims, err := w.acme.Mint(c)
		require.NoError(t, err, "TTL %s is within bounds", ttl)
		assert.Equal(t, ttl, claims.Expires.Sub(claims.NotBefore))
	}
}

func TestNew(t *testing.T) {
	server := mustKey(t, nkeys.CreateServer)
	curve := mustKey(t, nkeys.CreateCurveKeys)
	tests := []struct {
		name      string
		key, xkey nkeys.KeyPair
		ok        bool
	}{
		{"server and curve", server, curve, true},
		{"account signing key", mustKey(t, nkeys.CreateAccount), curve, false},
		{"user signing key", mustKey(t, nkeys.CreateUser), curve, false},
		{"server key to seal", server, mustKey(t, nkeys.CreateServer), false},
		{"curve key to sign", curve, curve, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, err := issuer.New(tt.key, tt.xkey)
			if tt.ok {
				require.NoError(t, err)
				assert.Equal(t, pub(t, tt.xkey), i.XKey())
				return
			}
			assert.ErrorIs(t, err, issuer.ErrConstraint)
			assert.Nil(t, i)
		})
	}
}

func TestSealOpen(t *testing.T) {
	w := newWorld(t)
	token := mint(t, w.acme, w.constraints(t))
	holderX, err := issuer.HolderXKey(w.holder, reqID)
	require.NoError(t, err)

	sealed, err := w.acme.Seal(token, pub(t, holderX))
	require.NoError(t, err)
	assert.NotContains(t, sealed, token)
	_, err = base64.StdEncoding.DecodeString(sealed)
	require.NoError(t, err, "sealed grants are standard base64")

	opened, err := issuer.Open(sealed, w.acme.XKey(), holderX)
	require.NoError(t, err)
	assert.Equal(t, token, opened)

	// The holder's key for another request does not open it.
	otherX, err := issuer.HolderXKey(w.holder, "11111111-2222-4333-8444-555555555555")
	require.NoError(t, err)
	_, err = issuer.Open(sealed, w.acme.XKey(), otherX)
	assert.Error(t, err)

	// Nor does another user's key for the same request.
	strangerX, err := issuer.HolderXKey(mustKey(t, nkeys.CreateUser), reqID)
	require.NoError(t, err)
	_, err = issuer.Open(sealed, w.acme.XKey(), strangerX)
	assert.Error(t, err)

	// A grant sealed by another issuer than the one named does not open.
	_, err = issuer.Open(sealed, w.other.XKey(), holderX)
	assert.Error(t, err)

	// Nor does a changed box.
	raw, _ := base64.StdEncoding.DecodeString(sealed)
	raw[len(raw)-1] ^= 1
	_, err = issuer.Open(base64.StdEncoding.EncodeToString(raw), w.acme.XKey(), holderX)
	assert.Error(t, err)

	_, err = issuer.Open("not base64!", w.acme.XKey(), holderX)
	assert.Error(t, err)

	_, err = w.acme.Seal(token, pub(t, w.holder))
	assert.ErrorIs(t, err, issuer.ErrConstraint, "grants are sealed to a curve key, not a user key")
}

func TestHolderXKey(t *testing.T) {
	user := mustKey(t, nkeys.CreateUser)
	a1, err := issuer.HolderXKey(user, reqID)
	require.NoError(t, err)
	a2, err := issuer.HolderXKey(user, reqID)
	require.NoError(t, err)
	b, err := issuer.HolderXKey(user, "11111111-2222-4333-8444-555555555555")
	require.NoError(t, err)
	other, err := issuer.HolderXKey(mustKey(t, nkeys.CreateUser), reqID)
	require.NoError(t, err)

	assert.True(t, nkeys.IsValidPublicCurveKey(pub(t, a1)))
	assert.Equal(t, pub(t, a1), pub(t, a2), "the same user and request give the same key")
	assert.NotEqual(t, pub(t, a1), pub(t, b), "another request gives another key")
	assert.NotEqual(t, pub(t, a1), pub(t, other), "another user gives another key")

	// Whoever holds only the creds' seed can derive it again.
	seed, err := user.Seed()
	require.NoError(t, err)
	again, err := nkeys.FromSeed(seed)
	require.NoError(t, err)
	a3, err := issuer.HolderXKey(again, reqID)
	require.NoError(t, err)
	assert.Equal(t, pub(t, a1), pub(t, a3))

	// A key without its seed cannot.
	pubOnly, err := nkeys.FromPublicKey(pub(t, user))
	require.NoError(t, err)
	_, err = issuer.HolderXKey(pubOnly, reqID)
	assert.Error(t, err)
}

func TestDigests(t *testing.T) {
	assert.Equal(t, issuer.ParamsDigest(nil), issuer.ParamsDigest(map[string]string{}), "no params is empty params")
	assert.Equal(t,
		issuer.ParamsDigest(map[string]string{"a": "1", "b": "2"}),
		issuer.ParamsDigest(map[string]string{"b": "2", "a": "1"}))
	assert.NotEqual(t, issuer.ParamsDigest(map[string]string{"a": "1"}), issuer.ParamsDigest(map[string]string{"a": "2"}))
	assert.NotEqual(t, issuer.ParamsDigest(map[string]string{"a": "1"}), issuer.ParamsDigest(nil))
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, issuer.TokenHash("x"))
	assert.NotEqual(t, issuer.TokenHash("x"), issuer.TokenHash("y"))
}

// FuzzVerify checks that arbitrary tokens never panic Verify and that none
// verifies but the validly minted seed.
func FuzzVerify(f *testing.F) {
	w := newWorld(f)
	c := w.constraints(f)
	good, want, err := w.acme.Mint(c)
	require.NoError(f, err)
	f.Add(good)
	f.Add(mint(f, w.other, c))
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJlZDI1NTE5LW5rZXkiLCJ0eXAiOiJKV1QifQ.e30.")
	f.Add("")
	o := issuer.VerifyOptions{Bundle: w.bundle, Audience: "acme", Action: "restart", Resource: "prod/db", Now: nbf.Add(time.Minute)}
	f.Fuzz(func(t *testing.T, token string) {
		got, err := issuer.Verify(token, o)
		if err != nil {
			return
		}
		if got != want {
			t.Fatalf("verified a forged grant: %+v", got)
		}
	})
}

func TestVerifyHolderAndParams(t *testing.T) {
	w := newWorld(t)
	c := w.constraints(t)
	c.ParamsDigest = issuer.ParamsDigest(map[string]string{"replicas": "3"})
	token, claims, err := w.acme.Mint(c)
	require.NoError(t, err)
	o := issuer.VerifyOptions{Bundle: w.bundle, Audience: c.Audience, Now: c.NotBefore, Holder: c.Holder, Params: map[string]string{"replicas": "3"}}
	_, err = issuer.Verify(token, o)
	require.NoError(t, err)
	assert.Equal(t, c.Holder, claims.Holder)

	wrong := o
	wrong.Holder = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"
	_, err = issuer.Verify(token, wrong)
	assert.ErrorIs(t, err, issuer.ErrWrongHolder)
	wrong = o
	wrong.Params = map[string]string{"replicas": "30"}
	_, err = issuer.Verify(token, wrong)
	assert.ErrorIs(t, err, issuer.ErrWrongParams)
}
