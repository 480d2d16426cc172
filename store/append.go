package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
)

// ErrConflict means another writer appended to the request first.
var ErrConflict = errors.New("store: request history moved on")

// Append appends an event if the last message matching filter is still
// lastSeq. It returns ErrConflict (test with IsConflict) when it is not.
// A duplicate message id is success: the effect is already in the stream.
func Append(ctx context.Context, js jetstream.JetStream, stream string, out events.Outgoing, lastSeq uint64, filter string) (uint64, error) {
	msg := &nats.Msg{Subject: out.Subject, Data: out.Body, Header: nats.Header(out.Header())}
	ack, err := js.PublishMsg(ctx, msg,
		jetstream.WithExpectStream(stream),
		jetstream.WithExpectLastSequenceForSubject(lastSeq, filter))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, ErrConflict
		}
		return 0, fmt.Errorf("store: publish %s: %w", out.Subject, err)
	}
	return ack.Sequence, nil
}

// IsConflict reports whether a Append failed because the history moved on.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }
