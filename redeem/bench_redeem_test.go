package redeem_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

// A whole redemption: checks, nonce, history read, jti, redeemed event.
// Grants are made by the pipeline before the clock starts.
func BenchmarkRedeem(b *testing.B) {
	e := writtest.Start(b, writtest.Options{})
	r := benchRedeemerOf(b, e)
	who := e.Identity("deploy-bot")
	n := b.N
	tokens := make([]string, 0, n)
	for range n {
		id := e.Request("deploy-bot", client.Spec{Action: redeemWant.Action, Resource: redeemWant.Resource, TTL: 10 * time.Minute})
		st := e.Settle(id)
		require.Equal(b, request.StatusGranted, st.State.Status)
		tok, err := client.OpenGrant(st.State, who)
		require.NoError(b, err)
		tokens = append(tokens, tok)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range n {
		proof, err := redeem.Prove(who.Key, tokens[i], redeemWant, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Redeem(ctx, tokens[i], proof, redeemWant); err != nil {
			b.Fatal(err)
		}
	}
}

var redeemWant = redeem.Want{Action: "deploy", Resource: "staging/web"}

func benchRedeemerOf(b *testing.B, e *writtest.Env) *redeem.Redeemer {
	r, err := redeem.New(redeem.Config{NC: e.NC, Domain: writtest.Domain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey, Service: "bench"})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	require.NoError(b, r.WaitReady(ctx))
	return r
}
