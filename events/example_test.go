package events_test

import (
	"fmt"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// A component seals an event with its key; a consumer inspects the stored
// message against the trust bundle before trusting it.
func ExampleChecker_Inspect() {
	policyKey, _ := nkeys.CreateServer()
	policyPub, _ := policyKey.PublicKey()
	bundle := &identity.Bundle{Domains: map[string]*identity.Domain{
		"acme": {Components: map[identity.Role][]string{identity.RolePolicy: {policyPub}}},
	}}
	now := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	id := "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b"

	out, err := events.Seal(events.Draft{
		Domain: "acme", RequestID: id, Kind: events.KindRejected, Source: "writ://acme/policy", Time: now,
		Data: events.Rejected{RefSeq: 1, Code: "schema", Reason: "urgency must be one of low, normal, high, critical"},
	}, policyKey)
	if err != nil {
		fmt.Println(err)
		return
	}
	c := events.Checker{Bundle: bundle}
	r := c.Inspect(events.Message{Subject: out.Subject, Seq: 2, Header: out.Header(), Body: out.Body}, now)
	fmt.Println(out.Subject)
	fmt.Println(r.Valid(), r.Kind, r.Role)

	// The same body with another subject is refused, with a code.
	r = c.Inspect(events.Message{Subject: events.Subject("acme", id, events.KindGranted), Header: out.Header(), Body: out.Body}, now)
	fmt.Println(r.Valid(), events.Code(r.Err))
	// Output:
	// writ.acme.0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b.rejected
	// true rejected policy
	// false type-mismatch
}
