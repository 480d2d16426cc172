package request

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// Errors returned by Apply when an event changes nothing.
var (
	ErrInvalid     = errors.New("event is not trustworthy")
	ErrBrokenChain = errors.New("prev does not match the history")
	ErrIllegal     = errors.New("event not allowed in this state")
	ErrClosed      = errors.New("request is closed")
	ErrUnjustified = errors.New("decision not supported by the history")

	// Vote refusals.
	ErrNotPending    = errors.New("request is not waiting for approvers")
	ErrSelfApproval  = errors.New("requesters cannot answer their own request")
	ErrNotEligible   = errors.New("voter is not an approver of this request's flows")
	ErrDuplicateVote = errors.New("voter has already answered")
	ErrStaleDigest   = errors.New("vote answers a different request event")
	ErrPastDeadline  = errors.New("vote arrived after the deadline")

	// ErrNotAuthorized refuses a principal's revoke that policy does not allow.
	ErrNotAuthorized = errors.New("not authorized")
	// ErrNotPermitted refuses a vote that policy does not allow (Action::"approve").
	ErrNotPermitted = errors.New("policy does not let this approver answer")
)

// Vote is a counted answer.
type Vote struct {
	Voter   identity.Principal
	Approve bool
	Reason  string
	Seq     uint64
	At      time.Time // when the stream stored it
	// Counted says the approval component answered the vote with counted
	// (it decided nothing yet).
	Counted bool
}

// State is a request folded from its history.
type State struct {
	Domain string
	ID     string
	Status Status

	Request       *events.Requested
	RequestSeq    uint64
	RequestDigest string
	RequestedAt   time.Time
	Requester     identity.Principal

	Evaluation  *events.Evaluated
	EvaluatedAt time.Time
	Votes       []Vote
	Escalations []Escalation
	Rejection   *events.Rejected
	DecidedAt   time.Time
	// DecisionSeq is the sequence of the record that decided in favour
	// (the evaluation that allowed, or the approval): the issuer answers
	// it with a grant, or with a refusal that ends the request (Refusal).
	DecisionSeq uint64
	Refusal     *events.Refused
	Grant       *events.Granted
	RedeemedAt  time.Time
	Revocation  *events.Revoked
	// RevokeAskers are who asked, validly, to revoke: a revocation answers
	// one of them.
	RevokeAskers []events.PrincipalRef

	// A break-glass grant's after-the-fact review: open from the
	// evaluation until reviewed (approved or denied) or overdue. A denial
	// then revokes the grant and raises an alert (ReviewActive).
	Alerts        []*events.Alerted
	Review        *events.Reviewed
	ReviewOverdue bool

	// Answered maps the sequence of each message a component has already
	// rejected or refused to the reason code, so it is answered once.
	Answered map[uint64]string

	// LastSeq and LastDigest describe the last message of the history,
	// trustworthy or not: the next event chains to it and publishes with
	// LastSeq as the expected last sequence.
	LastSeq    uint64
	LastDigest string
}

// Fold applies every record in order and returns the state together with
// the error of each record that changed nothing, by sequence.
func Fold(records []events.Record) (State, map[uint64]error) {
	var s State
	var errs map[uint64]error
	for _, r := range records {
		var err error
		if s, err = Apply(s, r); err != nil {
			if errs == nil {
				errs = make(map[uint64]error)
			}
			errs[r.Seq] = err
		}
	}
	return s, errs
}

// Link is the rule every history of the trail is folded by first, a
// request's here or a series' that lives under an id of its own (package
// series): a record may change anything only if it is trustworthy and
// chains to the record before it, whose digest is prev ("" for none).
func Link(prev string, r events.Record) error {
	if !r.Valid() {
		return fmt.Errorf("%w: %w", ErrInvalid, r.Err)
	}
	if events.Prev(r.Data) != prev {
		return ErrBrokenChain
	}
	return nil
}

// Apply folds one record into the state. Every record advances LastSeq and
// LastDigest; only a trustworthy record that chains to its predecessor and
// is legal in the current state changes anything else. The error says why
// a record changed nothing. Apply needs no clock: time comes from the
// records (when the stream stored them, else when they say they were made).
//
// Apply folds a request's history only. The records that live under an id
// of their own (a lock, a state change, a policy record, checkpoints, a
// witness's, the guard's alerts) have folds of their own (package series):
// here they are ErrIllegal. Their refusals are not: whatever the history,
// Apply keeps where it ends and what was refused in it, which is what a
// writer appending to it needs. Apply cannot tell a series' history from
// a request's (a request chained to a lock's ask is a request to it): a
// reader that does not know what an id holds folds its history with
// series.Any, which gives a series' history to the series' fold.
func Apply(s State, r events.Record) (State, error) {
	prev := s.LastDigest
	s.LastSeq, s.LastDigest = r.Seq, r.Digest
	if s.ID == "" {
		s.Domain, s.ID = r.Domain, r.RequestID
	}
	if err := Link(prev, r); err != nil {
		return s, err
	}
	if d, ok := r.Data.(*events.Refused); ok {
		s.answer(d.RefSeq, d.Code)
		// A vote the approval component refused after the fact (a policy
		// forbids that approver) stops counting.
		s.Votes = slices.DeleteFunc(slices.Clone(s.Votes), func(v Vote) bool { return v.Seq == d.RefSeq })
		// The issuer answers a decision in favour once: its refusal (the
		// requester was locked since, say) means no grant will ever come,
		// and ends the request rather than leave it waiting for good.
		if r.Role == identity.RoleIssuer && s.Status.AwaitsGrant() && d.RefSeq == s.DecisionSeq {
			s.Status, s.Refusal = StatusRefused, d
			if s.DecidedAt.IsZero() {
				s.DecidedAt = r.Envelope.Time
			}
		}
		return s, nil
	}
	if d, ok := r.Data.(*events.Redeemed); ok && d.Outcome == events.RedemptionRefused {
		return s, nil // a refused attempt is on record and changes nothing
	}
	revocation := r.Kind == events.KindRevoked || r.Kind == events.KindRevoke
	afterGrant := r.Kind == events.KindRedeemed || revocation
	review := s.ReviewOpen() && (r.Kind == events.KindVoted || r.Kind == events.KindAlerted || r.Kind == events.KindReviewed || r.Kind == events.KindCounted)
	// A denied break-glass review acts whatever became of the grant: it
	// revokes it (while it may be in use) and raises its alert. The cases
	// below say what is due.
	review = review || (s.ReviewDenied() && (r.Kind == events.KindRevoked || r.Kind == events.KindAlerted))
	// A redeemed grant may still be in use (a connection it opened through
	// the NATS callout lives until the grant expires): revoking it is
	// recorded, so that what it opened is ended.
	inUse := revocation && s.InUse(At(r))
	if !review && !inUse && (s.Status.IsClosed() || (s.Status.IsTerminal() && !(s.Status == StatusGranted && afterGrant))) {
		return s, fmt.Errorf("%w (%s)", ErrClosed, s.Status)
	}
	switch d := r.Data.(type) {
	case *events.Requested:
		if s.Status != StatusNone {
			return s, fmt.Errorf("%w: second request on one id", ErrIllegal)
		}
		s.Status = StatusRequested
		s.Request, s.RequestSeq, s.RequestDigest = d, r.Seq, r.Digest
		s.RequestedAt = r.Envelope.Time
		s.Requester = *r.Principal
	case *events.Rejected:
		if s.Status != StatusNone && s.Status != StatusRequested {
			return s, fmt.Errorf("%w: rejected after evaluation", ErrIllegal)
		}
		s.Status, s.Rejection, s.DecidedAt = StatusRejected, d, r.Envelope.Time
		s.answer(d.RefSeq, d.Code)
	case *events.Evaluated:
		if s.Status != StatusRequested {
			return s, fmt.Errorf("%w: evaluated in %s", ErrIllegal, s.Status)
		}
		switch d.Outcome {
		case events.OutcomeAllow:
			s.Status, s.DecisionSeq = StatusAllowed, r.Seq
		case events.OutcomeReview:
			if len(d.Flows) == 0 || d.ExpiresAt == nil {
				return s, fmt.Errorf("%w: review without flows or deadline", ErrIllegal)
			}
			s.Status = StatusPending
		default:
			s.Status, s.DecidedAt = StatusDenied, r.Envelope.Time
		}
		s.Evaluation, s.EvaluatedAt = d, evaluatedAt(d, r.Envelope.Time)
	case *events.Voted:
		v, err := s.checkVote(d, r)
		if err != nil {
			return s, err
		}
		s.Votes = append(slices.Clip(s.Votes), v)
	case *events.Counted:
		if !s.Collecting() {
			return s, fmt.Errorf("%w: counted in %s", ErrIllegal, s.Status)
		}
		i := slices.IndexFunc(s.Votes, func(v Vote) bool { return v.Seq == d.RefSeq })
		if i < 0 || s.Votes[i].Voter.Domain != d.Voter.Domain || s.Votes[i].Voter.Name != d.Voter.Name {
			return s, fmt.Errorf("%w: counts #%d, which is not %s's counted vote", ErrUnjustified, d.RefSeq, d.Voter.ID())
		}
		if s.Votes[i].Counted {
			return s, fmt.Errorf("%w: vote #%d counted twice", ErrIllegal, d.RefSeq)
		}
		s.Votes = slices.Clone(s.Votes)
		s.Votes[i].Counted = true
	case *events.Alerted:
		if events.IsGuardAlert(d.Alert) {
			return s, fmt.Errorf("%w: the guard's alerts have an id of their own", ErrIllegal)
		}
		if s.Evaluation == nil || !s.Evaluation.BreakGlass {
			return s, fmt.Errorf("%w: alert without break-glass", ErrIllegal)
		}
		switch d.Alert {
		case events.AlertReviewOverdue:
			if !s.ReviewOpen() || r.Envelope.Time.Before(s.Deadline()) {
				return s, fmt.Errorf("%w: review not overdue", ErrUnjustified)
			}
			s.ReviewOverdue = true
		case events.AlertReviewDenied:
			if !s.ReviewDenied() {
				return s, fmt.Errorf("%w: no review denied", ErrUnjustified)
			}
			if s.alerted(events.AlertReviewDenied) {
				return s, fmt.Errorf("%w: the review's denial alerted already", ErrIllegal)
			}
		}
		s.Alerts = append(slices.Clip(s.Alerts), d)
	case *events.Reviewed:
		if !s.ReviewOpen() {
			return s, fmt.Errorf("%w: no review open", ErrIllegal)
		}
		t := s.Tally()
		switch d.Outcome {
		case events.ReviewDenied:
			// As for a pending request: the flows' deny quorum decides.
			if !t.Denied {
				return s, fmt.Errorf("%w: review denied with no counted denial", ErrUnjustified)
			}
			if !slices.Equal(d.By, refs(t.Deniers)) {
				return s, fmt.Errorf("%w: names deniers other than the counted ones", ErrUnjustified)
			}
		case events.ReviewApproved, "": // "": a reviewed.v1, written before reviews could deny
			if !t.Satisfied {
				return s, fmt.Errorf("%w: review flows not satisfied", ErrUnjustified)
			}
			// A reviewed.v1 too: accepting one over a denial would let a
			// forged old-format event settle what the reviewers denied.
			if t.Denied {
				return s, fmt.Errorf("%w: review approved over a counted denial", ErrUnjustified)
			}
			if !slices.Equal(d.Approvers, refs(t.Approvers)) {
				return s, fmt.Errorf("%w: names reviewers other than the counted ones", ErrUnjustified)
			}
		default:
			return s, fmt.Errorf("%w: review outcome %q", ErrIllegal, d.Outcome)
		}
		s.Review = d
	case *events.Escalated:
		if s.Status != StatusPending {
			return s, fmt.Errorf("%w: escalated in %s", ErrIllegal, s.Status)
		}
		if err := s.checkEscalation(d, r.Envelope.Time); err != nil {
			return s, err
		}
		s.Escalations = append(slices.Clip(s.Escalations), Escalation{Seq: r.Seq, Data: d})
	case *events.Approved:
		if s.Status != StatusPending {
			return s, fmt.Errorf("%w: approved in %s", ErrIllegal, s.Status)
		}
		// The same order as Next: a counted denial wins over approvals.
		t := s.Tally()
		if !t.Satisfied || t.Denied {
			return s, fmt.Errorf("%w: flows not satisfied, or a denial counts", ErrUnjustified)
		}
		if !slices.Equal(d.Approvers, refs(t.Approvers)) {
			return s, fmt.Errorf("%w: names approvers other than the counted ones", ErrUnjustified)
		}
		s.Status, s.DecidedAt, s.DecisionSeq = StatusApproved, r.Envelope.Time, r.Seq
	case *events.Denied:
		if s.Status != StatusPending {
			return s, fmt.Errorf("%w: denied in %s", ErrIllegal, s.Status)
		}
		t := s.Tally()
		if !t.Denied {
			return s, fmt.Errorf("%w: no counted denial", ErrUnjustified)
		}
		if !slices.Equal(d.By, refs(t.Deniers)) {
			return s, fmt.Errorf("%w: names deniers other than the counted ones", ErrUnjustified)
		}
		s.Status, s.DecidedAt = StatusDenied, r.Envelope.Time
	case *events.Expired:
		if s.Status != StatusPending {
			return s, fmt.Errorf("%w: expired in %s", ErrIllegal, s.Status)
		}
		if r.Envelope.Time.Before(s.Deadline()) {
			return s, fmt.Errorf("%w: expired before the deadline", ErrUnjustified)
		}
		if t := s.Tally(); t.Satisfied || t.Denied {
			return s, fmt.Errorf("%w: the votes decided the request before its deadline", ErrUnjustified)
		}
		s.Status, s.DecidedAt = StatusExpired, r.Envelope.Time
	case *events.Granted:
		if !s.Status.AwaitsGrant() {
			return s, fmt.Errorf("%w: granted in %s", ErrIllegal, s.Status)
		}
		if err := s.checkGrant(d); err != nil {
			return s, err
		}
		if d.Evidence != prev {
			return s, fmt.Errorf("%w: the grant's evidence is not the event before it", ErrUnjustified)
		}
		s.Status, s.Grant = StatusGranted, d
		if s.DecidedAt.IsZero() {
			s.DecidedAt = r.Envelope.Time
		}
	case *events.Redeemed:
		if s.Status != StatusGranted {
			return s, fmt.Errorf("%w: redeemed in %s", ErrIllegal, s.Status)
		}
		if d.TokenHash != s.Grant.TokenHash {
			return s, fmt.Errorf("%w: redeemed a token this request was not granted", ErrUnjustified)
		}
		// The redeemer's own word on when, within the clock skew a
		// redeemer may tolerate.
		if at := r.Envelope.Time; at.After(s.Grant.ExpiresAt.Add(RedeemLeeway)) || at.Before(s.Grant.NotBefore.Add(-RedeemLeeway)) {
			return s, fmt.Errorf("%w: redeemed at %s, outside the grant's lifetime", ErrUnjustified, at.Format(time.RFC3339))
		}
		s.Status, s.RedeemedAt = StatusRedeemed, At(r)
	case *events.Policy, *events.Checkpoint, *events.Witnessed, *events.Lock, *events.Locked, *events.State, *events.Stated:
		return s, fmt.Errorf("%w: a %s event belongs to a history of its own, not a request's", ErrIllegal, r.Kind)
	case *events.Revoke:
		// A request to revoke changes nothing by itself: the approval
		// component answers it with revoked, or refused.
		if s.Status == StatusNone {
			return s, fmt.Errorf("%w: revoke before any request", ErrIllegal)
		}
		s.RevokeAskers = append(slices.Clip(s.RevokeAskers), d.By)
	case *events.Revoked:
		if s.Status == StatusNone {
			return s, fmt.Errorf("%w: revoked before any request", ErrIllegal)
		}
		// Revoked on an ask, or by a review that denied a break-glass
		// grant; once, and after the grant was used only while it may be
		// in use.
		if s.Status.IsClosed() && !s.InUse(At(r)) {
			return s, fmt.Errorf("%w (%s)", ErrClosed, s.Status)
		}
		byReview := s.ReviewDenied() && slices.Contains(s.Review.By, d.By)
		if !byReview && !slices.Contains(s.RevokeAskers, d.By) {
			return s, fmt.Errorf("%w: revoked by %s, who did not ask", ErrUnjustified, d.By.ID())
		}
		s.Status, s.Revocation = StatusRevoked, d
	default:
		return s, fmt.Errorf("%w: %s", ErrIllegal, r.Kind)
	}
	return s, nil
}

// RedeemLeeway is the clock skew a redemption's time may show past its
// grant's lifetime (issuer.MaxLeeway, the most a redeemer tolerates).
const RedeemLeeway = 5 * time.Minute

// answer records a refusal in a copy of the map: the state Apply was given
// may be shared, and must not see it.
func (s *State) answer(seq uint64, code string) {
	m := make(map[uint64]string, len(s.Answered)+1)
	maps.Copy(m, s.Answered)
	m[seq] = code
	s.Answered = m
}

func (s State) checkVote(d *events.Voted, r events.Record) (Vote, error) {
	p := *r.Principal
	if err := s.CanVote(p); err != nil {
		return Vote{}, err
	}
	if d.RequestDigest != s.RequestDigest {
		return Vote{}, ErrStaleDigest
	}
	if !At(r).Before(s.Deadline()) {
		return Vote{}, ErrPastDeadline
	}
	return Vote{Voter: p, Approve: d.Decision == events.DecisionApprove, Reason: d.Reason, Seq: r.Seq, At: At(r)}, nil
}

// checkEscalation accepts an escalation of a flow's open stage that has
// one, once its delay has passed, once.
func (s State) checkEscalation(d *events.Escalated, at time.Time) error {
	for _, p := range s.Progress() {
		if p.Flow.Name != d.Flow {
			continue
		}
		due, ok := p.EscalationDue()
		if !ok || p.Stage != d.Stage {
			return fmt.Errorf("%w: no escalation due for %s stage %d", ErrUnjustified, d.Flow, d.Stage)
		}
		if at.Before(due) {
			return fmt.Errorf("%w: escalated before its delay", ErrUnjustified)
		}
		// The approvers it adds are the flow's, as the evaluation recorded
		// it: whoever signs the escalation does not choose who counts.
		e := p.Flow.Stages[p.Stage].Escalate
		if !slices.Equal(d.Groups, e.Groups) || !slices.Equal(d.Principals, e.Principals) {
			return fmt.Errorf("%w: escalates to approvers the flow does not name", ErrUnjustified)
		}
		return nil
	}
	return fmt.Errorf("%w: no flow %q", ErrUnjustified, d.Flow)
}

// InUse reports whether the request's grant was redeemed and may still be
// in use at at: before its expiry, with the clock skew a redeemer may
// tolerate (RedeemLeeway, as for the redemption itself). Until then a
// revocation has something to end — the connection the grant opened
// through the NATS callout, which the server closes at the grant's expiry
// — and may be recorded; after it there is nothing left to revoke.
func (s State) InUse(at time.Time) bool {
	return s.Status == StatusRedeemed && s.Grant != nil && at.Before(s.Grant.ExpiresAt.Add(RedeemLeeway))
}

// ReviewOpen reports whether a break-glass grant's after-the-fact review
// waits for reviewers.
func (s State) ReviewOpen() bool {
	e := s.Evaluation
	return e != nil && e.BreakGlass && len(e.Flows) > 0 && s.Review == nil && !s.ReviewOverdue
}

// Collecting reports whether votes are being collected: a pending request,
// or a break-glass review.
func (s State) Collecting() bool { return s.Status == StatusPending || s.ReviewOpen() }

// ReviewDenied reports whether a break-glass grant's review denied it.
func (s State) ReviewDenied() bool { return s.Review != nil && s.Review.Denied() }

// ReviewActive reports whether a break-glass review still has something
// to do: votes to collect, or a denial to act on (the grant to revoke,
// then the alert, which comes last).
func (s State) ReviewActive() bool {
	return s.ReviewOpen() || (s.ReviewDenied() && !s.alerted(events.AlertReviewDenied))
}

// revocable reports whether a denied review has a grant to revoke at at:
// one to come, one to use, or one used that may still be in use (InUse).
func (s State) revocable(at time.Time) bool {
	return s.Status.AwaitsGrant() || s.Status == StatusGranted || s.InUse(at)
}

func (s State) alerted(alert string) bool {
	return slices.ContainsFunc(s.Alerts, func(a *events.Alerted) bool { return a.Alert == alert })
}

// NextReview is what the approval flow does next for a break-glass review:
// reviewed once its flows deny it (a counted denial wins, as for a pending
// request) or approve it, an overdue alert at its deadline; after a
// denial, the grant revoked, then the review-denied alert.
func NextReview(s State, now time.Time) Decision {
	if s.ReviewDenied() {
		return reviewDenial(s, now)
	}
	if !s.ReviewOpen() {
		return Decision{}
	}
	t := s.Tally()
	switch {
	case t.Denied:
		return Decision{Kind: events.KindReviewed, Data: &events.Reviewed{
			Prev: s.LastDigest, Outcome: events.ReviewDenied, By: refs(t.Deniers), Reason: t.Reason,
		}}
	case t.Satisfied:
		return Decision{Kind: events.KindReviewed, Data: &events.Reviewed{Prev: s.LastDigest, Outcome: events.ReviewApproved, Approvers: refs(t.Approvers)}}
	}
	if d := s.Deadline(); !now.Before(d) {
		return Decision{Kind: events.KindAlerted, Data: &events.Alerted{
			Prev: s.LastDigest, Alert: events.AlertReviewOverdue,
			Reason: "the after-the-fact review of a break-glass grant is overdue since " + d.UTC().Format(time.RFC3339),
		}}
	}
	return Decision{}
}

// VoteAnswered reports whether the pipeline has answered the vote stored
// at seq: counted it, refused it, or made the decision that ends the
// collecting (the answer to a vote that decides).
func (s State) VoteAnswered(seq uint64) bool {
	if s.Answered[seq] != "" || !s.Collecting() {
		return true
	}
	return slices.ContainsFunc(s.Votes, func(v Vote) bool { return v.Seq == seq && v.Counted })
}

// reviewDenial is what a denied review still owes: the grant revoked in
// the first denier's name, then the alert, which says what became of the
// grant.
func reviewDenial(s State, now time.Time) Decision {
	rv := s.Review
	var by []string
	for _, p := range rv.By {
		by = append(by, p.ID())
	}
	why := ""
	if rv.Reason != "" {
		why = fmt.Sprintf(": %q", rv.Reason)
	}
	if s.revocable(now) {
		return Decision{Kind: events.KindRevoked, Data: &events.Revoked{
			Prev: s.LastDigest, By: rv.By[0],
			Reason: clip("the after-the-fact review denied this break-glass use (" + strings.Join(by, ", ") + why + ")"),
		}}
	}
	if s.alerted(events.AlertReviewDenied) {
		return Decision{}
	}
	what := "its grant is revoked"
	switch {
	case s.Revocation != nil && !slices.Contains(rv.By, s.Revocation.By):
		what = "its grant was revoked already, by " + s.Revocation.By.ID()
	case s.Status == StatusRefused:
		what = "no grant was issued"
	case s.Status == StatusRedeemed:
		what = "its grant was used, and has expired since"
	}
	action := ""
	if r := s.Request; r != nil {
		action = fmt.Sprintf(" of %s on %s/%s", r.Action, s.Domain, r.Resource)
	}
	return Decision{Kind: events.KindAlerted, Data: &events.Alerted{
		Prev: s.LastDigest, Alert: events.AlertReviewDenied,
		Reason: clip(fmt.Sprintf("%s denied the break-glass use by %s%s after the fact%s; %s",
			strings.Join(by, ", "), s.Requester.ID(), action, why, what)),
	}}
}

// maxReason is the longest reason an event's schema takes.
const maxReason = 2048

// clip keeps s within maxReason bytes, whole runes only.
func clip(s string) string {
	if len(s) <= maxReason {
		return s
	}
	cut := maxReason - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// WithoutVotes returns the state with the votes drop says to leave out.
func (s State) WithoutVotes(drop func(Vote) bool) State {
	s.Votes = slices.DeleteFunc(slices.Clone(s.Votes), drop)
	return s
}

// CanVote says whether p may answer the request now: it must be pending,
// p must not be the requester, must not have answered, and must be an
// approver of one of its flows. It returns the refusal, or nil.
func (s State) CanVote(p identity.Principal) error {
	if !s.Collecting() {
		return fmt.Errorf("%w (%s)", ErrNotPending, s.Status)
	}
	if p.Key == s.Requester.Key || p.ID() == s.Requester.ID() {
		return ErrSelfApproval
	}
	eligible := false
	for _, f := range s.Progress() {
		if f.wouldCount(p, s.Domain) {
			return nil
		}
		eligible = eligible || f.eligible(p, s.Domain)
	}
	if eligible {
		return ErrDuplicateVote
	}
	for _, v := range s.Votes {
		if v.Voter.ID() == p.ID() || v.Voter.Key == p.Key {
			return ErrDuplicateVote
		}
	}
	return ErrNotEligible
}

func (s State) checkGrant(g *events.Granted) error {
	if g.Holder != s.Requester.Key {
		return fmt.Errorf("%w: grant holder is not the requester", ErrUnjustified)
	}
	ttl := g.ExpiresAt.Sub(g.NotBefore)
	if ttl <= 0 {
		return fmt.Errorf("%w: empty grant lifetime", ErrUnjustified)
	}
	if m := s.Evaluation.MaxTTLSeconds; m > 0 && ttl > time.Duration(m)*time.Second {
		return fmt.Errorf("%w: grant lifetime %s above the policy's %ds", ErrUnjustified, ttl, m)
	}
	if m := s.Request.TTLSeconds; m > 0 && ttl > time.Duration(m)*time.Second {
		return fmt.Errorf("%w: grant lifetime %s above the requested %ds", ErrUnjustified, ttl, m)
	}
	return nil
}

// Eligible reports whether p may answer stage of a request to domain: one of
// its named principals ("domain/name"), or a member of one of its groups. A
// bare group name is a group of domain: a principal of another domain with
// a group of the same name is not in it. "other/group" names another
// domain's group.
func Eligible(st events.Stage, p identity.Principal, domain string) bool {
	if slices.Contains(st.Principals, p.ID()) {
		return true
	}
	for _, g := range st.Groups {
		gd, name, qualified := strings.Cut(g, "/")
		if !qualified {
			gd, name = domain, g
		}
		if gd == p.Domain && p.InGroup(name) {
			return true
		}
	}
	return false
}

// evaluatedAt is when the first stages of the flows began: the instant the
// policy computed expires_at from (expires_at less the shortest first-stage
// deadline), so that the recorded deadline is the one the fold applies.
func evaluatedAt(d *events.Evaluated, at time.Time) time.Time {
	if d.ExpiresAt == nil || len(d.Flows) == 0 {
		return at
	}
	shortest := int64(-1)
	for _, f := range d.Flows {
		if len(f.Stages) > 0 && (shortest < 0 || f.Stages[0].DeadlineSeconds < shortest) {
			shortest = f.Stages[0].DeadlineSeconds
		}
	}
	return d.ExpiresAt.Add(-time.Duration(shortest) * time.Second)
}

// At is when a record happened for the fold: when the stream stored it,
// or, for a record not read from a stream, when it says it was made.
func At(r events.Record) time.Time {
	if !r.Time.IsZero() {
		return r.Time
	}
	return r.Envelope.Time
}

// Tally counts the votes against the flows.
type Tally struct {
	Approvers []identity.Principal // distinct approvers, in vote order
	Deniers   []identity.Principal
	Reason    string // the first denial's reason
	Satisfied bool   // every flow has enough eligible approvals
	Denied    bool   // some flow has enough eligible denials
}

// Tally counts the state's votes against its flows' progress.
func (s State) Tally() Tally {
	var t Tally
	ps := s.Progress()
	if len(ps) == 0 {
		return t
	}
	t.Satisfied = true
	for _, p := range ps {
		t.Satisfied = t.Satisfied && p.Done()
		t.Denied = t.Denied || p.Denied()
	}
	for _, v := range s.Votes {
		if v.Approve {
			t.Approvers = append(t.Approvers, v.Voter)
		} else {
			t.Deniers = append(t.Deniers, v.Voter)
			if t.Reason == "" {
				t.Reason = v.Reason
			}
		}
	}
	return t
}

// Decision is what the approval flow decides next.
type Decision struct {
	Kind events.Kind // KindNone: nothing to decide yet
	Data any         // *events.Approved, *events.Denied or *events.Expired, Prev set
}

// Next returns the approval decision for a pending request at now. A denial
// wins over an approval; the deadline applies only when neither is reached.
func Next(s State, now time.Time) Decision {
	if s.Status != StatusPending {
		return Decision{}
	}
	t := s.Tally()
	switch {
	case t.Denied:
		return Decision{Kind: events.KindDenied, Data: &events.Denied{Prev: s.LastDigest, By: refs(t.Deniers), Reason: t.Reason}}
	case t.Satisfied:
		return Decision{Kind: events.KindApproved, Data: &events.Approved{Prev: s.LastDigest, Approvers: refs(t.Approvers)}}
	}
	for _, p := range s.Progress() {
		if due, ok := p.EscalationDue(); ok && !now.Before(due) {
			e := p.Flow.Stages[p.Stage].Escalate
			return Decision{Kind: events.KindEscalated, Data: &events.Escalated{
				Prev: s.LastDigest, Flow: p.Flow.Name, Stage: p.Stage, Groups: e.Groups, Principals: e.Principals,
			}}
		}
	}
	if d := s.Deadline(); !now.Before(d) {
		return Decision{Kind: events.KindExpired, Data: &events.Expired{Prev: s.LastDigest, Deadline: d}}
	}
	return Decision{}
}

func refs(ps []identity.Principal) []events.PrincipalRef {
	out := make([]events.PrincipalRef, len(ps))
	for i, p := range ps {
		out[i] = events.PrincipalRef{Domain: p.Domain, Name: p.Name}
	}
	return out
}

// Code returns the short reason code recorded when a component refuses an
// event because of err (from Apply, or from events.Checker).
func Code(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return events.Code(err)
}

var codes = []struct {
	err  error
	code string
}{
	{ErrSelfApproval, "self-approval"},
	{ErrNotEligible, "not-eligible"},
	{ErrDuplicateVote, "duplicate-vote"},
	{ErrStaleDigest, "stale-digest"},
	{ErrPastDeadline, "past-deadline"},
	{ErrNotAuthorized, "not-authorized"},
	{ErrNotPermitted, "not-permitted"},
	{ErrNotPending, "not-pending"},
	{ErrClosed, "closed"},
	{ErrBrokenChain, "broken-chain"},
	{ErrIllegal, "illegal"},
	{ErrUnjustified, "unjustified"},
}
