package consumers

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The runtime other components build on (the notifier, package notify):
// the consumer loop the components here run, the answers a handler gives
// it, and the names and log keys they share. What it promises is
// consume's: a message is acked only once its handler returns nil.

// Handler handles one message of a durable consumer: nil acks it, an error
// from RetryAfter or Terminate says what to do instead, and any other
// error naks it for redelivery after a backoff growing with its
// deliveries.
type Handler func(ctx context.Context, m jetstream.Msg) error

// Consume runs h over the durable pull consumer d (created or updated with
// cfg) with up to workers messages in flight, and as many more pulled ahead
// of them, until ctx ends, then finishes what it holds and returns; obs
// hears of the loop and of every message. A consumer that disappears while
// still wanted is made again.
func Consume(ctx context.Context, js jetstream.JetStream, obs Observer, d Durable, cfg jetstream.ConsumerConfig, workers int, log *slog.Logger, h Handler) error {
	return consume(ctx, js, obs, d, cfg, workers, nil, log, handlerFunc(h))
}

// RetryAfter is a Handler's answer for a transient condition: deliver the
// message again after delay.
func RetryAfter(delay time.Duration, cause error) error {
	return &retryAfter{delay: delay, cause: cause}
}

// Terminate is a Handler's answer for a message that can never succeed:
// deliver it no more. The reason goes to the server.
func Terminate(reason string) error { return &terminate{reason: reason} }

// WithDefaults returns the environment with its defaults filled in, as a
// component runs with it (Validate first).
func (e Env) WithDefaults() Env { return e.withDefaults() }

// NewDurable names a component's durable consumer on stream: prefix (a
// wire-contract constant) followed by the served domain and DurableSuffix.
func (e Env) NewDurable(component, name, stream, prefix string, filters ...string) Durable {
	return e.durable(component, name, stream, prefix, filters...)
}

// Log attribute keys every component uses.
const (
	AttrRequest = attrRequest
	AttrDomain  = attrDomain
	AttrSeq     = attrSeq
	AttrKind    = attrKind
)
