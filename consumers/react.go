package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/writ-dev/writ/events"
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
}

// decideFunc looks at a request's history (and, for messages of the audit
// stream, the record being handled) and says what to append, if anything.
type decideFunc func(ctx context.Context, h *history, this events.Record) (*effect, error)

// maxConflicts bounds the re-reads when other writers keep appending first.
const maxConflicts = 16

// react loads a request's history, asks decide what to append, and appends
// it; when another writer appended first, it reads the history again and
// asks again. seq is the stream sequence of the message being handled, or 0
// when the trigger is not in the audit stream (a timer).
func (c *component) react(ctx context.Context, domain, id string, seq uint64, decide decideFunc) error {
	for range maxConflicts {
		h, err := c.loadReaching(ctx, domain, id, seq)
		if errors.Is(err, store.ErrBehind) {
			// A replica of the stream still without the message: later.
			return &retryAfter{delay: 250 * time.Millisecond, cause: err}
		}
		if err != nil {
			return err
		}
		var this events.Record
		if seq != 0 {
			var ok bool
			if this, ok = h.record(seq); !ok {
				return &retryAfter{delay: 250 * time.Millisecond, cause: errors.New("history does not hold the message")}
			}
		}
		eff, err := decide(ctx, h, this)
		if err != nil || eff == nil {
			return err
		}
		if eff.before != nil {
			if err := eff.before(ctx); err != nil {
				return err
			}
		}
		at, err := c.emit(ctx, h.state, eff.kind, eff.ordinal, eff.data)
		then := eff.then
		if errors.Is(err, events.ErrOversized) && seq != 0 {
			// What decide would append does not fit one event (a resource
			// state too large to record in an evaluation): answer the
			// input with that instead, so that it does not wait for ever.
			c.log.Warn("answer too large to record", attrRequest, id, attrKind, eff.kind.String(), "error", err)
			if eff = answerInstead(h, this, err); eff == nil {
				return nil
			}
			at, err = c.emit(ctx, h.state, eff.kind, eff.ordinal, eff.data)
			then = nil
		}
		if store.IsConflict(err) {
			continue
		}
		if err != nil {
			return err
		}
		c.probe.Appended(eff.kind)
		c.log.Info("appended", attrRequest, id, attrKind, eff.kind.String(), attrSeq, at)
		if then != nil {
			return then(ctx, at)
		}
		return nil
	}
	return &retryAfter{delay: time.Second, cause: store.ErrConflict}
}

// refuse records that a component refused the message this, once.
func refuse(h *history, this events.Record, err error) *effect {
	if _, done := h.state.Answered[this.Seq]; done {
		return nil
	}
	return &effect{
		kind:    events.KindRefused,
		ordinal: strconv.FormatUint(this.Seq, 10),
		data: &events.Refused{
			Prev:      h.state.LastDigest,
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
	return func(ctx context.Context, h *history, this events.Record) (eff *effect, err error) {
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
func unprocessable(h *history, this events.Record, cause error) *effect {
	return answerInstead(h, this, fmt.Errorf("%w: %v", ErrUnprocessable, cause))
}

// answerInstead answers an input whose own answer cannot be made: a
// request that has had no other answer is rejected, so its requester
// learns; anything else is refused. The code says why (codeOf err).
func answerInstead(h *history, this events.Record, err error) *effect {
	st := h.state
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
