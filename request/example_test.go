package request_test

import (
	"fmt"
	"time"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

// A request folded from its history: the policy asks for one SRE lead, the
// requester's own vote is refused, a lead approves, and Next says approved.
func ExampleFold() {
	id := "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b"
	at := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	deadline := at.Add(30 * time.Minute)
	carol := identity.Principal{Domain: "acme", Name: "carol", Key: "UCAROL", Groups: []string{"developers"}}
	alice := identity.Principal{Domain: "acme", Name: "alice", Key: "UALICE", Groups: []string{"sre-leads"}}
	digest := func(n int) string { return fmt.Sprintf("sha256:%064d", n) }
	record := func(seq int, k events.Kind, by *identity.Principal, data any) events.Record {
		return events.Record{
			Message: events.Message{Seq: uint64(seq)}, Domain: "acme", RequestID: id, Kind: k,
			Digest: digest(seq), Envelope: events.Envelope{Time: at}, Data: data, Principal: by,
		}
	}
	history := []events.Record{
		record(1, events.KindRequested, &carol, &events.Requested{Action: "restart", Resource: "prod/db"}),
		record(2, events.KindEvaluated, nil, &events.Evaluated{Prev: digest(1), Outcome: events.OutcomeReview, ExpiresAt: &deadline,
			Flows: []events.Flow{{Name: "one-lead", Stages: []events.Stage{{Groups: []string{"sre-leads"}, Required: 1, DeadlineSeconds: 1800}}}}}),
		record(3, events.KindVoted, &carol, &events.Voted{Prev: digest(2), Decision: events.DecisionApprove, RequestDigest: digest(1)}),
		record(4, events.KindVoted, &alice, &events.Voted{Prev: digest(3), Decision: events.DecisionApprove, RequestDigest: digest(1)}),
	}
	s, errs := request.Fold(history)
	fmt.Println(s.Status, len(s.Votes), request.Code(errs[3]))
	d := request.Next(s, at)
	fmt.Println(d.Kind, d.Data.(*events.Approved).Approvers[0].ID())
	fmt.Println(request.Next(s, deadline).Kind, "even at the deadline")
	// Output:
	// pending 1 self-approval
	// approved acme/alice
	// approved even at the deadline
}
