package redeem_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/redeem"
)

// A target service redeems a grant before it acts. The holder sends the
// token with a proof of possession (here from its .creds); the service
// checks both, consumes the grant and records the redemption.
func ExampleRedeemer_Redeem() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	nc, _ := nats.Connect(nats.DefaultURL)
	defer nc.Close()
	bundle, _ := identity.LoadBundle(".writ/trust.json")
	key, _ := identity.LoadSeed(".writ/keys/redeemer.nk")

	r, err := redeem.New(redeem.Config{NC: nc, Domain: "acme", Bundle: bundle, Key: key, Service: "deployer"})
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = r.Run(ctx) }() // watches revocations until ctx ends
	_ = r.WaitReady(ctx)

	// On the holder's side: the token it opened, and a fresh proof.
	holder, _ := identity.LoadCreds(".writ/creds/deploy-bot.creds")
	token := "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ…"
	want := redeem.Want{Action: "deploy", Resource: "staging/web", Params: map[string]string{"version": "1.4.2"}}
	proof, _ := redeem.Prove(holder.Key, token, want, time.Now())
	header := proof.Encode() // sent along with the token, e.g. as a header

	// On the service's side.
	p, err := redeem.ParseProof(header)
	if err != nil {
		fmt.Println(err)
		return
	}
	claims, err := r.Redeem(ctx, token, p, want)
	switch {
	case errors.Is(err, redeem.ErrAlreadyUsed), errors.Is(err, redeem.ErrRevoked):
		fmt.Println("refused:", err)
	case err != nil:
		fmt.Println("refused:", redeem.Code(err))
	default:
		fmt.Println("deploying for request", claims.RequestID)
	}
}
