package redeem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/issuer"
)

var benchWant = Want{Action: "deploy", Resource: "staging/web"}

// benchEnv is a domain's keys and an embedded server, without a pipeline
// (the consumers import this package, so its own tests cannot use writtest
// or config).
type benchEnv struct {
	NC      *nats.Conn
	Runtime benchKeys
}

// benchKeys are the keys and trust bundle of a domain with an issuer and a
// redeemer.
type benchKeys struct {
	Bundle                             *identity.Bundle
	IssuerKey, IssuerXKey, RedeemerKey nkeys.KeyPair
}

func newBenchEnv(b *testing.B) *benchEnv {
	dir := b.TempDir()
	account, _ := nkeys.CreateAccount()
	accountPub, _ := account.PublicKey()
	iss, _ := nkeys.CreateServer()
	red, _ := nkeys.CreateServer()
	xk, err := nkeys.CreateCurveKeys()
	require.NoError(b, err)
	issPub, _ := iss.PublicKey()
	redPub, _ := red.PublicKey()
	keys := benchKeys{
		Bundle: &identity.Bundle{Domains: map[string]*identity.Domain{benchDomain: {
			Accounts:   []string{accountPub},
			Components: map[identity.Role][]string{identity.RoleIssuer: {issPub}, identity.RoleRedeemer: {redPub}},
		}}},
		IssuerKey: identity.Fast(iss), IssuerXKey: xk, RedeemerKey: identity.Fast(red),
	}
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: filepath.Join(dir, "js")})
	require.NoError(b, err)
	b.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	require.NoError(b, err)
	b.Cleanup(nc.Close)
	return &benchEnv{NC: nc, Runtime: keys}
}

const benchDomain = "acme"

func benchRedeemer(b *testing.B, e *benchEnv) *Redeemer {
	r, err := New(Config{NC: e.NC, Domain: benchDomain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey, Service: "bench"})
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
	e := newBenchEnv(b)
	r := benchRedeemer(b, e)
	iss, err := issuer.New(e.Runtime.IssuerKey, e.Runtime.IssuerXKey)
	require.NoError(b, err)
	holder, _ := nkeys.CreateUser()
	pub, _ := holder.PublicKey()
	token, _, err := iss.Mint(issuer.Constraints{RequestID: uuid.NewString(), Holder: pub, Audience: benchDomain,
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
	e := newBenchEnv(b)
	r := benchRedeemer(b, e)
	iss, err := issuer.New(e.Runtime.IssuerKey, e.Runtime.IssuerXKey)
	require.NoError(b, err)
	holder, _ := nkeys.CreateUser()
	pub, _ := holder.PublicKey()
	token, _, err := iss.Mint(issuer.Constraints{RequestID: uuid.NewString(), Holder: pub, Audience: benchDomain,
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
