package client_test

import (
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/request"
)

// OpenGrant as the requester calls it on a granted request: derive the
// request's holder xkey from the user key, open the sealed token, check
// its hash. No bus: the grant is minted and sealed here.
func BenchmarkOpenGrant(b *testing.B) {
	const id = "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b"
	key := func(create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
		kp, err := create()
		require.NoError(b, err)
		return kp
	}
	user := key(nkeys.CreateUser)
	holder, _ := user.PublicKey()
	who := &identity.Identity{Key: user, Principal: identity.Principal{Domain: "acme", Name: "deploy-bot", Key: holder}}
	iss, err := issuer.New(key(nkeys.CreateServer), key(nkeys.CreateCurveKeys))
	require.NoError(b, err)
	token, _, err := iss.Mint(issuer.Constraints{RequestID: id, Holder: holder, Audience: "acme", Action: "deploy",
		Resource: "staging/web", ParamsDigest: issuer.ParamsDigest(nil), NotBefore: time.Now(), TTL: 10 * time.Minute})
	require.NoError(b, err)
	xkey, err := issuer.HolderXKey(user, id)
	require.NoError(b, err)
	to, _ := xkey.PublicKey()
	sealed, err := iss.Seal(token, to)
	require.NoError(b, err)
	st := request.State{Domain: "acme", ID: id, Status: request.StatusGranted,
		Grant: &events.Granted{Sealed: sealed, SealedBy: iss.XKey(), TokenHash: issuer.TokenHash(token), Holder: holder}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.OpenGrant(st, who); err != nil {
			b.Fatal(err)
		}
	}
}
