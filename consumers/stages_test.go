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

// Developers' prod restarts go through a lead, then security (in this
// test, security is bob alone; the lead stage escalates to bob after 1s).
// Stage one's deadline leaves TestStagedFlowSurvivesRestarts room for a
// pipeline stop (up to a second: its last pull runs out) and a server
// restart before bob answers.
const stageOneDeadline = 5 * time.Second

const stagedFlows = `{"flows": {"two-sre-leads": {"stages": [
  {"name": "lead", "principals": ["acme/alice"], "required": 1, "deadline": "5s",
   "escalate": {"after": "1s", "principals": ["acme/bob"]}},
  {"name": "security", "principals": ["acme/bob"], "required": 1, "deadline": "2s"}
]}}}`

func TestTwoStageFlow(t *testing.T) {
	e := writtest.Start(t, writtest.Options{Flows: stagedFlows})

	// In order: alice (stage one), then bob (stage two): granted.
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	_, err := e.Client.Vote(t.Context(), e.Identity("bob"), writtest.Domain, id, client.Vote{Approve: true})
	require.NoError(t, err)
	r := e.Await(id, 10*time.Second, func(s request.State) bool { return len(s.Answered) > 0 })
	for _, code := range r.State.Answered {
		assert.Equal(t, "not-eligible", code, "bob's stage is not open yet")
	}
	e.Vote("alice", id, true, "")
	r = e.Await(id, 10*time.Second, func(s request.State) bool { return s.Progress()[0].Stage == 1 })
	e.Vote("bob", id, true, "")
	r = e.Settle(id)
	require.Equal(t, request.StatusGranted, r.State.Status, "%v", writtest.Kinds(r))
}

func TestStageEscalatesThenExpires(t *testing.T) {
	e := writtest.Start(t, writtest.Options{Flows: stagedFlows})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)

	// Nobody answers: after 1s the lead stage escalates to bob.
	r := e.Await(id, 10*time.Second, func(s request.State) bool { return len(s.Escalations) > 0 })
	require.NoError(t, r.State.CanVote(e.Identity("bob").Principal), "bob may answer stage one now")
	esc := r.Records[len(r.Records)-1]
	require.Equal(t, events.KindEscalated, esc.Kind)
	assert.False(t, esc.Envelope.Time.Before(r.State.EvaluatedAt.Add(time.Second)), "not before its delay")

	// Still nobody: the request expires at stage one's deadline.
	r = e.Settle(id)
	require.Equal(t, request.StatusExpired, r.State.Status, "%v", writtest.Kinds(r))
	assert.Equal(t, []string{"requested", "evaluated", "escalated", "expired"}, writtest.Kinds(r))
	deadline := r.State.EvaluatedAt.Add(stageOneDeadline)
	at := r.Records[3].Envelope.Time
	assert.False(t, at.Before(deadline))
	assert.Less(t, at.Sub(deadline), time.Second, "within a second of the deadline")
}

// The second stage has its own deadline, from when it opened.
func TestSecondStageExpires(t *testing.T) {
	e := writtest.Start(t, writtest.Options{Flows: stagedFlows})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	e.Vote("alice", id, true, "")
	r := e.Settle(id)
	require.Equal(t, request.StatusExpired, r.State.Status, "%v", writtest.Kinds(r))
	opened := r.State.Votes[0].At
	at := r.Records[len(r.Records)-1].Envelope.Time
	assert.False(t, at.Before(opened.Add(2*time.Second)), "stage two's 2s run from alice's vote")
	assert.Less(t, at.Sub(opened.Add(2*time.Second)), time.Second)
}

// Policy decides who may answer at all: here the sample's forbid keeps a
// non-lead from approving a prod request from outside the domain, even
// when the stage asks for them.
func TestApprovePolicy(t *testing.T) {
	flows := `{"flows": {"two-sre-leads": {"stages": [{"name": "any", "groups": ["sre-leads", "developers"], "required": 1, "deadline": "1m"}]}}}`
	policies := `
@id("outside-restart-prod") @flow("two-sre-leads")
permit (principal, action == Action::"restart", resource) when { resource.path like "prod/*" };
@id("approvers-may-approve") permit (principal, action == Action::"approve", resource);
@id("no-developer-approves-prod") forbid (principal in Group::"acme/developers", action == Action::"approve", resource)
when { resource.resource like "prod/*" };
`
	e := writtest.Start(t, writtest.Options{Flows: flows, Policies: policies})
	id := e.Request("deploy-bot", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	seq := e.Vote("carol", id, true, "")
	r := e.Await(id, 10*time.Second, func(s request.State) bool { return s.Answered[seq] != "" })
	assert.Equal(t, "not-permitted", r.State.Answered[seq])
	assert.Empty(t, r.State.Votes, "a refused vote stops counting")
	assert.Equal(t, request.StatusPending, r.State.Status, "carol's approval did not approve")

	e.Vote("alice", id, true, "")
	assert.Equal(t, request.StatusGranted, e.Settle(id).State.Status)
}

// Restarts in the middle of a staged flow: the escalation and the stage
// deadlines still fire, from the durable timers (or the start-up sweep).
func TestStagedFlowSurvivesRestarts(t *testing.T) {
	e := writtest.Start(t, writtest.Options{Flows: stagedFlows, NoServe: true})
	stop := e.Serve("")
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	stop() // down before the escalation (1s) is due
	time.Sleep(1500 * time.Millisecond)
	e.StopAll() // the server too
	e.StartServer()
	stop = e.Serve("")
	r := e.Await(id, 10*time.Second, func(s request.State) bool { return len(s.Escalations) > 0 })
	require.Equal(t, request.StatusPending, r.State.Status)

	// Stage one approved by bob (escalated in), then down again across
	// stage two's deadline.
	e.Vote("bob", id, true, "")
	r = e.Await(id, 10*time.Second, func(s request.State) bool { return s.Progress()[0].Stage == 1 })
	stop()
	time.Sleep(2500 * time.Millisecond)
	e.Serve("")
	r = e.Settle(id)
	require.Equal(t, request.StatusExpired, r.State.Status, "%v", writtest.Kinds(r))
	assert.Equal(t, []string{"requested", "evaluated", "escalated", "voted", "counted", "expired"}, writtest.Kinds(r))
	assert.Empty(t, r.Errs)
}
