package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
)

// ErrNoDirect is returned when a stream to scan does not allow direct gets.
var ErrNoDirect = errors.New("the stream does not allow direct gets")

// Scan streams every message of the stream matching filter, oldest first
// (from since, when it is not zero), to fn, and returns once it has caught
// up with the stream as it was when Scan started. It holds one batch at a
// time, so it suits histories of any size.
//
// It reads with batched direct gets, as Reader does, and creates no
// consumer: whoever may read the stream may scan it, without the right to
// create (and so to change) consumers. The stream must allow direct gets.
func Scan(ctx context.Context, js jetstream.JetStream, stream, filter string, since time.Time, fn func(events.Message) error) error {
	r := readerOf(js, stream)
	start := directGet{Seq: 1}
	if !since.IsZero() {
		start = directGet{StartTime: &since}
	}
	return r.scan(ctx, filter, start, fn)
}

// APIPrefixOf is the prefix Reader needs to reach the JetStream that js
// reaches.
func APIPrefixOf(o jetstream.JetStreamOptions) string {
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".")
	case o.Domain != "":
		return DomainAPI(o.Domain)
	}
	return ""
}
