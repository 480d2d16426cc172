package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/restart"
)

// ErrConflict means another writer appended to the request first.
var ErrConflict = errors.New("request history moved on")

// Append appends an event if the last message matching filter is still
// lastSeq. It returns ErrConflict (test with IsConflict) when it is not.
// A duplicate message id is success: the effect is already in the stream.
//
// When a publish's outcome is unknown (no acknowledgement came: a timeout,
// a server failing over) or the stream cannot take it for now (a leader
// election), Append sends the same message again — the same id and body —
// under Retry, until it learns the outcome or ctx ends (Patience, when ctx
// has no deadline); a retry that finds the history moved on checks whether
// what moved it is this very message, stored by the attempt that went
// unacknowledged.
func Append(ctx context.Context, js jetstream.JetStream, stream string, out events.Outgoing, lastSeq uint64, filter string) (uint64, error) {
	var (
		seq     uint64
		attempt int
		absent  noAnswer
	)
	r := readerOf(js, stream)
	err := Retry(ctx, func(ctx context.Context) error {
		var err error
		seq, err = publish(ctx, js, stream, out, lastSeq, filter, attempt > 0)
		attempt++
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			// No stream takes the subject: one being elected a leader,
			// or none at all — which asking again will not change.
			return absent.judge(ctx, stream, func(ctx context.Context) error {
				_, err := r.info(ctx)
				return err
			}, err)
		}
		return err
	})
	return seq, err
}

// attemptTimeout bounds one publish attempt.
const attemptTimeout = 2 * time.Second

// publish makes one attempt; retry says an earlier attempt's outcome is
// unknown, so a history that moved on may have moved on by this message.
func publish(ctx context.Context, js jetstream.JetStream, stream string, out events.Outgoing, lastSeq uint64, filter string, retry bool) (uint64, error) {
	msg := &nats.Msg{Subject: out.Subject, Data: out.Body, Header: nats.Header(out.Header())}
	// Each attempt has its own bound: a publish in flight when a leader
	// dies is retried in seconds, not at the end of the caller's time.
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	ack, err := js.PublishMsg(actx, msg,
		jetstream.WithExpectStream(stream),
		jetstream.WithExpectLastSequenceForSubject(lastSeq, filter),
		// Asking again is Retry's: one rule, one bound.
		jetstream.WithRetryAttempts(0))
	if err == nil && ack.Duplicate {
		// The stream already holds a message with this id: this one sent
		// before, or an equal event another writer sealed (same data and
		// key, another time; a cluster checks the id before the expected
		// sequence). Only the first is this append.
		return duplicateOf(ctx, js, stream, out, ack.Sequence)
	}
	if err == nil {
		return ack.Sequence, nil
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeDuplicateInProcess {
		// Another copy of this very message is being stored (a replicated
		// stream): its outcome is not known yet.
		return 0, fmt.Errorf("publish %s: %w: %w", out.Subject, errInProcess, err)
	}
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		if retry {
			if seq, ok := stored(ctx, js, stream, out); ok {
				return seq, nil
			}
		}
		return 0, ErrConflict
	}
	return 0, fmt.Errorf("publish %s: %w", out.Subject, err)
}

// errCodeDuplicateInProcess is JetStream's "duplicate message id is in
// process" (JSStreamDuplicateMessageConflict): on a replicated stream, the
// same message sent twice at once gets it while the first is stored.
const errCodeDuplicateInProcess jetstream.ErrorCode = 10158

var errInProcess = errors.New("the same message is being stored")

// IsUnknownOutcome reports whether an Append failed without learning
// whether the stream stored the message: it may have, and may still.
func IsUnknownOutcome(err error) bool { return unknownOutcome(err) }

// unknownOutcome reports a publish that may or may not have been stored:
// it failed in a way Retry retries, other than the stream saying no.
func unknownOutcome(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && !errors.Is(err, errInProcess) {
		return false // the stream answered: it did not store it
	}
	return Transient(err) || errors.Is(err, ErrGaveUp)
}

// readerOf reads stream through js's JetStream (its API prefix, so also
// another domain's stream across leafnodes).
func readerOf(js jetstream.JetStream, stream string) Reader {
	return Reader{NC: js.Conn(), Stream: stream, APIPrefix: APIPrefixOf(js.Options())}
}

// stored returns the sequence of out if it is the last message on its
// subject.
func stored(ctx context.Context, js jetstream.JetStream, stream string, out events.Outgoing) (uint64, bool) {
	m, err := readerOf(js, stream).Last(ctx, out.Subject)
	if err != nil || m == nil || string(m.Body) != string(out.Body) {
		return 0, false
	}
	return m.Seq, true
}

// duplicateOf is the outcome of an append the stream answered as a
// duplicate of the message at seq: this append, if that message is out's
// body; else another writer's, and ErrConflict. A replica a moment behind
// may not hold seq yet: it is asked again, for up to dupWait; one that
// still cannot tell is a conflict too, and the caller reads the history
// again to find out.
func duplicateOf(ctx context.Context, js jetstream.JetStream, stream string, out events.Outgoing, seq uint64) (uint64, error) {
	r := readerOf(js, stream)
	giveUp := time.Now().Add(dupWait)
	for {
		m, err := r.At(ctx, out.Subject, seq)
		switch {
		case err == nil && m != nil && bytes.Equal(m.Body, out.Body):
			return seq, nil
		case err != nil || m != nil || time.Now().After(giveUp):
			return 0, ErrConflict
		}
		if !restart.Sleep(ctx, 10*time.Millisecond) {
			return 0, ErrConflict
		}
	}
}

// dupWait bounds how long duplicateOf waits for a replica to hold the
// message a duplicate names.
const dupWait = 200 * time.Millisecond

// IsConflict reports whether a Append failed because the history moved on.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }
