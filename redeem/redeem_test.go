package redeem_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

// fixture is a running installation with a Redeemer for its domain, whose
// trust bundle also lists a second domain, "other", with its own issuer.
type fixture struct {
	e         *writtest.Env
	r         *redeem.Redeemer
	js        jetstream.JetStream
	otherIss  *issuer.Issuer
	acmeIss   *issuer.Issuer
	holder    nkeys.KeyPair
	holderPub string
}

const holderName = "deploy-bot"

var deploy = redeem.Want{Action: "deploy", Resource: "staging/web", Params: map[string]string{"version": "1.4.2"}}

func start(t testing.TB) *fixture {
	t.Helper()
	e := writtest.Start(t, writtest.Options{})
	otherKey, err := nkeys.CreateServer()
	require.NoError(t, err)
	otherPub, _ := otherKey.PublicKey()
	bundle := cloneBundle(t, e.Runtime.Bundle)
	bundle.Domains["other"] = &identity.Domain{Components: map[identity.Role][]string{identity.RoleIssuer: {otherPub}}}
	require.NoError(t, bundle.Validate())

	f := &fixture{e: e, holder: e.Identity(holderName).Key}
	f.holderPub, _ = f.holder.PublicKey()
	f.otherIss, err = issuer.New(otherKey, mustKey(t, nkeys.CreateCurveKeys))
	require.NoError(t, err)
	f.acmeIss, err = issuer.New(e.Runtime.IssuerKey, e.Runtime.IssuerXKey)
	require.NoError(t, err)
	f.js, err = jetstream.New(e.NC)
	require.NoError(t, err)
	f.r = run(t, redeem.Config{
		NC: e.NC, Domain: writtest.Domain, Bundle: bundle, Key: e.Runtime.RedeemerKey,
		Service: "deployer", Logger: e.Logger,
	})
	return f
}

// run starts a Redeemer, waits until it is in sync, and stops it at cleanup.
func run(t testing.TB, cfg redeem.Config) *redeem.Redeemer {
	t.Helper()
	r, err := redeem.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(t, r.WaitReady(wctx))
	return r
}

func cloneBundle(t testing.TB, b *identity.Bundle) *identity.Bundle {
	t.Helper()
	raw, err := json.Marshal(b)
	require.NoError(t, err)
	var out identity.Bundle
	require.NoError(t, json.Unmarshal(raw, &out))
	return &out
}

func mustKey(t testing.TB, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	require.NoError(t, err)
	return kp
}

// grant has the pipeline grant deploy to the deploy bot and returns the
// request id and the opened token.
func (f *fixture) grant(t *testing.T) (string, string) {
	t.Helper()
	id := f.e.Request(holderName, client.Spec{Action: deploy.Action, Resource: deploy.Resource, Params: deploy.Params, TTL: 5 * time.Minute})
	r := f.e.Settle(id)
	require.Equal(t, request.StatusGranted, r.State.Status)
	token, err := client.OpenGrant(r.State, f.e.Identity(holderName))
	require.NoError(t, err)
	return id, token
}

func (f *fixture) prove(t *testing.T, token string, want redeem.Want) redeem.Proof {
	t.Helper()
	p, err := redeem.Prove(f.holder, token, want, time.Now())
	require.NoError(t, err)
	return p
}

func (f *fixture) redeem(t *testing.T, token string, want redeem.Want) (issuer.Claims, error) {
	t.Helper()
	return f.r.Redeem(t.Context(), token, f.prove(t, token, want), want)
}

// redemptions returns the redeemed events of a request's history.
func (f *fixture) redemptions(t *testing.T, id string) (request.State, []*events.Redeemed) {
	t.Helper()
	r, err := f.e.Client.Load(t.Context(), writtest.Domain, id)
	require.NoError(t, err)
	var out []*events.Redeemed
	for _, rec := range r.Records {
		if rec.Kind == events.KindRedeemed {
			require.NoError(t, rec.Err, "every redeemed event verifies")
			out = append(out, rec.Data.(*events.Redeemed))
		}
	}
	return r.State, out
}

func TestRedeemOnceThenAlreadyUsed(t *testing.T) {
	f := start(t)
	id, token := f.grant(t)

	claims, err := f.redeem(t, token, deploy)
	require.NoError(t, err)
	assert.Equal(t, id, claims.RequestID)
	assert.Equal(t, f.holderPub, claims.Holder)

	st, rs := f.redemptions(t, id)
	assert.Equal(t, request.StatusRedeemed, st.Status)
	require.Len(t, rs, 1)
	assert.Equal(t, events.RedemptionRedeemed, rs[0].Outcome)
	assert.Equal(t, issuer.TokenHash(token), rs[0].TokenHash)
	assert.Equal(t, f.holderPub, rs[0].Holder)
	assert.Equal(t, "deployer", rs[0].Service)

	_, err = f.redeem(t, token, deploy)
	require.ErrorIs(t, err, redeem.ErrAlreadyUsed)
	var re *redeem.Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "already-used", re.Code)
	assert.Equal(t, id, re.RequestID)
	assert.NotContains(t, err.Error(), token)

	st, rs = f.redemptions(t, id)
	assert.Equal(t, request.StatusRedeemed, st.Status, "a refused attempt changes nothing")
	require.Len(t, rs, 2)
	assert.Equal(t, events.RedemptionRefused, rs[1].Outcome)
	assert.Equal(t, "already-used", rs[1].Code)
	assert.NotEmpty(t, rs[1].Reason)
}

func TestRedeemRefuses(t *testing.T) {
	f := start(t)
	id, token := f.grant(t)
	now := time.Now()
	stranger := mustKey(t, nkeys.CreateUser)

	constraints := func(edit func(c *issuer.Constraints)) issuer.Constraints {
		c := issuer.Constraints{
			RequestID: id, Holder: f.holderPub, Audience: writtest.Domain,
			Action: deploy.Action, Resource: deploy.Resource, ParamsDigest: issuer.ParamsDigest(deploy.Params),
			NotBefore: now.Add(-time.Minute), TTL: 5 * time.Minute,
		}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	mint := func(i *issuer.Issuer, edit func(c *issuer.Constraints)) string {
		tok, _, err := i.Mint(constraints(edit))
		require.NoError(t, err)
		return tok
	}
	untyped := func() string {
		gc := jwt.NewGenericClaims(f.holderPub)
		gc.Audience = writtest.Domain
		gc.Expires = now.Add(time.Hour).Unix()
		gc.Data["type"] = "other-grant"
		gc.Data["request_id"], gc.Data["action"], gc.Data["resource"] = id, deploy.Action, deploy.Resource
		tok, err := gc.Encode(f.e.Runtime.IssuerKey)
		require.NoError(t, err)
		return tok
	}()
	with := func(edit func(w *redeem.Want)) redeem.Want {
		w := deploy
		w.Params = map[string]string{"version": "1.4.2"}
		edit(&w)
		return w
	}
	proofBy := func(kp nkeys.KeyPair, tok string, w redeem.Want, at time.Time) redeem.Proof {
		p, err := redeem.Prove(kp, tok, w, at)
		require.NoError(t, err)
		return p
	}

	tests := []struct {
		name     string
		token    string
		proof    func(token string, w redeem.Want) redeem.Proof // default: the holder's, now
		want     redeem.Want
		err      error
		code     string
		recorded bool // a refused event lands in the request's history
	}{
		// Not a genuine grant of this domain: anyone could have signed it,
		// so it must not write to the request's history.
		{name: "issuer of another domain minting for acme", token: mint(f.otherIss, nil), want: deploy,
			err: issuer.ErrUntrustedIssuer, code: "untrusted-issuer"},
		{name: "grant for another domain", token: mint(f.otherIss, func(c *issuer.Constraints) { c.Audience = "other" }), want: deploy,
			err: issuer.ErrWrongAudience, code: "wrong-audience"},
		{name: "wrong action", token: token, want: with(func(w *redeem.Want) { w.Action = "rollback" }),
			err: issuer.ErrWrongAction, code: "wrong-action", recorded: true},
		{name: "wrong resource", token: token, want: with(func(w *redeem.Want) { w.Resource = "staging/api" }),
			err: issuer.ErrWrongResource, code: "wrong-resource", recorded: true},
		{name: "wrong params", token: token, want: with(func(w *redeem.Want) { w.Params["version"] = "1.4.3" }),
			err: issuer.ErrWrongParams, code: "wrong-params", recorded: true},
		{name: "params missing", token: token, want: with(func(w *redeem.Want) { w.Params = nil }),
			err: issuer.ErrWrongParams, code: "wrong-params", recorded: true},
		{name: "expired beyond the leeway", token: mint(f.acmeIss, func(c *issuer.Constraints) {
			c.NotBefore, c.TTL = now.Add(-2*time.Minute), issuer.MinTTL
		}), want: deploy, err: issuer.ErrExpired, code: "expired", recorded: true},
		{name: "not yet valid", token: mint(f.acmeIss, func(c *issuer.Constraints) { c.NotBefore = now.Add(2 * time.Minute) }),
			want: deploy, err: issuer.ErrNotYetValid, code: "not-yet-valid", recorded: true},
		{name: "not a writ grant", token: untyped, want: deploy, err: issuer.ErrWrongType, code: "wrong-type"},
		{name: "not a token", token: "deploy staging/web please", want: deploy, err: issuer.ErrMalformed, code: "malformed"},
		{name: "no action named", token: token, want: redeem.Want{Resource: deploy.Resource}, err: redeem.ErrNoScope, code: "no-scope"},
		{name: "proof by another key", token: token, want: deploy,
			proof: func(tok string, w redeem.Want) redeem.Proof { return proofBy(stranger, tok, w, time.Now()) },
			err:   issuer.ErrWrongHolder, code: "wrong-holder", recorded: true},
		{name: "proof naming the holder, signed by another key", token: token, want: deploy,
			proof: func(tok string, w redeem.Want) redeem.Proof {
				p := proofBy(stranger, tok, w, time.Now())
				p.Holder = f.holderPub
				return p
			}, err: redeem.ErrBadProof, code: "bad-proof", recorded: true},
		{name: "proof for another action", token: token, want: deploy,
			proof: func(tok string, _ redeem.Want) redeem.Proof {
				return proofBy(f.holder, tok, with(func(w *redeem.Want) { w.Action = "rollback" }), time.Now())
			}, err: redeem.ErrBadProof, code: "bad-proof", recorded: true},
		{name: "proof for another token", token: token, want: deploy,
			proof: func(_ string, w redeem.Want) redeem.Proof { return proofBy(f.holder, untyped, w, time.Now()) },
			err:   redeem.ErrBadProof, code: "bad-proof", recorded: true},
		{name: "stale proof", token: token, want: deploy,
			proof: func(tok string, w redeem.Want) redeem.Proof {
				return proofBy(f.holder, tok, w, time.Now().Add(-31*time.Second))
			},
			err: redeem.ErrStaleProof, code: "stale-proof", recorded: true},
		{name: "proof from the future", token: token, want: deploy,
			proof: func(tok string, w redeem.Want) redeem.Proof {
				return proofBy(f.holder, tok, w, time.Now().Add(time.Minute))
			},
			err: redeem.ErrStaleProof, code: "stale-proof", recorded: true},
		{name: "grant not in the stream, for this request", token: mint(f.acmeIss, nil), want: deploy,
			err: redeem.ErrNotGranted, code: "not-granted", recorded: true},
		{name: "grant not in the stream, for no request", token: mint(f.acmeIss, func(c *issuer.Constraints) { c.RequestID = uuid.NewString() }),
			want: deploy, err: redeem.ErrNotGranted, code: "not-granted"},
	}
	codes := map[error]string{}
	refused := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := f.prove(t, tt.token, tt.want)
			if tt.proof != nil {
				p = tt.proof(tt.token, tt.want)
			}
			claims, err := f.r.Redeem(t.Context(), tt.token, p, tt.want)
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.err)
			assert.Zero(t, claims, "no claims with a refusal")
			var re *redeem.Error
			require.ErrorAs(t, err, &re)
			assert.Equal(t, tt.code, re.Code)
			assert.Equal(t, tt.code, redeem.Code(err))
			assert.Equal(t, issuer.TokenHash(tt.token), re.TokenHash)
			assert.NotContains(t, err.Error(), tt.token)
			if c, seen := codes[tt.err]; seen {
				assert.Equal(t, c, tt.code)
			}
			codes[tt.err] = tt.code
			if tt.recorded {
				refused++
			}
			_, rs := f.redemptions(t, id)
			require.Len(t, rs, refused, "refusals recorded in %s's history", id)
			if tt.recorded {
				last := rs[len(rs)-1]
				assert.Equal(t, events.RedemptionRefused, last.Outcome)
				assert.Equal(t, tt.code, last.Code)
				assert.Equal(t, issuer.TokenHash(tt.token), last.TokenHash)
			}
		})
	}
	// Each failure has its own code.
	seen := map[string]error{}
	for err, c := range codes {
		if prev, dup := seen[c]; dup {
			t.Errorf("code %q for both %v and %v", c, prev, err)
		}
		seen[c] = err
	}

	// None of the refusals consumed the grant.
	_, err := f.redeem(t, token, deploy)
	require.NoError(t, err)
	st, _ := f.redemptions(t, id)
	assert.Equal(t, request.StatusRedeemed, st.Status)
}

func TestReplayedProof(t *testing.T) {
	f := start(t)
	id, token := f.grant(t)
	p := f.prove(t, token, deploy)
	_, err := f.r.Redeem(t.Context(), token, p, deploy)
	require.NoError(t, err)
	_, err = f.r.Redeem(t.Context(), token, p, deploy)
	require.ErrorIs(t, err, redeem.ErrReplayedProof)

	// A proof is spent once it passed its checks, even if the
	// redemption then fails: here, a grant the stream does not hold.
	stray, _, err := f.acmeIss.Mint(issuer.Constraints{RequestID: id, Holder: f.holderPub, Audience: writtest.Domain,
		Action: deploy.Action, Resource: deploy.Resource, ParamsDigest: issuer.ParamsDigest(deploy.Params), NotBefore: time.Now(), TTL: time.Minute})
	require.NoError(t, err)
	ps := f.prove(t, stray, deploy)
	_, err = f.r.Redeem(t.Context(), stray, ps, deploy)
	require.ErrorIs(t, err, redeem.ErrNotGranted)
	_, err = f.r.Redeem(t.Context(), stray, ps, deploy)
	require.ErrorIs(t, err, redeem.ErrReplayedProof)

	_, rs := f.redemptions(t, id)
	require.Len(t, rs, 4)
	assert.Equal(t, "replayed-proof", rs[1].Code)
	assert.Equal(t, "not-granted", rs[2].Code)
	assert.Equal(t, "replayed-proof", rs[3].Code)
}

func TestRevocationIsPushed(t *testing.T) {
	f := start(t)
	tests := []struct {
		name   string
		revoke func(id, token string) error
	}{
		{"by request id", func(id, _ string) error { return redeem.Revoke(t.Context(), f.js, id, "", "incident 42") }},
		{"by token hash", func(_, token string) error {
			return redeem.Revoke(t.Context(), f.js, "", issuer.TokenHash(token), "incident 42")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, token := f.grant(t)
			require.False(t, f.r.Revoked(id, issuer.TokenHash(token)))
			start := time.Now()
			require.NoError(t, tt.revoke(id, token))
			require.Eventually(t, func() bool { return f.r.Revoked(id, issuer.TokenHash(token)) }, time.Second, time.Millisecond,
				"a running redeemer hears of a revocation within a second")
			t.Logf("revocation seen after %s", time.Since(start))
			_, err := f.redeem(t, token, deploy)
			require.ErrorIs(t, err, redeem.ErrRevoked)
			assert.Contains(t, err.Error(), "incident 42")
			_, rs := f.redemptions(t, id)
			require.Len(t, rs, 1)
			assert.Equal(t, "revoked", rs[0].Code)
		})
	}

	// A redeemer started after the revocation knows of it at once.
	id, token := f.grant(t)
	require.NoError(t, redeem.Revoke(t.Context(), f.js, id, "", "before start"))
	later := run(t, redeem.Config{NC: f.e.NC, Domain: writtest.Domain, Bundle: f.e.Runtime.Bundle, Key: f.e.Runtime.RedeemerKey, Service: "later"})
	assert.True(t, later.Revoked(id, ""))
	_, err := later.Redeem(t.Context(), token, f.prove(t, token, deploy), deploy)
	assert.ErrorIs(t, err, redeem.ErrRevoked)

	assert.Error(t, redeem.Revoke(t.Context(), f.js, "", "", "nothing named"))
	assert.Error(t, redeem.Revoke(t.Context(), f.js, "not-a-uuid", "", "x"))
	assert.Error(t, redeem.Revoke(t.Context(), f.js, "", "sha256:zz", "x"))
}

// The revoked event in the stream is enough, even if the revocation
// bucket never heard of it.
func TestRevokedInTheStream(t *testing.T) {
	f := start(t)
	id, token := f.grant(t)
	// A revocation answers an ask; the approval consumer may answer this
	// one first (then its revoked is the one in the stream): either way
	// the history says revoked.
	askSeq, err := f.e.Client.Revoke(t.Context(), f.e.Identity("alice"), writtest.Domain, id, "wrong ticket")
	require.NoError(t, err)
	r, err := f.e.Client.Load(t.Context(), writtest.Domain, id)
	require.NoError(t, err)
	if r.State.LastSeq == askSeq {
		out, err := events.Seal(events.Draft{Domain: writtest.Domain, RequestID: id, Kind: events.KindRevoked, Source: "writ://acme/approval",
			Time: time.Now(), Data: &events.Revoked{Prev: r.State.LastDigest, By: events.PrincipalRef{Domain: "acme", Name: "alice"}, Reason: "wrong ticket"}},
			f.e.Runtime.ApprovalKey)
		require.NoError(t, err)
		_, err = store.Append(t.Context(), f.js, "WRIT", out, askSeq, events.RequestFilter(writtest.Domain, id))
		if !store.IsConflict(err) {
			require.NoError(t, err)
		}
	}

	_, err = f.redeem(t, token, deploy)
	require.ErrorIs(t, err, redeem.ErrRevoked)
	assert.Contains(t, err.Error(), "wrong ticket")
}

func TestConcurrentRedemptionsOneWins(t *testing.T) {
	f := start(t)
	id, token := f.grant(t)
	const n = 10
	proofs := make([]redeem.Proof, n)
	for i := range proofs {
		proofs[i] = f.prove(t, token, deploy)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-gate
			_, errs[i] = f.r.Redeem(context.Background(), token, proofs[i], deploy)
		})
	}
	close(gate)
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
			continue
		}
		assert.ErrorIs(t, err, redeem.ErrAlreadyUsed)
	}
	assert.Equal(t, 1, wins)
	st, rs := f.redemptions(t, id)
	assert.Equal(t, request.StatusRedeemed, st.Status)
	outcomes := map[string]int{}
	for _, r := range rs {
		outcomes[r.Outcome]++
	}
	assert.Equal(t, map[string]int{events.RedemptionRedeemed: 1, events.RedemptionRefused: n - 1}, outcomes)
}

func TestStreamHoldsNoUsableGrant(t *testing.T) {
	f := start(t)
	id, token := f.grant(t)
	r, err := f.e.Client.Load(t.Context(), writtest.Domain, id)
	require.NoError(t, err)
	strs := 0
	for _, rec := range r.Records {
		assert.NotContains(t, string(rec.Body), token)
		var body any
		require.NoError(t, json.Unmarshal(rec.Body, &body))
		walk(body, func(s string) {
			strs++
			gc, err := jwt.DecodeGeneric(s)
			if rec.Kind == events.KindGranted {
				assert.Error(t, err, "a decodable JWT in the granted event")
				return
			}
			// The requested event carries the requester's user JWT: a
			// JWT, but no grant.
			if err == nil {
				assert.NotEqual(t, issuer.GrantType, gc.Data["type"], "a grant in the %s event", rec.Kind)
				assert.NotEqual(t, "writ-grant", string(gc.ClaimType()))
			}
		})
		for k, vs := range rec.Header {
			for _, v := range vs {
				_, err := jwt.DecodeGeneric(v)
				assert.Error(t, err, "a decodable JWT in header %s", k)
			}
		}
	}
	assert.Greater(t, strs, 10)
	_, err = jwt.DecodeGeneric(token)
	require.NoError(t, err, "the token itself decodes: the walk is meaningful")
}

func walk(v any, fn func(string)) {
	switch v := v.(type) {
	case string:
		fn(v)
	case map[string]any:
		for _, x := range v {
			walk(x, fn)
		}
	case []any:
		for _, x := range v {
			walk(x, fn)
		}
	}
}

func TestNotReadyFailsClosed(t *testing.T) {
	f := start(t)
	_, token := f.grant(t)
	r, err := redeem.New(redeem.Config{NC: f.e.NC, Domain: writtest.Domain, Bundle: f.e.Runtime.Bundle, Key: f.e.Runtime.RedeemerKey, Service: "idle"})
	require.NoError(t, err)
	_, err = r.Redeem(t.Context(), token, f.prove(t, token, deploy), deploy)
	require.ErrorIs(t, err, redeem.ErrNotReady)
	_, err = f.redeem(t, token, deploy)
	assert.NoError(t, err, "the refusal did not consume the grant")
}

func TestNewRefuses(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	good := redeem.Config{NC: e.NC, Domain: writtest.Domain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey, Service: "svc"}
	tests := []struct {
		name string
		edit func(c *redeem.Config)
		msg  string
	}{
		{"issuer key", func(c *redeem.Config) { c.Key = e.Runtime.IssuerKey }, "not a redeemer"},
		{"unknown key", func(c *redeem.Config) { c.Key = mustKey(t, nkeys.CreateServer) }, "not a redeemer"},
		{"no key", func(c *redeem.Config) { c.Key = nil }, "no redeemer key"},
		{"another domain", func(c *redeem.Config) { c.Domain = "other" }, "does not list"},
		{"no connection", func(c *redeem.Config) { c.NC = nil }, "no NATS"},
		{"no service", func(c *redeem.Config) { c.Service = "" }, "service"},
		{"leeway too long", func(c *redeem.Config) { c.Leeway = issuer.MaxLeeway + time.Second }, "leeway"},
		{"negative leeway", func(c *redeem.Config) { c.Leeway = -time.Second }, "leeway"},
		{"proof window too long", func(c *redeem.Config) { c.ProofWindow = time.Hour }, "proof window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			r, err := redeem.New(c)
			require.ErrorIs(t, err, redeem.ErrInvalidConfig)
			assert.ErrorIs(t, c.Validate(), redeem.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.msg, "the message says what is wrong")
			assert.Nil(t, r)
		})
	}
	_, err := redeem.New(good)
	assert.NoError(t, err)
}

func TestProofEncoding(t *testing.T) {
	holder := mustKey(t, nkeys.CreateUser)
	p, err := redeem.Prove(holder, "tok", deploy, time.Date(2025, 3, 14, 9, 0, 0, 123456789, time.UTC))
	require.NoError(t, err)
	s := p.Encode()
	got, err := redeem.ParseProof(s)
	require.NoError(t, err)
	assert.Equal(t, p, got)
	assert.Equal(t, s, got.Encode())

	_, err = redeem.Prove(mustKey(t, nkeys.CreateServer), "tok", deploy, time.Now())
	assert.ErrorIs(t, err, redeem.ErrMalformedProof, "only a user key holds grants")

	bad := []string{"", "v1", "v2." + s[3:], s + ".x", s[:len(s)-2],
		"v1.ABC." + p.Nonce + ".1." + p.Signature,
		"v1." + p.Holder + ".00." + "1." + p.Signature,
		"v1." + p.Holder + "." + p.Nonce + ".-1." + p.Signature,
		"v1." + p.Holder + "." + p.Nonce + ".01." + p.Signature,
		"v1." + p.Holder + "." + p.Nonce + ".99999999999999999999." + p.Signature,
	}
	for _, b := range bad {
		_, err := redeem.ParseProof(b)
		assert.ErrorIs(t, err, redeem.ErrMalformedProof, "%q", b)
	}
}

func FuzzParseProof(f *testing.F) {
	holder, _ := nkeys.CreateUser()
	p, _ := redeem.Prove(holder, "tok", deploy, time.Unix(1700000000, 5))
	f.Add(p.Encode())
	f.Add("v1....")
	f.Add("v1." + p.Holder + ".." + "0.")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := redeem.ParseProof(s)
		if err != nil {
			if !errors.Is(err, redeem.ErrMalformedProof) {
				t.Fatalf("error %v is not ErrMalformedProof", err)
			}
			return
		}
		again, err := redeem.ParseProof(p.Encode())
		if err != nil || again != p {
			t.Fatalf("round trip of %q: %v, %+v != %+v", s, err, again, p)
		}
	})
}

func natsMsg(out events.Outgoing) *nats.Msg {
	return &nats.Msg{Subject: out.Subject, Data: out.Body, Header: nats.Header(out.Header())}
}

// OnChange tells of each revocation as it arrives (with the request id
// when it names one) and of each change of the lock list: what the NATS
// callout ends live connections on.
func TestOnChange(t *testing.T) {
	f := start(t)
	heard := make(chan string, 64)
	r, err := redeem.New(redeem.Config{NC: f.e.NC, Domain: writtest.Domain, Bundle: f.e.Runtime.Bundle, Key: f.e.Runtime.RedeemerKey, Service: "watcher"})
	require.NoError(t, err)
	r.OnChange(func(id string) { heard <- id })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.NoError(t, r.WaitReady(t.Context()))
	next := func(want func(string) bool) {
		t.Helper()
		for {
			select {
			case id := <-heard:
				if want(id) {
					return
				}
			case <-time.After(5 * time.Second):
				t.Fatal("not told")
			}
		}
	}

	id, token := f.grant(t)
	require.NoError(t, redeem.Revoke(t.Context(), f.js, id, "", "incident 42"))
	next(func(got string) bool { return got == id })
	assert.True(t, r.Revoked(id, issuer.TokenHash(token)), "told after the list holds it")

	require.NoError(t, redeem.Revoke(t.Context(), f.js, "", issuer.TokenHash(token), "incident 43"))
	next(func(got string) bool { return got == "" })

	lockID, err := f.e.Client.Lock(t.Context(), f.e.Identity("alice"), writtest.Domain,
		events.LockTarget{Type: events.LockPrincipal, Name: "acme/" + holderName}, false, "stolen laptop")
	require.NoError(t, err)
	require.NotNil(t, f.e.AwaitAsk(lockID, 10*time.Second).Series.Lock().Done, "locked")
	bot := f.e.Identity(holderName).Principal
	next(func(got string) bool { return got == "" && errors.Is(r.CheckLocked(t.Context(), bot), locks.ErrLocked) })
}

// A Redeemer that cannot start returns why at once, rather than when its
// caller gives up: here its used-grants bucket exists but forgets entries
// after a minute, sooner than single use needs. ctx has no deadline.
func TestRunReturnsStartUpError(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	shortBucket(t, js)
	r, err := redeem.New(redeem.Config{NC: e.NC, Domain: writtest.Domain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey, Service: "svc"})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(t.Context()) }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, redeem.ErrBucketTooShort)
	case <-time.After(time.Second):
		t.Fatal("Run did not return its start-up error within a second")
	}
	_, err = r.Redeem(t.Context(), "x", redeem.Proof{}, deploy)
	assert.ErrorIs(t, err, redeem.ErrNotReady, "a Redeemer that did not start redeems nothing")
}

// shortBucket makes the used-grants bucket again, keeping entries for a
// minute only.
func shortBucket(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	if err := js.DeleteKeyValue(t.Context(), redeem.BucketUsed); err != nil {
		require.ErrorIs(t, err, jetstream.ErrBucketNotFound)
	}
	_, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: redeem.BucketUsed, TTL: time.Minute})
	require.NoError(t, err)
}
