package client

import (
	"context"
	"errors"
	"time"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/store"
)

// Replay streams every message matching filter, oldest first, inspected,
// to fn, and returns once it has caught up with the stream as it was when
// Replay started. It holds one batch of messages at a time.
func (c *Client) Replay(ctx context.Context, filter string, fn func(events.Record) error) error {
	return store.Scan(ctx, c.js, c.stream, filter, time.Time{}, func(m events.Message) error {
		return fn(c.checker.Inspect(m, c.clock()))
	})
}

// Pending lists the requests of domain ("" for all) that wait for
// approvers and that who may answer, oldest first.
func (c *Client) Pending(ctx context.Context, domain string, who identity.Principal) ([]*Request, error) {
	if domain == "" {
		domain = "*"
	}
	now := c.clock()
	var ids [][2]string
	err := c.Replay(ctx, events.Prefix+"."+domain+".*."+events.KindEvaluated.String(), func(r events.Record) error {
		if ev, ok := r.Data.(*events.Evaluated); ok && r.Valid() && ev.Outcome == events.OutcomeReview && ev.ExpiresAt != nil && ev.ExpiresAt.After(now) {
			ids = append(ids, [2]string{r.Domain, r.RequestID})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []*Request
	for _, id := range ids {
		r, err := c.Load(ctx, id[0], id[1])
		if err != nil {
			return nil, err
		}
		if r.State.CanVote(who) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// Watch calls fn with a request's state each time an event is appended to
// it, for every request of domain ("" for all), until ctx ends.
func (c *Client) Watch(ctx context.Context, domain string, fn func(*Request)) error {
	if domain == "" {
		domain = "*"
	}
	sub, err := c.nc.SubscribeSync(events.Prefix + "." + domain + ".*.*")
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		d, id, _, err := events.ParseSubject(m.Subject)
		if err != nil {
			continue
		}
		// Subscribers hear of a message before the stream has stored it:
		// read until the history holds it (briefly), so fn sees the change.
		r, err := c.loadHolding(ctx, d, id, events.Digest(m.Data))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		fn(r)
	}
}

// Requests streams the ids of the requests of domain ("" for all) in the
// order they were made, loading each one's history for fn.
func (c *Client) Requests(ctx context.Context, domain string, fn func(*Request) error) error {
	if domain == "" {
		domain = "*"
	}
	return c.Replay(ctx, events.Prefix+"."+domain+".*."+events.KindRequested.String(), func(rec events.Record) error {
		r, err := c.Load(ctx, rec.Domain, rec.RequestID)
		if err != nil {
			return err
		}
		if r.Records[0].Seq != rec.Seq {
			return nil // a second request message on one id: shown in the first's history
		}
		return fn(r)
	})
}

// loadHolding loads a request's history, reading again (for up to about a
// second) until it holds the message with the given body digest.
func (c *Client) loadHolding(ctx context.Context, domain, id, digest string) (*Request, error) {
	wait := 2 * time.Millisecond
	for {
		r, err := c.Load(ctx, domain, id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if err == nil {
			for _, rec := range r.Records {
				if rec.Digest == digest {
					return r, nil
				}
			}
			if wait > time.Second {
				return r, nil
			}
		} else if wait > time.Second {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}
