package issuer_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/issuer"
)

// The issuer mints a grant and seals it to the requester; the requester
// opens it; the target domain verifies it against its trust bundle.
func ExampleIssuer_Mint() {
	signKey, _ := nkeys.CreateServer()
	sealKey, _ := nkeys.CreateCurveKeys()
	signPub, _ := signKey.PublicKey()
	iss, _ := issuer.New(signKey, sealKey)
	bundle := &identity.Bundle{Domains: map[string]*identity.Domain{
		"acme": {Components: map[identity.Role][]string{identity.RoleIssuer: {signPub}}},
	}}

	requester, _ := nkeys.CreateUser()
	holder, _ := requester.PublicKey()
	id := "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b"
	start := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

	token, _, err := iss.Mint(issuer.Constraints{
		RequestID: id, Holder: holder, Audience: "acme", Action: "restart", Resource: "prod/db",
		NotBefore: start, TTL: 10 * time.Minute,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	holderX, _ := issuer.HolderXKey(requester, id)
	holderXPub, _ := holderX.PublicKey()
	sealed, _ := iss.Seal(token, holderXPub)

	opened, _ := issuer.Open(sealed, iss.XKey(), holderX)
	claims, err := issuer.Verify(opened, issuer.VerifyOptions{
		Bundle: bundle, Audience: "acme", Action: "restart", Resource: "prod/db", Now: start.Add(time.Minute),
	})
	fmt.Println(claims.Action, claims.Resource, claims.Expires.Sub(claims.NotBefore), err)

	_, err = issuer.Verify(opened, issuer.VerifyOptions{Bundle: bundle, Audience: "acme", Action: "drop-database", Now: start})
	fmt.Println(errors.Is(err, issuer.ErrWrongAction))
	_, err = issuer.Verify(opened, issuer.VerifyOptions{Bundle: bundle, Audience: "acme", Now: start.Add(time.Hour)})
	fmt.Println(errors.Is(err, issuer.ErrExpired))
	// Output:
	// restart prod/db 10m0s <nil>
	// true
	// true
}
