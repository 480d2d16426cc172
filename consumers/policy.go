package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/policy"
	"github.com/writ-dev/writ/request"
)

// Policy validates requests and evaluates them against the Cedar policies:
// requested → rejected | evaluated.
type Policy struct {
	c        *component
	policies *policy.Set
	flows    *policy.Flows
	locks    *locks.List
	state    *state.Watcher // resource and domain state, read by the policies
}

// NewPolicy returns the policy consumer. key must be a policy key of the
// served domain in the trust bundle.
func NewPolicy(env Env, key nkeys.KeyPair, policies *policy.Set, flows *policy.Flows) (*Policy, error) {
	c, err := newComponent(env, identity.RolePolicy, key)
	if err != nil {
		return nil, err
	}
	if policies == nil || flows == nil {
		return nil, errors.New("consumers: policy: policies and flows are required")
	}
	if err := flows.Check(policies); err != nil {
		return nil, err
	}
	return &Policy{c: c, policies: policies, flows: flows, locks: locks.NewList(c.env.NC, c.js, c.reader, c.checker(), c.log),
		state: state.NewWatcher(c.js)}, nil
}

// Durables lists the durable consumers the policy component reads.
func (p *Policy) Durables() []Durable {
	return p.c.env.DurablesOf("policy")
}

// Run consumes requests until ctx ends.
func (p *Policy) Run(ctx context.Context) error {
	d := p.Durables()[0]
	if err := p.record(ctx); err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return keepWatching(ctx, p.c.log, "lock list", p.locks.Run) })
	g.Go(func() error { return keepWatching(ctx, p.c.log, "resource state", p.state.Run) })
	g.Go(func() error {
		return consume(ctx, p.c.js, p.c.env.Observer, d, d.Config(), p.c.env.Workers, nil, p.c.log, p.handle)
	})
	return g.Wait()
}

// record puts the policy set and flows this consumer decides with into the
// trail, once (their id derives from their digests), so that every
// evaluation can be re-run from the stream alone.
func (p *Policy) record(ctx context.Context) error {
	id := events.PolicyID(p.policies.Digest(), p.flows.Digest())
	data := &events.Policy{
		PolicyDigest: p.policies.Digest(), PolicySource: string(p.policies.Source()),
		FlowsDigest: p.flows.Digest(), FlowsSource: string(p.flows.Source()),
	}
	if n := len(data.PolicySource) + len(data.FlowsSource) + 4096; n > p.c.env.MaxBody {
		return fmt.Errorf("consumers: the policy set and flows (about %d bytes) do not fit one event of at most %d: raise limits.max_event_bytes", n, p.c.env.MaxBody)
	}
	// Its id is new until recorded: it expects no history.
	_, err := p.c.trail.Append(ctx, p.c.env.Domain, id, 0, p.c.author, history.Event{Kind: events.KindPolicy, Data: data})
	switch {
	case err == nil:
		p.c.probe.Appended(events.KindPolicy)
		// Not under request_id: the policy record's id names no request.
		p.c.log.Info("recorded the policy set", "policy_digest", data.PolicyDigest, "flows_digest", data.FlowsDigest)
	case history.IsConflict(err):
		// Recorded already, by an earlier start or another replica.
	default:
		return fmt.Errorf("consumers: record the policy set: %w", err)
	}
	return nil
}

func (p *Policy) handle(ctx context.Context, m jetstream.Msg) error {
	return handleAudit(ctx, p.c, m, p.decide)
}

func (p *Policy) decide(ctx context.Context, h *view, this events.Record) (*effect, error) {
	st := h.State
	if _, done := st.Answered[this.Seq]; done {
		return nil, nil
	}
	if err := h.Errs[this.Seq]; err != nil {
		if st.Status == request.StatusNone {
			return &effect{kind: events.KindRejected, data: &events.Rejected{
				Prev:      st.LastDigest,
				RefSeq:    this.Seq,
				RefDigest: this.Digest,
				Code:      request.Code(err),
				Reason:    reason(err),
			}}, nil
		}
		// Another request holds this id: refuse this one, keep that one.
		return refuse(h, this, err), nil
	}
	if st.Status != request.StatusRequested || st.RequestSeq != this.Seq {
		return nil, nil
	}
	if err := p.locks.Check(ctx, st.Requester); err != nil {
		if errors.Is(err, locks.ErrNotReady) {
			return nil, &retryAfter{delay: 200 * time.Millisecond, cause: err}
		}
		return &effect{kind: events.KindRejected, data: &events.Rejected{
			Prev: st.LastDigest, RefSeq: this.Seq, RefDigest: this.Digest, Code: codeOf(err), Reason: reason(err),
		}}, nil
	}
	// Fail closed: no decision before the state is loaded, and none on
	// state that cannot be read (evaluate records the error and denies).
	facts, err := p.state.Lookup(st.Domain, st.Request.Resource)
	if errors.Is(err, state.ErrNotReady) {
		return nil, &retryAfter{delay: 200 * time.Millisecond, cause: err}
	}
	return &effect{kind: events.KindEvaluated, data: p.evaluate(st, h.Now, facts, err)}, nil
}

// evaluate decides on the request with the resource's and the domain's
// state, and records which entries of the bucket it read, at which
// revisions; stateErr, when not nil, says the state could not be read,
// and denies.
func (p *Policy) evaluate(st request.State, now time.Time, facts state.Facts, stateErr error) *events.Evaluated {
	req := st.Request
	ev := policy.Evaluate(p.policies, p.flows, policy.Input{
		Principal: st.Requester,
		Action:    req.Action,
		Domain:    st.Domain,
		Resource:  req.Resource,
		Context: policy.Context{
			Urgency: req.Urgency,
			Reason:  req.Reason,
			Ticket:  req.Ticket,
			Origin:  st.Requester.Domain,
			TTL:     time.Duration(req.TTLSeconds) * time.Second,
			Params:  req.Params,
			Time:    now,

			ResourceState: facts.Resource,
			DomainState:   facts.Domain,
		},
	}, stateErr)
	ev.Prev = st.LastDigest
	ev.StateRevisions = facts.Revisions
	return ev
}
