package consumers_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// A vote counts in every flow it is eligible for, so it must be permitted
// in every one: alice, forbidden on "sec", cannot satisfy it by approving.
func TestApproveMustBePermittedInEveryFlow(t *testing.T) {
	flows := `{"flows": {
 "team": {"stages": [{"name": "lead", "principals": ["acme/alice"], "required": 1, "deadline": "1m"}]},
 "sec":  {"stages": [{"name": "security", "principals": ["acme/alice", "acme/bob"], "required": 1, "deadline": "1m"}]}
}}`
	policies := `
@id("restart") @flow("team,sec")
permit (principal, action == Action::"restart", resource);
@id("approvers-may-approve") permit (principal, action == Action::"approve", resource);
@id("alice-not-security") forbid (principal == User::"acme/alice", action == Action::"approve", resource)
when { resource.flow == "sec" };
`
	e := writtest.Start(t, writtest.Options{Flows: flows, Policies: policies})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	seq := e.Vote("alice", id, true, "")
	r := e.Await(id, 10*time.Second, func(s request.State) bool { return s.Answered[seq] != "" || s.Status != request.StatusPending })
	assert.Equal(t, "not-permitted", r.State.Answered[seq])
	assert.Equal(t, request.StatusPending, r.State.Status, "alice alone must not satisfy sec")
}

// Votes are judged in order against what the permitted ones before them
// leave: bob, forbidden on "lead", voting right after alice (forbidden
// outright) must not pass "lead" as though it were already done.
func TestForbiddenVotesDoNotShiftStages(t *testing.T) {
	flows := `{"flows": {"f": {"stages": [
 {"name": "lead", "principals": ["acme/alice", "acme/bob"], "required": 1, "deadline": "1m"},
 {"name": "security", "principals": ["acme/bob", "acme/deploy-bot"], "required": 1, "deadline": "1m"}
]}}}`
	policies := `
@id("restart") @flow("f")
permit (principal, action == Action::"restart", resource);
@id("approvers-may-approve") permit (principal, action == Action::"approve", resource);
@id("no-alice") forbid (principal == User::"acme/alice", action == Action::"approve", resource);
@id("bob-not-lead") forbid (principal == User::"acme/bob", action == Action::"approve", resource) when { resource.stage == "lead" };
`
	e := writtest.Start(t, writtest.Options{Flows: flows, Policies: policies})
	for range 6 {
		id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
		e.Pending(id)
		a := e.Vote("alice", id, true, "")
		b := e.Vote("bob", id, true, "")
		r := e.Await(id, 10*time.Second, func(s request.State) bool { return s.Answered[a] != "" && s.Answered[b] != "" })
		assert.Equal(t, "not-permitted", r.State.Answered[b], "bob may not answer lead")
		assert.Equal(t, 0, r.State.Progress()[0].Stage, "lead is still open")
	}
}

// Two flows escalating at the same instant: both escalate, and the request
// still expires at its deadline (a re-schedule at the same time is not a
// duplicate of the one that fired).
func TestSimultaneousTimers(t *testing.T) {
	flows := `{"flows": {
 "a": {"stages": [{"name": "x", "principals": ["acme/alice"], "required": 1, "deadline": "3s", "escalate": {"after": "1s", "principals": ["acme/bob"]}}]},
 "b": {"stages": [{"name": "y", "principals": ["acme/bob"], "required": 1, "deadline": "3s", "escalate": {"after": "1s", "principals": ["acme/alice"]}}]}
}}`
	policies := `
@id("restart") @flow("a,b")
permit (principal, action == Action::"restart", resource);
@id("approvers-may-approve") permit (principal, action == Action::"approve", resource);
`
	e := writtest.Start(t, writtest.Options{Flows: flows, Policies: policies})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	r := e.Settle(id)
	require.Equal(t, request.StatusExpired, r.State.Status, "%v", writtest.Kinds(r))
	assert.Equal(t, []string{"requested", "evaluated", "escalated", "escalated", "expired"}, writtest.Kinds(r))
}

// A break-glass review does not escalate; it is overdue at its deadline,
// even when its flow has an escalation.
func TestBreakGlassReviewWithEscalationGoesOverdue(t *testing.T) {
	flows := `{"flows": {"two-sre-leads": {"stages": [{"name": "review", "groups": ["sre-leads"], "required": 2, "deadline": "2s",
	  "escalate": {"after": "1s", "principals": ["acme/deploy-bot"]}}]}}}`
	e := writtest.Start(t, writtest.Options{Policies: breakGlassPolicies, Flows: flows})
	id, _ := breakGlass(t, e)
	r := e.Await(id, 10*time.Second, func(s request.State) bool { return s.ReviewOverdue })
	assert.Equal(t, events.AlertReviewOverdue, r.State.Alerts[len(r.State.Alerts)-1].Alert)
}
