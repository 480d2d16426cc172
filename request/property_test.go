package request_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

// TestLifeInvariants drives one request through random interleavings of
// everything its history can hold: a request by anyone of a small cast, an
// evaluation (allow, review with random flows, deny, break-glass), votes by
// anyone (the requester, twice, people outside the flows, another domain),
// the approval component's own decisions from Next, time passing deadlines
// and escalations, grants good and bad, revocations asked and answered,
// redemptions (twice, late), refusals (the issuer's of a decision in
// favour among them: its requester locked since), forged decisions,
// untrusted and unchained records, and restarts that fold the whole
// history again. After every step the invariants a reader of the trail
// relies on must hold, among them that the request ends: from wherever it
// stands, the pipeline takes it to a terminal state, and whenever no
// component has anything to do it holds a live timer (see settles).
func TestLifeInvariants(t *testing.T) {
	cast := newCast(t)
	rapid.Check(t, func(rt *rapid.T) {
		m := &machine{h: newHistory(t), cast: cast, now: t0, errs: map[uint64]error{}, accepted: map[events.Kind]int{}}
		who := rapid.SampledFrom(cast).Draw(rt, "requester")
		req := requested(&who, rapid.SampledFrom([]int64{0, 60, 600, 3600}).Draw(rt, "ttl"))
		if rapid.IntRange(0, 9).Draw(rt, "untrusted request") == 0 {
			req.err = events.ErrBadSignature
		}
		m.add(rt, req)
		if rapid.IntRange(0, 9).Draw(rt, "evaluated at once") < 8 {
			m.evaluate(rt)
		}
		rt.Repeat(map[string]func(*rapid.T){
			"":               m.check,
			"vote":           m.vote,
			"approver votes": m.approverVotes,
			"decide":         m.decide,
			"decide again":   m.decide,
			"wait":           m.wait,
			"grant":          m.grant,
			"bad grant":      m.badGrant,
			"ask to revoke":  m.askRevoke,
			"revoked":        m.revoked,
			"redeem":         m.redeem,
			"refuse":         m.refuse,
			"issuer refuses": m.issuerRefuses,
			"reject":         m.reject,
			"evaluate":       m.evaluate,
			"request again":  m.requestAgain,
			"forge":          m.forge,
			"untrusted":      m.untrusted,
			"unchained":      m.unchained,
			"restart":        m.restart,
		})
	})
}

// newCast: two developers, three SRE leads (erin is a DBA too), a DBA, and
// an SRE lead of another domain, who is in none of acme's groups.
func newCast(t testing.TB) []identity.Principal {
	mallory := principal(t, "mallory", "sre-leads")
	mallory.Domain = "other"
	return []identity.Principal{
		principal(t, "carol", "developers"),
		principal(t, "dave", "developers"),
		principal(t, "alice", "sre-leads"),
		principal(t, "bob", "sre-leads"),
		principal(t, "erin", "dba", "sre-leads"),
		principal(t, "frank", "dba"),
		mallory,
	}
}

// machine is a request's history as it grows, and its state folded one
// record at a time.
type machine struct {
	h    *history
	cast []identity.Principal
	now  time.Time // the stream's clock: every record is stored at now
	s    request.State
	errs map[uint64]error // why each record changed nothing

	accepted map[events.Kind]int // records that changed the state, by kind
	ends     int                 // records that made the request terminal
}

// add appends e, stored at the machine's clock, folds it into the state and
// checks what that one record did.
func (m *machine) add(t *rapid.T, e event) error {
	if e.at.IsZero() {
		e.at = m.now
	}
	// Apply shares the state's map and slices with its result (see
	// TestApplyLeavesItsInputAlone): keep a copy of its own.
	before := deepCopy(m.s)
	r := m.h.add(e)
	after, err := request.Apply(m.s, r)
	m.checkStep(t, before, r, after, err)
	if err != nil {
		m.errs[r.Seq] = err
	}
	m.s = after
	return err
}

// probe is what Apply says of e as the next record, without keeping it.
func (m *machine) probe(e event) (request.State, error) {
	if e.at.IsZero() {
		e.at = m.now
	}
	r := m.h.add(e)
	m.h.records = m.h.records[:len(m.h.records)-1]
	return request.Apply(deepCopy(m.s), r)
}

func deepCopy(s request.State) request.State {
	s.Votes = slices.Clone(s.Votes)
	s.Escalations = slices.Clone(s.Escalations)
	s.RevokeAskers = slices.Clone(s.RevokeAskers)
	s.Alerts = slices.Clone(s.Alerts)
	s.Answered = maps.Clone(s.Answered)
	return s
}

// edges are the status changes a record may make; nothing leaves a closed
// request but a redeemed one, to revoked, while its grant is in use
// (asked, or its break-glass review denied it).
var edges = map[request.Status][]request.Status{
	request.StatusNone:      {request.StatusRequested, request.StatusRejected},
	request.StatusRequested: {request.StatusPending, request.StatusAllowed, request.StatusDenied, request.StatusRejected, request.StatusRevoked},
	request.StatusPending:   {request.StatusApproved, request.StatusDenied, request.StatusExpired, request.StatusRevoked},
	request.StatusAllowed:   {request.StatusGranted, request.StatusRevoked, request.StatusRefused},
	request.StatusApproved:  {request.StatusGranted, request.StatusRevoked, request.StatusRefused},
	request.StatusGranted:   {request.StatusRedeemed, request.StatusRevoked},
	// A redeemed grant still in use may be revoked (State.InUse).
	request.StatusRedeemed: {request.StatusRevoked},
}

// onceKinds are the kinds a request's history counts at most once.
var onceKinds = []events.Kind{
	events.KindRequested, events.KindEvaluated, events.KindRejected, events.KindApproved, events.KindDenied,
	events.KindExpired, events.KindGranted, events.KindRedeemed, events.KindRevoked, events.KindReviewed,
}

// checkStep checks one record's effect: a refused record changes nothing
// but the end of the history; an accepted one is justified by the state
// before it, and moves the request along a legal edge.
func (m *machine) checkStep(t *rapid.T, pre request.State, r events.Record, post request.State, err error) {
	require.Equal(t, r.Seq, post.LastSeq)
	require.Equal(t, r.Digest, post.LastDigest)
	want := pre
	want.LastSeq, want.LastDigest = r.Seq, r.Digest
	if want.ID == "" {
		want.Domain, want.ID = r.Domain, r.RequestID
	}
	if err != nil {
		require.Equal(t, want, post, "a refused %s (%v) changes nothing but the end of the history", r.Kind, err)
		require.NotEqual(t, "invalid", request.Code(err), "a refusal has a specific code: %v", err)
		return
	}
	switch d := r.Data.(type) {
	case *events.Refused:
		want.Answered = maps.Clone(pre.Answered)
		if want.Answered == nil {
			want.Answered = map[uint64]string{}
		}
		want.Answered[d.RefSeq] = d.Code
		want.Votes = slices.DeleteFunc(slices.Clone(pre.Votes), func(v request.Vote) bool { return v.Seq == d.RefSeq })
		if r.Role == identity.RoleIssuer && pre.Status.AwaitsGrant() && d.RefSeq == pre.DecisionSeq {
			// The issuer will not grant what was decided in favour: the
			// request ends there.
			want.Status, want.Refusal = request.StatusRefused, d
			if want.DecidedAt.IsZero() {
				want.DecidedAt = r.Envelope.Time
			}
			require.Equal(t, want, post, "the issuer's refusal of the decision ends the request, and only that")
			m.ends++
			require.LessOrEqual(t, m.ends, 1, "a request ends once")
			return
		}
		require.Equal(t, want, post, "a refusal only answers, and un-counts the vote it refuses")
		return
	case *events.Redeemed:
		if d.Outcome == events.RedemptionRefused {
			require.Equal(t, want, post, "a refused redemption changes nothing")
			return
		}
		require.Equal(t, request.StatusGranted, pre.Status)
		require.Equal(t, pre.Grant.TokenHash, d.TokenHash)
		require.False(t, r.Envelope.Time.After(pre.Grant.ExpiresAt.Add(request.RedeemLeeway)), "redeemed after the grant expired")
	case *events.Voted:
		require.True(t, pre.Collecting(), "a vote counts only while votes are collected")
		require.NotEqual(t, pre.Requester.ID(), r.Principal.ID(), "the requester answered")
		require.NotEqual(t, pre.Requester.Key, r.Principal.Key, "the requester's key answered")
		require.Equal(t, pre.RequestDigest, d.RequestDigest)
		require.True(t, request.At(r).Before(pre.Deadline()), "a vote at %s counts after the deadline %s", request.At(r), pre.Deadline())
		require.True(t, slices.ContainsFunc(pre.Progress(), func(p request.Progress) bool {
			return !p.Done() && (request.Eligible(p.Flow.Stages[p.Stage], *r.Principal, pre.Domain) || request.Eligible(p.Extra[p.Stage], *r.Principal, pre.Domain))
		}), "%s answers no open stage", r.Principal.ID())
	case *events.Approved:
		require.Equal(t, request.StatusPending, pre.Status)
		tl := pre.Tally()
		require.True(t, tl.Satisfied && !tl.Denied, "approved on %+v", tl)
		enough(t, pre, d.Approvers, true)
	case *events.Denied:
		require.Equal(t, request.StatusPending, pre.Status)
		require.True(t, pre.Tally().Denied)
		enough(t, pre, d.By, false)
	case *events.Expired:
		require.Equal(t, request.StatusPending, pre.Status)
		require.False(t, r.Envelope.Time.Before(pre.Deadline()), "expired before the deadline")
		tl := pre.Tally()
		require.False(t, tl.Satisfied || tl.Denied, "expired although the votes decided it")
	case *events.Granted:
		require.True(t, pre.Status.AwaitsGrant(), "granted in %s", pre.Status)
		require.Equal(t, pre.Requester.Key, d.Holder)
		require.Equal(t, m.h.records[len(m.h.records)-2].Digest, d.Evidence)
		if pre.Evaluation.Outcome != events.OutcomeAllow {
			require.Equal(t, 1, m.accepted[events.KindApproved], "granted on a review that was never approved")
		}
	case *events.Revoked:
		byReview := pre.ReviewDenied() && slices.Contains(pre.Review.By, d.By)
		require.True(t, byReview || slices.Contains(pre.RevokeAskers, d.By), "revoked by %s, who neither asked nor denied the review", d.By.ID())
		if pre.Status == request.StatusRedeemed {
			require.True(t, request.At(r).Before(pre.Grant.ExpiresAt.Add(request.RedeemLeeway)), "revoked a redeemed grant after it expired")
		}
	case *events.Escalated:
		require.Equal(t, request.StatusPending, pre.Status)
	case *events.Reviewed:
		require.True(t, pre.ReviewOpen())
		tl := pre.Tally()
		if d.Denied() {
			require.True(t, tl.Denied, "review denied on %+v", tl)
			enough(t, pre, d.By, false)
		} else {
			require.True(t, tl.Satisfied && !tl.Denied, "review approved on %+v", tl)
			enough(t, pre, d.Approvers, true)
		}
	case *events.Alerted:
		switch d.Alert {
		case events.AlertReviewDenied:
			require.True(t, pre.ReviewDenied(), "review-denied alert with no denied review")
			require.False(t, slices.ContainsFunc(pre.Alerts, func(a *events.Alerted) bool { return a.Alert == d.Alert }), "alerted twice")
		case events.AlertReviewOverdue:
			require.True(t, pre.ReviewOpen(), "overdue once the review is settled")
		}
	}
	if post.Status != pre.Status {
		require.Contains(t, edges[pre.Status], post.Status, "%s moved the request from %s to %s", r.Kind, pre.Status, post.Status)
	}
	if post.Status.IsTerminal() && !pre.Status.IsTerminal() {
		m.ends++
	}
	require.LessOrEqual(t, m.ends, 1, "a request ends once")
	m.accepted[r.Kind]++
	for _, k := range onceKinds {
		require.LessOrEqual(t, m.accepted[k], 1, "%s counted twice", k)
	}
}

// enough checks a decision's named voters without the fold's own stage
// logic: none is the requester, and each is named once for each counted
// vote with that answer (once a stage, where approvers may repeat); and some flow (every flow, for an approval) has enough of
// them among the people its stages or escalations name: its largest
// stage's count, or, when an approver counts once across the flow, the sum
// of its stages' — for a denial, the flow's quorum.
func enough(t *rapid.T, pre request.State, named []events.PrincipalRef, approve bool) {
	voters, times := map[string]identity.Principal{}, map[string]int{}
	for _, ref := range named {
		require.NotEqual(t, pre.Requester.ID(), ref.ID(), "the requester decided")
		cast := slices.DeleteFunc(slices.Clone(pre.Votes), func(v request.Vote) bool { return v.Voter.ID() != ref.ID() || v.Approve != approve })
		times[ref.ID()]++
		require.GreaterOrEqual(t, len(cast), times[ref.ID()], "%s named more often than they voted so", ref.ID())
		voters[ref.ID()] = cast[0].Voter
	}
	met := 0
	for _, f := range pre.Evaluation.Flows {
		n, need := 0, max(f.DenyQuorum, 1)
		if approve {
			need = 0
			for _, st := range f.Stages {
				if f.RepeatApprovers {
					need = max(need, st.Required)
				} else {
					need += st.Required
				}
			}
		}
		for _, p := range voters {
			if slices.ContainsFunc(f.Stages, func(st events.Stage) bool {
				return request.Eligible(st, p, pre.Domain) || (st.Escalate != nil &&
					request.Eligible(events.Stage{Groups: st.Escalate.Groups, Principals: st.Escalate.Principals}, p, pre.Domain))
			}) {
				n++
			}
		}
		if n >= need {
			met++
		}
	}
	if approve {
		require.Equal(t, len(pre.Evaluation.Flows), met, "some flow lacks approvers: %v", named)
	} else {
		require.Positive(t, met, "no flow has its quorum of denials: %v", named)
	}
}

// check holds after every step.
func (m *machine) check(t *rapid.T) {
	s := m.s
	// A restart reads the same request from the stream.
	folded, errs := request.Fold(m.h.records)
	require.Equal(t, s, folded, "folding the history again gives another state")
	require.Len(t, errs, len(m.errs))
	for seq, err := range m.errs {
		require.EqualError(t, errs[seq], err.Error(), "record %d", seq)
	}
	switch s.Status {
	case request.StatusGranted, request.StatusRedeemed:
		require.NotNil(t, s.Grant)
	case request.StatusRevoked:
		require.NotNil(t, s.Revocation)
	case request.StatusRejected:
		require.NotNil(t, s.Rejection)
	case request.StatusRefused:
		require.NotNil(t, s.Refusal)
		require.Nil(t, s.Grant)
	case request.StatusPending:
		require.True(t, !s.Deadline().IsZero() || s.Tally().Satisfied, "pending, with no stage open, yet not approved")
	}
	m.settles(t)
	// What the approval component would do now, Apply takes.
	for _, d := range []request.Decision{request.Next(s, m.now), request.NextReview(s, m.now)} {
		if d.Kind != events.KindNone {
			_, err := m.probe(event{kind: d.Kind, data: d.Data})
			require.NoError(t, err, "Next proposes %s and Apply refuses it", d.Kind)
		}
	}
	if s.Status != request.StatusPending {
		return
	}
	tl, d := s.Tally(), request.Next(s, m.now)
	expire := event{kind: events.KindExpired, data: &events.Expired{Deadline: s.Deadline()}, at: latest(m.now, s.Deadline())}
	switch {
	case tl.Denied:
		require.Equal(t, events.KindDenied, d.Kind, "a counted denial wins")
		_, err := m.probe(event{kind: events.KindApproved, data: &events.Approved{Approvers: refsOf(tl.Approvers)}})
		require.ErrorIs(t, err, request.ErrUnjustified, "approved over a counted denial")
		_, err = m.probe(expire)
		require.ErrorIs(t, err, request.ErrUnjustified, "expired over a counted denial")
	case tl.Satisfied:
		require.Equal(t, events.KindApproved, d.Kind)
		_, err := m.probe(expire)
		require.ErrorIs(t, err, request.ErrUnjustified, "expired although approved")
	case !m.now.Before(s.Deadline()):
		require.Contains(t, []events.Kind{events.KindEscalated, events.KindExpired}, d.Kind, "nothing happens past the deadline")
	}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func refsOf(ps []identity.Principal) []events.PrincipalRef {
	out := make([]events.PrincipalRef, len(ps))
	for i, p := range ps {
		out[i] = events.PrincipalRef{Domain: p.Domain, Name: p.Name}
	}
	return out
}

// Actions.

// vote appends a vote by anyone of the cast.
func (m *machine) vote(t *rapid.T) {
	m.voteAs(t, rapid.SampledFrom(m.cast).Draw(t, "voter"))
}

// approverVotes appends a vote by someone the state says may answer now,
// so that flows get decided.
func (m *machine) approverVotes(t *rapid.T) {
	may := slices.DeleteFunc(slices.Clone(m.cast), func(p identity.Principal) bool { return m.s.CanVote(p) != nil })
	if len(may) == 0 {
		may = m.cast
	}
	m.voteAs(t, rapid.SampledFrom(may).Draw(t, "approver"))
}

func (m *machine) voteAs(t *rapid.T, p identity.Principal) {
	digest := m.s.RequestDigest
	if rapid.IntRange(0, 9).Draw(t, "stale digest") == 0 {
		digest = m.s.LastDigest
	}
	d := events.DecisionDeny
	if rapid.IntRange(0, 3).Draw(t, "approve") > 0 {
		d = events.DecisionApprove
	}
	_ = m.add(t, event{kind: events.KindVoted, by: &p, data: &events.Voted{
		Domain: "acme", Voter: events.PrincipalRef{Domain: p.Domain, Name: p.Name}, Decision: d, RequestDigest: digest,
	}})
}

// decide appends what the approval component would: the break-glass alert,
// then the review's outcome (and after a denial, the revocation and its
// alert); or Next's decision.
func (m *machine) decide(t *rapid.T) {
	d := m.approval()
	if d.Kind == events.KindNone {
		t.Skip("nothing to decide")
	}
	require.NoError(t, m.add(t, event{kind: d.Kind, data: d.Data}), "the approval component's own %s", d.Kind)
}

// approval is what the approval component decides now.
func (m *machine) approval() request.Decision {
	if m.s.ReviewOpen() && len(m.s.Alerts) == 0 {
		return request.Decision{Kind: events.KindAlerted, Data: &events.Alerted{Alert: events.AlertBreakGlass, Reason: "break-glass"}}
	}
	if m.s.ReviewActive() {
		return request.NextReview(m.s, m.now)
	}
	return request.Next(m.s, m.now)
}

// settles checks that the request ends: on a copy of the history, the
// pipeline answers as it would — the policy rejects or evaluates, the
// approval component decides, the issuer grants or refuses (a lock),
// timers fire — until the request is terminal with no review left to act
// on. Whenever no component has anything to do, the request must hold a
// live timer (NextDue), and the clock moves to it. Nobody votes or
// revokes meanwhile: the timers alone must end it.
func (m *machine) settles(t *rapid.T) {
	sim := &machine{
		h: &history{t: m.h.t, records: slices.Clone(m.h.records)}, cast: m.cast, now: m.now,
		s: deepCopy(m.s), errs: maps.Clone(m.errs), accepted: maps.Clone(m.accepted), ends: m.ends,
	}
	locked := rapid.IntRange(0, 3).Draw(t, "the issuer finds the requester locked") == 0
	for range 32 {
		s := sim.s
		var e event
		switch d := sim.approval(); {
		case s.Status.IsTerminal() && !s.ReviewActive():
			return
		case s.Status == request.StatusNone:
			e = event{kind: events.KindRejected, data: &events.Rejected{RefSeq: 1, Code: "bad-signature", Reason: "untrusted"}}
		case s.Status == request.StatusRequested:
			e = event{kind: events.KindEvaluated, data: &events.Evaluated{Outcome: events.OutcomeAllow}}
		case d.Kind != events.KindNone:
			e = event{kind: d.Kind, data: d.Data}
		case s.Status.AwaitsGrant() && locked:
			e = issuerRefused(s.DecisionSeq, "approved", "locked")
		case s.Status.AwaitsGrant():
			e = sim.granted(s.Requester.Key, time.Minute)
		default:
			due := s.NextDue()
			require.False(t, due.IsZero(), "%s with nothing to do and no timer: it would never end", s.Status)
			require.True(t, due.After(sim.now), "a timer due at %s, now %s, and nothing to do", due, sim.now)
			sim.now = due
			continue
		}
		require.NoError(t, sim.add(t, e), "the pipeline's own %s in %s", e.kind, s.Status)
	}
	require.Fail(t, "the request did not end", "%s after 32 steps of the pipeline", sim.s.Status)
}

// wait lets time pass: to just before, or exactly at, the next thing due,
// or by a random amount.
func (m *machine) wait(t *rapid.T) {
	due := m.s.NextDue()
	switch rapid.IntRange(0, 3).Draw(t, "wait") {
	case 0:
		if due.After(m.now) {
			m.now = due.Add(-time.Nanosecond)
		}
	case 1:
		if due.After(m.now) {
			m.now = due
		}
	default:
		m.now = m.now.Add(time.Duration(rapid.IntRange(1, 900).Draw(t, "seconds")) * time.Second)
	}
}

// grant appends a grant within every cap: accepted exactly when the
// request awaits one.
func (m *machine) grant(t *rapid.T) {
	ttl := int64(3600)
	if e := m.s.Evaluation; e != nil && e.MaxTTLSeconds > 0 {
		ttl = min(ttl, e.MaxTTLSeconds)
	}
	if r := m.s.Request; r != nil && r.TTLSeconds > 0 {
		ttl = min(ttl, r.TTLSeconds)
	}
	ttl = rapid.Int64Range(1, ttl).Draw(t, "grant seconds")
	awaits := m.s.Status.AwaitsGrant()
	err := m.add(t, m.granted(m.s.Requester.Key, time.Duration(ttl)*time.Second))
	if awaits {
		require.NoError(t, err, "a grant within its caps")
	} else {
		require.Error(t, err, "granted in %s", m.s.Status)
	}
}

// badGrant appends a grant to someone else, or past a cap: never accepted.
func (m *machine) badGrant(t *rapid.T) {
	holder, ttl := m.s.Requester.Key, 25*time.Hour
	if e := m.s.Evaluation; e != nil && e.MaxTTLSeconds > 0 && rapid.Bool().Draw(t, "past the policy's cap") {
		ttl = time.Duration(e.MaxTTLSeconds+1) * time.Second
	} else if r := m.s.Request; r != nil && r.TTLSeconds > 0 {
		ttl = time.Duration(r.TTLSeconds+1) * time.Second
	} else {
		other := rapid.SampledFrom(m.cast).Filter(func(p identity.Principal) bool { return p.Key != holder }).Draw(t, "holder")
		holder, ttl = other.Key, time.Minute
	}
	require.Error(t, m.add(t, m.granted(holder, ttl)))
}

func (m *machine) granted(holder string, ttl time.Duration) event {
	return event{kind: events.KindGranted, data: &events.Granted{
		TokenHash: fmt.Sprintf("sha256:%064x", 1000+len(m.h.records)), Holder: holder, NotBefore: m.now, ExpiresAt: m.now.Add(ttl),
	}}
}

func (m *machine) askRevoke(t *rapid.T) {
	p := rapid.SampledFrom(m.cast).Draw(t, "asker")
	_ = m.add(t, event{kind: events.KindRevoke, by: &p, data: &events.Revoke{
		Domain: "acme", By: events.PrincipalRef{Domain: p.Domain, Name: p.Name}, Reason: "wrong ticket",
	}})
}

func (m *machine) revoked(t *rapid.T) {
	by := rapid.SampledFrom(m.cast).Draw(t, "revoker")
	ref := events.PrincipalRef{Domain: by.Domain, Name: by.Name}
	if len(m.s.RevokeAskers) > 0 && rapid.IntRange(0, 3).Draw(t, "an asker") == 0 {
		ref = rapid.SampledFrom(m.s.RevokeAskers).Draw(t, "asker")
	}
	_ = m.add(t, event{kind: events.KindRevoked, data: &events.Revoked{By: ref, Reason: "wrong ticket"}})
}

// redeem presents the grant's token (or another), at the clock: early,
// late, twice, or refused by the redeemer.
func (m *machine) redeem(t *rapid.T) {
	d := &events.Redeemed{Outcome: events.RedemptionRedeemed, TokenHash: "sha256:" + fmt.Sprintf("%064d", 7)}
	if m.s.Grant != nil && rapid.IntRange(0, 4).Draw(t, "its token") > 0 {
		d.TokenHash = m.s.Grant.TokenHash
	}
	if rapid.IntRange(0, 4).Draw(t, "refused") == 0 {
		d.Outcome, d.Code = events.RedemptionRefused, "already-used"
	}
	_ = m.add(t, event{kind: events.KindRedeemed, data: d})
}

// refuse appends a component's refusal of an earlier record.
func (m *machine) refuse(t *rapid.T) {
	seq := rapid.IntRange(1, len(m.h.records)).Draw(t, "refused seq")
	code := "not-permitted"
	if err := m.errs[uint64(seq)]; err != nil {
		code = request.Code(err)
	}
	role := rapid.SampledFrom([]identity.Role{"", identity.RoleApproval, identity.RoleIssuer}).Draw(t, "refused by")
	require.NoError(t, m.add(t, event{kind: events.KindRefused, role: role, data: &events.Refused{
		RefSeq: uint64(seq), RefKind: m.h.records[seq-1].Kind.String(), Code: code, Reason: "refused",
	}}))
}

// issuerRefuses appends the issuer's refusal of a decision in favour: the
// requester was locked after the approval. The request ends, refused.
func (m *machine) issuerRefuses(t *rapid.T) {
	if !m.s.Status.AwaitsGrant() {
		t.Skip("nothing to grant")
	}
	kind := m.h.records[m.s.DecisionSeq-1].Kind.String()
	require.NoError(t, m.add(t, issuerRefused(m.s.DecisionSeq, kind, "locked")))
	require.Equal(t, request.StatusRefused, m.s.Status)
	_, err := m.probe(m.granted(m.s.Requester.Key, time.Minute))
	require.ErrorIs(t, err, request.ErrClosed, "no grant after the issuer refused")
}

// reject appends the policy's rejection of the request (a lock, say).
func (m *machine) reject(t *rapid.T) {
	ok := m.s.Status == request.StatusNone || m.s.Status == request.StatusRequested
	err := m.add(t, event{kind: events.KindRejected, data: &events.Rejected{RefSeq: 1, Code: "locked", Reason: "locked"}})
	require.Equal(t, ok, err == nil, "rejected in %s: %v", m.s.Status, err)
}

func (m *machine) evaluate(t *rapid.T) {
	ev := &events.Evaluated{MaxTTLSeconds: rapid.SampledFrom([]int64{0, 300, 1800}).Draw(t, "max ttl")}
	// Mostly reviews: they have the most to go wrong.
	outcomes := []string{events.OutcomeReview, events.OutcomeReview, events.OutcomeReview, events.OutcomeAllow, events.OutcomeDeny, "break-glass"}
	switch outcome := rapid.SampledFrom(outcomes).Draw(t, "outcome"); outcome {
	case events.OutcomeReview, "break-glass":
		ev.Outcome, ev.Flows = events.OutcomeReview, drawFlows(t)
		if outcome == "break-glass" {
			ev.Outcome, ev.BreakGlass = events.OutcomeAllow, true
		}
		// As the policy computes it: the first stages' shortest deadline.
		shortest := ev.Flows[0].Stages[0].DeadlineSeconds
		for _, f := range ev.Flows {
			shortest = min(shortest, f.Stages[0].DeadlineSeconds)
		}
		exp := m.now.Add(time.Duration(shortest) * time.Second)
		ev.ExpiresAt = &exp
	default:
		ev.Outcome = outcome
	}
	requested := m.s.Status == request.StatusRequested
	err := m.add(t, event{kind: events.KindEvaluated, data: ev})
	require.Equal(t, requested, err == nil, "evaluated in %s: %v", m.s.Status, err)
}

var (
	stageGroups = []string{"sre-leads", "dba", "developers", "other/sre-leads"}
	stageNamed  = []string{"acme/alice", "acme/dave", "other/mallory"}
)

// drawFlows draws one or two flows of one or two stages, each needing one
// to three approvers of some groups or named people, with a deadline, and
// maybe an escalation before it.
func drawFlows(t *rapid.T) []events.Flow {
	flows := make([]events.Flow, rapid.IntRange(1, 2).Draw(t, "flows"))
	for i := range flows {
		f := events.Flow{Name: fmt.Sprintf("flow-%d", i), DenyQuorum: rapid.IntRange(0, 2).Draw(t, "deny quorum"),
			RepeatApprovers: rapid.Bool().Draw(t, "repeat approvers")}
		for j := range rapid.IntRange(1, 2).Draw(t, "stages") {
			deadline := rapid.IntRange(60, 7200).Draw(t, "deadline")
			st := events.Stage{
				Name: fmt.Sprintf("stage-%d", j), Required: rapid.SampledFrom([]int{1, 1, 2, 3}).Draw(t, "required"), DeadlineSeconds: int64(deadline),
				Groups:     rapid.SliceOfNDistinct(rapid.SampledFrom(stageGroups), 0, 2, rapid.ID).Draw(t, "groups"),
				Principals: rapid.SliceOfNDistinct(rapid.SampledFrom(stageNamed), 0, 2, rapid.ID).Draw(t, "principals"),
			}
			if len(st.Groups)+len(st.Principals) == 0 {
				st.Groups = []string{"sre-leads"}
			}
			if len(st.Groups) == 0 {
				st.Required = min(st.Required, len(st.Principals)) // as ParseFlows insists
			}
			st.AllGroups = len(st.Groups) > 1 && rapid.Bool().Draw(t, "all groups")
			if rapid.Bool().Draw(t, "escalates") {
				st.Escalate = &events.Escalation{AfterSeconds: int64(rapid.IntRange(1, deadline-1).Draw(t, "escalate after")),
					Groups: []string{rapid.SampledFrom(stageGroups).Draw(t, "escalate to")}}
			}
			f.Stages = append(f.Stages, st)
		}
		flows[i] = f
	}
	return flows
}

// requestAgain appends a request: refused unless the first was untrusted.
func (m *machine) requestAgain(t *rapid.T) {
	p := rapid.SampledFrom(m.cast).Draw(t, "second requester")
	first := m.s.Status != request.StatusNone
	err := m.add(t, requested(&p, 0))
	require.Equal(t, first, err != nil, "a request after one in %s: %v", m.s.Status, err)
}

// forge appends a decision nobody computed: the current tally's, or
// naming anyone. Whatever Apply takes, checkStep holds it to account.
func (m *machine) forge(t *rapid.T) {
	tl := m.s.Tally()
	anyone := refsOf(rapid.SliceOfNDistinct(rapid.SampledFrom(m.cast), 0, 3, func(p identity.Principal) string { return p.Name }).Draw(t, "named"))
	flow, stage := "flow-0", rapid.IntRange(0, 1).Draw(t, "stage")
	if rapid.Bool().Draw(t, "second flow") {
		flow = "flow-1"
	}
	var e event
	var deniers []events.PrincipalRef
	if m.s.Review != nil {
		deniers = m.s.Review.By
	}
	switch rapid.IntRange(0, 12).Draw(t, "forged") {
	case 0:
		e = event{kind: events.KindApproved, data: &events.Approved{Approvers: refsOf(tl.Approvers)}}
	case 1:
		e = event{kind: events.KindApproved, data: &events.Approved{Approvers: anyone}}
	case 2:
		e = event{kind: events.KindDenied, data: &events.Denied{By: refsOf(tl.Deniers)}}
	case 3:
		e = event{kind: events.KindDenied, data: &events.Denied{By: anyone}}
	case 4:
		e = event{kind: events.KindExpired, data: &events.Expired{Deadline: m.now}}
	case 5:
		// An escalation to whom the flow escalates, when it may not be due;
		// to others is TestEscalationAddsOnlyTheFlowsApprovers.
		esc := &events.Escalated{Flow: flow, Stage: stage, Groups: []string{"developers"}}
		if ev := m.s.Evaluation; ev != nil {
			for _, f := range ev.Flows {
				if f.Name == flow && stage < len(f.Stages) && f.Stages[stage].Escalate != nil {
					esc.Groups, esc.Principals = f.Stages[stage].Escalate.Groups, f.Stages[stage].Escalate.Principals
				}
			}
		}
		e = event{kind: events.KindEscalated, data: esc}
	case 6:
		e = event{kind: events.KindReviewed, data: &events.Reviewed{Outcome: events.ReviewApproved, Approvers: refsOf(tl.Approvers)}}
	case 7:
		e = event{kind: events.KindReviewed, data: &events.Reviewed{Approvers: refsOf(tl.Approvers)}} // a v1: no outcome
	case 8:
		e = event{kind: events.KindReviewed, data: &events.Reviewed{Outcome: events.ReviewDenied, By: refsOf(tl.Deniers)}}
	case 9:
		e = event{kind: events.KindReviewed, data: &events.Reviewed{Outcome: events.ReviewDenied, By: anyone}}
	case 10:
		// A revocation in a review's name: a denier's, or anyone's.
		by := events.PrincipalRef{Domain: "acme", Name: "alice"}
		if len(deniers) > 0 && rapid.Bool().Draw(t, "a denier") {
			by = rapid.SampledFrom(deniers).Draw(t, "denier")
		}
		e = event{kind: events.KindRevoked, data: &events.Revoked{By: by, Reason: "review denied"}}
	case 11:
		e = event{kind: events.KindAlerted, data: &events.Alerted{Alert: events.AlertReviewDenied, Reason: "denied"}}
	default:
		e = event{kind: events.KindAlerted, data: &events.Alerted{Alert: events.AlertReviewOverdue, Reason: "overdue"}}
	}
	_ = m.add(t, e)
}

// untrusted appends a record Inspect did not trust: it changes nothing.
func (m *machine) untrusted(t *rapid.T) {
	k := rapid.SampledFrom([]events.Kind{events.KindRequested, events.KindEvaluated, events.KindVoted, events.KindApproved,
		events.KindDenied, events.KindExpired, events.KindGranted, events.KindRevoked, events.KindRefused}).Draw(t, "untrusted kind")
	why := rapid.SampledFrom([]error{events.ErrBadSignature, events.ErrNotEntitled, events.ErrSchema, identity.ErrUntrustedKey, events.ErrOversized}).Draw(t, "why")
	err := m.add(t, event{kind: k, data: events.NewData(k), err: why})
	require.ErrorIs(t, err, request.ErrInvalid)
	require.ErrorIs(t, err, why)
}

// unchained appends the approval component's decision, or a vote, chained
// to something other than the end of the history.
func (m *machine) unchained(t *rapid.T) {
	prev := "sha256:" + fmt.Sprintf("%064d", 0)
	if n := len(m.h.records); n > 1 {
		prev = m.h.records[rapid.IntRange(0, n-2).Draw(t, "chained to")].Digest
	}
	e := event{kind: events.KindVoted, by: &m.cast[2], data: &events.Voted{Domain: "acme", Voter: events.PrincipalRef{Domain: "acme", Name: "alice"},
		Decision: events.DecisionApprove, RequestDigest: m.s.RequestDigest}, prev: &prev}
	if d := request.Next(m.s, m.now); d.Kind != events.KindNone {
		e = event{kind: d.Kind, data: d.Data, prev: &prev}
	}
	require.ErrorIs(t, m.add(t, e), request.ErrBrokenChain)
}

// restart reads the request again from its history, as a component
// starting up does, and goes on from there.
func (m *machine) restart(*rapid.T) {
	m.s, _ = request.Fold(m.h.records)
}

// TestApplyLeavesItsInputAlone: a fold step must not change the state it
// was given, so that two records applied to one state (a component trying
// what an event would do, an auditor comparing) do not see each other.
func TestApplyLeavesItsInputAlone(t *testing.T) {
	p := newPeople(t)
	erin, frank, gina := principal(t, "erin", "sre-leads"), principal(t, "frank", "sre-leads"), principal(t, "gina", "sre-leads")
	flow := events.Flow{Name: "five-leads", Stages: []events.Stage{{Groups: []string{"sre-leads"}, Required: 5, DeadlineSeconds: 1800}}}
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0, flow))
	h.add(h.vote(&p.alice, true, ""))
	h.add(h.vote(&p.bob, true, ""))
	h.add(h.vote(&p.dave, true, "")) // 5: not eligible
	h.add(refused(5, "not-eligible"))
	h.add(h.vote(&erin, true, ""))
	base, _ := request.Fold(h.records)
	require.Len(t, base.Votes, 3)
	kept := deepCopy(base)

	// Three records that could each come next.
	peek := func(e event) events.Record {
		r := h.add(e)
		h.records = h.records[:len(h.records)-1]
		return r
	}
	byFrank, byGina, refusal := peek(h.vote(&frank, true, "")), peek(h.vote(&gina, true, "")), peek(refused(7, "not-permitted"))

	withFrank, err := request.Apply(base, byFrank)
	require.NoError(t, err)
	_, err = request.Apply(base, byGina)
	require.NoError(t, err)
	assert.Equal(t, frank, withFrank.Votes[3].Voter, "a result is unchanged by what is applied to its input later")
	_, err = request.Apply(base, refusal)
	require.NoError(t, err)
	assert.Equal(t, kept, base, "the state applied to is unchanged")
}

// TestEscalationAddsOnlyTheFlowsApprovers: the evaluation records whom each
// stage escalates to; an escalated event naming anyone else would let its
// signer choose who counts.
func TestEscalationAddsOnlyTheFlowsApprovers(t *testing.T) {
	p := newPeople(t)
	flow := leadThenSecurity() // the lead stage escalates to managers after ten minutes
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0, flow))
	s := h.fold()
	due := t0.Add(10 * time.Minute)

	wider := h.add(event{kind: events.KindEscalated, at: due, data: &events.Escalated{Flow: flow.Name, Groups: []string{"managers", "developers"}}})
	_, err := request.Apply(deepCopy(s), wider)
	assert.ErrorIs(t, err, request.ErrUnjustified, "escalated to developers, whom the flow does not name")

	h.records = h.records[:len(h.records)-1]
	own := h.add(event{kind: events.KindEscalated, at: due, data: &events.Escalated{Flow: flow.Name, Groups: []string{"managers"}}})
	_, err = request.Apply(deepCopy(s), own)
	assert.NoError(t, err, "escalated as the flow says")
}
