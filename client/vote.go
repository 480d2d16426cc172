package client

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/request"
)

// ErrNotPending is returned when voting on a request that waits for no one.
var ErrNotPending = errors.New("request is not waiting for approvers")

// ErrClosed is returned when revoking a request that nothing can change.
var ErrClosed = errors.New("request is closed")

// Vote is an answer to a pending request.
type Vote struct {
	Approve bool
	Reason  string
	// Digest, when set, is the digest of the request event the approver
	// was shown: the vote is refused if the request is not that one.
	Digest string
}

// ErrDigestChanged is returned when a vote's digest is not the request's.
var ErrDigestChanged = errors.New("the request is not the one shown")

// Vote signs and publishes who's answer to a pending request, bound to the
// request event the approver was shown, and returns its stream sequence.
// The approval consumer has the last word: AwaitAnswer tells whether the
// vote was counted or refused, and why.
//
// A vote on a request the pipeline has not evaluated yet (cast right after
// it was made) waits for the evaluation first, briefly (AwaitEvaluation).
func (c *Client) Vote(ctx context.Context, who *identity.Identity, domain, id string, v Vote) (uint64, error) {
	for waited := false; ; waited = true {
		// The ordinal is the voter's key: a retried vote dedupes, and an
		// approver's answers cannot be multiplied by resending.
		seq, err := c.appendAs(ctx, who, domain, id, events.KindVoted, who.Principal.Key, func(st request.State) (any, error) {
			if st.Status == request.StatusRequested && !waited {
				return nil, errNotEvaluated
			}
			if st.Status == request.StatusRequested {
				return nil, fmt.Errorf("%w: it is not evaluated yet, %s after the vote came (is `writ serve` running?)", ErrNotPending, EvaluationWait)
			}
			if !st.Collecting() {
				return nil, fmt.Errorf("%w: it is %s", ErrNotPending, st.Status)
			}
			if v.Digest != "" && v.Digest != st.RequestDigest {
				return nil, ErrDigestChanged
			}
			decision := events.DecisionDeny
			if v.Approve {
				decision = events.DecisionApprove
			}
			return &events.Voted{
				Prev:          st.LastDigest,
				Domain:        domain,
				Voter:         events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
				Identity:      who.JWT,
				Decision:      decision,
				Reason:        v.Reason,
				RequestDigest: st.RequestDigest,
			}, nil
		})
		if !errors.Is(err, errNotEvaluated) {
			return seq, err
		}
		unevaluated := &Request{State: request.State{Domain: domain, ID: id, Status: request.StatusRequested}}
		if _, err := c.AwaitEvaluation(ctx, unevaluated); err != nil {
			return 0, err
		}
	}
}

// errNotEvaluated: a vote came before the request's evaluation; Vote
// waits for it once.
var errNotEvaluated = errors.New("not evaluated yet")

// AwaitAnswer waits until the pipeline has answered the vote stored at seq
// (see request.State.VoteAnswered): counted it (the request still waits
// for others), refused it (State.Answered says why), or made the decision
// that ends the collecting. The approval component answers every vote as
// it handles it, so this takes milliseconds while it runs; bound ctx for
// when it does not.
func (c *Client) AwaitAnswer(ctx context.Context, domain, id string, seq uint64) (*Request, error) {
	return c.Wait(ctx, domain, id, func(s request.State) bool { return s.VoteAnswered(seq) })
}

// Revoke asks, as who, to revoke a request or its grant (also a redeemed
// grant until it expires: the connection it opened through the NATS
// callout is then ended), and returns the stream sequence of the ask. The approval consumer answers with revoked
// (the requester may always withdraw their own; anyone else needs a policy
// permit for Action::"revoke") or refused; Wait for it.
func (c *Client) Revoke(ctx context.Context, who *identity.Identity, domain, id, reason string) (uint64, error) {
	if strings.TrimSpace(reason) == "" {
		return 0, fmt.Errorf("%w: a revocation needs a reason", ErrInvalidSpec)
	}
	return c.appendAs(ctx, who, domain, id, events.KindRevoke, who.Principal.Key, func(st request.State) (any, error) {
		// A redeemed grant may still be in use until it expires (what it
		// opened through the NATS callout): the approval component judges.
		if st.Status.IsClosed() && !st.InUse(c.clock()) {
			return nil, fmt.Errorf("%w: it is %s", ErrClosed, st.Status)
		}
		return &events.Revoke{
			Prev:     st.LastDigest,
			Domain:   domain,
			By:       events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
			Identity: who.JWT,
			Reason:   reason,
		}, nil
	})
}

// appendAs reads a request, builds the next event of kind from its state,
// signs it as who and appends it, again from the top when another writer
// appended first.
func (c *Client) appendAs(ctx context.Context, who *identity.Identity, domain, id string, kind events.Kind, ordinal string, build func(request.State) (any, error)) (uint64, error) {
	// (history refuses an id that is not one subject token: "*" would
	// read every request of the domain as one history, and append under
	// it.)
	x, err := c.trail.Extend(ctx, domain, id, history.Reach{}, principalAuthor(who), func(h *history.History) (*history.Event, error) {
		if len(h.Records) == 0 {
			return nil, notFound(domain, id)
		}
		data, err := build(h.State)
		if err != nil {
			return nil, err
		}
		return &history.Event{Kind: kind, Ordinal: ordinal, Data: data}, nil
	})
	return x.Seq, err
}

// Lock asks, as who, to lock (or unlock) a principal ("domain/name"), a
// user key or a domain in domain: no new grants to it, no redemptions by
// it. It returns the lock's id; the approval consumer answers on that id
// with locked, or refused (it needs a policy permit for Action::"lock").
func (c *Client) Lock(ctx context.Context, who *identity.Identity, domain string, target events.LockTarget, unlock bool, reason string) (string, error) {
	if strings.TrimSpace(reason) == "" {
		return "", fmt.Errorf("%w: a lock needs a reason", ErrInvalidSpec)
	}
	return c.ask(ctx, who, domain, events.KindLock, &events.Lock{
		Domain: domain, By: events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
		Identity: who.JWT, Target: target, Unlock: unlock, Reason: reason,
	})
}

// StateChange is a change to the state of a resource, or of a domain.
type StateChange struct {
	Path   string            // the resource's path; "" for the domain's own entry
	Attrs  map[string]string // set: the attributes
	Merge  bool              // set: keep the attributes not named
	Delete bool              // remove the entry instead
	Reason string            // optional
}

// SetState asks, as who, to change the state of a resource of domain (or
// of domain itself) and returns the ask's id. The approval consumer
// answers on that id with stated, once the change is recorded (then it
// applies it to the resource-state bucket), or refused (it needs a policy
// permit for Action::"set-state" on the resource).
func (c *Client) SetState(ctx context.Context, who *identity.Identity, domain string, ch StateChange) (string, error) {
	if _, err := state.Key(domain, ch.Path); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	d := &events.State{
		Domain: domain, By: events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
		Identity: who.JWT, Path: ch.Path, Op: events.StateSet, Attrs: ch.Attrs, Merge: ch.Merge, Reason: ch.Reason,
	}
	switch {
	case ch.Delete && (len(ch.Attrs) > 0 || ch.Merge):
		return "", fmt.Errorf("%w: a deletion names no attributes", ErrInvalidSpec)
	case ch.Delete:
		d.Op = events.StateDelete
	case len(ch.Attrs) == 0:
		return "", fmt.Errorf("%w: a state change sets at least one attribute (or deletes the entry)", ErrInvalidSpec)
	}
	if err := state.CheckAttrs(ch.Attrs); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	if len(ch.Reason) > 2048 || (ch.Reason != "" && strings.TrimSpace(ch.Reason) == "") {
		return "", fmt.Errorf("%w: a reason is at most 2048 bytes, and not blank", ErrInvalidSpec)
	}
	return c.ask(ctx, who, domain, events.KindState, d)
}

// ask appends, as who, an ask that opens a history of its own (a lock, a
// state change) and returns its id.
func (c *Client) ask(ctx context.Context, who *identity.Identity, domain string, kind events.Kind, data any) (string, error) {
	uid, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	id := uid.String()
	if _, err := c.trail.Append(ctx, domain, id, 0, principalAuthor(who), history.Event{Kind: kind, Data: data}); err != nil {
		return "", err
	}
	return id, nil
}
