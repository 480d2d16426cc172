package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/request"
)

// effect is an event a handler wants appended to a request's history.
type effect struct {
	kind    events.Kind
	ordinal string
	data    any
	// before, when set, is what must be done before the event is
	// appended (telling verifiers of a revocation). Its error is the
	// handling's: nothing is appended, and the input comes again.
	before func(ctx context.Context) error
	// then, when set, is what follows once the event is stored at seq
	// (applying a recorded change to a bucket). Its error is the
	// handling's: the input comes again, and decide must then do it for
	// the event already stored.
	then func(ctx context.Context, seq uint64) error
	// cond, when set, replaces the history's own condition on the append
	// (history.Event.Cond): what the event was decided on besides the
	// history (the resource state a merge adds to) must be unchanged. A
	// conflict reads everything again.
	cond *history.Cond
}

// handleAudit handles a message of the audit stream with decide.
func handleAudit(ctx context.Context, c *component, m jetstream.Msg, decide decideFunc) error {
	domain, id, _, err := events.ParseSubject(m.Subject())
	if err != nil {
		// Not part of any request's history, so there is nowhere to record a
		// refusal; the message itself stays in the stream for auditors.
		c.log.Warn("ignored a message with a malformed subject", "subject", m.Subject(), "err", err)
		return &terminate{reason: "malformed subject"}
	}
	md, err := m.Metadata()
	if err != nil {
		return &terminate{reason: "no metadata"}
	}
	seq := md.Sequence.Stream
	err = c.react(ctx, domain, id, seq, guard(decide))
	var p *panicked
	if !errors.As(err, &p) || md.NumDelivered < PoisonAfter {
		return err
	}
	// It failed every time, in a way no retry fixes: answer it on the
	// record and let it go, so that it blocks nothing behind it.
	err = c.react(ctx, domain, id, seq, func(_ context.Context, h *view, this events.Record) (*effect, error) {
		return unprocessable(h, this, p), nil
	})
	if err != nil {
		return err // recording failed: try again on the next delivery
	}
	c.log.Error("gave up on an input that cannot be handled; recorded as unprocessable",
		attrRequest, id, attrSeq, seq, "deliveries", md.NumDelivered, "err", p)
	return &terminate{reason: CodeUnprocessable + ": " + p.Error()}
}

// decideFunc looks at a request's history (and, for messages of the audit
// stream, the record being handled) and says what to append, if anything.
type decideFunc func(ctx context.Context, h *view, this events.Record) (*effect, error)

// errNotHeld: a read of the history does not hold the message handled.
var errNotHeld = errors.New("history does not hold the message")

// react reads a request's history, asks decide what to append, and appends
// it (history.Extend: when another writer appended first, it reads again
// and asks again). seq is the stream sequence of the message being
// handled, or 0 when the trigger is not in the audit stream (a timer).
func (c *component) react(ctx context.Context, domain, id string, seq uint64, decide decideFunc) error {
	var then func(ctx context.Context, seq uint64) error
	build := func(decide decideFunc) history.Build {
		return func(h *history.History) (*history.Event, error) {
			v := &view{History: h}
			var this events.Record
			if seq != 0 {
				var ok bool
				if this, ok = h.Record(seq); !ok {
					return nil, errNotHeld
				}
			}
			eff, err := decide(ctx, v, this)
			if err != nil || eff == nil {
				return nil, err
			}
			if eff.before != nil {
				if err := eff.before(ctx); err != nil {
					return nil, err
				}
			}
			then = eff.then
			return &history.Event{Kind: eff.kind, Ordinal: eff.ordinal, Data: eff.data, Cond: eff.cond}, nil
		}
	}
	reach := history.Reach{Seq: seq, Wait: history.HandedWait}
	x, err := c.trail.Extend(ctx, domain, id, reach, c.author, build(decide))
	if errors.Is(err, events.ErrOversized) && seq != 0 && x.Event != nil {
		// What decide would append does not fit one event (a resource
		// state too large to record in an evaluation): answer the input
		// with that instead, so that it does not wait for ever.
		c.log.Warn("answer too large to record", attrRequest, id, attrKind, x.Event.Kind.String(), "error", err)
		cause := err
		x, err = c.trail.Extend(ctx, domain, id, reach, c.author, build(func(_ context.Context, h *view, this events.Record) (*effect, error) {
			return answerInstead(h, this, cause), nil
		}))
		then = nil
	}
	switch {
	case errors.Is(err, store.ErrBehind), errors.Is(err, errNotHeld):
		// A replica of the stream still without the message: later.
		return &retryAfter{delay: 250 * time.Millisecond, cause: err}
	case history.IsConflict(err):
		return &retryAfter{delay: time.Second, cause: err}
	case err != nil || x.Seq == 0:
		return err
	}
	if x.Event != nil {
		c.probe.Appended(x.Event.Kind)
		c.log.Info("appended", attrRequest, id, attrKind, x.Event.Kind.String(), attrSeq, x.Seq)
	}
	if then != nil {
		return then(ctx, x.Seq)
	}
	return nil
}

// refuse records that a component refused the message this, once.
func refuse(h *view, this events.Record, err error) *effect {
	if _, done := h.State.Answered[this.Seq]; done {
		return nil
	}
	return &effect{
		kind:    events.KindRefused,
		ordinal: strconv.FormatUint(this.Seq, 10),
		data: &events.Refused{
			Prev:      h.State.LastDigest,
			RefSeq:    this.Seq,
			RefKind:   this.Kind.String(),
			RefSigner: this.Signer,
			Code:      codeOf(err),
			Reason:    reason(err),
		},
	}
}

// codeOf is the reason code recorded for err.
func codeOf(err error) string {
	switch {
	case errors.Is(err, locks.ErrLocked):
		return "locked"
	case errors.Is(err, ErrUnprocessable):
		return CodeUnprocessable
	}
	return request.Code(err)
}

// CodeUnprocessable is the reason code of an input a component failed on
// PoisonAfter times for a reason no retry fixes (it made the handler
// panic): recorded, and no longer delivered, so it blocks nothing.
const CodeUnprocessable = "unprocessable"

// PoisonAfter is how many deliveries of an input a component fails on,
// that way, before it gives up on it.
const PoisonAfter = 5

// ErrUnprocessable wraps what made a component give up on an input.
var ErrUnprocessable = errors.New("consumers: input cannot be handled")

// panicked is a handler's panic, as an error.
type panicked struct{ value any }

func (p *panicked) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// guard turns a panic in decide into an error, so that handling can tell
// an input that cannot be handled from a transient failure.
func guard(decide decideFunc) decideFunc {
	return func(ctx context.Context, h *view, this events.Record) (eff *effect, err error) {
		defer func() {
			if v := recover(); v != nil {
				eff, err = nil, &panicked{value: v}
			}
		}()
		if beforeDecide != nil {
			beforeDecide(this)
		}
		return decide(ctx, h, this)
	}
}

// beforeDecide, when set (by tests, before any component runs), is called
// with each record a component is about to decide on.
var beforeDecide func(events.Record)

// unprocessable answers an input given up on.
func unprocessable(h *view, this events.Record, cause error) *effect {
	return answerInstead(h, this, fmt.Errorf("%w: %v", ErrUnprocessable, cause))
}

// answerInstead answers an input whose own answer cannot be made: a
// request that has had no other answer is rejected, so its requester
// learns; anything else is refused. The code says why (codeOf err).
func answerInstead(h *view, this events.Record, err error) *effect {
	st := h.State
	if st.Status == request.StatusRequested && st.RequestSeq == this.Seq {
		return &effect{kind: events.KindRejected, data: &events.Rejected{
			Prev: st.LastDigest, RefSeq: this.Seq, RefDigest: this.Digest, Code: codeOf(err), Reason: reason(err),
		}}
	}
	return refuse(h, this, err)
}

// reason keeps a refusal's text within the schema's bound.
func reason(err error) string {
	s := err.Error()
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}
