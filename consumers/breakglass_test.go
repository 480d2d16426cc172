package consumers_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/redeem"
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

// A reviewer's deny settles a break-glass review with a denial: the trail
// records it (reviewed, denied, by whom and why), the grant is revoked (a
// redeemer refuses it) in the denier's name, an alert of its own kind is
// raised, and no overdue alert follows. The barrier for that last: a
// second break-glass request, made after the denial with the same review
// deadline, goes overdue; the first, whose deadline came earlier, did not.
func TestBreakGlassReviewDeniedRevokes(t *testing.T) {
	flows := `{"flows": {"two-sre-leads": {"stages": [{"name": "review", "groups": ["sre-leads"], "required": 2, "deadline": "3s"}]}}}`
	e := writtest.Start(t, writtest.Options{Policies: breakGlassPolicies, Flows: flows})
	rd, err := redeem.New(redeem.Config{NC: e.NC, Domain: writtest.Domain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey, Service: "test"})
	require.NoError(t, err)
	go func() { _ = rd.Run(t.Context()) }()
	require.NoError(t, rd.WaitReady(t.Context()))

	id, r := breakGlass(t, e)
	carol := e.Identity("carol")
	token, err := client.OpenGrant(r.State, carol)
	require.NoError(t, err)

	e.Vote("alice", id, false, "there was no incident")
	r = e.Await(id, 10*time.Second, func(s request.State) bool {
		return slices.ContainsFunc(s.Alerts, func(a *events.Alerted) bool { return a.Alert == events.AlertReviewDenied })
	})
	assert.Equal(t, []string{"voted", "reviewed", "revoked", "alerted"}, afterTheGrant(t, r))
	assert.Empty(t, r.Errs, "every event counts")
	require.True(t, r.State.ReviewDenied())
	assert.Equal(t, []events.PrincipalRef{{Domain: "acme", Name: "alice"}}, r.State.Review.By)
	assert.Equal(t, "there was no incident", r.State.Review.Reason)
	assert.Equal(t, request.StatusRevoked, r.State.Status)
	assert.Equal(t, "acme/alice", r.State.Revocation.By.ID())
	alert := r.State.Alerts[len(r.State.Alerts)-1]
	assert.Contains(t, alert.Reason, "acme/alice denied the break-glass use by acme/carol of restart on acme/prod/db")
	assert.Contains(t, alert.Reason, "its grant is revoked")

	want := redeem.Want{Action: "restart", Resource: "prod/db"}
	proof, err := redeem.Prove(carol.Key, token, want, time.Now())
	require.NoError(t, err)
	_, err = rd.Redeem(t.Context(), token, proof, want)
	require.ErrorIs(t, err, redeem.ErrRevoked, "the denied grant is refused")

	// The barrier: a later review with the same deadline goes overdue.
	later, _ := breakGlass(t, e)
	e.Await(later, 15*time.Second, func(s request.State) bool { return s.ReviewOverdue })
	r = e.Settle(id)
	assert.Equal(t, []string{"voted", "reviewed", "revoked", "alerted", "redeemed"}, afterTheGrant(t, r),
		"no overdue alert after a denial (the refused redemption is on record)")
	assert.Equal(t, events.RedemptionRefused, r.Records[len(r.Records)-1].Data.(*events.Redeemed).Outcome)
	assert.False(t, r.State.ReviewOverdue)
}

// A review approve settles it too: the grant stands, and no overdue alert
// follows (the same barrier).
func TestBreakGlassReviewApprovedSettles(t *testing.T) {
	flows := `{"flows": {"two-sre-leads": {"stages": [{"name": "review", "groups": ["sre-leads"], "required": 2, "deadline": "3s"}]}}}`
	e := writtest.Start(t, writtest.Options{Policies: breakGlassPolicies, Flows: flows})
	id, _ := breakGlass(t, e)
	e.Vote("alice", id, true, "")
	e.Vote("bob", id, true, "")
	r := e.Await(id, 10*time.Second, func(s request.State) bool { return s.Review != nil })
	assert.Equal(t, events.ReviewApproved, r.State.Review.Outcome)

	later, _ := breakGlass(t, e)
	e.Await(later, 15*time.Second, func(s request.State) bool { return s.ReviewOverdue })
	r = e.Settle(id)
	assert.Equal(t, []string{"voted", "voted", "reviewed"}, afterTheGrant(t, r), "no overdue alert after an approval")
	assert.Equal(t, request.StatusGranted, r.State.Status)
	assert.Empty(t, r.Errs)
}

// afterTheGrant is the kinds of a break-glass history after its first
// four events: the request, its evaluation, and the grant and the
// break-glass alert, in either order (the issuer and the approval
// component answer the evaluation at once). A vote that decided nothing
// is answered with counted unless the next came first: those are left out.
func afterTheGrant(t *testing.T, r *client.Request) []string {
	t.Helper()
	kinds := withoutCounted(writtest.Kinds(r))
	require.GreaterOrEqual(t, len(kinds), 4)
	first := slices.Clone(kinds[:4])
	slices.Sort(first[2:])
	require.Equal(t, []string{"requested", "evaluated", "alerted", "granted"}, first)
	return kinds[4:]
}

// withoutCounted leaves out the counted answers of kinds: whether a vote
// that decided nothing is answered before the next vote comes is timing.
func withoutCounted(kinds []string) []string {
	return slices.DeleteFunc(kinds, func(k string) bool { return k == events.KindCounted.String() })
}
