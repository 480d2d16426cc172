package redeem_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/redeem"
)

// Redeem reads tokens from outside: whatever they hold, it refuses with a
// known error and never panics.
func FuzzRedeemToken(f *testing.F) {
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.AAAA")
	f.Add("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJhdWQiOiJhY21lIiwidHlwZSI6IndyaXQtZ3JhbnQifQ.AAAA")
	stranger, _ := issuer.New(mustKey(f, nkeys.CreateServer), mustKey(f, nkeys.CreateCurveKeys))
	holder, _ := mustKey(f, nkeys.CreateUser).PublicKey()
	untrusted, _, err := stranger.Mint(issuer.Constraints{RequestID: "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b", Holder: holder,
		Audience: "acme", Action: "deploy", Resource: "staging/web", NotBefore: time.Now(), TTL: time.Minute})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(untrusted)
	fx := start(f)
	f.Fuzz(func(t *testing.T, token string) {
		proof, err := redeem.Prove(fx.holder, token, deploy, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, err = fx.r.Redeem(t.Context(), token, proof, deploy)
		if err == nil {
			t.Fatalf("redeemed a fuzzed token")
		}
		var re *redeem.Error
		if !errors.As(err, &re) || re.Code == "internal" {
			t.Fatalf("unknown refusal %v", err)
		}
		if re.TokenHash != issuer.TokenHash(token) {
			t.Fatalf("token hash %s", re.TokenHash)
		}
	})
}
