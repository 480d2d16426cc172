package issuer_test

import (
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/issuer"
)

// The issuer component makes a grant with Mint, then Seal to the
// request's holder xkey (consumers/issuer.go); a redeemer's check starts
// with Verify. Opening is measured where the requester does it, in
// package client.

func BenchmarkMint(b *testing.B) {
	w := newWorld(b)
	c := w.constraints(b)
	// As the pipeline runs it: with its key loaded from a file, derived once.
	fast, err := issuer.New(identity.Fast(w.acmeKey), mustKey(b, nkeys.CreateCurveKeys))
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := fast.Mint(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal(b *testing.B) {
	w := newWorld(b)
	token := mint(b, w.acme, w.constraints(b))
	holderX, err := issuer.HolderXKey(w.holder, reqID)
	require.NoError(b, err)
	to := pub(b, holderX)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.acme.Seal(token, to); err != nil {
			b.Fatal(err)
		}
	}
}

// Verify with every scope check a redeemer without a holder proof makes.
func BenchmarkVerify(b *testing.B) {
	w := newWorld(b)
	token := mint(b, w.acme, w.constraints(b))
	o := issuer.VerifyOptions{
		Bundle: w.bundle, Audience: "acme", Action: "restart", Resource: "prod/db", Holder: pub(b, w.holder),
		Params: map[string]string{"replica": "2"}, Now: nbf.Add(time.Minute),
	}
	_, err := issuer.Verify(token, o)
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := issuer.Verify(token, o); err != nil {
			b.Fatal(err)
		}
	}
}
