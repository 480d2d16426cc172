package request_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

// step is one event and the status the request must be in after it.
type step struct {
	e    func(h *history) event
	want request.Status
}

func fixed(e event) func(*history) event { return func(*history) event { return e } }

func TestLifecycles(t *testing.T) {
	p := newPeople(t)
	tests := []struct {
		name  string
		steps []step
		check func(t *testing.T, s request.State, h *history)
	}{
		{
			name: "allowed, then granted",
			steps: []step{
				{fixed(requested(&p.carol, 600)), request.StatusRequested},
				{fixed(allowed(600)), request.StatusAllowed},
				{fixed(granted(p.carol.Key, 10*time.Minute)), request.StatusGranted},
			},
			check: func(t *testing.T, s request.State, h *history) {
				assert.Equal(t, p.carol, s.Requester)
				assert.Equal(t, t0, s.RequestedAt)
				assert.Equal(t, h.records[0].Digest, s.RequestDigest)
				assert.Equal(t, uint64(1), s.RequestSeq)
				require.NotNil(t, s.Grant)
				assert.Equal(t, h.records[2].Data, s.Grant)
				assert.Equal(t, h.records[2].Envelope.Time, s.DecidedAt, "an allowed request is decided when granted")
				assert.Empty(t, s.Votes)
			},
		},
		{
			name: "reviewed, approved by two leads, granted",
			steps: []step{
				{fixed(requested(&p.carol, 0)), request.StatusRequested},
				{fixed(review(1800)), request.StatusPending},
				{func(h *history) event { return h.vote(&p.alice, true, "") }, request.StatusPending},
				{func(h *history) event { return h.vote(&p.bob, true, "ok") }, request.StatusPending},
				{fixed(approved(p.alice, p.bob)), request.StatusApproved},
				{fixed(granted(p.carol.Key, 30*time.Minute)), request.StatusGranted},
			},
			check: func(t *testing.T, s request.State, h *history) {
				require.Len(t, s.Votes, 2)
				assert.Equal(t, request.Vote{Voter: p.alice, Approve: true, Seq: 3, At: h.records[2].Time}, s.Votes[0])
				assert.Equal(t, request.Vote{Voter: p.bob, Approve: true, Reason: "ok", Seq: 4, At: h.records[3].Time}, s.Votes[1])
				assert.Equal(t, h.records[4].Envelope.Time, s.DecidedAt, "decided when approved, not when granted")
			},
		},
		{
			name: "reviewed, denied by one lead",
			steps: []step{
				{fixed(requested(&p.carol, 0)), request.StatusRequested},
				{fixed(review(0)), request.StatusPending},
				{func(h *history) event { return h.vote(&p.bob, false, "freeze") }, request.StatusPending},
				{fixed(deniedBy(p.bob)), request.StatusDenied},
			},
			check: func(t *testing.T, s request.State, h *history) {
				assert.Equal(t, h.records[3].Envelope.Time, s.DecidedAt)
				assert.Nil(t, s.Grant)
			},
		},
		{
			name: "denied by policy",
			steps: []step{
				{fixed(requested(&p.carol, 0)), request.StatusRequested},
				{fixed(denied()), request.StatusDenied},
			},
			check: func(t *testing.T, s request.State, h *history) {
				assert.Equal(t, h.records[1].Envelope.Time, s.DecidedAt)
				assert.Equal(t, []string{"no-prod-database-drop"}, s.Evaluation.Reasons)
			},
		},
		{
			name: "an unknown outcome denies",
			steps: []step{
				{fixed(requested(&p.carol, 0)), request.StatusRequested},
				{fixed(event{kind: events.KindEvaluated, data: &events.Evaluated{Outcome: "maybe"}}), request.StatusDenied},
			},
		},
		{
			name: "expired at the deadline",
			steps: []step{
				{fixed(requested(&p.carol, 0)), request.StatusRequested},
				{fixed(review(0)), request.StatusPending},
				{func(h *history) event { return h.vote(&p.alice, true, "") }, request.StatusPending},
				{fixed(expired(deadline)), request.StatusExpired},
			},
			check: func(t *testing.T, s request.State, h *history) {
				assert.Equal(t, deadline, s.DecidedAt)
			},
		},
		{
			name: "expired after the deadline",
			steps: []step{
				{fixed(requested(&p.carol, 0)), request.StatusRequested},
				{fixed(review(0)), request.StatusPending},
				{fixed(expired(deadline.Add(time.Hour))), request.StatusExpired},
			},
		},
		{
			name: "rejected before evaluation",
			steps: []step{
				{fixed(requested(&p.carol, 0)), request.StatusRequested},
				{fixed(rejected("schema")), request.StatusRejected},
			},
			check: func(t *testing.T, s request.State, h *history) {
				assert.Equal(t, map[uint64]string{1: "schema"}, s.Answered)
				require.NotNil(t, s.Rejection)
				assert.Equal(t, "schema", s.Rejection.Code)
			},
		},
		{
			name: "break-glass allowed and granted for its capped lifetime",
			steps: []step{
				{fixed(requested(&p.carol, 0)), request.StatusRequested},
				{fixed(event{kind: events.KindEvaluated, data: &events.Evaluated{Outcome: events.OutcomeAllow, BreakGlass: true, MaxTTLSeconds: 60}}), request.StatusAllowed},
				{fixed(granted(p.carol.Key, time.Minute)), request.StatusGranted},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistory(t)
			var s request.State
			for i, st := range tt.steps {
				r := h.add(st.e(h))
				var err error
				s, err = request.Apply(s, r)
				require.NoError(t, err, "step %d (%s)", i+1, r.Kind)
				require.Equal(t, st.want, s.Status, "after step %d (%s)", i+1, r.Kind)
				assert.Equal(t, r.Seq, s.LastSeq)
				assert.Equal(t, r.Digest, s.LastDigest)
			}
			assert.Equal(t, "acme", s.Domain)
			assert.Equal(t, reqID, s.ID)
			assert.Equal(t, s, h.fold(), "Fold is Apply in order")
			if tt.check != nil {
				tt.check(t, s, h)
			}
		})
	}
}

// terminal builds a history that ends in each terminal status.
func terminal(t *testing.T, p people) map[request.Status]func(h *history) {
	return map[request.Status]func(h *history){
		request.StatusGranted: func(h *history) {
			h.add(requested(&p.carol, 0))
			h.add(allowed(0))
			h.add(granted(p.carol.Key, time.Minute))
		},
		request.StatusDenied: func(h *history) {
			h.add(requested(&p.carol, 0))
			h.add(review(0))
			h.add(h.vote(&p.alice, false, "no"))
			h.add(deniedBy(p.alice))
		},
		request.StatusExpired: func(h *history) {
			h.add(requested(&p.carol, 0))
			h.add(review(0))
			h.add(expired(deadline))
		},
		request.StatusRejected: func(h *history) {
			h.add(requested(&p.carol, 0))
			h.add(rejected("untrusted-key"))
		},
		request.StatusRefused: func(h *history) {
			h.add(requested(&p.carol, 0))
			h.add(review(0))
			h.add(h.vote(&p.alice, true, ""))
			h.add(h.vote(&p.bob, true, ""))
			h.add(approved(p.alice, p.bob))
			h.add(issuerRefused(5, "approved", "locked"))
		},
	}
}

func TestTerminalIsSticky(t *testing.T) {
	p := newPeople(t)
	next := map[string]func(h *history) event{
		"requested":        func(*history) event { return requested(&p.carol, 0) },
		"evaluated allow":  func(*history) event { return allowed(0) },
		"evaluated deny":   func(*history) event { return denied() },
		"evaluated review": func(*history) event { return review(0) },
		"vote":             func(h *history) event { return h.vote(&p.bob, true, "") },
		"approved":         func(*history) event { return approved(p.alice, p.bob) },
		"denied":           func(*history) event { return deniedBy(p.bob) },
		"expired":          func(*history) event { return expired(deadline.Add(time.Hour)) },
		"granted":          func(*history) event { return granted(p.carol.Key, time.Minute) },
		"rejected":         func(*history) event { return rejected("schema") },
	}
	for status, build := range terminal(t, p) {
		for name, ev := range next {
			t.Run(status.String()+"/"+name, func(t *testing.T) {
				h := newHistory(t)
				build(h)
				before := h.fold()
				require.Equal(t, status, before.Status)
				require.True(t, before.Status.IsTerminal())

				r := h.add(ev(h))
				after, err := request.Apply(before, r)
				assert.ErrorIs(t, err, request.ErrClosed)
				assert.Equal(t, "closed", request.Code(err))
				assert.Equal(t, status, after.Status)
				assert.Equal(t, before.Grant, after.Grant)
				assert.Equal(t, before.DecidedAt, after.DecidedAt)
				assert.Equal(t, before.Votes, after.Votes)
				assert.Equal(t, r.Seq, after.LastSeq, "the refused record still ends the history")
			})
		}
	}
}

func TestRefusedChangesNothingButIsAnswered(t *testing.T) {
	p := newPeople(t)
	for status, build := range terminal(t, p) {
		t.Run(status.String(), func(t *testing.T) {
			h := newHistory(t)
			build(h)
			before := h.fold()
			r := h.add(refused(2, "closed"))
			after, err := request.Apply(before, r)
			require.NoError(t, err)
			assert.Equal(t, status, after.Status)
			assert.Equal(t, "closed", after.Answered[2])
		})
	}
	t.Run("pending", func(t *testing.T) {
		h := newHistory(t)
		h.add(requested(&p.carol, 0))
		h.add(review(0))
		h.add(h.vote(&p.dave, true, ""))
		s, errs := request.Fold(h.records)
		require.ErrorIs(t, errs[3], request.ErrNotEligible)
		h.add(refused(3, request.Code(errs[3])))
		s, err := request.Apply(s, h.last())
		require.NoError(t, err)
		assert.Equal(t, request.StatusPending, s.Status)
		assert.Equal(t, map[uint64]string{3: "not-eligible"}, s.Answered)
		assert.Empty(t, s.Votes)
	})
}

func TestApplyRefuses(t *testing.T) {
	p := newPeople(t)
	carolAlias := identity.Principal{Domain: "acme", Name: "carol2", Key: p.carol.Key, Groups: []string{"sre-leads"}}
	carolNewKey := principal(t, "carol", "sre-leads")
	aliceNewKey := principal(t, "alice", "sre-leads")
	aliceAlias := identity.Principal{Domain: "acme", Name: "alice2", Key: p.alice.Key, Groups: []string{"sre-leads"}}

	type build func(h *history)
	req := func(ttl int64) build { return func(h *history) { h.add(requested(&p.carol, ttl)) } }
	pending := func(h *history) { req(0)(h); h.add(review(0)) }
	pendingTTL := func(ttl, maxTTL int64) build {
		return func(h *history) { req(ttl)(h); h.add(review(maxTTL)) }
	}
	allowedTTL := func(ttl, maxTTL int64) build {
		return func(h *history) { req(ttl)(h); h.add(allowed(maxTTL)) }
	}
	votes := func(b build, vs ...func(h *history) event) build {
		return func(h *history) {
			b(h)
			for _, v := range vs {
				h.add(v(h))
			}
		}
	}
	approve := func(who *identity.Principal) func(h *history) event {
		return func(h *history) event { return h.vote(who, true, "") }
	}
	deny := func(who *identity.Principal) func(h *history) event {
		return func(h *history) event { return h.vote(who, false, "") }
	}
	approvedHist := votes(pendingTTL(0, 0), approve(&p.alice), approve(&p.bob), func(*history) event { return approved(p.alice, p.bob) })

	tests := []struct {
		name   string
		before build
		ev     func(h *history) event
		want   error
		code   string
	}{
		{"evaluation of no request", func(*history) {}, fixed(allowed(0)), request.ErrIllegal, "illegal"},
		{"approval of no request", func(*history) {}, fixed(approved(p.alice)), request.ErrIllegal, "illegal"},
		{"grant of no request", func(*history) {}, fixed(granted(p.carol.Key, time.Minute)), request.ErrIllegal, "illegal"},
		{"second request on one id", req(0), fixed(requested(&p.dave, 0)), request.ErrIllegal, "illegal"},
		{"second evaluation", allowedTTL(0, 0), fixed(denied()), request.ErrIllegal, "illegal"},
		{"approved before evaluation", req(0), fixed(approved(p.alice, p.bob)), request.ErrIllegal, "illegal"},
		{"approved when allowed", allowedTTL(0, 0), fixed(approved(p.alice, p.bob)), request.ErrIllegal, "illegal"},
		{"approved twice", approvedHist, fixed(approved(p.alice, p.bob)), request.ErrIllegal, "illegal"},
		{"denied when allowed", allowedTTL(0, 0), fixed(deniedBy(p.alice)), request.ErrIllegal, "illegal"},
		{"denied when approved", approvedHist, fixed(deniedBy(p.alice)), request.ErrIllegal, "illegal"},
		{"expired when allowed", allowedTTL(0, 0), fixed(expired(deadline)), request.ErrIllegal, "illegal"},
		{"expired when approved", approvedHist, fixed(expired(deadline)), request.ErrIllegal, "illegal"},
		{"granted while pending", pending, fixed(granted(p.carol.Key, time.Minute)), request.ErrIllegal, "illegal"},
		{"granted before evaluation", req(0), fixed(granted(p.carol.Key, time.Minute)), request.ErrIllegal, "illegal"},
		{"rejected after evaluation", pending, fixed(rejected("schema")), request.ErrIllegal, "illegal"},

		{"vote before evaluation", req(0), approve(&p.alice), request.ErrNotPending, "not-pending"},
		{"vote when allowed", allowedTTL(0, 0), approve(&p.alice), request.ErrNotPending, "not-pending"},
		{"vote when approved", approvedHist, approve(&p.dave), request.ErrNotPending, "not-pending"},
		{"self-approval", pending, approve(&p.carol), request.ErrSelfApproval, "self-approval"},
		{"self-denial", pending, deny(&p.carol), request.ErrSelfApproval, "self-approval"},
		{"requester's key under another name", pending, approve(&carolAlias), request.ErrSelfApproval, "self-approval"},
		{"requester's name with another key", pending, approve(&carolNewKey), request.ErrSelfApproval, "self-approval"},
		{"second vote of one voter", votes(pending, approve(&p.alice)), approve(&p.alice), request.ErrDuplicateVote, "duplicate-vote"},
		{"denial after approval by one voter", votes(pending, approve(&p.alice)), deny(&p.alice), request.ErrDuplicateVote, "duplicate-vote"},
		{"voter's key under another name", votes(pending, approve(&p.alice)), approve(&aliceAlias), request.ErrDuplicateVote, "duplicate-vote"},
		{"voter's name with another key", votes(pending, approve(&p.alice)), approve(&aliceNewKey), request.ErrDuplicateVote, "duplicate-vote"},
		{"voter outside the flow", pending, approve(&p.dave), request.ErrNotEligible, "not-eligible"},
		{"vote on another request event", pending, func(h *history) event {
			e := h.vote(&p.alice, true, "")
			e.data.(*events.Voted).RequestDigest = h.records[1].Digest
			return e
		}, request.ErrStaleDigest, "stale-digest"},

		{"approved with one vote of two", votes(pending, approve(&p.alice)), fixed(approved(p.alice)), request.ErrUnjustified, "unjustified"},
		{"approved without votes", pending, fixed(approved(p.alice, p.bob)), request.ErrUnjustified, "unjustified"},
		{"approved with one approval and one denial", votes(pending, approve(&p.alice), deny(&p.bob)), fixed(approved(p.alice)), request.ErrUnjustified, "unjustified"},
		{"denied without votes", pending, fixed(deniedBy(p.alice)), request.ErrUnjustified, "unjustified"},
		{"denied with only approvals", votes(pending, approve(&p.alice)), fixed(deniedBy(p.alice)), request.ErrUnjustified, "unjustified"},
		{"expired before the deadline", pending, fixed(expired(deadline.Add(-time.Second))), request.ErrUnjustified, "unjustified"},
		{"expired a nanosecond early", pending, fixed(expired(deadline.Add(-time.Nanosecond))), request.ErrUnjustified, "unjustified"},
		{"grant above the policy's max_ttl", allowedTTL(0, 600), fixed(granted(p.carol.Key, 601*time.Second)), request.ErrUnjustified, "unjustified"},
		{"grant above the requested TTL", allowedTTL(300, 0), fixed(granted(p.carol.Key, 301*time.Second)), request.ErrUnjustified, "unjustified"},
		{"grant above the requested TTL under max_ttl", allowedTTL(300, 3600), fixed(granted(p.carol.Key, 10*time.Minute)), request.ErrUnjustified, "unjustified"},
		{"approved grant above max_ttl", approvedHist, fixed(granted(p.carol.Key, 2*time.Hour)), nil, ""},
		{"grant to the approver", approvedHist, fixed(granted(p.alice.Key, time.Minute)), request.ErrUnjustified, "unjustified"},
		{"grant to nobody", allowedTTL(0, 0), fixed(granted("", time.Minute)), request.ErrUnjustified, "unjustified"},
		{"grant of no lifetime", allowedTTL(0, 0), fixed(granted(p.carol.Key, 0)), request.ErrUnjustified, "unjustified"},
		{"grant that ends before it starts", allowedTTL(0, 0), fixed(granted(p.carol.Key, -time.Minute)), request.ErrUnjustified, "unjustified"},
		{"approved naming someone who did not vote", votes(pendingTTL(0, 0), approve(&p.alice), approve(&p.bob)), fixed(approved(p.alice, p.dave)), request.ErrUnjustified, "unjustified"},
		{"approved naming one of two", votes(pendingTTL(0, 0), approve(&p.alice), approve(&p.bob)), fixed(approved(p.alice)), request.ErrUnjustified, "unjustified"},
		{"denied naming another", votes(pending, deny(&p.alice)), fixed(deniedBy(p.bob)), request.ErrUnjustified, "unjustified"},
		{"grant on other evidence", allowedTTL(0, 0), func(h *history) event {
			e := granted(p.carol.Key, time.Minute)
			e.data.(*events.Granted).Evidence = h.records[0].Digest
			return e
		}, request.ErrUnjustified, "unjustified"},
		{"revoked without an ask", allowedTTL(0, 0), fixed(event{kind: events.KindRevoked, data: &events.Revoked{By: events.PrincipalRef{Domain: "acme", Name: "alice"}, Reason: "x"}}), request.ErrUnjustified, "unjustified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistory(t)
			tt.before(h)
			before := h.fold()
			r := h.add(tt.ev(h))
			after, err := request.Apply(before, r)
			if tt.want == nil {
				assert.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
			assert.Equal(t, tt.code, request.Code(err))
			// Nothing changes but the end of the history.
			before.LastSeq, before.LastDigest = r.Seq, r.Digest
			if before.ID == "" {
				before.Domain, before.ID = r.Domain, r.RequestID
			}
			assert.Equal(t, before, after)
		})
	}
}

// badReviews are reviews the fold must refuse: without flows, or without a deadline.
func badReviews() map[string]event {
	return map[string]event{
		"no flows":    {kind: events.KindEvaluated, data: &events.Evaluated{Outcome: events.OutcomeReview, ExpiresAt: &deadline}},
		"no deadline": {kind: events.KindEvaluated, data: &events.Evaluated{Outcome: events.OutcomeReview, Flows: []events.Flow{twoLeads()}}},
	}
}

func TestIllegalReview(t *testing.T) {
	p := newPeople(t)
	for name, ev := range badReviews() {
		t.Run(name, func(t *testing.T) {
			h := newHistory(t)
			h.add(requested(&p.carol, 0))
			s, err := request.Apply(h.fold(), h.add(ev))
			require.ErrorIs(t, err, request.ErrIllegal)
			assert.Equal(t, "illegal", request.Code(err))
			assert.Equal(t, request.StatusRequested, s.Status)
			// The policy may still answer with a legal evaluation.
			s, err = request.Apply(s, h.add(allowed(0)))
			require.NoError(t, err)
			assert.Equal(t, request.StatusAllowed, s.Status)
		})
	}
}

func TestIllegalReviewLeavesNoEvaluation(t *testing.T) {
	p := newPeople(t)
	for name, ev := range badReviews() {
		t.Run(name, func(t *testing.T) {
			h := newHistory(t)
			h.add(requested(&p.carol, 0))
			s, err := request.Apply(h.fold(), h.add(ev))
			require.ErrorIs(t, err, request.ErrIllegal)
			assert.Nil(t, s.Evaluation, "a refused evaluation is not the request's evaluation")
		})
	}
}

func TestGrantLifetimeLimitsAreInclusive(t *testing.T) {
	p := newPeople(t)
	tests := []struct {
		name        string
		ttl, maxTTL int64
		lifetime    time.Duration
	}{
		{"exactly max_ttl", 0, 600, 600 * time.Second},
		{"exactly the requested TTL", 300, 600, 300 * time.Second},
		{"no limit", 0, 0, 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistory(t)
			h.add(requested(&p.carol, tt.ttl))
			h.add(allowed(tt.maxTTL))
			h.add(granted(p.carol.Key, tt.lifetime))
			assert.Equal(t, request.StatusGranted, h.fold().Status)
		})
	}
}

// The issuer re-checks the approval against the history, whoever signed it:
// an approval that Next would not make must change nothing.

func TestApplyRefusesApprovalWhenADenialCounts(t *testing.T) {
	p := newPeople(t)
	// Two leads: alice's approval leaves the stage open, so bob's denial
	// counts (a denial only counts against an open stage).
	twoLeads := events.Flow{Name: "two-leads", Stages: []events.Stage{{Groups: []string{"sre-leads"}, Required: 2, DeadlineSeconds: 60}}}
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0, twoLeads))
	h.add(h.vote(&p.alice, true, ""))
	h.add(h.vote(&p.bob, false, "no"))
	s := h.fold()
	require.Equal(t, events.KindDenied, request.Next(s, t0).Kind, "Next says denied")
	_, err := request.Apply(s, h.add(approved(p.alice)))
	assert.ErrorIs(t, err, request.ErrUnjustified)
}

func TestApplyRefusesExpiryOfADecidedRequest(t *testing.T) {
	p := newPeople(t)
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0))
	h.add(h.vote(&p.alice, true, ""))
	h.add(h.vote(&p.bob, true, ""))
	s := h.fold()
	require.Equal(t, events.KindApproved, request.Next(s, deadline).Kind, "Next says approved, even at the deadline")
	_, err := request.Apply(s, h.add(expired(deadline)))
	assert.ErrorIs(t, err, request.ErrUnjustified)
}

func TestBrokenChain(t *testing.T) {
	p := newPeople(t)
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	s := h.fold()

	wrong := "sha256:" + "ff"
	r := h.add(event{kind: events.KindEvaluated, data: &events.Evaluated{Outcome: events.OutcomeAllow}, prev: &wrong})
	s, err := request.Apply(s, r)
	require.ErrorIs(t, err, request.ErrBrokenChain)
	assert.Equal(t, "broken-chain", request.Code(err))
	assert.Equal(t, request.StatusRequested, s.Status)
	assert.Nil(t, s.Evaluation)
	assert.Equal(t, r.Digest, s.LastDigest, "the broken record still ends the history")

	// An event chained to the request, skipping the broken record, is broken too.
	first := h.records[0].Digest
	r = h.add(event{kind: events.KindEvaluated, data: &events.Evaluated{Outcome: events.OutcomeAllow}, prev: &first})
	_, err = request.Apply(s, r)
	assert.ErrorIs(t, err, request.ErrBrokenChain)

	// The first event of a history chains to nothing.
	h = newHistory(t)
	r = h.add(event{kind: events.KindRequested, by: &p.carol, data: &events.Requested{Requester: events.PrincipalRef{Domain: "acme", Name: "carol"}}, prev: &first})
	_, err = request.Apply(request.State{}, r)
	assert.ErrorIs(t, err, request.ErrBrokenChain)
}

func TestInvalidRecord(t *testing.T) {
	p := newPeople(t)
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	s := h.fold()

	// A forged evaluation: Inspect said the signer is not entitled.
	r := h.add(event{kind: events.KindEvaluated, data: &events.Evaluated{Outcome: events.OutcomeAllow}, err: events.ErrNotEntitled})
	after, err := request.Apply(s, r)
	require.ErrorIs(t, err, request.ErrInvalid)
	assert.ErrorIs(t, err, events.ErrNotEntitled, "the inspection's reason is kept")
	assert.Equal(t, "signer-not-entitled", request.Code(err))
	assert.Equal(t, request.StatusRequested, after.Status)
	assert.Equal(t, r.Digest, after.LastDigest)

	// The first record being untrustworthy still names the request.
	h = newHistory(t)
	h.add(event{kind: events.KindRequested, data: &events.Requested{}, err: events.ErrBadSignature})
	h.add(rejected("bad-signature"))
	s, errs := request.Fold(h.records)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[1], request.ErrInvalid)
	assert.Equal(t, request.StatusRejected, s.Status, "a rejection answers an untrustworthy request")
	assert.Equal(t, reqID, s.ID)
	assert.Equal(t, "acme", s.Domain)
	assert.Nil(t, s.Request)
	assert.Equal(t, map[uint64]string{1: "bad-signature"}, s.Answered)
}

func TestFoldCollectsRefusals(t *testing.T) {
	p := newPeople(t)
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0))
	h.add(h.vote(&p.dave, true, ""))  // 3: not eligible
	h.add(h.vote(&p.alice, true, "")) // 4
	h.add(h.vote(&p.alice, true, "")) // 5: duplicate
	h.add(approved(p.alice))          // 6: one of two
	h.add(h.vote(&p.bob, true, ""))   // 7
	h.add(approved(p.alice, p.bob))   // 8

	s, errs := request.Fold(h.records)
	assert.Equal(t, request.StatusApproved, s.Status)
	require.Len(t, errs, 3)
	assert.ErrorIs(t, errs[3], request.ErrNotEligible)
	assert.ErrorIs(t, errs[5], request.ErrDuplicateVote)
	assert.ErrorIs(t, errs[6], request.ErrUnjustified)
	assert.Equal(t, uint64(8), s.LastSeq)

	empty, errs := request.Fold(nil)
	assert.Equal(t, request.State{}, empty)
	assert.Nil(t, errs)
	assert.Equal(t, request.StatusNone, empty.Status)
}

func TestNext(t *testing.T) {
	p := newPeople(t)
	oneLeadTwoDenials := events.Flow{Name: "quorum", DenyQuorum: 2, Stages: []events.Stage{{Groups: []string{"sre-leads"}, Required: 1, DeadlineSeconds: 1800}}}
	erin := principal(t, "erin", "sre-leads")
	tests := []struct {
		name  string
		flow  events.Flow
		votes []func(h *history) event
		now   time.Time
		want  events.Kind
		check func(t *testing.T, d request.Decision, s request.State)
	}{
		{name: "no votes before the deadline", now: deadline.Add(-time.Nanosecond), want: events.KindNone},
		{name: "no votes at the deadline", now: deadline, want: events.KindExpired, check: func(t *testing.T, d request.Decision, s request.State) {
			assert.Equal(t, &events.Expired{Prev: s.LastDigest, Deadline: deadline}, d.Data)
		}},
		{name: "no votes after the deadline", now: deadline.Add(time.Hour), want: events.KindExpired},
		{name: "one approval of two", votes: votesOf(&p.alice, true), now: t0, want: events.KindNone},
		{name: "two approvals", votes: append(votesOf(&p.alice, true), votesOf(&p.bob, true)...), now: t0, want: events.KindApproved,
			check: func(t *testing.T, d request.Decision, s request.State) {
				assert.Equal(t, &events.Approved{Prev: s.LastDigest, Approvers: []events.PrincipalRef{
					{Domain: "acme", Name: "alice"}, {Domain: "acme", Name: "bob"},
				}}, d.Data)
			}},
		{name: "two approvals after the deadline", votes: append(votesOf(&p.alice, true), votesOf(&p.bob, true)...), now: deadline.Add(time.Hour), want: events.KindApproved},
		{name: "one denial", votes: votesOfReason(&p.bob, false, "freeze"), now: t0, want: events.KindDenied,
			check: func(t *testing.T, d request.Decision, s request.State) {
				assert.Equal(t, &events.Denied{Prev: s.LastDigest, By: []events.PrincipalRef{{Domain: "acme", Name: "bob"}}, Reason: "freeze"}, d.Data)
			}},
		{name: "a denial wins over an approval", flow: oneLeadTwoDenials, votes: append(votesOf(&p.alice, false), append(votesOf(&p.bob, false), votesOf(&erin, true)...)...), now: t0, want: events.KindDenied},
		{name: "one denial below a quorum of two", flow: oneLeadTwoDenials, votes: votesOf(&p.alice, false), now: t0, want: events.KindNone},
		{name: "one denial below a quorum of two, at the deadline", flow: oneLeadTwoDenials, votes: votesOf(&p.alice, false), now: deadline, want: events.KindExpired},
		{name: "two denials reach a quorum of two", flow: oneLeadTwoDenials, votes: append(votesOf(&p.alice, false), votesOf(&p.bob, false)...), now: t0, want: events.KindDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistory(t)
			h.add(requested(&p.carol, 0))
			if tt.flow.Name != "" {
				h.add(review(0, tt.flow))
			} else {
				h.add(review(0))
			}
			for _, v := range tt.votes {
				h.add(v(h))
			}
			s := h.fold()
			d := request.Next(s, tt.now)
			assert.Equal(t, tt.want, d.Kind)
			if tt.want == events.KindNone {
				assert.Nil(t, d.Data)
			}
			if tt.check != nil {
				tt.check(t, d, s)
			}
			if d.Kind != events.KindNone {
				// What Next decides, Apply accepts.
				r := h.add(event{kind: d.Kind, data: d.Data, at: tt.now})
				after, err := request.Apply(s, r)
				require.NoError(t, err)
				assert.True(t, after.Status.IsTerminal() || after.Status.AwaitsGrant())
			}
		})
	}
}

func votesOf(p *identity.Principal, approve bool) []func(h *history) event {
	return votesOfReason(p, approve, "")
}

func votesOfReason(p *identity.Principal, approve bool, reason string) []func(h *history) event {
	return []func(h *history) event{func(h *history) event { return h.vote(p, approve, reason) }}
}

func TestNextOnlyWhenPending(t *testing.T) {
	p := newPeople(t)
	builds := map[string]func(h *history){
		"none":      func(*history) {},
		"requested": func(h *history) { h.add(requested(&p.carol, 0)) },
		"allowed":   func(h *history) { h.add(requested(&p.carol, 0)); h.add(allowed(0)) },
	}
	for s, b := range terminal(t, p) {
		builds[s.String()] = b
	}
	for name, b := range builds {
		t.Run(name, func(t *testing.T) {
			h := newHistory(t)
			b(h)
			assert.Equal(t, request.Decision{}, request.Next(h.fold(), deadline.Add(24*time.Hour)))
		})
	}
}

func TestTally(t *testing.T) {
	p := newPeople(t)
	erin := principal(t, "erin", "dba")
	lead := events.Flow{Name: "lead", Stages: []events.Stage{{Groups: []string{"sre-leads"}, Required: 1}}}
	named := events.Flow{Name: "erin", Stages: []events.Stage{{Principals: []string{"acme/erin"}, Required: 1}}}
	twoDenials := events.Flow{Name: "strict", DenyQuorum: 2, Stages: []events.Stage{{Groups: []string{"sre-leads", "dba"}, Required: 3}}}
	vote := func(who identity.Principal, approve bool, reason string) request.Vote {
		return request.Vote{Voter: who, Approve: approve, Reason: reason}
	}
	tests := []struct {
		name  string
		flows []events.Flow
		votes []request.Vote
		want  request.Tally
	}{
		{name: "no evaluation"},
		{name: "one flow, no votes", flows: []events.Flow{lead}, want: request.Tally{}},
		{name: "one flow, satisfied", flows: []events.Flow{lead}, votes: []request.Vote{vote(p.alice, true, "")},
			want: request.Tally{Approvers: []identity.Principal{p.alice}, Satisfied: true}},
		{name: "two flows, one satisfied", flows: []events.Flow{lead, named}, votes: []request.Vote{vote(p.alice, true, "")},
			want: request.Tally{Approvers: []identity.Principal{p.alice}}},
		{name: "two flows, both satisfied", flows: []events.Flow{lead, named}, votes: []request.Vote{vote(p.alice, true, ""), vote(erin, true, "")},
			want: request.Tally{Approvers: []identity.Principal{p.alice, erin}, Satisfied: true}},
		{name: "an approval outside the flow does not count", flows: []events.Flow{lead}, votes: []request.Vote{vote(p.dave, true, "")},
			want: request.Tally{Approvers: []identity.Principal{p.dave}}},
		{name: "a denial outside the flow does not count", flows: []events.Flow{lead}, votes: []request.Vote{vote(p.dave, false, "meh")},
			want: request.Tally{Deniers: []identity.Principal{p.dave}, Reason: "meh"}},
		{name: "one denial of a quorum of two", flows: []events.Flow{twoDenials}, votes: []request.Vote{vote(p.alice, false, "first"), vote(erin, true, "")},
			want: request.Tally{Approvers: []identity.Principal{erin}, Deniers: []identity.Principal{p.alice}, Reason: "first"}},
		{name: "two denials of a quorum of two", flows: []events.Flow{twoDenials}, votes: []request.Vote{vote(p.alice, false, "first"), vote(erin, false, "second")},
			want: request.Tally{Deniers: []identity.Principal{p.alice, erin}, Reason: "first", Denied: true}},
		{name: "a denial in one flow denies", flows: []events.Flow{lead, named}, votes: []request.Vote{vote(p.alice, true, ""), vote(erin, false, "")},
			want: request.Tally{Approvers: []identity.Principal{p.alice}, Deniers: []identity.Principal{erin}, Denied: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := request.State{Domain: "acme", Status: request.StatusPending, Votes: tt.votes}
			if tt.flows != nil {
				s.Evaluation = &events.Evaluated{Outcome: events.OutcomeReview, Flows: tt.flows, ExpiresAt: &deadline}
			}
			assert.Equal(t, tt.want, s.Tally())
		})
	}
}

func TestEligible(t *testing.T) {
	p := newPeople(t)
	stage := events.Stage{Groups: []string{"sre-leads"}, Principals: []string{"acme/dave"}, Required: 1}
	otherDave := identity.Principal{Domain: "other", Name: "dave", Key: principal(t, "x").Key}
	tests := []struct {
		name string
		p    identity.Principal
		want bool
	}{
		{"member of the group", p.alice, true},
		{"named principal", p.dave, true},
		{"same name in another domain", otherDave, false},
		{"neither", p.carol, false},
		{"no groups", identity.Principal{Domain: "acme", Name: "erin"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, request.Eligible(stage, tt.p, "acme"))
		})
	}
}

func TestCrossDomainGroupIsNotEligible(t *testing.T) {
	p := newPeople(t)
	outsider := identity.Principal{Domain: "other", Name: "mallory", Key: principal(t, "mallory").Key, Groups: []string{"sre-leads"}}
	assert.False(t, request.Eligible(twoLeads().Stages[0], outsider, "acme"))

	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0))
	s := h.fold()
	assert.ErrorIs(t, s.CanVote(outsider), request.ErrNotEligible)
}

func TestCanVote(t *testing.T) {
	p := newPeople(t)
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0))
	h.add(h.vote(&p.alice, true, ""))
	s := h.fold()
	tests := []struct {
		name string
		p    identity.Principal
		want error
	}{
		{"eligible, not voted yet", p.bob, nil},
		{"requester", p.carol, request.ErrSelfApproval},
		{"already voted", p.alice, request.ErrDuplicateVote},
		{"not an approver", p.dave, request.ErrNotEligible},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CanVote(tt.p)
			if tt.want == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tt.want)
		})
	}
	s.Status = request.StatusApproved
	assert.ErrorIs(t, s.CanVote(p.bob), request.ErrNotPending)
}

func TestCode(t *testing.T) {
	tests := []struct {
		err  error
		code string
	}{
		{request.ErrSelfApproval, "self-approval"},
		{request.ErrNotEligible, "not-eligible"},
		{request.ErrDuplicateVote, "duplicate-vote"},
		{request.ErrStaleDigest, "stale-digest"},
		{request.ErrNotPending, "not-pending"},
		{request.ErrClosed, "closed"},
		{request.ErrBrokenChain, "broken-chain"},
		{request.ErrIllegal, "illegal"},
		{request.ErrUnjustified, "unjustified"},
		{errors.Join(request.ErrInvalid, events.ErrSchema), "schema"},
		{errors.Join(request.ErrInvalid, errors.New("?")), "invalid"},
		{events.ErrUnsigned, "unsigned"},
		{errors.New("other"), "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			assert.Equal(t, tt.code, request.Code(tt.err))
		})
	}
}

// A vote the stream stored at or after the deadline is refused, even when
// the expired event has not been appended yet.
func TestLateVoteRefused(t *testing.T) {
	p := newPeople(t)
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0))
	s := h.fold()
	late := h.vote(&p.alice, true, "")
	late.at = deadline
	_, err := request.Apply(s, h.add(late))
	assert.ErrorIs(t, err, request.ErrPastDeadline)
	assert.Equal(t, "past-deadline", request.Code(err))

	h2 := newHistory(t)
	h2.add(requested(&p.carol, 0))
	h2.add(review(0))
	s = h2.fold()
	inTime := h2.vote(&p.alice, true, "")
	inTime.at = deadline.Add(-time.Millisecond)
	s, err = request.Apply(s, h2.add(inTime))
	require.NoError(t, err)
	assert.Len(t, s.Votes, 1)
}

// A stage may name another domain's group as "domain/group".
func TestEligibleQualifiedGroup(t *testing.T) {
	stage := events.Stage{Groups: []string{"partner/auditors", "sre-leads"}, Required: 1}
	partner := identity.Principal{Domain: "partner", Name: "pat", Groups: []string{"auditors"}}
	assert.True(t, request.Eligible(stage, partner, "acme"), "the named domain's group")
	partnerLead := identity.Principal{Domain: "partner", Name: "lee", Groups: []string{"sre-leads"}}
	assert.False(t, request.Eligible(stage, partnerLead, "acme"), "a bare group is the request's domain's")
	acmeAuditor := identity.Principal{Domain: "acme", Name: "aud", Groups: []string{"auditors"}}
	assert.False(t, request.Eligible(stage, acmeAuditor, "acme"), "partner/auditors is not acme's auditors")
}

// A revocation answers an ask by the one it names; another's ask does not
// do.
func TestRevokedAnswersAnAsk(t *testing.T) {
	p := newPeople(t)
	ask := func(by identity.Principal) event {
		return event{kind: events.KindRevoke, by: &by, data: &events.Revoke{Domain: "acme", By: events.PrincipalRef{Domain: by.Domain, Name: by.Name}, Reason: "wrong ticket"}}
	}
	revoked := func(by identity.Principal) event {
		return event{kind: events.KindRevoked, data: &events.Revoked{By: events.PrincipalRef{Domain: by.Domain, Name: by.Name}, Reason: "wrong ticket"}}
	}
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(allowed(0))
	h.add(granted(p.carol.Key, time.Minute))
	h.add(ask(p.bob))
	before := h.fold()
	_, err := request.Apply(before, h.add(revoked(p.alice)))
	require.ErrorIs(t, err, request.ErrUnjustified)

	h = newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(allowed(0))
	h.add(granted(p.carol.Key, time.Minute))
	h.add(ask(p.bob))
	h.add(ask(p.alice))
	h.add(revoked(p.alice))
	assert.Equal(t, request.StatusRevoked, h.fold().Status)
}

// A redeemed grant may be revoked while it may still be in use — the
// connection it opened through the NATS callout lives until it expires —
// and the revocation is recorded; once it has expired (past the
// redeemers' leeway) there is nothing left to revoke.
func TestRevokeRedeemedWhileInUse(t *testing.T) {
	p := newPeople(t)
	ask := event{kind: events.KindRevoke, by: &p.bob, data: &events.Revoke{Domain: "acme", By: events.PrincipalRef{Domain: "acme", Name: "bob"}, Reason: "compromised host"}}
	revoked := event{kind: events.KindRevoked, data: &events.Revoked{By: events.PrincipalRef{Domain: "acme", Name: "bob"}, Reason: "compromised host"}}
	redeemed := func(at time.Time) event {
		return event{kind: events.KindRedeemed, at: at, data: &events.Redeemed{Outcome: events.RedemptionRedeemed, TokenHash: "sha256:ab", Service: "nats-callout"}}
	}
	live := func(t *testing.T) (*history, time.Time) {
		h := newHistory(t)
		h.add(requested(&p.carol, 0))
		h.add(allowed(0))
		h.add(granted(p.carol.Key, 10*time.Minute))
		g := h.fold().Grant
		h.add(redeemed(g.NotBefore.Add(time.Second)))
		return h, g.ExpiresAt
	}

	t.Run("in use", func(t *testing.T) {
		h, exp := live(t)
		ask.at, revoked.at = exp.Add(-time.Minute), exp.Add(-time.Minute)
		h.add(ask)
		h.add(revoked)
		s := h.fold()
		assert.Equal(t, request.StatusRevoked, s.Status)
		require.NotNil(t, s.Revocation)
		assert.Equal(t, "compromised host", s.Revocation.Reason)
		assert.False(t, s.RedeemedAt.IsZero(), "the redemption stays on record")
	})
	t.Run("within the redeemers' leeway", func(t *testing.T) {
		h, exp := live(t)
		ask.at, revoked.at = exp.Add(request.RedeemLeeway/2), exp.Add(request.RedeemLeeway/2)
		h.add(ask)
		h.add(revoked)
		assert.Equal(t, request.StatusRevoked, h.fold().Status)
	})
	t.Run("expired", func(t *testing.T) {
		h, exp := live(t)
		ask.at = exp.Add(request.RedeemLeeway)
		s, err := request.Apply(h.fold(), h.add(ask))
		require.ErrorIs(t, err, request.ErrClosed)
		assert.Empty(t, s.RevokeAskers)
		revoked.at = exp.Add(request.RedeemLeeway + time.Second)
		_, err = request.Apply(s, h.add(revoked))
		require.ErrorIs(t, err, request.ErrClosed)
	})
	t.Run("once", func(t *testing.T) {
		h, exp := live(t)
		ask.at, revoked.at = exp.Add(-time.Minute), exp.Add(-time.Minute)
		h.add(ask)
		h.add(revoked)
		s := h.fold()
		again := revoked
		again.at = exp.Add(-time.Second)
		_, err := request.Apply(s, h.add(again))
		require.ErrorIs(t, err, request.ErrClosed, "a revoked request is closed")
	})
}

// Every vote is answered: counted (deciding nothing yet), refused, or by
// the decision it makes. counted names a vote the fold counts, once, while
// votes are collected.
func TestCountedAnswersAVote(t *testing.T) {
	p := newPeople(t)
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0))
	vote := h.add(h.vote(&p.alice, true, "")).Seq
	s := h.fold()
	assert.False(t, s.VoteAnswered(vote), "not answered yet")
	h.add(counted(vote, p.alice))
	s = h.fold()
	assert.True(t, s.VoteAnswered(vote))
	require.Len(t, s.Votes, 1)
	assert.True(t, s.Votes[0].Counted)
	assert.Equal(t, request.StatusPending, s.Status, "counted decides nothing")

	for _, tc := range []struct {
		name string
		ev   event
		want error
	}{
		{"twice", counted(vote, p.alice), request.ErrIllegal},
		{"not a vote", counted(1, p.alice), request.ErrUnjustified},
		{"another voter", counted(vote, p.bob), request.ErrUnjustified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := request.Apply(s, h2(t, h, tc.ev))
			assert.ErrorIs(t, err, tc.want)
		})
	}

	// A refused vote is answered; so is any vote once the request is decided.
	bad := h.add(h.vote(&p.dave, true, "")).Seq
	s, errs := request.Fold(h.records)
	require.Error(t, errs[bad])
	assert.False(t, s.VoteAnswered(bad))
	h.add(refused(bad, "not-eligible"))
	s, _ = request.Fold(h.records)
	assert.True(t, s.VoteAnswered(bad))
	second := h.add(h.vote(&p.bob, true, "")).Seq
	h.add(approved(p.alice, p.bob))
	s, errs = request.Fold(h.records)
	require.Len(t, errs, 1, "the ineligible vote alone")
	assert.True(t, s.VoteAnswered(second), "the decision answers the vote that made it")
	_, err := request.Apply(s, h2(t, h, counted(second, p.bob)))
	assert.ErrorIs(t, err, request.ErrIllegal, "no counting once decided")
}

// h2 is the record ev would be if appended to h, without appending it.
func h2(t *testing.T, h *history, ev event) events.Record {
	t.Helper()
	c := &history{t: t, records: slices.Clone(h.records)}
	return c.add(ev)
}
