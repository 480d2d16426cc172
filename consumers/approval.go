package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/restart"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/trailkv"
	"github.com/writ-dev/writ/policy"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

// Approval runs the approval flows: it counts votes and decides approved,
// denied or expired. Deadlines are durable timers in the timer stream. It
// also answers principals' asks to revoke, to lock and to set state, and
// is the one writer of the lock and resource-state buckets: it applies
// each lock and state change after recording it, and puts back whatever
// else changes there (the trail is the authority).
type Approval struct {
	c        *component
	timers   jetstream.Stream
	policies *policy.Set
	locks    *locks.Keeper
	state    *state.Keeper
}

// NewApproval returns the approval consumer. The policies decide who may
// revoke a request other than its requester (Action::"revoke"), lock
// (Action::"lock") and set state (Action::"set-state").
func NewApproval(env Env, key nkeys.KeyPair, policies *policy.Set) (*Approval, error) {
	c, err := newComponent(env, identity.RoleApproval, key)
	if err != nil {
		return nil, err
	}
	if policies == nil {
		return nil, errors.New("consumers: approval: policies are required")
	}
	return &Approval{
		c: c, policies: policies,
		locks: locks.NewKeeper(c.env.NC, c.js, locks.NewIndex(c.reader, c.checker()), c.log, c.env.Clock),
		state: state.NewKeeper(c.env.NC, c.js, state.NewIndex(c.reader, c.checker()), c.log, c.env.Clock),
	}, nil
}

// Durables lists the durable consumers the approval component reads: the
// audit stream's, and the fired timers'.
func (a *Approval) Durables() []Durable { return a.c.env.DurablesOf("approval") }

// Run consumes evaluations, votes and fired timers until ctx ends.
func (a *Approval) Run(ctx context.Context) error {
	// A cluster just (re)started may still be electing the stream's
	// leader: wait for it by the retry rule, each ask bounded.
	var timers jetstream.Stream
	err := store.Retry(ctx, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		var err error
		timers, err = a.c.js.Stream(actx, a.c.env.Streams.Timers)
		return err
	})
	if err != nil {
		return fmt.Errorf("consumers: timer stream %s: %w", a.c.env.Streams.Timers, err)
	}
	a.timers = timers
	ds := a.Durables()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return consume(ctx, a.c.js, a.c.env.Observer, ds[0], ds[0].Config(), a.c.env.Workers, nil, a.c.log, a.handle)
	})
	g.Go(func() error { return keepWatching(ctx, a.c.log, "lock bucket", a.locks.Run) })
	g.Go(func() error { return keepWatching(ctx, a.c.log, "resource-state bucket", a.state.Run) })
	g.Go(func() error {
		return consume(ctx, a.c.js, a.c.env.Observer, ds[1], ds[1].Config(), a.c.env.Workers, nil, a.c.log, a.handleTimer)
	})
	g.Go(func() error {
		// A NATS outage at start must not stop the pipeline: the sweep
		// is a safety net, tried again until it has run once.
		_ = restart.Until(ctx, a.c.log, "start-up sweep", a.sweep)
		return nil
	})
	return g.Wait()
}

// SweepWindow is how far back the start-up sweep looks for evaluations.
const SweepWindow = 30 * 24 * time.Hour

// sweep expires, once at start, every pending request whose deadline has
// passed: a safety net under the timers, for a schedule that was lost or
// tampered with while this consumer was away.
func (a *Approval) sweep(ctx context.Context) error {
	now := a.c.env.Clock()
	filter := events.Prefix + "." + a.c.env.Domain + ".*." + events.KindEvaluated.String()
	var overdue []string
	err := store.Scan(ctx, a.c.js, a.c.env.Streams.Name, filter, now.Add(-SweepWindow), func(m events.Message) error {
		r := a.c.checker().Inspect(m, now)
		// Later stages have later deadlines; the first deadline having
		// passed is what makes a request a candidate.
		if ev, ok := r.Data.(*events.Evaluated); ok && r.Valid() && ev.ExpiresAt != nil && ev.ExpiresAt.Before(now) {
			overdue = append(overdue, r.RequestID)
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("consumers: sweep: %w", err)
	}
	expired := 0
	for _, id := range overdue {
		err := a.c.react(ctx, a.c.env.Domain, id, 0, func(_ context.Context, h *view, _ events.Record) (*effect, error) {
			if e := a.next(h); e != nil && (e.kind == events.KindExpired || e.kind == events.KindEscalated || e.kind == events.KindAlerted) {
				expired++
				return e, nil
			}
			return nil, nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.c.log.Warn("sweep: could not settle an overdue request", attrRequest, id, "err", err)
			continue
		}
		// Still pending (escalated, or a later stage open): keep its timer.
		if h, err := a.c.load(ctx, a.c.env.Domain, id); err == nil && !h.State.NextDue().IsZero() {
			if err := a.schedule(ctx, h.State); err != nil {
				a.c.log.Warn("sweep: could not schedule", attrRequest, id, "err", err)
			}
		}
	}
	if expired > 0 {
		a.c.log.Warn("sweep: expired overdue requests whose timers did not fire", "count", expired)
	}
	return nil
}

func (a *Approval) handle(ctx context.Context, m jetstream.Msg) error {
	if settledEvaluation(m.Subject(), m.Data()) {
		return nil
	}
	var st request.State
	var last *effect       // what the decision that counted appended
	var vote events.Record // the vote handled, if the input is one
	err := handleAudit(ctx, a.c, m, func(ctx context.Context, h *view, this events.Record) (*effect, error) {
		st, last = h.State, nil // a panic below leaves no stale decision
		if this.Kind == events.KindVoted {
			vote = this
		}
		eff, err := a.decide(ctx, h, this)
		last = eff
		return eff, err
	})
	if err == nil && last != nil && ends(st, last.kind) {
		a.unschedule(ctx, st)
	}
	// What the decision leaves owed is done at once, since nothing else
	// would wake this component for it (it does not read its own
	// decisions): after a review's denial, the grant revoked, then the
	// alert; after a vote whose handling appended something that keeps the
	// votes coming (an escalation already due, the break-glass alert), the
	// vote's answer. Should this fail, the input comes again and the
	// history says what is still owed.
	for range 3 {
		if err != nil || last == nil || !owes(st, last.kind, vote.Seq) {
			break
		}
		err = a.c.react(ctx, st.Domain, st.ID, 0, func(_ context.Context, h *view, _ events.Record) (*effect, error) {
			st, last = h.State, nil
			switch {
			case h.State.ReviewDenied():
				last = a.next(h)
			case vote.Seq != 0 && !h.State.VoteAnswered(vote.Seq):
				if last = a.next(h); last == nil {
					last = counted(h, vote)
				}
			}
			return last, nil
		})
		if err == nil && last != nil && ends(st, last.kind) {
			a.unschedule(ctx, st)
		}
	}
	return err
}

// owes reports whether appending kind to st leaves this component more to
// do at once: the rest of a review's denial, or the answer to the vote
// handled (voteSeq, 0 when the input was not a vote).
func owes(st request.State, kind events.Kind, voteSeq uint64) bool {
	switch kind {
	case events.KindReviewed, events.KindRevoked:
		return st.ReviewActive()
	case events.KindEscalated, events.KindAlerted:
		return voteSeq != 0
	}
	return false
}

// settledEvaluation reports whether a message is an evaluation that leaves the
// approval component nothing to do: allowed or denied outright, with no
// review after the fact. Most evaluations are; reading their history only
// to find that out was a third of the component's work. Trusting the body
// unchecked is safe here: a forged evaluation skipped is still refused by
// the issuer, which takes every evaluation, and a genuine one that needs
// approvers says so.
func settledEvaluation(subject string, body []byte) bool {
	if _, _, kind, err := events.ParseSubject(subject); err != nil || kind != events.KindEvaluated {
		return false
	}
	var peek struct {
		Data struct {
			Outcome    string `json:"outcome"`
			BreakGlass bool   `json:"break_glass"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &peek) != nil {
		return false
	}
	o := peek.Data.Outcome
	return (o == events.OutcomeAllow || o == events.OutcomeDeny) && !peek.Data.BreakGlass
}

// ends reports whether appending kind to a request collecting votes (st)
// stops the collecting: nothing is left for its timer to do.
func ends(st request.State, kind events.Kind) bool {
	if !st.Collecting() {
		return false
	}
	switch kind {
	case events.KindApproved, events.KindDenied, events.KindReviewed:
		return true
	case events.KindRevoked:
		return !st.ReviewOpen() // a break-glass review outlives a revocation
	}
	return false
}

// unschedule drops the timer of a request that no longer waits, so that
// the timer stream's schedules are the requests waiting for approvers
// (which writ_requests_pending counts). Best effort: a timer left behind
// fires and finds nothing to do.
func (a *Approval) unschedule(ctx context.Context, st request.State) {
	if err := a.timers.Purge(ctx, jetstream.WithPurgeSubject(scheduleSubject(st.Domain, st.ID))); err != nil {
		a.c.log.Debug("could not drop the timer of a settled request", attrRequest, st.ID, "err", err)
	}
}

// PendingFilter matches the schedules of a domain's timer stream: one per
// request waiting for approvers (or for a break-glass review).
func PendingFilter(domain string) string { return timerPrefix + "." + domain + ".schedule.*" }

func (a *Approval) decide(ctx context.Context, h *view, this events.Record) (*effect, error) {
	if err := h.Errs[this.Seq]; err != nil {
		return refuse(h, this, err), nil
	}
	switch this.Kind {
	case events.KindRevoke:
		return a.revoke(ctx, h, this)
	case events.KindLock:
		return a.lock(ctx, h, this)
	case events.KindState:
		return a.setState(ctx, h, this)
	case events.KindVoted:
		if _, done := h.State.Answered[this.Seq]; !done && (h.State.Status.IsPending() || h.State.ReviewOpen()) && a.rejected(h)[this.Seq] {
			return refuse(h, this, fmt.Errorf("%w: %s", request.ErrNotPermitted, this.Principal.ID())), nil
		}
	}
	if (this.Kind == events.KindEvaluated || this.Kind == events.KindVoted) && !h.State.NextDue().IsZero() {
		// A vote may have opened the next stage: its deadline and
		// escalation are the next to fire.
		if err := a.schedule(ctx, h.State); err != nil {
			return nil, err
		}
	}
	if eff := a.next(h); eff != nil || this.Kind != events.KindVoted {
		return eff, nil
	}
	return counted(h, this), nil
}

// counted answers a vote that decided nothing, once. Every vote gets an
// answer (counted, refused, or the decision it made), so a voter waits for
// the answer rather than for a timer, and the trail says that the vote
// was counted, not only that it was cast.
func counted(h *view, this events.Record) *effect {
	if !h.State.Collecting() {
		return nil
	}
	for _, v := range h.State.Votes {
		if v.Seq == this.Seq && !v.Counted {
			return &effect{kind: events.KindCounted, ordinal: strconv.FormatUint(this.Seq, 10), data: &events.Counted{
				Prev: h.State.LastDigest, RefSeq: this.Seq, Voter: events.PrincipalRef{Domain: v.Voter.Domain, Name: v.Voter.Name},
			}}
		}
	}
	return nil
}

// revoke answers a principal's request to revoke: the requester may always
// withdraw their own request; anyone else needs a Cedar permit for
// Action::"revoke" on the request's resource. Verifiers hear of it through
// the revocation bucket they watch before the event is appended; so does
// the NATS callout, which ends the connection a redeemed grant opened (a
// redeemed grant may be revoked until it expires, request.State.InUse).
func (a *Approval) revoke(ctx context.Context, h *view, this events.Record) (*effect, error) {
	st := h.State
	if st.Status == request.StatusRevoked {
		return nil, nil
	}
	switch {
	case st.Status == request.StatusRedeemed && st.Grant != nil && h.Now.Before(st.Grant.ExpiresAt):
		// Used, but what it opened (a connection through the NATS
		// callout) lives until the grant expires: the revocation ends it.
	case st.Status == request.StatusRedeemed && st.Grant != nil:
		return refuse(h, this, fmt.Errorf("%w: the grant was used and expired at %s: nothing is left to revoke",
			request.ErrClosed, st.Grant.ExpiresAt.UTC().Format(time.RFC3339))), nil
	case st.Status.IsClosed():
		// Denied or expired since the ask: say so instead of a
		// revocation the history cannot take.
		return refuse(h, this, fmt.Errorf("%w: the request is already %s", request.ErrClosed, st.Status)), nil
	}
	d := this.Data.(*events.Revoke)
	by := *this.Principal
	if by.ID() != st.Requester.ID() {
		dec := a.policies.Decide(policy.Input{
			Principal: by, Action: "revoke", Domain: st.Domain, Resource: st.Request.Resource,
			Context: policy.Context{
				Urgency: st.Request.Urgency, Reason: d.Reason, Origin: by.Domain,
				Params: st.Request.Params, Time: h.Now,
			},
		})
		if dec.Outcome != policy.OutcomeAllow {
			return refuse(h, this, fmt.Errorf("%w: %s may not revoke this request", request.ErrNotAuthorized, by.ID())), nil
		}
	}
	tokenHash := ""
	if st.Grant != nil {
		tokenHash = st.Grant.TokenHash
	}
	if err := redeem.Revoke(ctx, a.c.js, st.ID, tokenHash, d.Reason); err != nil {
		return nil, &retryAfter{delay: time.Second, cause: err}
	}
	return &effect{kind: events.KindRevoked, data: &events.Revoked{Prev: st.LastDigest, By: d.By, Reason: d.Reason}}, nil
}

// lock answers a principal's request to lock or unlock a target: it needs a
// Cedar permit for Action::"lock" on Resource::"<domain>/locks/<type>"
// (context.params.target names the target, context.params.unlock says
// which). The locked event is recorded first, then applied to the lock
// bucket, which every component and redeemer watches: they hear of it by
// push, and check the bucket against the trail.
func (a *Approval) lock(ctx context.Context, h *view, this events.Record) (*effect, error) {
	st := h.State
	d := this.Data.(*events.Lock)
	key, kerr := locks.Key(d.Target)
	if h.Series.Lock().Done != nil {
		// Recorded already (this is a redelivery): make sure it is applied.
		if kerr != nil {
			return nil, nil
		}
		return nil, apply(ctx, a.locks, key, answerSeq(h, events.KindLocked))
	}
	by := *this.Principal
	unlock := "false"
	if d.Unlock {
		unlock = "true"
	}
	dec := a.policies.Decide(policy.Input{
		Principal: by, Action: "lock", Domain: st.Domain, Resource: "locks/" + d.Target.Type,
		Context: policy.Context{Urgency: "normal", Reason: d.Reason, Origin: by.Domain, Time: h.Now,
			Params: map[string]string{"target": d.Target.Name, "unlock": unlock}},
	})
	if dec.Outcome != policy.OutcomeAllow {
		return refuse(h, this, fmt.Errorf("%w: %s may not lock or unlock", request.ErrNotAuthorized, by.ID())), nil
	}
	if kerr != nil {
		return refuse(h, this, fmt.Errorf("%w: %v", request.ErrIllegal, kerr)), nil
	}
	return &effect{kind: events.KindLocked, data: &events.Locked{
		Prev: st.LastDigest, By: d.By, Target: d.Target, Unlock: d.Unlock, Reason: d.Reason,
	}, then: func(ctx context.Context, seq uint64) error { return apply(ctx, a.locks, key, seq) }}, nil
}

// setState answers a principal's request to set or delete a resource's
// state, or its domain's: it needs a Cedar permit for Action::"set-state"
// on the resource (Resource::"<domain>/<path>", whose state attribute is
// empty here), or on Resource::"<domain>" for the domain's own entry;
// context.params holds the attributes asked for (none for a deletion). The
// stated event is recorded first, with the whole entry as it will be,
// then applied to the resource-state bucket.
func (a *Approval) setState(ctx context.Context, h *view, this events.Record) (*effect, error) {
	st := h.State
	d := this.Data.(*events.State)
	key, kerr := state.Key(st.Domain, d.Path)
	if h.Series.StateChange().Done != nil {
		if kerr != nil {
			return nil, nil
		}
		return nil, apply(ctx, a.state, key, answerSeq(h, events.KindStated))
	}
	by := *this.Principal
	what := st.Domain
	if d.Path != "" {
		what += "/" + d.Path
	}
	dec := a.policies.Decide(policy.Input{
		Principal: by, Action: "set-state", Domain: st.Domain, Resource: d.Path,
		Context: policy.Context{Urgency: "normal", Reason: d.Reason, Origin: by.Domain, Time: h.Now, Params: d.Attrs},
	})
	if dec.Outcome != policy.OutcomeAllow {
		return refuse(h, this, fmt.Errorf("%w: %s may not set the state of %s", request.ErrNotAuthorized, by.ID(), what)), nil
	}
	if kerr != nil {
		return refuse(h, this, fmt.Errorf("%w: %v", request.ErrIllegal, kerr)), nil
	}
	out := &events.Stated{Prev: st.LastDigest, By: d.By, Path: d.Path, Op: d.Op, Reason: d.Reason}
	eff := &effect{kind: events.KindStated, data: out,
		then: func(ctx context.Context, seq uint64) error { return apply(ctx, a.state, key, seq) }}
	if d.Op == events.StateSet {
		out.Attrs = maps.Clone(d.Attrs)
		if d.Merge {
			base, cond, err := a.stateOf(ctx, key)
			if err != nil {
				return nil, &retryAfter{delay: time.Second, cause: err}
			}
			out.Attrs = base
			maps.Copy(out.Attrs, d.Attrs)
			if len(out.Attrs) > state.MaxAttrs {
				return refuse(h, this, fmt.Errorf("%w: merged, %s would have %d attributes; at most %d", request.ErrIllegal, what, len(out.Attrs), state.MaxAttrs)), nil
			}
			// Recorded only if no state change came since the entry read:
			// two merges decided at once would each drop what the other
			// adds. The one that comes second reads again (react).
			eff.cond = cond
		}
	}
	return eff, nil
}

// stateOf is what a merge adds to: the trail's latest word on the entry,
// or, for an entry the trail does not record (written before changes were
// recorded), the bucket's; and the condition to record the merge on: the
// trail has no later state change. Any state change in the stream breaks
// it, not only one of this entry (the subjects do not name entries): the
// merge then reads again.
//
// The condition stands in for the request's own (its history ends where
// it was read), which one append cannot also carry. What that leaves
// open: another event in the ask's own history, stored in between (the
// auditor answering junk there), puts the merge out of the request's
// chain; verification then reports it.
func (a *Approval) stateOf(ctx context.Context, key string) (map[string]string, *history.Cond, error) {
	if err := a.state.Index.Sync(ctx, 0); err != nil {
		return nil, nil, err
	}
	w, ok, read := a.state.Index.GetAt(key)
	cond := &history.Cond{Filter: a.state.Index.Filter(), Seq: read}
	if ok {
		return maps.Clone(w.Value.Attrs), cond, nil
	}
	domain, path, err := state.ParseKey(key)
	if err != nil {
		return nil, nil, err
	}
	attrs, err := state.Get(ctx, a.c.js, domain, path)
	return attrs, cond, err
}

// apply makes a bucket hold what the trail says of key, now that the event
// at seq is stored.
func apply[V any](ctx context.Context, k *trailkv.Keeper[V], key string, seq uint64) error {
	if _, err := k.Apply(ctx, key, seq); err != nil {
		return &retryAfter{delay: time.Second, cause: err}
	}
	return nil
}

// answerSeq is the stream sequence of the answer of kind in a history
// that has one (0 when it cannot be found: any read will do then).
func answerSeq(h *view, kind events.Kind) uint64 {
	for _, r := range h.Records {
		if r.Kind == kind && r.Valid() {
			return r.Seq
		}
	}
	return 0
}

func reasonOf(st request.State) string {
	parts := []string{}
	if st.Request.Reason != "" {
		parts = append(parts, st.Request.Reason)
	}
	if st.Request.Ticket != "" {
		parts = append(parts, st.Request.Ticket)
	}
	if len(parts) == 0 {
		return "no reason given"
	}
	return strings.Join(parts, ", ")
}

// rejected lists the counted votes that policy does not let count
// (Action::"approve"), by sequence. Votes are judged in stream order, each
// against the state the earlier permitted votes leave, and a vote must be
// permitted in every flow it would count in: the fold counts a vote in all
// of them. The history is small, so each vote refolds its prefix.
func (a *Approval) rejected(h *view) map[uint64]bool {
	if h.rejected != nil {
		return h.rejected
	}
	out := map[uint64]bool{}
	defer func() { h.rejected = out }()
	st := h.State
	for _, v := range st.Votes {
		var prior []events.Record
		for _, r := range h.Records {
			if r.Seq >= v.Seq {
				break
			}
			prior = append(prior, r)
		}
		before, _ := request.Fold(prior)
		// Without the votes judged away here, and those refused already
		// (their refusal comes later in the stream than they do).
		before = before.WithoutVotes(func(w request.Vote) bool { return out[w.Seq] || st.Answered[w.Seq] != "" })
		counted := false
		for _, p := range before.Progress() {
			if !p.WouldCount(v.Voter, st.Domain) {
				continue
			}
			counted = true
			d := a.policies.MayApprove(policy.ApproveInput{
				Approver: v.Voter, Domain: st.Domain, RequestID: st.ID, Requester: st.Requester,
				Action: st.Request.Action, Resource: st.Request.Resource, Urgency: st.Request.Urgency,
				Flow: p.Flow.Name, Stage: p.Flow.Stages[p.Stage].Name, Time: v.At,
			})
			if d.Outcome != policy.OutcomeAllow {
				out[v.Seq] = true
				break
			}
		}
		if !counted {
			out[v.Seq] = true
		}
	}
	return out
}

// next is the approval decision for the state now, if there is one. Only
// the votes policy lets count are counted, whatever order replicas see
// them in.
func (a *Approval) next(h *view) *effect {
	rejected := a.rejected(h)
	st := h.State.WithoutVotes(func(v request.Vote) bool { return rejected[v.Seq] })
	if st.ReviewActive() {
		// Break-glass: granted at once (by the issuer), loudly, and
		// reviewed after the fact.
		if st.ReviewOpen() && len(st.Alerts) == 0 {
			return &effect{kind: events.KindAlerted, data: &events.Alerted{
				Prev: st.LastDigest, Alert: events.AlertBreakGlass,
				Reason: fmt.Sprintf("%s used break-glass for %s on %s (%s): granted at once; review by %s",
					st.Requester.ID(), st.Request.Action, st.Request.Resource, reasonOf(st), st.Deadline().UTC().Format(time.RFC3339)),
			}}
		}
		d := request.NextReview(st, h.Now)
		if d.Kind == events.KindNone {
			return nil
		}
		eff := &effect{kind: d.Kind, data: d.Data}
		if d.Kind == events.KindRevoked {
			// The review denied the grant: verifiers hear of it through
			// the revocation bucket before the event is appended, as for
			// a revocation asked for.
			tokenHash := ""
			if st.Grant != nil {
				tokenHash = st.Grant.TokenHash
			}
			reason := d.Data.(*events.Revoked).Reason
			eff.before = func(ctx context.Context) error {
				if err := redeem.Revoke(ctx, a.c.js, st.ID, tokenHash, reason); err != nil {
					return &retryAfter{delay: time.Second, cause: err}
				}
				return nil
			}
		}
		return eff
	}
	d := request.Next(st, h.Now)
	if d.Kind == events.KindNone {
		return nil
	}
	return &effect{kind: d.Kind, data: d.Data}
}

type timerBody struct {
	Domain    string    `json:"domain"`
	RequestID string    `json:"request_id"`
	At        time.Time `json:"at"`
	LastSeq   uint64    `json:"last_seq"` // the history the schedule was made from
}

// schedule makes the timer stream fire when something next happens by
// itself to a pending request: an escalation, or the open stage's
// deadline. A request has one schedule subject, so a new schedule replaces
// the last; the message id is keyed on the time, so it is idempotent.
func (a *Approval) schedule(ctx context.Context, st request.State) error {
	// The server parses @at times as RFC 3339, fractions of a second included.
	due := st.NextDue()
	if due.IsZero() {
		return nil
	}
	at := due.UTC()
	// A replica holding an older history must not replace the schedule a
	// newer one made (it could move the next firing later); a schedule
	// still to fire at the same time needs no replacing.
	if last, err := a.timers.GetLastMsgForSubject(ctx, scheduleSubject(st.Domain, st.ID)); err == nil {
		var prev timerBody
		if json.Unmarshal(last.Data, &prev) == nil && (prev.LastSeq > st.LastSeq || prev.At.Equal(at)) {
			return nil
		}
	}
	body, _ := json.Marshal(timerBody{Domain: st.Domain, RequestID: st.ID, At: at, LastSeq: st.LastSeq})
	msg := &nats.Msg{Subject: scheduleSubject(st.Domain, st.ID), Data: body, Header: nats.Header{}}
	msg.Header.Set("Nats-Schedule", "@at "+at.Format(time.RFC3339Nano))
	msg.Header.Set("Nats-Schedule-Target", fireSubject(st.Domain, st.ID))
	// Keyed like event ids, so that nobody else can take this id first and
	// have the real schedule dropped as a duplicate.
	// Keyed on the state too: the same time, due again after an escalation,
	// must not be dropped as a duplicate of the schedule that just fired.
	tag, err := events.KeyedTag(a.c.author.Key, st.ID+".deadline\x00"+at.Format(time.RFC3339Nano)+"\x00"+strconv.FormatUint(st.LastSeq, 10))
	if err != nil {
		return err
	}
	msg.Header.Set(events.HeaderMsgID, st.ID+".deadline."+tag)
	if _, err := a.c.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(a.c.env.Streams.Timers)); err != nil {
		return &retryAfter{delay: time.Second, cause: err}
	}
	// Settled meanwhile by another replica, which may have dropped the
	// timer before this one arrived: drop it too, so that only requests
	// still waiting keep one.
	if h, err := a.c.load(ctx, st.Domain, st.ID); err == nil && !h.State.Collecting() {
		a.unschedule(ctx, h.State)
	}
	return nil
}

// handleTimer acts on a fired deadline. The fire message is only a wake-up
// call: what happens is decided from the history and the clock.
func (a *Approval) handleTimer(ctx context.Context, m jetstream.Msg) error {
	parts := strings.Split(m.Subject(), ".")
	if len(parts) != 4 || parts[1] != a.c.env.Domain {
		return &terminate{reason: "malformed timer subject"}
	}
	domain, id := parts[1], parts[3]
	var early time.Duration
	err := a.c.react(ctx, domain, id, 0, func(_ context.Context, h *view, _ events.Record) (*effect, error) {
		if !h.State.NextDue().IsZero() {
			if wait := h.State.NextDue().Sub(h.Now); wait > 0 {
				early = wait
				return nil, nil
			}
		}
		return a.next(h), nil
	})
	if err == nil && early > 0 {
		return &retryAfter{delay: early, cause: errTimerEarly}
	}
	if err == nil {
		// An escalation leaves the request pending: schedule what comes next.
		h, lerr := a.c.load(ctx, domain, id)
		if lerr != nil {
			return lerr
		}
		if !h.State.NextDue().IsZero() {
			if serr := a.schedule(ctx, h.State); serr != nil {
				return serr
			}
		}
		// This firing is dealt with: drop the fired message so that the
		// timer stream holds only timers still to fire.
		if md, merr := m.Metadata(); merr == nil {
			if derr := a.timers.DeleteMsg(ctx, md.Sequence.Stream); derr != nil {
				a.c.log.Debug("could not drop a fired timer", attrRequest, id, "err", derr)
			}
		}
	}
	return err
}
