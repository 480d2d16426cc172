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

const breakGlassPolicies = `
@id("critical-break-glass")
@break_glass("true")
@flow("two-sre-leads")
@max_ttl("10m")
permit (principal in Group::"acme/developers", action == Action::"restart", resource)
when { context.urgency == "critical" && context.ticket like "INC-*" };

@id("approvers-may-approve")
permit (principal, action == Action::"approve", resource);
`

func breakGlass(t *testing.T, e *writtest.Env) (string, *client.Request) {
	t.Helper()
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Urgency: "critical", Ticket: "INC-7", Reason: "db down", TTL: time.Hour})
	r := e.Await(id, 10*time.Second, func(s request.State) bool {
		return s.Status == request.StatusGranted && len(s.Alerts) > 0
	})
	return id, r
}

func TestBreakGlassGrantsAtOnceAndIsReviewed(t *testing.T) {
	flows := `{"flows": {"two-sre-leads": {"stages": [{"name": "review", "groups": ["sre-leads"], "required": 2, "deadline": "1h"}]}}}`
	e := writtest.Start(t, writtest.Options{Policies: breakGlassPolicies, Flows: flows})
	id, r := breakGlass(t, e)

	assert.True(t, r.State.Evaluation.BreakGlass)
	assert.Equal(t, events.OutcomeAllow, r.State.Evaluation.Outcome)
	assert.True(t, r.State.Grant.BreakGlass)
	assert.Equal(t, 10*time.Minute, r.State.Grant.ExpiresAt.Sub(r.State.Grant.NotBefore), "capped by the break-glass permit, not the requested hour")
	require.Len(t, r.State.Alerts, 1)
	assert.Equal(t, events.AlertBreakGlass, r.State.Alerts[0].Alert)
	assert.Contains(t, r.State.Alerts[0].Reason, "INC-7")
	assert.True(t, r.State.ReviewOpen(), "a review after the fact is open")

	// The review, after the grant: two leads.
	e.Vote("alice", id, true, "was needed")
	e.Vote("bob", id, true, "")
	r = e.Await(id, 10*time.Second, func(s request.State) bool { return s.Review != nil })
	assert.False(t, r.State.ReviewOpen())
	assert.Equal(t, request.StatusGranted, r.State.Status, "the review does not change the grant")
	assert.Empty(t, r.Errs, "every event counts")
}

func TestBreakGlassReviewOverdue(t *testing.T) {
	flows := `{"flows": {"two-sre-leads": {"stages": [{"name": "review", "groups": ["sre-leads"], "required": 2, "deadline": "2s"}]}}}`
	e := writtest.Start(t, writtest.Options{Policies: breakGlassPolicies, Flows: flows})
	id, _ := breakGlass(t, e)
	e.Vote("alice", id, true, "")
	r := e.Await(id, 10*time.Second, func(s request.State) bool { return s.ReviewOverdue })
	require.Len(t, r.State.Alerts, 2)
	assert.Equal(t, events.AlertReviewOverdue, r.State.Alerts[1].Alert)
	assert.Empty(t, r.Errs)
}
