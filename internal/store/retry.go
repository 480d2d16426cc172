package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Patience bounds Retry for a caller whose context has no deadline: long
// enough for a JetStream cluster to elect a stream leader after losing
// one (its election timeout is 4 to 9 s, then the new leader catches up),
// the same 30 s `writ serve` gives a cluster to form.
const Patience = 30 * time.Second

// Retry's pauses between attempts: from firstPause, doubling, at most
// maxPause. A replica that is behind catches up in milliseconds; an
// election takes seconds, and a few asks a second are cheap.
const (
	firstPause = time.Millisecond
	maxPause   = 100 * time.Millisecond
)

// ErrGaveUp is returned, wrapping the last failure, when a failure that
// asking again may cure lasted until the caller's time ran out (or
// Patience, when the caller set none). Retry does not retry it: an
// operation made of retried steps shares one bound.
var ErrGaveUp = errors.New("the NATS cluster did not answer in time")

// Retry calls op until it succeeds, fails in a way asking again cannot
// cure (see Transient), or ctx ends — after Patience when ctx has no
// deadline — and then returns ErrGaveUp with the last failure. op bounds
// each attempt itself (an answer lost with a server that went down must be
// asked for again in seconds, not waited on for the whole bound); the ctx
// it is given carries the whole bound, so a Retry within op shares it.
//
// This is Writ's one rule for what a NATS cluster's reader or writer waits
// through: the components and the client commands read and append with
// it. While op keeps failing, the Waiter in ctx (WithWaiter) hears what
// it waits for.
func Retry(ctx context.Context, op func(context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, Patience)
		defer cancel()
	}
	start := time.Now()
	var answered func()
	defer func() {
		if answered != nil {
			answered()
		}
	}()
	var last error // the last failure that was not ctx ending
	for pause := firstPause; ; pause = min(2*pause, maxPause) {
		err := op(ctx)
		if err == nil || !Transient(err) {
			return err
		}
		if ctx.Err() != nil {
			// An attempt cut short by ctx's end says nothing new: what
			// was waited for is what the attempt before it failed on.
			if last != nil && errors.Is(err, ctx.Err()) {
				err = last
			}
			return gaveUp(ctx, start, err)
		}
		last = err
		if answered == nil {
			if w, ok := ctx.Value(waiterKey{}).(Waiter); ok {
				answered = w.Waiting(Reason(err))
			}
		}
		select {
		case <-ctx.Done():
			return gaveUp(ctx, start, err)
		case <-time.After(pause):
		}
	}
}

// gaveUp is Retry's error once ctx has ended on a transient failure: the
// caller's cancellation as it is, an exhausted bound as ErrGaveUp, both
// with the last failure and what it waited for.
func gaveUp(ctx context.Context, start time.Time, last error) error {
	if errors.Is(last, ErrGaveUp) {
		return last // an inner Retry said it already
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%w (while waiting for %s: %w)", ctx.Err(), Reason(last), last)
	}
	return fmt.Errorf("%w: waited %s for %s: %w (%w)", ErrGaveUp,
		time.Since(start).Round(100*time.Millisecond), Reason(last), last, ctx.Err())
}

// Transient reports whether err is a failure of a read or an append that
// asking again may cure: nobody answers for the stream (a leader
// election, a server (re)joining whose responders are not up yet), no
// answer came in time (it was lost with a server going down), the
// connection is reconnecting, the cluster says it is temporarily
// unavailable, or a replica's answer is behind what is known to exist.
// An append that failed this way may have been stored (IsUnknownOutcome):
// asking again with the same message id is how to find out.
func Transient(err error) bool {
	if err == nil || errors.Is(err, ErrGaveUp) {
		return false
	}
	for _, e := range []error{nats.ErrNoResponders, nats.ErrTimeout, context.DeadlineExceeded,
		jetstream.ErrNoStreamResponse, nats.ErrConnectionReconnecting, nats.ErrDisconnected,
		errInProcess, errImpatient, errNoResponder, ErrBehind} {
		if errors.Is(err, e) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && transientCodes[apiErr.ErrorCode]
}

// transientCodes are JetStream API errors a cluster gives while it moves
// leaders or brings a replica back.
var transientCodes = map[jetstream.ErrorCode]bool{
	10004: true, // JSClusterIncompleteErr: incomplete results
	10008: true, // JSClusterNotAvailErr: JetStream system temporarily unavailable
	10009: true, // JSClusterNotLeaderErr: JetStream cluster can not handle request
	10118: true, // JSStreamOfflineErr: stream is offline
	10119: true, // JSConsumerOfflineErr: consumer is offline
	10163: true, // JSStreamExpectedLastSeqPerSubjectNotReady: a new leader is not ready to check it
}

// Reason says, in a user's words, what a transient failure waits for.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrBehind):
		return "a replica to catch up"
	case errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		return "the connection to NATS"
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, errImpatient):
		return "an answer from the stream"
	}
	return "stream leader election"
}

// A Waiter hears when a read or an append waits for the cluster, to tell
// a user who would otherwise see nothing happen.
type Waiter interface {
	// Waiting is called when an operation first fails in a way asking
	// again may cure (Reason says why); it returns what to call once the
	// operation waits no more (it succeeded, failed or gave up).
	Waiting(reason string) (answered func())
}

type waiterKey struct{}

// WithWaiter returns a context whose reads and appends tell w when they
// wait for the cluster (nil: tell no one). Like net/http/httptrace's hooks, it rides on the
// context because the waits happen deep inside calls that take one.
func WithWaiter(ctx context.Context, w Waiter) context.Context {
	return context.WithValue(ctx, waiterKey{}, w)
}

// Waiting tells the Waiter in ctx, if any, that the caller waits for the
// cluster for reason (a wait that is not a retried failure: the stream
// has no leader, so nothing moves); call what it returns when it ends.
func Waiting(ctx context.Context, reason string) (answered func()) {
	if w, ok := ctx.Value(waiterKey{}).(Waiter); ok {
		return w.Waiting(reason)
	}
	return func() {}
}

// Unserved says why a stream, as its info describes it, cannot take
// appends now — "stream leader election" when it has no leader, "a quorum
// of the stream's replicas" when its leader hears too few of them (it
// steps down only some seconds later) — or "" when it can. A stream that
// is not replicated (no cluster information) is served by its server.
func Unserved(info *jetstream.StreamInfo) string {
	cl := info.Cluster
	switch {
	case cl == nil:
		return ""
	case cl.Leader == "":
		return "stream leader election"
	}
	current := 1 // the leader
	for _, p := range cl.Replicas {
		if p.Current && !p.Offline {
			current++
		}
	}
	if 2*current <= 1+len(cl.Replicas) {
		return "a quorum of the stream's replicas"
	}
	return ""
}
