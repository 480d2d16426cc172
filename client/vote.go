package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/store"
)

// ErrNotPending is returned when voting on a request that waits for no one.
var ErrNotPending = errors.New("client: request is not waiting for approvers")

// Vote is an answer to a pending request.
type Vote struct {
	Approve bool
	Reason  string
}

// Vote signs and publishes who's answer to a pending request, bound to the
// request event the approver was shown, and returns its stream sequence.
// The approval consumer has the last word: Load the request afterwards to
// see whether the vote was counted or refused, and why.
func (c *Client) Vote(ctx context.Context, who *identity.Identity, domain, id string, v Vote) (uint64, error) {
	for range 16 {
		r, err := c.Load(ctx, domain, id)
		if err != nil {
			return 0, err
		}
		st := r.State
		if !st.Status.IsPending() {
			return 0, fmt.Errorf("%w: it is %s", ErrNotPending, st.Status)
		}
		decision := events.DecisionDeny
		if v.Approve {
			decision = events.DecisionApprove
		}
		data := &events.Voted{
			Prev:          st.LastDigest,
			Domain:        domain,
			Voter:         events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
			Identity:      who.JWT,
			Decision:      decision,
			Reason:        v.Reason,
			RequestDigest: st.RequestDigest,
		}
		// The ordinal is the voter's key: a retried vote dedupes, and an
		// approver's answers cannot be multiplied by resending.
		out, err := events.Seal(events.Draft{
			Domain: domain, RequestID: id, Kind: events.KindVoted, Ordinal: who.Principal.Key,
			Source: "writ://" + who.Principal.Domain + "/principals/" + who.Principal.Name,
			Time:   c.clock(), Data: data,
		}, who.Key)
		if err != nil {
			return 0, err
		}
		seq, err := store.Append(ctx, c.js, c.stream, out, st.LastSeq, events.RequestFilter(domain, id))
		if store.IsConflict(err) {
			continue
		}
		return seq, err
	}
	return 0, store.ErrConflict
}
