package consumers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

// Approval runs the approval flows: it counts votes and decides approved,
// denied or expired. Deadlines are durable timers in the timer stream.
type Approval struct {
	c      *component
	timers jetstream.Stream
}

// NewApproval returns the approval consumer.
func NewApproval(env Env, key nkeys.KeyPair) (*Approval, error) {
	c, err := newComponent(env, identity.RoleApproval, key)
	if err != nil {
		return nil, err
	}
	return &Approval{c: c}, nil
}

// Run consumes evaluations, votes and fired timers until ctx ends.
func (a *Approval) Run(ctx context.Context) error {
	d := a.c.env.Domain
	timers, err := a.c.js.Stream(ctx, a.c.env.Streams.Timers)
	if err != nil {
		return fmt.Errorf("consumers: timer stream %s: %w", a.c.env.Streams.Timers, err)
	}
	a.timers = timers
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		cfg := durableConfig(DurableApproval+d+a.c.env.DurableSuffix,
			events.Prefix+"."+d+".*."+events.KindEvaluated.String(),
			events.Prefix+"."+d+".*."+events.KindVoted.String())
		return consume(ctx, a.c.js, a.c.env.Streams.Name, cfg, a.c.env.Workers, a.c.log, a.handle)
	})
	g.Go(func() error {
		cfg := durableConfig(DurableTimers+d+a.c.env.DurableSuffix, timerPrefix+".fire."+d+".>")
		return consume(ctx, a.c.js, a.c.env.Streams.Timers, cfg, a.c.env.Workers, a.c.log, a.handleTimer)
	})
	return g.Wait()
}

func (a *Approval) handle(ctx context.Context, m jetstream.Msg) error {
	return handleAudit(ctx, a.c, m, a.decide)
}

func (a *Approval) decide(ctx context.Context, h *history, this events.Record) (*effect, error) {
	if err := h.errs[this.Seq]; err != nil {
		return refuse(h, this, err), nil
	}
	if this.Kind == events.KindEvaluated && h.state.Status.IsPending() {
		if err := a.schedule(ctx, h.state); err != nil {
			return nil, err
		}
	}
	return next(h), nil
}

// next is the approval decision for the state now, if there is one.
func next(h *history) *effect {
	d := request.Next(h.state, h.now)
	if d.Kind == events.KindNone {
		return nil
	}
	return &effect{kind: d.Kind, data: d.Data}
}

type timerBody struct {
	Domain    string    `json:"domain"`
	RequestID string    `json:"request_id"`
	At        time.Time `json:"at"`
}

// schedule makes the timer stream fire the request's deadline. It is
// idempotent: one schedule subject and one message id per request.
func (a *Approval) schedule(ctx context.Context, st request.State) error {
	at := st.Evaluation.ExpiresAt.UTC().Truncate(time.Second)
	if at.Before(*st.Evaluation.ExpiresAt) {
		at = at.Add(time.Second)
	}
	body, _ := json.Marshal(timerBody{Domain: st.Domain, RequestID: st.ID, At: at})
	msg := &nats.Msg{Subject: scheduleSubject(st.Domain, st.ID), Data: body, Header: nats.Header{}}
	msg.Header.Set("Nats-Schedule", "@at "+at.Format(time.RFC3339))
	msg.Header.Set("Nats-Schedule-Target", fireSubject(st.Domain, st.ID))
	msg.Header.Set(events.HeaderMsgID, st.ID+".deadline")
	if _, err := a.c.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(a.c.env.Streams.Timers)); err != nil {
		return &retryAfter{delay: time.Second, cause: err}
	}
	return nil
}

// handleTimer acts on a fired deadline. The fire message is only a wake-up
// call: what happens is decided from the history and the clock.
func (a *Approval) handleTimer(ctx context.Context, m jetstream.Msg) error {
	parts := strings.Split(m.Subject(), ".")
	if len(parts) != 4 {
		return &terminate{reason: "malformed timer subject"}
	}
	domain, id := parts[2], parts[3]
	var early time.Duration
	err := a.c.react(ctx, domain, id, 0, func(_ context.Context, h *history, _ events.Record) (*effect, error) {
		if h.state.Status.IsPending() {
			if wait := h.state.Evaluation.ExpiresAt.Sub(h.now); wait > 0 {
				early = wait
				return nil, nil
			}
		}
		return next(h), nil
	})
	if err == nil && early > 0 {
		return &retryAfter{delay: early, cause: errTimerEarly}
	}
	if err == nil {
		// The deadline is dealt with: drop the fired message so that the
		// timer stream holds only timers still to fire.
		if md, merr := m.Metadata(); merr == nil {
			if derr := a.timers.DeleteMsg(ctx, md.Sequence.Stream); derr != nil {
				a.c.log.Debug("could not drop a fired timer", attrRequest, id, "err", derr)
			}
		}
	}
	return err
}
