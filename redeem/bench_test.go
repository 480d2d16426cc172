package redeem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/request"
)

var benchWant = Want{Action: "deploy", Resource: "staging/web"}

func benchRedeemer(b *testing.B, e *writtest.Env) *Redeemer {
	r, err := New(Config{NC: e.NC, Domain: writtest.Domain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey, Service: "bench"})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	require.NoError(b, r.WaitReady(ctx))
	return r
}

// The checks without I/O: the grant's signature and claims, the holder
// proof's signature and time, the revocation list.
func BenchmarkCheck(b *testing.B) {
	e := writtest.Start(b, writtest.Options{NoServe: true})
	r := benchRedeemer(b, e)
	iss, err := issuer.New(e.Runtime.IssuerKey, e.Runtime.IssuerXKey)
	require.NoError(b, err)
	holder, _ := nkeys.CreateUser()
	pub, _ := holder.PublicKey()
	token, _, err := iss.Mint(issuer.Constraints{RequestID: uuid.NewString(), Holder: pub, Audience: writtest.Domain,
		Action: benchWant.Action, Resource: benchWant.Resource, ParamsDigest: issuer.ParamsDigest(nil), NotBefore: time.Now(), TTL: time.Hour})
	require.NoError(b, err)
	proof, err := Prove(holder, token, benchWant, time.Now())
	require.NoError(b, err)
	for b.Loop() {
		if _, err := r.check(&attempt{token: token, hash: issuer.TokenHash(token), proof: proof, want: benchWant, now: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
}

// The checks plus the two create-only KV writes (the proof's nonce and the
// grant's jti), without reading or appending the request's history.
func BenchmarkCheckAndConsume(b *testing.B) {
	e := writtest.Start(b, writtest.Options{NoServe: true})
	r := benchRedeemer(b, e)
	iss, err := issuer.New(e.Runtime.IssuerKey, e.Runtime.IssuerXKey)
	require.NoError(b, err)
	holder, _ := nkeys.CreateUser()
	pub, _ := holder.PublicKey()
	token, _, err := iss.Mint(issuer.Constraints{RequestID: uuid.NewString(), Holder: pub, Audience: writtest.Domain,
		Action: benchWant.Action, Resource: benchWant.Resource, ParamsDigest: issuer.ParamsDigest(nil), NotBefore: time.Now(), TTL: time.Hour})
	require.NoError(b, err)
	ctx := context.Background()
	jti := make([]byte, 16)
	for b.Loop() {
		proof, err := Prove(holder, token, benchWant, time.Now())
		require.NoError(b, err)
		if _, err := r.check(&attempt{token: token, hash: issuer.TokenHash(token), proof: proof, want: benchWant, now: time.Now()}); err != nil {
			b.Fatal(err)
		}
		if _, err := r.nonces.Create(ctx, proof.Holder+"."+proof.Nonce, nil); err != nil {
			b.Fatal(err)
		}
		_, _ = rand.Read(jti)
		if _, err := r.used.Create(ctx, usedKey(hex.EncodeToString(jti)), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// A whole redemption: checks, nonce, history read, jti, redeemed event.
// Grants are made by the pipeline before the clock starts.
func BenchmarkRedeem(b *testing.B) {
	e := writtest.Start(b, writtest.Options{})
	r := benchRedeemer(b, e)
	who := e.Identity("deploy-bot")
	n := b.N
	tokens := make([]string, 0, n)
	for range n {
		id := e.Request("deploy-bot", client.Spec{Action: benchWant.Action, Resource: benchWant.Resource, TTL: 10 * time.Minute})
		st := e.Settle(id)
		require.Equal(b, request.StatusGranted, st.State.Status)
		tok, err := client.OpenGrant(st.State, who)
		require.NoError(b, err)
		tokens = append(tokens, tok)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range n {
		proof, err := Prove(who.Key, tokens[i], benchWant, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Redeem(ctx, tokens[i], proof, benchWant); err != nil {
			b.Fatal(err)
		}
	}
}
