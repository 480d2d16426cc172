package gen

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/policy"
	"github.com/writ-dev/writ/request"
	"github.com/writ-dev/writ/series"
)

// scenario is what a request asks for, and what the sample policies say.
type scenario struct {
	who, action, resource string
	outcome               string // the evaluation's
}

var (
	stagingApps = []string{"web", "api", "worker", "search", "web/eu-1"}
	prodApps    = []string{"web", "api", "db", "cache", "queue", "db/replica-2"}
	devApps     = []string{"sandbox", "web", "notebooks/carol"}
	urgencies   = []string{"low", "normal", "normal", "high", "critical"}
	reasons     = []string{"", "", "release 1.4.2", "replication stuck", "hotfix for INC-2231", "weekly maintenance"}
	denials     = []string{"release freeze until 18:00", "not during the incident", "wrong service"}
)

func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

func scenarioFor(o Outcome, rng *rand.Rand) scenario {
	switch o {
	case AutoGranted:
		switch n := rng.IntN(10); {
		case n < 6: // bots-deploy-staging
			return scenario{bot, "deploy", "staging/" + pick(rng, stagingApps...), events.OutcomeAllow}
		case n < 8: // developers-own-dev
			return scenario{dev, pick(rng, "deploy", "restart", "migrate"), "dev/" + pick(rng, devApps...), events.OutcomeAllow}
		default: // sre-leads-read-prod-logs
			return scenario{pick(rng, leadA, leadB), "read-logs", "prod/" + pick(rng, prodApps...), events.OutcomeAllow}
		}
	case PolicyDenied:
		switch rng.IntN(3) {
		case 0: // no-prod-database-drop forbids
			return scenario{dev, "drop-database", "prod/" + pick(rng, "db", "db/replica-2"), events.OutcomeDeny}
		case 1: // nothing permits
			return scenario{bot, "deploy", "prod/" + pick(rng, prodApps...), events.OutcomeDeny}
		default:
			return scenario{dev, "restart", "staging/" + pick(rng, stagingApps...), events.OutcomeDeny}
		}
	}
	// developers-restart-prod: flow two-sre-leads
	return scenario{dev, "restart", "prod/" + pick(rng, prodApps...), events.OutcomeReview}
}

// voteSpan is how long after its evaluation a request's votes come: no
// longer than Span either, so that a short Span dates every event as a
// live pipeline would (the verifier checks decisions' times).
func (g *generator) voteSpan() time.Duration { return min(8*time.Minute, g.deadline/4, g.o.Span) }

// requestedAt places a request in time: votes are stored now and count
// only before the deadline, so requests that get votes are recent; an
// expired one is more than a deadline old.
func (g *generator) requestedAt(o Outcome, rng *rand.Rand) time.Time {
	switch o {
	case Approved, ApproverDenied, Pending:
		return g.now.Add(-g.voteSpan() - time.Second - between(rng, 0, min(g.o.Span, g.deadline/4)))
	case Expired:
		return g.now.Add(-g.deadline - 2*time.Minute - between(rng, 0, g.o.Span))
	}
	return g.now.Add(-time.Second - between(rng, 0, g.o.Span))
}

// request makes request i's whole history.
func (g *generator) request(ctx context.Context, i int, o Outcome) (Request, error) {
	rng := rand.New(rand.NewPCG(g.o.Seed, uint64(i)+1))
	sc := scenarioFor(o, rng)
	who := g.people[sc.who]
	t := g.requestedAt(o, rng)
	h := &history{g: g, id: newID(t, rng), inspect: i < 100 || i%10 == 0}
	out := Request{ID: h.id, Outcome: o, Requester: who.p.ID(), Action: sc.action, Resource: sc.resource, RequestedAt: t.UTC()}

	h.request(ctx, who, g.spec(rng, sc), t)
	t = t.Add(between(rng, 2*time.Millisecond, 30*time.Millisecond))
	if h.err == nil {
		// The policy component's clock, read when it loaded the history.
		ev := g.evaluate(h.st.Requester, h.st.Request, t.Add(-time.Millisecond))
		if ev.Outcome != sc.outcome || ev.BreakGlass {
			return out, fmt.Errorf("gen: the policies decide %s (break-glass %v) on %s by %s, where the sample policies decide %s",
				ev.Outcome, ev.BreakGlass, sc.action+" "+sc.resource, sc.who, sc.outcome)
		}
		h.emit(ctx, events.KindEvaluated, identity.RolePolicy, t, ev)
	}
	later := func(lo, hi time.Duration) time.Time { t = t.Add(between(rng, lo, hi)); return t }
	moment := func() time.Time { return later(2*time.Millisecond, 20*time.Millisecond) }
	span := g.voteSpan()
	leads := []person{g.people[leadA], g.people[leadB]}
	rng.Shuffle(2, func(i, j int) { leads[i], leads[j] = leads[j], leads[i] })
	switch o {
	case AutoGranted:
		h.grant(ctx, moment())
	case Approved:
		h.vote(ctx, leads[0], true, "", later(span/10, span/2))
		h.vote(ctx, leads[1], true, "", later(span/20, span/2))
		h.decide(ctx, moment())
		h.grant(ctx, moment())
	case ApproverDenied:
		if rng.IntN(2) == 0 {
			h.vote(ctx, leads[0], true, "", later(span/10, span/2))
			leads = leads[1:]
		}
		h.vote(ctx, leads[0], false, pick(rng, denials...), later(span/20, span/2))
		h.decide(ctx, moment())
	case Expired:
		h.expire(ctx, rng)
	case Pending:
		if rng.IntN(2) == 0 {
			h.vote(ctx, leads[0], true, "", later(span/10, span))
		}
	}
	out.Events, out.Voters = h.n, h.voters
	if h.err == nil && h.st.Status != o.Status() {
		h.err = fmt.Errorf("gen: request %s ends %s, not %s", h.id, h.st.Status, o.Status())
	}
	return out, h.err
}

// spec is the request's data bar who asks, as a requester might fill it in.
func (g *generator) spec(rng *rand.Rand, sc scenario) *events.Requested {
	r := &events.Requested{
		Domain: g.domain, Action: sc.action, Resource: sc.resource,
		Urgency: pick(rng, urgencies...), Reason: pick(rng, reasons...),
	}
	if rng.IntN(10) < 3 {
		r.Ticket = fmt.Sprintf("OPS-%d", 1000+rng.IntN(9000))
	}
	if rng.IntN(4) == 0 {
		r.TTLSeconds = 300
	}
	if rng.IntN(5) == 0 {
		r.Params = map[string]string{"version": fmt.Sprintf("v1.%d.%d", rng.IntN(20), rng.IntN(10))}
	}
	return r
}

// evaluate decides as the policy component does, on the same input.
func (g *generator) evaluate(who identity.Principal, req *events.Requested, now time.Time) *events.Evaluated {
	return policy.Evaluate(g.rt.Policies, g.rt.Flows, policy.Input{
		Principal: who, Action: req.Action, Domain: g.domain, Resource: req.Resource,
		Context: policy.Context{
			Urgency: req.Urgency, Reason: req.Reason, Ticket: req.Ticket, Origin: who.Domain,
			TTL: time.Duration(req.TTLSeconds) * time.Second, Params: req.Params, Time: now,
		},
	}, nil)
}

// recordPolicy records the policy set and flows under their own id, as
// the policy component does when it starts; once.
func (g *generator) recordPolicy(ctx context.Context) error {
	h := &history{g: g, id: events.PolicyID(g.rt.Policies.Digest(), g.rt.Flows.Digest()), inspect: true}
	h.emit(ctx, events.KindPolicy, identity.RolePolicy, time.Now(), &events.Policy{
		PolicyDigest: g.rt.Policies.Digest(), PolicySource: string(g.rt.Policies.Source()),
		FlowsDigest: g.rt.Flows.Digest(), FlowsSource: string(g.rt.Flows.Source()),
	})
	if store.IsConflict(h.err) {
		return nil // recorded already
	}
	return h.err
}

// history is one request being written. Its methods do nothing once one
// has failed; err says why.
type history struct {
	g      *generator
	id     string
	st     request.State
	folded series.Any // st is folded.Request: a policy record's history is a series'
	last   uint64     // the stream sequence of the history's last message
	n      int
	voters []string
	err    error
	// inspect says to check each event in full, as readers do.
	inspect bool
}

// append seals an event, checks that the fold takes it, and appends it
// expecting the history to end where it last did. by is the principal
// who signs with key, nil for a component.
func (h *history) append(ctx context.Context, kind events.Kind, ordinal, source string, key nkeys.KeyPair, by *identity.Principal, at time.Time, data any) {
	if h.err != nil {
		return
	}
	events.SetPrev(data, h.st.LastDigest)
	out, err := events.Seal(events.Draft{
		Domain: h.g.domain, RequestID: h.id, Kind: kind, Ordinal: ordinal, Source: source, Time: at, Data: data,
	}, key)
	if err != nil {
		h.err = err
		return
	}
	// Checked as the stream will hold it (its sequence and time are not
	// known yet: after the history's last message, and now), before it is
	// written: nothing the fold refuses reaches the stream.
	now := time.Now()
	m := events.Message{Subject: out.Subject, Seq: h.last + 1, Time: now, Header: out.Header(), Body: out.Body}
	next, err := h.folded.Apply(h.record(m, kind, by, now))
	if err != nil {
		h.err = fmt.Errorf("gen: request %s: the fold refuses the %s event made for it: %w", h.id, kind, err)
		return
	}
	seq, err := store.Append(ctx, h.g.js, h.g.stream, out, h.last, events.RequestFilter(h.g.domain, h.id))
	if err != nil {
		h.err = fmt.Errorf("gen: request %s: %w", h.id, err)
		return
	}
	h.folded, h.st, h.last = next, next.Request, seq
	h.n++
	h.g.events.Add(1)
}

// record is m as a reader sees it. The events of a sample of the requests
// are inspected in full, as readers do (schema, signature, the signer's
// entitlement, identity); the others, made by the same code from the same
// lists, are decoded without the signature checks, which cost more than
// the rest of their making.
func (h *history) record(m events.Message, kind events.Kind, by *identity.Principal, now time.Time) events.Record {
	if h.inspect {
		return h.g.checker.Inspect(m, now)
	}
	r := events.Record{Message: m, Domain: h.g.domain, RequestID: h.id, Kind: kind, Digest: events.Digest(m.Body),
		Signer: m.Header[events.HeaderSigner][0], Principal: by, Data: events.NewData(kind)}
	if by == nil {
		r.Role = events.RoleFor(kind)
	}
	if err := json.Unmarshal(m.Body, &r.Envelope); err != nil {
		r.Err = err
	} else if err := json.Unmarshal(r.Envelope.Data, r.Data); err != nil {
		r.Err = err
	}
	return r
}

// emit appends a component's event, signed with its key.
func (h *history) emit(ctx context.Context, kind events.Kind, role identity.Role, at time.Time, data any) {
	h.append(ctx, kind, "", events.ComponentSource(h.g.domain, role), h.g.keys[role], nil, at, data)
}

// request appends who's request, as client.Request makes it.
func (h *history) request(ctx context.Context, who person, r *events.Requested, at time.Time) {
	xkey, err := issuer.HolderXKey(who.id.Key, h.id)
	if err != nil {
		h.err = err
		return
	}
	r.HolderXKey, _ = xkey.PublicKey()
	r.Requester, r.Identity = who.ref(), who.id.JWT
	h.append(ctx, events.KindRequested, "", who.source(), who.key, &who.p, at, r)
}

// vote appends who's answer, as client.Vote makes it, once the approval
// component's rule holds: policy lets who answer every flow it counts in.
func (h *history) vote(ctx context.Context, who person, approve bool, reason string, at time.Time) {
	if h.err != nil {
		return
	}
	st := h.st
	if err := st.CanVote(who.p); err != nil {
		h.err = fmt.Errorf("gen: request %s: %s may not vote: %w", h.id, who.p.ID(), err)
		return
	}
	for _, p := range st.Progress() {
		if !p.WouldCount(who.p, st.Domain) {
			continue
		}
		d := h.g.rt.Policies.MayApprove(policy.ApproveInput{
			Approver: who.p, Domain: st.Domain, RequestID: st.ID, Requester: st.Requester,
			Action: st.Request.Action, Resource: st.Request.Resource, Urgency: st.Request.Urgency,
			Flow: p.Flow.Name, Stage: p.Flow.Stages[p.Stage].Name, Time: time.Now(),
		})
		if d.Outcome != policy.OutcomeAllow {
			h.err = fmt.Errorf("gen: request %s: policy does not let %s answer", h.id, who.p.ID())
			return
		}
	}
	decision := events.DecisionDeny
	if approve {
		decision = events.DecisionApprove
	}
	h.append(ctx, events.KindVoted, who.p.Key, who.source(), who.key, &who.p, at, &events.Voted{
		Domain: st.Domain, Voter: who.ref(), Identity: who.id.JWT,
		Decision: decision, Reason: reason, RequestDigest: st.RequestDigest,
	})
	h.voters = append(h.voters, who.p.ID())
}

// decide appends the approval flow's decision at at, which must be one.
func (h *history) decide(ctx context.Context, at time.Time) {
	if h.err != nil {
		return
	}
	d := request.Next(h.st, at)
	if d.Kind == events.KindNone {
		h.err = fmt.Errorf("gen: request %s: the approval flow has nothing to decide in %s", h.id, h.st.Status)
		return
	}
	h.emit(ctx, d.Kind, identity.RoleApproval, at, d.Data)
}

// expire lets the request's timers fire, each a moment after it is due,
// until the flow expires it (escalating first if the flow says so).
func (h *history) expire(ctx context.Context, rng *rand.Rand) {
	for range 16 {
		if h.err != nil || h.st.Status != request.StatusPending {
			return
		}
		h.decide(ctx, h.st.NextDue().Add(between(rng, 5*time.Millisecond, 2*time.Second)))
	}
}

// grant mints and seals the grant as the issuer component does.
func (h *history) grant(ctx context.Context, at time.Time) {
	if h.err != nil {
		return
	}
	st, m := h.st, h.g.minter
	token, claims, err := m.Mint(issuer.Constraints{
		RequestID: st.ID, Holder: st.Requester.Key, Audience: st.Domain,
		Action: st.Request.Action, Resource: st.Request.Resource,
		ParamsDigest: issuer.ParamsDigest(st.Request.Params), Evidence: st.LastDigest,
		BreakGlass: st.Evaluation.BreakGlass, NotBefore: at.UTC().Truncate(time.Second), TTL: h.g.grants.TTL(st),
	})
	if err != nil {
		h.err = err
		return
	}
	sealed, err := m.Seal(token, st.Request.HolderXKey)
	if err != nil {
		h.err = err
		return
	}
	h.emit(ctx, events.KindGranted, identity.RoleIssuer, at, &events.Granted{
		TokenHash: issuer.TokenHash(token), Sealed: sealed, SealedBy: m.XKey(), Holder: claims.Holder,
		NotBefore: claims.NotBefore, ExpiresAt: claims.Expires, Evidence: st.LastDigest, BreakGlass: claims.BreakGlass,
	})
}
