package request_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

// reviewHistory is a break-glass request granted at once and alerted, its
// review open: carol's, reviewed by two SRE leads (one denial denies).
func reviewHistory(t *testing.T, p people) *history {
	t.Helper()
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(breakGlass())
	h.add(granted(p.carol.Key, time.Minute))
	h.add(event{kind: events.KindAlerted, data: &events.Alerted{Alert: events.AlertBreakGlass, Reason: "break-glass"}})
	require.True(t, h.fold().ReviewOpen())
	return h
}

// next appends what the approval component decides for the review at now,
// and checks it is of kind.
func (h *history) next(now time.Time, kind events.Kind) request.State {
	h.t.Helper()
	d := request.NextReview(h.fold(), now)
	require.Equal(h.t, kind, d.Kind, "what the review does next")
	h.add(event{kind: d.Kind, data: d.Data, at: now})
	return h.fold()
}

// A reviewer's denial settles the review: reviewed (denied, by whom and
// why), then the grant revoked in the denier's name, then an alert of its
// own; nothing is overdue after it.
func TestBreakGlassReviewDenied(t *testing.T) {
	p := newPeople(t)
	at := t0.Add(90 * time.Second) // the grant (a minute from t0+1m) still runs
	for name, between := range map[string][]func(h *history) event{
		"granted": nil,
		"redeemed": {func(*history) event {
			return event{kind: events.KindRedeemed, data: &events.Redeemed{Outcome: events.RedemptionRedeemed, TokenHash: "sha256:ab"}}
		}},
	} {
		t.Run(name, func(t *testing.T) {
			h := reviewHistory(t, p)
			for _, e := range between {
				h.add(e(h))
			}
			before := h.fold().Status
			h.add(h.vote(&p.alice, false, "there was no incident"))
			s := h.fold()
			require.True(t, s.Tally().Denied)

			s = h.next(at, events.KindReviewed)
			require.True(t, s.ReviewDenied())
			assert.False(t, s.ReviewOpen(), "the review is settled")
			assert.True(t, s.ReviewActive(), "with a grant still to revoke")
			assert.Equal(t, before, s.Status, "the review itself changes no status")
			assert.Equal(t, []events.PrincipalRef{{Domain: "acme", Name: "alice"}}, s.Review.By)
			assert.Equal(t, "there was no incident", s.Review.Reason)
			assert.True(t, s.NextDue().IsZero(), "no timer: nothing becomes overdue")

			s = h.next(at, events.KindRevoked)
			assert.Equal(t, request.StatusRevoked, s.Status, "the grant is revoked, used or not")
			assert.Equal(t, "acme/alice", s.Revocation.By.ID())
			assert.Contains(t, s.Revocation.Reason, "review denied")

			s = h.next(at, events.KindAlerted)
			alert := s.Alerts[len(s.Alerts)-1]
			assert.Equal(t, events.AlertReviewDenied, alert.Alert)
			for _, want := range []string{"acme/alice denied the break-glass use by acme/carol of restart on acme/prod/db", `"there was no incident"`, "its grant is revoked"} {
				assert.Contains(t, alert.Reason, want)
			}
			assert.False(t, s.ReviewActive())
			assert.Equal(t, events.KindNone, request.NextReview(s, deadline.Add(time.Hour)).Kind, "no overdue alert after the deadline")

			overdue := h.add(event{kind: events.KindAlerted, at: deadline.Add(time.Hour), data: &events.Alerted{Alert: events.AlertReviewOverdue, Reason: "overdue"}})
			_, err := request.Apply(s, overdue)
			assert.ErrorIs(t, err, request.ErrUnjustified, "overdue after a denial")
			h.records = h.records[:len(h.records)-1]
			again := h.add(event{kind: events.KindAlerted, data: &events.Alerted{Alert: events.AlertReviewDenied, Reason: "again"}})
			_, err = request.Apply(s, again)
			assert.ErrorIs(t, err, request.ErrIllegal, "alerted once")
		})
	}
}

// A used grant that has expired (past the redeemers' leeway) has nothing
// left to revoke: the denial is alerted, saying so.
func TestBreakGlassReviewDeniedAfterTheGrantExpired(t *testing.T) {
	p := newPeople(t)
	h := reviewHistory(t, p)
	h.add(event{kind: events.KindRedeemed, data: &events.Redeemed{Outcome: events.RedemptionRedeemed, TokenHash: "sha256:ab"}})
	at := h.fold().Grant.ExpiresAt.Add(request.RedeemLeeway)
	h.add(event{kind: events.KindVoted, at: at, by: &p.alice, data: h.vote(&p.alice, false, "no incident").data})
	h.next(at, events.KindReviewed)
	_, err := request.Apply(h.fold(), h.add(event{kind: events.KindRevoked, at: at, data: &events.Revoked{By: events.PrincipalRef{Domain: "acme", Name: "alice"}, Reason: "review"}}))
	assert.ErrorIs(t, err, request.ErrClosed, "nothing left to revoke")
	h.records = h.records[:len(h.records)-1]
	s := h.next(at, events.KindAlerted)
	assert.Contains(t, s.Alerts[len(s.Alerts)-1].Reason, "its grant was used, and has expired since")
	assert.Equal(t, request.StatusRedeemed, s.Status)
	assert.False(t, s.ReviewActive())
}

// Only a counted denial denies, and the revocation names one of its
// deniers; a review approval needs no counted denial.
func TestBreakGlassReviewJustified(t *testing.T) {
	p := newPeople(t)
	alice, bob := events.PrincipalRef{Domain: "acme", Name: "alice"}, events.PrincipalRef{Domain: "acme", Name: "bob"}

	h := reviewHistory(t, p)
	h.add(h.vote(&p.alice, true, ""))
	s := h.fold()
	_, err := request.Apply(s, h.add(event{kind: events.KindReviewed, data: &events.Reviewed{Outcome: events.ReviewDenied, By: []events.PrincipalRef{alice}}}))
	assert.ErrorIs(t, err, request.ErrUnjustified, "denied with no denial")
	h.records = h.records[:len(h.records)-1]

	// bob denies after alice approved: the denial wins, as for a pending request.
	h.add(h.vote(&p.bob, false, "no"))
	s = h.fold()
	require.True(t, s.Tally().Denied)
	_, err = request.Apply(s, h.add(event{kind: events.KindReviewed, data: &events.Reviewed{Outcome: events.ReviewApproved, Approvers: []events.PrincipalRef{alice}}}))
	assert.ErrorIs(t, err, request.ErrUnjustified, "approved over a counted denial")
	h.records = h.records[:len(h.records)-1]
	_, err = request.Apply(s, h.add(event{kind: events.KindReviewed, data: &events.Reviewed{Outcome: events.ReviewDenied, By: []events.PrincipalRef{alice}}}))
	assert.ErrorIs(t, err, request.ErrUnjustified, "names a denier who approved")
	h.records = h.records[:len(h.records)-1]

	s = h.next(t0.Add(time.Minute), events.KindReviewed)
	assert.Equal(t, []events.PrincipalRef{bob}, s.Review.By)
	_, err = request.Apply(s, h.add(event{kind: events.KindRevoked, data: &events.Revoked{By: alice, Reason: "review"}}))
	assert.ErrorIs(t, err, request.ErrUnjustified, "alice did not deny, nor ask to revoke")
}

// A reviewed.v1 (written before reviews could deny) is an approval.
func TestReviewedV1IsAnApproval(t *testing.T) {
	p := newPeople(t)
	h := reviewHistory(t, p)
	h.add(h.vote(&p.alice, true, ""))
	h.add(h.vote(&p.bob, true, ""))
	h.add(event{kind: events.KindReviewed, data: &events.Reviewed{Approvers: []events.PrincipalRef{{Domain: "acme", Name: "alice"}, {Domain: "acme", Name: "bob"}}}})
	s := h.fold()
	assert.False(t, s.ReviewOpen())
	assert.False(t, s.ReviewDenied())
	assert.False(t, s.ReviewActive())
	assert.Equal(t, request.StatusGranted, s.Status)
}

// Nor does a reviewed.v1 settle a review over a counted denial: the old
// format must not become a way round the reviewers' answer.
func TestReviewedV1NotOverADenial(t *testing.T) {
	p := newPeople(t)
	oneLead := events.Flow{Name: "one-lead", Stages: []events.Stage{{Name: "leads", Groups: []string{"sre-leads"}, Required: 1, DeadlineSeconds: 1800}}}
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(breakGlass(oneLead))
	h.add(granted(p.carol.Key, time.Minute))
	h.add(event{kind: events.KindAlerted, data: &events.Alerted{Alert: events.AlertBreakGlass, Reason: "break-glass"}})
	h.add(h.vote(&p.bob, false, "no incident"))
	h.add(h.vote(&p.alice, true, ""))
	s := h.fold()
	require.True(t, s.Tally().Satisfied)
	require.True(t, s.Tally().Denied)
	_, err := request.Apply(s, h.add(event{kind: events.KindReviewed, data: &events.Reviewed{Approvers: []events.PrincipalRef{{Domain: "acme", Name: "alice"}}}}))
	assert.ErrorIs(t, err, request.ErrUnjustified)
}

// A review approval settles it: the grant stands, and nothing is overdue.
func TestBreakGlassReviewApproved(t *testing.T) {
	p := newPeople(t)
	h := reviewHistory(t, p)
	h.add(h.vote(&p.alice, true, ""))
	h.add(h.vote(&p.bob, true, ""))
	s := h.next(t0.Add(time.Minute), events.KindReviewed)
	assert.Equal(t, events.ReviewApproved, s.Review.Outcome)
	assert.False(t, s.ReviewActive())
	assert.Equal(t, request.StatusGranted, s.Status)
	assert.Equal(t, events.KindNone, request.NextReview(s, deadline.Add(time.Hour)).Kind, "no overdue alert")
	assert.True(t, s.NextDue().IsZero())
}

// A grant revoked before its review denied it is not revoked again; the
// alert says who revoked it. One never issued is not revoked either.
func TestBreakGlassReviewDeniedWithNoGrantToRevoke(t *testing.T) {
	p := newPeople(t)
	h := reviewHistory(t, p)
	h.add(event{kind: events.KindRevoke, by: &p.carol, data: &events.Revoke{Domain: "acme", By: events.PrincipalRef{Domain: "acme", Name: "carol"}, Reason: "done"}})
	h.add(event{kind: events.KindRevoked, data: &events.Revoked{By: events.PrincipalRef{Domain: "acme", Name: "carol"}, Reason: "done"}})
	h.add(h.vote(&p.alice, false, "no incident"))
	h.next(t0.Add(time.Minute), events.KindReviewed)
	s := h.next(t0.Add(time.Minute), events.KindAlerted)
	assert.Contains(t, s.Alerts[len(s.Alerts)-1].Reason, "revoked already, by acme/carol")
	assert.False(t, s.ReviewActive())

	// Break-glass, but the issuer refused it (a lock): reviewed all the same.
	h = newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(breakGlass())
	h.add(issuerRefused(2, "evaluated", "locked"))
	require.Equal(t, request.StatusRefused, h.fold().Status)
	require.True(t, h.fold().ReviewOpen(), "the break-glass use is reviewed though nothing was granted")
	h.add(h.vote(&p.alice, false, "no incident"))
	h.next(t0.Add(time.Minute), events.KindReviewed)
	s = h.next(t0.Add(time.Minute), events.KindAlerted)
	assert.Contains(t, s.Alerts[len(s.Alerts)-1].Reason, "no grant was issued")
	assert.Equal(t, request.StatusRefused, s.Status)
}

// A request approved after its requester was locked: the issuer refuses
// the approval, and the request ends there, refused. Only the issuer's
// refusal of the decision in favour does that.
func TestIssuerRefusalEndsTheRequest(t *testing.T) {
	p := newPeople(t)
	approvedHistory := func() *history {
		h := newHistory(t)
		h.add(requested(&p.carol, 0))
		h.add(review(0))
		h.add(h.vote(&p.alice, true, ""))
		h.add(h.vote(&p.bob, true, ""))
		h.add(approved(p.alice, p.bob))
		require.Equal(t, request.StatusApproved, h.fold().Status)
		return h
	}
	h := approvedHistory()
	h.add(issuerRefused(5, "approved", "locked"))
	s := h.fold()
	assert.Equal(t, request.StatusRefused, s.Status)
	assert.True(t, s.Status.IsTerminal() && s.Status.IsClosed())
	require.NotNil(t, s.Refusal)
	assert.Equal(t, "locked", s.Refusal.Code)
	_, err := request.Apply(s, h.add(granted(p.carol.Key, time.Minute)))
	assert.ErrorIs(t, err, request.ErrClosed, "no grant after the refusal")

	for name, e := range map[string]event{
		"another component's refusal": {kind: events.KindRefused, role: identity.RoleApproval, data: &events.Refused{RefSeq: 5, RefKind: "approved", Code: "locked", Reason: "x"}},
		"the issuer's, of a vote":     issuerRefused(4, "voted", "duplicate-vote"),
	} {
		t.Run(name, func(t *testing.T) {
			h := approvedHistory()
			h.add(e)
			assert.Equal(t, request.StatusApproved, h.fold().Status, "still waits for its grant")
		})
	}

	t.Run("allowed at once", func(t *testing.T) {
		h := newHistory(t)
		h.add(requested(&p.carol, 0))
		h.add(allowed(0))
		h.add(issuerRefused(2, "evaluated", "locked"))
		assert.Equal(t, request.StatusRefused, h.fold().Status)
	})
}
