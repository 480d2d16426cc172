package identity_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/identity"
)

// An identity claiming domain acme is accepted only if acme's own account
// key signed it.
func ExampleBundle_VerifyUser() {
	acme, _ := nkeys.CreateAccount()
	other, _ := nkeys.CreateAccount()
	acmePub, _ := acme.PublicKey()
	otherPub, _ := other.PublicKey()
	bundle := &identity.Bundle{Domains: map[string]*identity.Domain{
		"acme":  {Accounts: []string{acmePub}},
		"other": {Accounts: []string{otherPub}},
	}}
	now := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

	creds, _ := identity.IssueUser(acme, identity.UserSpec{Domain: "acme", Name: "alice", Groups: []string{"sre-leads"}, TTL: time.Hour, Now: now})
	alice, _ := identity.ParseCreds(creds)
	p, err := bundle.VerifyUser(alice.JWT, now)
	fmt.Println(p.ID(), p.Groups, err)

	creds, _ = identity.IssueUser(other, identity.UserSpec{Domain: "acme", Name: "alice"})
	impostor, _ := identity.ParseCreds(creds)
	_, err = bundle.VerifyUser(impostor.JWT, now)
	fmt.Println(errors.Is(err, identity.ErrUntrustedKey))

	_, err = bundle.VerifyUser(alice.JWT, now.Add(time.Hour))
	fmt.Println(errors.Is(err, identity.ErrIdentityExpired))
	// Output:
	// acme/alice [sre-leads] <nil>
	// true
	// true
}
